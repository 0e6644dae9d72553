"""The Python API (integration/frontends/api.py, docs/python-api.md): the documented example runs as
written, importing starts nothing, results carry context/readable/raw, one client serves many
calls and threads, errors have their documented classes, kinds and exit codes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from engine_fixtures import make_config

from integration import api

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def _token_requests(emu) -> int:
    return sum(1 for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token"))


@pytest.fixture
def no_msteams_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("MSTEAMS_"):
            monkeypatch.delenv(key)


@pytest.fixture
def teams(emu, tmp_path):
    with api.Client(make_config(emu, tmp_path)) as client:
        yield client


# ---------------------------------------------------------------- the document

def test_the_documented_example_runs_as_written(capsys, no_msteams_env):
    """Every ```python block of docs/python-api.md is executed for real (it starts its own fake
    tenant), so the page cannot drift from the code."""
    blocks = _python_blocks(DOC.read_text(encoding="utf-8"))
    assert blocks, "docs/python-api.md has no python example"
    for number, code in enumerate(blocks, 1):
        exec(compile(code, f"{DOC}:python-block-{number}", "exec"), {"__name__": "__doc_example__"})
    printed = capsys.readouterr().out
    assert "| Incident Response |" in printed  # channels.readable
    assert "| sent |" in printed  # the message's delivery status
    assert "not found: {'code': 'not_found'" in printed and "'exit_code': 5" in printed
    assert "bad argument: chat_type" in printed
    assert "unknown command 'chat-creat' / did you mean: chat-create" in printed


def test_the_document_is_linked_from_the_readme():
    readme = (DOC.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "docs/python-api.md" in readme


def test_the_error_table_matches_the_classes():
    """The Errors table of the page lists every exported error class with its exit code and kind."""
    rows = re.findall(r"^\| `(\w+)`(?: \((\w+)\))? \| (\d+) \| `(\w+)` \|", DOC.read_text(encoding="utf-8"), re.M)
    documented = {name: (parent, int(code), kind) for name, parent, code, kind in rows}
    exported = {n for n in api.__all__ if isinstance(getattr(api, n), type)
                and issubclass(getattr(api, n), api.IntegrationError)}
    assert set(documented) == exported
    for name, (parent, code, kind) in documented.items():
        cls = getattr(api, name)
        assert (cls.exit_code, cls.kind) == (code, kind), name
        if parent:
            assert issubclass(cls, getattr(api, parent)), name


# ---------------------------------------------------------------- import

def test_import_starts_nothing_and_reads_no_config(tmp_path):
    code = (
        "import sys, threading\n"
        "import integration\n"
        "from integration import api\n"
        "assert integration.api is api and api.Client and api.execute and api.CommandResult\n"
        "heavy = ('requests', 'msal', 'yaml', 'jsonschema', 'fake_tenant', 'sqlite3', 'integration.dispatch',\n"
        "         'integration.engine.config', 'integration.engine.registry', 'integration.graph.auth', 'integration.store.sqlite')\n"
        "print(sorted(m for m in heavy if m in sys.modules), threading.active_count())\n"
    )
    env = dict(os.environ, MSTEAMS_CONFIG=str(tmp_path / "missing.yml"), MSTEAMS_TIMEOUT="not a number")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.split() == ["[]", "1"], r.stdout + r.stderr
    assert not list(tmp_path.iterdir())  # no store or cache created beside it
    r = subprocess.run([sys.executable, "-c", "import integration, sys; print('integration.api' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False"  # `import integration` alone does not import the API


def test_a_missing_attribute_is_an_attribute_error():
    import integration

    with pytest.raises(AttributeError):
        integration.nope  # noqa: B018
    with pytest.raises(AttributeError):
        api.nope  # noqa: B018
    assert api.Config.__name__ == "Config"


# ---------------------------------------------------------------- the client

def test_result_fields(teams):
    r = teams.execute("microsoft-teams-channels-list", {"team": "IT Helpdesk"})  # an XSOAR alias
    assert isinstance(r, api.CommandResult)
    assert r.command == "channel-list" and r.flow == "app" and r.ok and r.exit_code == 0
    assert set(r.context) == {"MicrosoftTeams.ChannelList"}
    entries = r.context["MicrosoftTeams.ChannelList"]
    assert entries == r.outputs and any(e["channelName"] == "Escalations" for e in entries)
    assert {"channelId", "channelName", "membershipType"} <= set(entries[0])
    assert r.readable.startswith("### Channels of team IT Helpdesk") and "| Escalations |" in r.readable
    assert isinstance(r.raw, list) and any(c["displayName"] == "Escalations" for c in r.raw)  # Graph's shape
    assert r.next_link is None
    d = r.to_dict()
    assert set(d) == {"command", "flow", "context", "readable", "raw", "exit_code", "failed"}
    json.dumps(d)  # plain data
    assert json.loads(r.render("json")) == r.raw and json.loads(r.render("context")) == r.context
    assert r.render() == r.readable


def test_paging_and_string_arguments(teams):
    r = teams.execute("team-member-list", {"team": "Security Operations", "limit": "2"})  # strings, as a playbook
    assert len(r.outputs) == 2 and r.next_link
    assert r.context["MicrosoftTeams.TeamMemberNextLink"] == r.next_link
    more = teams.execute("team-member-list", {"team": "Security Operations", "next_link": r.next_link})
    assert more.outputs and not {m["userId"] for m in more.outputs} & {m["userId"] for m in r.outputs}


def test_a_message_only_result(teams):
    r = teams.execute("cache-reset")
    assert r.flow is None and r.context == {} and r.readable and r.ok


def test_one_client_is_reused_across_calls(emu, teams):
    before = _token_requests(emu)
    store = None
    for team in ("Security Operations", "IT Helpdesk", "Security Operations"):
        r = teams.execute("channel-list", {"team": team})
        assert r.ok
        store = store or teams.runtime.store
        assert teams.runtime.store is store  # one store
    assert _token_requests(emu) - before == 1  # one app token for the three calls


def test_one_client_serves_many_threads(emu, teams):
    people = ["conor.obrien@contoso.example", "priya.patel@contoso.example", "zoe.muller@contoso.example",
              "soren.ostergaard@contoso.example"] * 4
    results: list = [None] * len(people)
    errors: list = []
    start = threading.Barrier(len(people))

    def work(i: int, who: str) -> None:
        try:
            start.wait()  # all at once, on a client that has built nothing yet
            results[i] = teams.execute("user-get", {"user": who})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, who)) for i, who in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(r.ok for r in results)
    mails = [r.outputs[0].get("mail") or r.raw.get("mail") for r in results]
    assert [m.lower() for m in mails] == people
    assert _token_requests(emu) == 1  # built once, under the runtime's lock
    assert list(teams.runtime._clients) == ["app"]


def test_client_from_a_config_path(cfg_file, no_msteams_env):
    for config in (str(cfg_file), cfg_file):  # str or os.PathLike
        with api.Client(config) as teams:
            assert teams.config.source == str(cfg_file)
            assert teams.execute("channel-list", {"team": "IT Helpdesk"}).ok
            assert "channel-list" in teams.commands() and "auth-login" in teams.commands()
            assert "config.yml" in repr(teams)


def test_client_from_the_environment(cfg_file, monkeypatch, no_msteams_env):
    monkeypatch.setenv("MSTEAMS_CONFIG", str(cfg_file))
    with api.Client() as teams:
        assert teams.config.source == str(cfg_file)


def test_one_shot_execute(cfg_file, teams, no_msteams_env):
    r = api.execute("channel-list", {"team": "IT Helpdesk"}, config=cfg_file)
    assert r.ok and r.context["MicrosoftTeams.ChannelList"]
    r = api.execute("channel-list", {"team": "IT Helpdesk"}, client=teams)
    assert r.ok and not teams.closed  # a client given is not closed


def test_load_config_and_adjust(cfg_file, tmp_path, no_msteams_env):
    cfg = api.load_config(cfg_file, env={"MSTEAMS_TIMEOUT": "12"})
    assert isinstance(cfg, api.Config) and cfg.timeout == 12
    cfg.store_url = None  # the SQLite file, whatever store the suite runs on
    cfg.store_path = str(tmp_path / "other.sqlite3")
    with api.Client(cfg) as teams:
        assert teams.execute("channel-list", {"team": "IT Helpdesk"}).ok
    assert (tmp_path / "other.sqlite3").is_file()


def test_a_config_object_registers_its_secrets_for_redaction(emu, tmp_path):
    from integration.engine import redact

    cfg = make_config(emu, tmp_path, client_secret="Direct-Config-Secret-Value-1")
    redact._secrets.discard("Direct-Config-Secret-Value-1")
    with api.Client(cfg) as teams:
        assert redact.redact("x Direct-Config-Secret-Value-1 y") == "x *** y"
        with pytest.raises(api.AuthError) as info:
            teams.execute("channel-list", {"team": "IT Helpdesk"})  # the fake tenant refuses that secret
    assert "Direct-Config-Secret-Value-1" not in str(info.value) + json.dumps(info.value.to_dict())
    assert info.value.exit_code == 3 and info.value.kind == "auth"


def test_a_bad_config_fails_when_the_client_is_made(tmp_path, cfg_file, no_msteams_env):
    with pytest.raises(api.ConfigError) as info:
        api.Client(tmp_path / "missing.yml")
    assert info.value.exit_code == 3 and "cannot read" in info.value.message
    cfg_file.write_text(cfg_file.read_text() + "timeout: -1\n")
    with pytest.raises(api.ConfigFileError) as info:
        api.Client(cfg_file)
    e = info.value.to_dict()
    assert e["code"] == "config" and e["setting"] == "timeout" and e["line"] and e["path"] == str(cfg_file)
    with pytest.raises(TypeError):
        api.Client(42)


def test_close_and_context_manager(emu, tmp_path):
    teams = api.Client(make_config(emu, tmp_path))
    assert teams.execute("channel-list", {"team": "IT Helpdesk"}).ok
    teams.close()
    teams.close()  # idempotent
    assert teams.closed and "closed" in repr(teams)
    with pytest.raises(api.IntegrationError) as info:
        teams.execute("channel-list", {"team": "IT Helpdesk"})
    assert "closed" in info.value.message and info.value.exit_code == 1
    with api.Client(make_config(emu, tmp_path)) as other:
        assert not other.closed
    assert other.closed


def test_echo_goes_to_the_callers_function_not_stdout(emu, tmp_path, capsys):
    seen: list[str] = []
    with api.Client(make_config(emu, tmp_path), echo=seen.append) as teams:
        assert teams.execute("auth-login").ok
        assert teams.runtime.echo == seen.append and teams.runtime.quiet
    assert capsys.readouterr().out == ""


def test_flow_forced_per_client_and_per_call(teams, emu, tmp_path):
    with pytest.raises(api.InputError, match="does not run with the bot flow"):
        teams.execute("channel-list", {"team": "IT Helpdesk"}, flow="bot")
    with api.Client(make_config(emu, tmp_path), flow="delegated") as forced:
        with pytest.raises(api.AuthError) as info:  # not signed in
            forced.execute("channel-list", {"team": "IT Helpdesk"})
        assert info.value.exit_code == 3


# ---------------------------------------------------------------- errors

def test_unknown_command_is_an_input_error(teams):
    with pytest.raises(api.InputError) as info:
        teams.execute("chat-creat", {})
    exc = info.value
    assert type(exc) is api.InputError and exc.exit_code == 2 and exc.kind == "input"
    assert exc.message == "unknown command 'chat-creat'" and "did you mean: chat-create" in exc.hint
    assert api.exit_code_for(exc) == 2
    with pytest.raises(api.InputError):
        teams.execute("no-such-thing-at-all")


@pytest.mark.parametrize("command,args,cls,exit_code,kind", [
    ("chat-create", {"chat_type": "triple", "member": "a@x"}, api.ArgumentError, 2, "input"),
    ("ring-user", {}, api.ArgumentError, 2, "input"),
    ("channel-list", {"team": "Nope Team"}, api.NotFound, 5, "not_found"),
    ("user-get", {"user": "nobody-here@contoso.example"}, api.NotFound, 5, "not_found"),
    ("message-send-to-chat", {"chat": "19:abc@thread.v2", "content": "x"}, api.AuthError, 3, "auth"),  # no sign-in
])
def test_errors_have_their_class_exit_code_and_kind(teams, command, args, cls, exit_code, kind):
    with pytest.raises(api.IntegrationError) as info:
        teams.execute(command, args)
    exc = info.value
    assert isinstance(exc, cls) and exc.exit_code == exit_code and exc.kind == kind
    d = exc.to_dict()
    assert d["code"] == kind and d["exit_code"] == exit_code and d["message"] == exc.message
    json.dumps(d)


def test_wrong_argument_types_are_input_errors(teams):
    with pytest.raises(api.InputError, match="must be a dict"):
        teams.execute("channel-list", ["team", "x"])
    with pytest.raises(api.InputError, match="must be a string"):
        teams.execute(None)


@pytest.mark.parametrize("exc,details", [
    (api.ArgumentError("limit", "must be at least 1"), {"argument": "limit"}),
    (api.AmbiguousError("user", "Alex", ["Alex A <a@x>", "Alex B <b@x>"]), {"candidates": ["Alex A <a@x>", "Alex B <b@x>"]}),
    (api.FileError("pb.yml", "bad", 3), {"path": "pb.yml", "line": 3}),
    (api.ConfigFileError("c.yml", "setting 'timeout': too big", 4, key="timeout"), {"path": "c.yml", "line": 4, "setting": "timeout"}),
    (api.PermissionDenied("no", permissions=["Chat.Create"], flow="app"), {"permissions": ["Chat.Create"], "flow": "app"}),
    (api.GraphError("boom", status=502, code="BadGateway", request_id="r-1"), {"status": 502, "graph_code": "BadGateway", "request_id": "r-1"}),
    (api.RequestRejected("no", status=409, code="Conflict"), {"status": 409, "graph_code": "Conflict"}),
    (api.ThrottledError("slow down", status=429), {"status": 429}),
    (api.NotFound("team 'x' not found", hint="check"), {}),
])
def test_to_dict_details(exc, details):
    d = exc.to_dict()
    assert d == {"code": exc.kind, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code, **details}


def test_exit_code_for_anything():
    assert api.exit_code_for(api.PermissionDenied("x")) == 4
    assert api.exit_code_for(KeyboardInterrupt()) == 130
    assert api.exit_code_for(ValueError()) == 1
