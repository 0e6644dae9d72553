"""Paths in a config file are relative to that file (issue 24, part 5): every setting that names
a file resolves beside the config file whatever the current directory, `~` is expanded, paths
from MSTEAMS_* variables stay relative to the current directory, and an error about a file that
cannot be read names the full path tried (with the config file and line where there is one)."""
from __future__ import annotations

import os

import pytest
import yaml

from integration.engine import config
from integration.engine.errors import ConfigError, ConfigFileError
from integration.frontends.cli import main

# Settings that are read as text from the file they name (the rest are only resolved).
SECRET_FILES = {f"{k}_file": k for k in config._SECRET_KEYS}


def _layout(tmp_path):
    """A config directory with a file for every path setting, and another directory to run from."""
    conf_dir, elsewhere = tmp_path / "etc" / "msteams", tmp_path / "elsewhere"
    (conf_dir / "secrets").mkdir(parents=True)
    elsewhere.mkdir()
    values = {}
    for key in config.PATH_KEYS:
        rel = f"secrets/{key}.txt"
        (conf_dir / rel).write_text(f"value of {key}\n")
        values[key] = rel
    return conf_dir, elsewhere, values


def test_every_path_setting_of_the_schema_is_a_path_key():
    props = config.schema()["properties"]
    named = {k for k in props if k.endswith(("_file", "_path", "ca_bundle"))}
    assert named == set(config.PATH_KEYS)


def test_relative_paths_resolve_beside_the_config_file_from_another_directory(tmp_path, monkeypatch):
    conf_dir, elsewhere, values = _layout(tmp_path)
    p = conf_dir / "config.yml"
    p.write_text(yaml.safe_dump({"tenant_id": "t", **values}))
    monkeypatch.chdir(elsewhere)
    cfg = config.load(str(p), env={})
    for key, rel in values.items():
        if key in SECRET_FILES:  # read from beside the config, not from the current directory
            assert getattr(cfg, SECRET_FILES[key]) == f"value of {key}"
        else:
            assert getattr(cfg, key) == str(conf_dir / rel), key
    assert cfg.resolved_store_path == conf_dir / "secrets" / "store_path.txt"
    # the config named relatively (../etc/msteams/config.yml) resolves the same
    again = config.load(os.path.relpath(p), env={})
    assert again.bot_access_file == str(conf_dir / "secrets" / "bot_access_file.txt")
    # ./ and ../ are taken from the config's directory too; an absolute path is kept as it is
    p.write_text(f"bot_access_file: ./access.yml\nstore_path: ../store.sqlite3\nca_bundle: {conf_dir}/secrets/ca_bundle.txt\n")
    cfg = config.load(str(p), env={})
    assert cfg.bot_access_file == str(conf_dir / "access.yml")
    assert cfg.store_path == str(tmp_path / "etc" / "store.sqlite3")
    assert cfg.ca_bundle == str(conf_dir / "secrets" / "ca_bundle.txt")


def test_a_tilde_is_expanded_in_the_file_and_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "secret").write_text("from home\n")
    p = tmp_path / "config.yml"
    p.write_text("client_secret_file: ~/secret\nstore_path: ~/store.sqlite3\n")
    cfg = config.load(str(p), env={})
    assert cfg.client_secret == "from home" and cfg.store_path == str(tmp_path / "home" / "store.sqlite3")
    cfg = config.load(str(p), env={"MSTEAMS_BOT_ACCESS_FILE": "~/access.yml"})
    assert cfg.bot_access_file == str(tmp_path / "home" / "access.yml")


def test_paths_from_the_environment_stay_relative_to_the_current_directory(tmp_path, monkeypatch):
    conf_dir, elsewhere, values = _layout(tmp_path)
    p = conf_dir / "config.yml"
    p.write_text(yaml.safe_dump({"tenant_id": "t", **values}))
    (elsewhere / "mine.txt").write_text("from the current directory\n")
    monkeypatch.chdir(elsewhere)
    env = {"MSTEAMS_CLIENT_SECRET_FILE": "mine.txt", "MSTEAMS_STORE_PATH": "here.sqlite3",
           "MSTEAMS_BOT_ACCESS_FILE": "access.yml"}
    cfg = config.load(str(p), env=env)
    assert cfg.client_secret == "from the current directory"
    assert cfg.store_path == "here.sqlite3" and cfg.resolved_store_path.resolve() == elsewhere / "here.sqlite3"
    assert cfg.bot_access_file == "access.yml"
    # the settings the variables did not override still come from beside the config file
    assert cfg.bot_secret == "value of bot_secret_file"
    # with no config file at all
    cfg = config.load(None, env={"MSTEAMS_CLIENT_SECRET_FILE": "mine.txt"})
    assert cfg.client_secret == "from the current directory"


def test_an_unreadable_secret_file_names_the_full_path_and_the_line(tmp_path, monkeypatch):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    p = conf_dir / "config.yml"
    p.write_text("tenant_id: t\nclient_secret_file: secrets/client.txt\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigFileError) as e:
        config.load(str(p), env={})
    full = conf_dir / "secrets" / "client.txt"
    assert e.value.line == 2
    assert str(e.value).startswith(f"{p}:2: setting 'client_secret_file': cannot read '{full}'")
    # from the environment: the full path under the current directory, and the variable
    with pytest.raises(ConfigError) as e:
        config.load(None, env={"MSTEAMS_BOT_SECRET_FILE": "nope.txt"})
    assert "MSTEAMS_BOT_SECRET_FILE" in str(e.value) and f"cannot read '{tmp_path / 'nope.txt'}'" in str(e.value)
    # a missing ca_bundle too
    p.write_text("tenant_id: t\nca_bundle: ca.pem\n")
    with pytest.raises(ConfigFileError) as e:
        config.load(str(p), env={})
    assert e.value.line == 2 and f"'{conf_dir / 'ca.pem'}' does not exist" in str(e.value)


def test_a_missing_config_file_names_the_full_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        config.load("nowhere.yml", env={})
    assert f"'{tmp_path / 'nowhere.yml'}': cannot read" in str(e.value)


def test_bot_access_file_beside_the_config_and_its_error_names_the_full_path(tmp_path, monkeypatch):
    from integration.teams.access import load_policy

    conf_dir, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf_dir.mkdir()
    elsewhere.mkdir()
    p = conf_dir / "config.yml"
    p.write_text("tenant_id: t\nbot_access_file: access.yml\n")
    monkeypatch.chdir(elsewhere)
    cfg = config.load(str(p), env={})
    with pytest.raises(ConfigError) as e:
        load_policy(cfg.bot_access_file)
    assert f"bot_access_file '{conf_dir / 'access.yml'}': cannot read" in str(e.value)
    (conf_dir / "access.yml").write_text("roles: {analysts: {users: [bob.smith@contoso.example]}}\n"
                                         "allow: {analysts: [team-list]}\n")
    assert not load_policy(cfg.bot_access_file).empty
    # a relative path handed over directly (from MSTEAMS_BOT_ACCESS_FILE): the current directory's
    with pytest.raises(ConfigError) as e:
        load_policy("access.yml")
    assert f"'{elsewhere / 'access.yml'}'" in str(e.value)


def test_a_certificate_that_cannot_be_read_names_the_full_path(tmp_path, monkeypatch):
    from integration.graph.auth import Auth

    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    p = conf_dir / "config.yml"
    p.write_text("tenant_id: t\nclient_id: c\ncertificate_path: app.pem\ncertificate_thumbprint: AB\n")
    monkeypatch.chdir(tmp_path)
    cfg = config.load(str(p), env={})
    with pytest.raises(ConfigError) as e:
        Auth(cfg, store=None)._credential("app")
    assert f"certificate_path '{conf_dir / 'app.pem'}': cannot read" in str(e.value)


def test_the_cli_run_from_another_directory_uses_the_files_beside_its_config(emu, cfg_file, tmp_path, monkeypatch):
    """The emulator's config with relative paths (the store, the CA bundle, the client secret in a
    file, the access policy), moved into a directory of its own and used from elsewhere."""
    conf_dir, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    conf_dir.mkdir()
    elsewhere.mkdir()
    data = yaml.safe_load(cfg_file.read_text())
    (conf_dir / "ca.pem").write_bytes(open(data["ca_bundle"], "rb").read())
    (conf_dir / "client-secret").write_text(data.pop("client_secret") + "\n")
    data.update(ca_bundle="ca.pem", client_secret_file="client-secret", bot_access_file="access.yml")
    if "store_url" not in data:
        data["store_path"] = "store.sqlite3"
    p = conf_dir / "config.yml"
    p.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(elsewhere)
    out, err = [], []
    assert main(["--config", "../conf/config.yml", "auth", "login"], out=out.append, err=err.append) == 0, err
    assert main(["--config", str(p), "channel-list", "--team", "IT Helpdesk"], out=out.append, err=err.append) == 0, err
    if "store_url" not in data:
        assert (conf_dir / "store.sqlite3").is_file() and not (elsewhere / "store.sqlite3").exists()
    assert os.listdir(elsewhere) == []
    # msteams bot serve, started elsewhere, names the access file it looked for
    code = main(["--config", str(p), "bot", "serve", "--port", "0", "--no-register"], out=out.append, err=err.append)
    assert code == 3 and f"'{conf_dir / 'access.yml'}': cannot read" in err[-1]
