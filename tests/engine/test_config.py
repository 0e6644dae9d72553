"""Configuration: file + environment, secrets from env or file, unknown keys refused."""
import pytest

from integration.engine import config
from integration.engine.errors import ConfigError, ConfigFileError


def test_file_env_overlay_and_secret_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("from-file-secret\n")
    p = tmp_path / "c.yml"
    p.write_text(f"tenant_id: t1\nclient_id: c1\nclient_secret_file: {secret}\ntimeout: 5\n")
    cfg = config.load(str(p), env={"MSTEAMS_CLIENT_ID": "c2"})
    assert (cfg.tenant_id, cfg.client_id, cfg.client_secret, cfg.timeout) == ("t1", "c2", "from-file-secret", 5.0)
    assert cfg.app_configured and not cfg.bot_configured
    assert "from-file-secret" not in repr(cfg)


def test_unknown_key_and_bad_yaml(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text("tenant: x\n")
    with pytest.raises(ConfigError, match="unknown setting 'tenant'"):
        config.load(str(p), env={})
    p.write_text("a: [\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        config.load(str(p), env={})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "nope.yml"), env={})


def test_env_only():
    cfg = config.load(None, env={"MSTEAMS_TENANT_ID": "t", "MSTEAMS_BOT_ID": "b", "MSTEAMS_BOT_SECRET": "bs-1234"})
    assert cfg.bot_configured and cfg.authority_url.endswith("/t")


# ---------------------------------------------------------------- checked against the schema

import json  # noqa: E402
import math  # noqa: E402
from integration.engine.record import fields  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SECRET = "s3cr3t-Value-never-shown"


def write(tmp_path, text: str, name: str = "c.yml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def refused(path, env=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(str(path), env=env or {})
    assert info.value.exit_code == 3
    return info.value


def test_negative_timeout_names_file_line_and_setting(tmp_path):
    p = write(tmp_path, "tenant_id: t\ntimeout: -5\n")
    e = refused(p)
    assert isinstance(e, ConfigFileError) and (e.path, e.line, e.key) == (str(p), 2, "timeout")
    assert str(e).startswith(f"{p}:2: setting 'timeout': must be greater than 0, got '-5'")


@pytest.mark.parametrize("text, problem", [
    ("timeout: 100000", "must be at most 600"),
    ("max_retries: 21", "must be at most 20"),
    ("max_retries: -1", "must be at least 0"),
    ("retry_budget_seconds: -0.5", "must be at least 0"),
    ("fanout_workers: 0", "must be at least 1"),
    ("fanout_workers: 65", "must be at most 64"),
    ("pacing_speed: 0", "must be greater than 0"),
    ("timeout: .nan", "must be a finite number"),
    ("pacing_speed: .inf", "must be a finite number"),
])
def test_ranges(tmp_path, text, problem):
    e = refused(write(tmp_path, "client_id: c\n" + text + "\n"))
    assert e.line == 2 and problem in str(e)


def test_fanout_workers_and_pacing_speed_are_settings(tmp_path):
    cfg = config.load(str(write(tmp_path, "fanout_workers: 16\npacing_speed: 2.5\n")), env={})
    assert (cfg.fanout_workers, cfg.pacing_speed) == (16, 2.5)
    cfg = config.load(None, env={})
    assert (cfg.fanout_workers, cfg.pacing_speed) == (8, 1.0)


def test_graph_url_without_scheme(tmp_path):
    e = refused(write(tmp_path, "graph_url: ftp//x\n"))
    assert str(e).startswith(f"{tmp_path / 'c.yml'}:1: setting 'graph_url': must be an https:// URL, got 'ftp//x'")


@pytest.mark.parametrize("key", ["authority", "graph_url", "bot_service_url", "call_callback_uri", "redirect_uri"])
@pytest.mark.parametrize("url", ["http://graph.example.com/v1.0", "http://127.0.0.2/", "http://localhost.evil.example/",
                                 "ftp://127.0.0.1/", "https://", "https:///path", "https://[::1", "https://h:99999/",
                                 "https://exa mple.com/"])
def test_endpoint_urls_refused(tmp_path, key, url):
    e = refused(write(tmp_path, f"{key}: '{url}'\n"))
    assert e.key == key and e.line == 1 and "URL" in str(e)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443/v1.0", "http://localhost", "http://LOCALHOST:80/x",
                                 "http://[::1]:4443/botframework/", "https://graph.microsoft.us/v1.0",
                                 "https://127.0.0.1:5000/tenant"])
def test_https_anywhere_and_http_on_loopback_accepted(tmp_path, url):
    lines = "".join(f"{k}: '{url}'\n" for k in ("authority", "graph_url", "bot_service_url", "call_callback_uri",
                                                "redirect_uri"))
    cfg = config.load(str(write(tmp_path, lines)), env={})
    assert cfg.graph_url == cfg.redirect_uri == url


def test_redirect_uri_default_http_localhost_is_valid():
    assert config.url_problem(config.Config().redirect_uri) is None
    assert config.Config().call_callback_uri is None and config.Config().call_callback_url is None
    assert config.Config(bot_public_url="https://bot.example.com/").call_callback_url == \
        "https://bot.example.com/api/calls"


def test_a_url_with_a_password_is_not_echoed(tmp_path):
    e = refused(write(tmp_path, f"graph_url: 'http://user:{SECRET}@graph.example.com/'\n"))
    assert SECRET not in str(e) and "user name or password" in str(e)


def test_unknown_key_did_you_mean(tmp_path):
    e = refused(write(tmp_path, "tenant_id: t\ntimout: 5\n"))
    assert str(e).startswith(f"{tmp_path / 'c.yml'}:2: unknown setting 'timout' (did you mean 'timeout'?)")
    e = refused(write(tmp_path, "Graph_URL: https://x/\n"))
    assert "did you mean 'graph_url'?" in str(e)
    e = refused(write(tmp_path, "zzzz: 1\n"))
    assert "did you mean" not in str(e) and "valid settings:" in (e.hint or "") and "pacing_speed" in e.hint


def test_every_problem_is_listed_with_its_line(tmp_path):
    e = refused(write(tmp_path, "timeout: -1\nclient_id: c\nfoo: 2\ngraph_url: ftp:/x\n"))
    lines = str(e).splitlines()
    assert [ln.split(": ", 1)[0] for ln in lines] == [f"{tmp_path / 'c.yml'}:{n}" for n in (1, 3, 4)]


def test_duplicate_key_names_both_lines(tmp_path):
    e = refused(write(tmp_path, "tenant_id: a\nclient_id: c\ntenant_id: b\n"))
    assert isinstance(e, ConfigFileError) and e.line == 3
    assert str(e) == f"{tmp_path / 'c.yml'}:3: duplicate key 'tenant_id' (first at line 1)"


@pytest.mark.parametrize("text, problem", [
    ("timeout: [1]", "setting 'timeout': must be a number, got a list"),
    ("timeout: '30'", "setting 'timeout': must be a number, got text '30'"),
    ("timeout: true", "setting 'timeout': must be a number, got true"),
    ("max_retries: 2.5", "setting 'max_retries': must be a whole number, got '2.5'"),
    ("tenant_id: {a: 1}", "setting 'tenant_id': must be text, got a mapping"),
    ("tenant_id: 12345", "setting 'tenant_id': must be text, got '12345' (put it in quotes)"),
    ("store_path: 2024-01-01", "setting 'store_path': must be text, got a YAML date"),
    ("graph_url: 5", "setting 'graph_url': must be text, got '5'"),
    ("ca_bundle: \"a\\x1bb\"", "setting 'ca_bundle': must not contain control characters"),
])
def test_wrong_types(tmp_path, text, problem):
    e = refused(write(tmp_path, "client_id: c\n" + text + "\n"))
    assert e.line == 2 and problem in str(e)


def test_whole_numbers_and_empty_values(tmp_path):
    cfg = config.load(str(write(tmp_path, "max_retries: 3.0\ntimeout: 5\ngraph_url:\nfanout_workers: ~\n")), env={})
    assert cfg.max_retries == 3 and isinstance(cfg.max_retries, int)
    assert cfg.timeout == 5.0 and isinstance(cfg.timeout, float)
    assert cfg.graph_url == config.PUBLIC_GRAPH_URL and cfg.fanout_workers == 8  # empty = not set


def test_not_a_mapping_and_empty_file(tmp_path):
    e = refused(write(tmp_path, "# settings\n- tenant_id: t\n"))
    assert e.line == 2 and "expected a mapping" in str(e)
    assert config.load(str(write(tmp_path, "# nothing yet\n")), env={}).tenant_id is None


def test_nul_in_a_key(tmp_path):
    e = refused(write(tmp_path, 'tenant_id: t\n"time\\0out": 5\n'))  # an escaped NUL: a real key
    assert e.line == 2 and "unknown setting 'time\\x00out'" in str(e) and "\x00" not in str(e)
    e = refused(write(tmp_path, "tenant_id: t\nclient_id: c\ntime\x00out: 5\n"))  # a raw NUL: not YAML
    assert isinstance(e, ConfigFileError) and e.line == 3 and "U+0000" in str(e) and "\x00" not in str(e)


def test_file_not_utf8(tmp_path):
    p = tmp_path / "c.yml"
    p.write_bytes(b"tenant_id: t\nclient_id: \xff\n")
    e = refused(p)
    assert e.line == 2 and "not UTF-8" in str(e)


def test_env_values_are_checked_and_name_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(None, env={"MSTEAMS_TIMEOUT": "-5"})
    assert info.value.exit_code == 3
    assert str(info.value).startswith("environment variable MSTEAMS_TIMEOUT (setting 'timeout'): "
                                      "must be greater than 0, got '-5'")
    p = write(tmp_path, "timeout: 5\n")
    e = refused(p, env={"MSTEAMS_FANOUT_WORKERS": "zero"})
    assert "MSTEAMS_FANOUT_WORKERS" in str(e) and "must be a whole number, got text 'zero'" in str(e)
    assert str(p) in e.hint  # the variable overrides the file
    assert "MSTEAMS_GRAPH_URL" in str(refused(p, env={"MSTEAMS_GRAPH_URL": "http://graph.example.com"}))
    cfg = config.load(str(p), env={"MSTEAMS_TIMEOUT": "7", "MSTEAMS_MAX_RETRIES": "3", "MSTEAMS_PACING_SPEED": "2",
                                   "MSTEAMS_FANOUT_WORKERS": "4", "MSTEAMS_GRAPH_URL": "http://[::1]:1/v1.0"})
    assert (cfg.timeout, cfg.max_retries, cfg.pacing_speed, cfg.fanout_workers) == (7.0, 3, 2.0, 4)


@pytest.mark.parametrize("bad", ["- a list", "0123", "[1, 2]", "{a: b}", "true"])
def test_a_secret_of_the_wrong_kind_is_never_echoed(tmp_path, bad):
    for key in ("client_secret", "bot_secret"):
        e = refused(write(tmp_path, f"{key}: {bad.replace('- a list', '[' + SECRET + ']')}\n"))
        assert e.key == key and "must be text" in str(e)
        assert SECRET not in str(e) and "0123" not in str(e) and "got" not in str(e)


def test_secrets_pass_unchecked_and_never_echoed_from_env(tmp_path):
    cfg = config.load(None, env={"MSTEAMS_CLIENT_SECRET": SECRET + "\x01"})
    assert cfg.client_secret == SECRET + "\x01"
    e = refused(write(tmp_path, f"client_secret: {SECRET}\ntimeout: x\n"))
    assert SECRET not in str(e)


def test_secret_file_errors_name_where_it_came_from(tmp_path):
    p = write(tmp_path, "tenant_id: t\nbot_secret_file: /nonexistent/secret\n")
    e = refused(p)
    assert e.line == 2 and str(e).startswith(f"{p}:2: setting 'bot_secret_file': cannot read '/nonexistent/secret'")
    with pytest.raises(ConfigError, match="MSTEAMS_CLIENT_SECRET_FILE"):
        config.load(None, env={"MSTEAMS_CLIENT_SECRET_FILE": str(tmp_path / "none")})
    secret = write(tmp_path, SECRET + "\n", "secret.txt")
    # The environment's secret wins over the file's secret file, and the variable's file over both.
    cfg = config.load(str(write(tmp_path, f"client_secret_file: {secret}\n")), env={"MSTEAMS_CLIENT_SECRET": "env"})
    assert cfg.client_secret == "env"
    cfg = config.load(None, env={"MSTEAMS_CLIENT_SECRET": "env", "MSTEAMS_CLIENT_SECRET_FILE": str(secret)})
    assert cfg.client_secret == SECRET


def test_missing_ca_bundle_names_the_line(tmp_path):
    e = refused(write(tmp_path, "tenant_id: t\nca_bundle: /nonexistent/ca.pem\n"))
    assert e.line == 2 and "ca_bundle" in str(e) and "does not exist" in str(e)


def test_cli_exits_with_the_config_code_naming_file_and_line(tmp_path):
    from integration.frontends.cli import main

    bad = write(tmp_path, "tenant_id: t\ntimeout: -5\n", "bad.yml")
    out, err = [], []
    code = main(["--config", str(bad), "user-list"], out=out.append, err=err.append)
    assert code == 3 and not out
    assert f"{bad}:2: setting 'timeout'" in "\n".join(err) and "Traceback" not in "\n".join(err)
    code = main(["--config", str(write(tmp_path, "a: 1\na: 2\n", "dup.yml")), "user-list"],
                out=out.append, err=err.append)
    assert code == 3 and f"{tmp_path / 'dup.yml'}:2: duplicate key 'a'" in err[-1]


# ---------------------------------------------------------------- the schema itself

def test_schema_covers_every_setting_and_its_defaults():
    props = config.schema()["properties"]
    assert set(props) == config._KEYS | {f"{k}_file" for k in config._SECRET_KEYS} | {"tenants"}
    for f in fields(config.Config):
        if f.name in props and "default" in props[f.name] and f.default is not None:
            assert props[f.name]["default"] == f.default, f.name
    for key in config._SECRET_KEYS:
        assert config._resolve(props[key]).get("writeOnly") is True


def test_schema_is_valid_json_schema_and_shipped():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(config.schema())
    import tomllib
    from pathlib import Path

    root = Path(config.__file__).parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    assert "*.json" in globs


def _jsonschema_ok(value, key) -> bool:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("msteams-url")(lambda v: not isinstance(v, str) or config.url_problem(v) is None)
    checker.checks("msteams-store-url")(lambda v: not isinstance(v, str) or config.store_url_problem(v) is None)
    v = jsonschema.Draft202012Validator(config.schema(), format_checker=checker)
    return v.is_valid({key: value})


values = st.one_of(
    st.none(), st.booleans(), st.integers(-100, 100), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 20, 21, 64, 65, 600, 600.5, 3600, 3600.1, 0.0, 1.0, 2.0, -0.0]),
    st.text(max_size=12), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    st.sampled_from(["https://x/", "http://127.0.0.1:1/", "http://x/", "ftp//x", "a\x00b", "a\nb", "a\tb\n",
                     "http://[::1]/", "https://u:p@x/", "https://[::1", "redis://127.0.0.1:6379/0",
                     "rediss://r.example:6380/15", "redis://x/16", "redis://u:p@x/0", "redis://x/0?db=1"]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(key=st.sampled_from(sorted(set(config.schema()["properties"]) - {"tenants"})), value=values)
def test_the_hand_checker_agrees_with_jsonschema(key, value):
    props = config.schema()["properties"]
    ours = config.check_value(props[key], value)[1] is None
    assert ours == _jsonschema_ok(value, key), (key, value)


def test_the_hand_checker_is_stricter_only_on_non_finite_numbers():
    props = config.schema()["properties"]
    for v in (math.inf, -math.inf, math.nan):
        assert config.check_value(props["pacing_speed"], v)[1] == f"must be a finite number, got '{v!r}'"


def test_unknown_schema_keywords_are_not_silently_ignored():
    with pytest.raises(ValueError, match="not interpreted"):
        config.check_value({"type": "string", "maxLength": 3}, "abcd")


# ---------------------------------------------------------------- pacing_speed reaches the pacer

def test_pacing_speed_is_the_runtime_pacers_speed(tmp_path):
    from integration.dispatch import Runtime

    p = write(tmp_path, f"pacing_speed: 4\nstore_path: {json.dumps(str(tmp_path / 's.sqlite3'))}\n")
    rt = Runtime(config_path=str(p))
    assert rt.pacer.speed == 4.0
    w = config.Config()  # the default paces at Microsoft's limits
    assert Runtime(w).pacer.speed == 1.0


def test_emulator_write_config_carries_its_speed(emu, tmp_path):
    p = tmp_path / "emu.yml"
    emu.write_config(str(p))
    assert config.load(str(p), env={}).pacing_speed == 1.0 and "pacing_speed" not in p.read_text()
    emu.set_throttling(True, speed=5.0)
    emu.write_config(str(p))
    cfg = config.load(str(p), env={})
    assert cfg.pacing_speed == 5.0
    from integration.dispatch import Runtime

    assert Runtime(cfg).pacer.speed == 5.0
