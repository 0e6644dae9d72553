"""The fake tenant behaves like one (issue 24, part 4): ``msteams emulator serve --write-config``
gives each config a context store of its own beside it (never the user's default store), and
``--state FILE`` keeps the tenant's state (chats, messages, teams, channels, bot conversations,
refresh tokens) across restarts; a damaged or foreign state file is one line and exit 2.

The subprocess tests run the real ``msteams`` with HOME and the XDG directories in tmp_path,
so the real home is never touched and a write to the default store would show there."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import yaml

from fake_tenant import persist
from fake_tenant.serve import main as serve_main, store_beside
from fake_tenant.state import Chat, Membership, Message, TenantState
from fake_tenant.tenant import load_tenant

BOB = "bob.smith@contoso.example"
PRIYA = "priya.patel@contoso.example"
CONOR = "conor.obrien@contoso.example"
ZOE = "zoe.muller@contoso.example"
ALICE = "alice.johnson@contoso.example"
CLI = [sys.executable, "-m", "integration.frontends.cli"]


# ---- the generic round trip ----

def test_encode_decode_round_trips_what_json_has_no_type_for():
    msg = Message("m1", "2024-01-01T00:00:00Z", {"contentType": "text", "content": "hi"}, {"user": {"id": "u"}},
                  replies=[Message("m2", "2024-01-01T00:00:01Z", {"content": "re"}, {})])
    value = {"chat": Chat("19:x@thread.v2", "group", None, "t0", "t1", [Membership("M1", "u1", ["owner"])], [msg]),
             "set": {"b", "a"}, "tuple": (1, "x"), "int keys": {1: "one", (2, 3): "pair"},
             "looks tagged": {"__set__": [1], "other": 2}, "nested": [{"__dict__": "x"}], "none": None,
             "float": 1.5}
    text = json.dumps(persist.encode(value))
    back = persist.decode(json.loads(text))
    assert back == value
    assert isinstance(back["chat"].messages[0].replies[0], Message)
    assert persist.encode({"s": {"b", "c", "a"}}) == {"s": {"__set__": ["a", "b", "c"]}}  # stable bytes


def test_only_the_fake_tenants_own_types_are_saved_or_built():
    with pytest.raises(TypeError, match="cannot save"):
        persist.encode({"when": object()})
    for name in ("os:system", "subprocess:Popen", "fake_tenant.__main__:main", "fake_tenant.state:new_guid",
                 "fake_tenant.state:Nope", 42):
        with pytest.raises(ValueError):
            persist.decode({"__dataclass__": name, "fields": {}})
    with pytest.raises(ValueError, match="no field 'bogus'"):
        persist.decode({"__dataclass__": "fake_tenant.state:Membership", "fields": {"id": "x", "user_id": "u",
                                                                                    "bogus": 1}})


def test_a_populated_tenant_round_trips_through_the_file(emu, tmp_path, monkeypatch):
    """Everything the product creates through the CLI is saved and comes back as it was."""
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))

    def run(*argv):
        out, err = [], []
        assert cli.main(["--config", conf, *argv], out=out.append, err=err.append) == 0, (argv, err, out)

    run("auth", "login")
    run("send-notification", "--user", BOB, "--message", "hello")
    run("chat-create", "chat_type=group", f"member={CONOR},{ZOE}", "chat_name=IR-42 war room")
    run("message-send-to-chat", "chat=IR-42 war room", "content=Containment started")
    run("team-create", "display_name=IR-43", f"owner={ALICE}")
    run("channel-create", "team=Security Operations", "channel_name=IR-44", "membership_type=private",
        f"owner={ALICE}")
    run("channel-message-send", "team=Security Operations", "channel=General", "content=IR-42: started")
    doc = persist.dump(emu.state, emu.tokens)
    assert doc["refresh_tokens"]  # auth login's

    persist.write(str(tmp_path / "state.json"), json.dumps(doc))
    fresh = load_tenant()
    grants = persist.restore(persist.read(str(tmp_path / "state.json")), fresh)
    assert fresh.snapshot() == emu.state.snapshot()
    assert persist.dump(fresh) == persist.dump(emu.state)  # every attribute, not only what snapshot shows
    assert any(t.display_name == "IR-43" for t in fresh.teams.values())
    assert grants and all(type(g).__name__ == "RefreshGrant" for g in grants.values())


def test_attributes_added_since_keep_their_seeded_value_and_unknown_ones_are_refused(tmp_path):
    st = load_tenant()
    doc = json.loads(json.dumps(persist.dump(st)))
    del doc["state"]["teams"]  # as if TenantState grew `teams` after the file was written
    again = load_tenant()
    persist.restore(doc, again)
    assert set(again.teams) == set(st.teams) and again.teams
    doc["state"]["not_an_attribute"] = 1
    with pytest.raises(persist.StateFileError, match="unknown tenant attribute 'not_an_attribute'"):
        persist.restore(doc, load_tenant(), source="f.json")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="something else"), "not a fake tenant state file"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.update(tenant_id="00000000-0000-0000-0000-000000000000"), "the state of tenant 00000000"),
    (lambda d: d.update(seed="0" * 64), "another tenant seed"),
    (lambda d: d["state"].update(chats=[1]), "'chats' is a list, expected a dict"),
    (lambda d: d["state"].update(chats={"c": {"__dataclass__": "fake_tenant.state:Chat", "fields": {"id": "c"}}}),
     "damaged state"),
    (lambda d: d["state"].update(teams={"__set__": 3}), "damaged state"),
])
def test_foreign_or_damaged_documents_are_refused_without_changing_the_state(change, message):
    doc = json.loads(json.dumps(persist.dump(load_tenant())))
    change(doc)
    st = load_tenant()
    before = persist.dump(st)
    with pytest.raises(persist.StateFileError) as e:
        persist.restore(doc, st, source="f.json")
    assert str(e.value).startswith("f.json: ") and message in str(e.value) and "\n" not in str(e.value)
    assert persist.dump(st) == before


def test_writes_are_atomic_and_private(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    persist.write(str(path), "new")
    assert path.read_text() == "new" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left beside it


def test_state_file_saves_only_changes(tmp_path):
    from fake_tenant.server import Emulator

    emu = Emulator()
    sf = persist.StateFile(str(tmp_path / "s.json"), emu, interval=0, recheck=3600)
    assert sf.load() is False  # no file yet: a first start
    assert sf.save() is True and sf.save() is False and sf.tick() is False
    emu.state.bot_conversations["a:1"] = {"id": "a:1", "members": []}
    assert sf.tick() is False  # no request answered since: not even looked at
    emu.handle("GET", "/_emulator/state", {}, b"")  # what the server calls for each request
    assert sf.tick() is True and sf.tick() is False
    sf.recheck = 0  # a change through the Python API is found by the periodic comparison
    emu.state.bot_conversations["a:2"] = {"id": "a:2", "members": []}
    assert sf.tick() is True
    del emu.state.bot_conversations["a:2"]
    assert sf.save() is True  # as at shutdown
    again = Emulator()
    assert persist.StateFile(str(tmp_path / "s.json"), again).load() is True
    assert again.state.bot_conversations == {"a:1": {"id": "a:1", "members": []}}


# ---- the command line ----

def test_store_beside_the_config():
    assert store_beside("/a/b/emu.yml") == "/a/b/emu.store.sqlite3"
    assert store_beside("/a/b/config") == "/a/b/config.store.sqlite3"
    assert os.path.isabs(store_beside("emu.yaml")) and store_beside("emu.yaml").endswith("/emu.store.sqlite3")


@pytest.mark.parametrize("content", ["garbage{", '{"a": 1}', "[]", '{"format": "msteams-soar fake tenant state"}',
                                     "\xff\xfe"])
def test_serve_refuses_a_bad_state_file_in_one_line(tmp_path, capsys, content):
    bad = tmp_path / "state.json"
    bad.write_bytes(content.encode("latin-1"))
    assert serve_main(["--state", str(bad), "--write-config", str(tmp_path / "c.yml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msteams emulator serve: error: --state ") and str(bad) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.yml").exists()  # refused before it started
    assert bad.read_bytes() == content.encode("latin-1")  # and left as it was


def test_serve_refuses_a_state_file_it_cannot_write(tmp_path, capsys):
    assert serve_main(["--state", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write state file" in err and len(err.strip().splitlines()) == 1
    assert serve_main(["--state", str(tmp_path)]) == 2  # a directory
    assert "cannot read state file" in capsys.readouterr().err


def test_serve_saves_on_shutdown(tmp_path, monkeypatch, capsys):
    """What the last moment changed is in the file once serve returns, with no periodic save."""
    import msal_helpers
    from emulator_helpers import serving

    monkeypatch.setattr(persist.StateFile, "tick", lambda self: False)
    state = tmp_path / "s.json"
    with serving(["--state", str(state), "--no-throttling"], tmp_path / "emu.yml") as run:
        cfg = run["config"]
        base = cfg["graph_url"].rsplit("/v1.0", 1)[0]
        r = msal_helpers.http_session(cfg["ca_bundle"]).post(base + "/_emulator/uninstall-bot", json={"user": BOB})
        assert r.status_code == 200, r.text
        bob = r.json()["user"]
    assert run["rc"] == 0, capsys.readouterr().err
    assert persist.decode(json.loads(state.read_text())["state"]["bot_uninstalled_users"]) == {bob}


def test_serve_help_documents_state_and_store(capsys):
    assert serve_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--state FILE" in out and "store_path" in out


def _env(home) -> dict:
    """The environment of a CLI run whose home (and default store) is ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MSTEAMS_", "XDG_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".local" / "state"))
    return env


class _Serve:
    """``msteams emulator serve`` in a subprocess, up once its config is written."""

    def __init__(self, tmp_path, *args):
        self.cfg = tmp_path / "emu.yml"
        if self.cfg.exists():
            self.cfg.unlink()  # the restarted one writes it anew (new port, new CA)
        self.env = _env(tmp_path / "home")
        self.proc = subprocess.Popen(CLI + ["emulator", "serve", "--no-throttling", "--write-config", str(self.cfg),
                                            *args], cwd=tmp_path, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        for _ in range(600):
            if self.cfg.exists() and self.cfg.stat().st_size:
                break
            if self.proc.poll() is not None:
                pytest.fail(self.proc.stderr.read())
            time.sleep(0.05)
        else:
            self.stop()
            pytest.fail("the emulator did not write its config")
        self.config = yaml.safe_load(self.cfg.read_text())

    def msteams(self, *argv) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + ["--config", str(self.cfg), "-o", "json", *argv], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def admin_state(self) -> dict:
        import requests

        r = requests.get(self.config["graph_url"].rsplit("/v1.0", 1)[0] + "/_emulator/state",
                         verify=self.config["ca_bundle"], timeout=10)
        r.raise_for_status()
        return r.json()

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


def test_write_config_gives_the_cli_a_store_beside_it(tmp_path):
    home = tmp_path / "home"
    srv = _Serve(tmp_path)
    try:
        store = tmp_path / "emu.store.sqlite3"
        assert srv.config["store_path"] == str(store)
        assert stat.S_IMODE(os.stat(srv.cfg).st_mode) == 0o600
        r = srv.msteams("send-notification", "--user", BOB, "--message", "hi")
        assert r.returncode == 0, r.stderr
        assert store.is_file()
        # Nothing in the default store (nor anywhere else in the home but the command cache).
        assert not (home / ".local" / "share" / "msteams-soar").exists()
        assert not (home / ".local" / "share" / "msteams-soar" / "store.sqlite3").exists()
    finally:
        rc, out, err = srv.stop()
    assert rc == 0, err
    assert f"context store    {store}" in out


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "tenant-state.json"
    srv = _Serve(tmp_path, "--state", str(state))
    try:
        r = srv.msteams("send-notification", "--user", PRIYA, "--message", "first")
        assert r.returncode == 0, r.stderr
        assert srv.msteams("auth", "login").returncode == 0
        r = srv.msteams("chat-create", "chat_type=group", f"member={CONOR},{ZOE}", "chat_name=IR-42 war room")
        assert r.returncode == 0, r.stderr + r.stdout
        assert srv.msteams("message-send-to-chat", "chat=IR-42 war room", "content=Containment started").returncode == 0
        r = srv.msteams("team-create", "display_name=IR-43 team", f"owner={ALICE}")
        assert r.returncode == 0, r.stderr + r.stdout
        [conversation] = srv.admin_state()["bot_conversations"]
        for _ in range(100):  # saved while it runs, a second or so after the change
            if state.exists() and "IR-43 team" in state.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the state was not saved while the emulator ran")
    finally:
        rc, out, err = srv.stop()
    assert rc == 0, err
    assert "(new)" in out
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tenant-state")] == []

    srv = _Serve(tmp_path, "--state", str(state))
    try:
        before = srv.admin_state()
        assert before["bot_conversations"] == [conversation]
        # The bot's conversation with Priya is still known: the second send goes into it (no
        # "Conversation not found", no new conversation).
        r = srv.msteams("send-notification", "--user", PRIYA, "--message", "second")
        assert r.returncode == 0, r.stderr
        after = srv.admin_state()
        assert after["bot_conversations"] == [conversation]
        assert [a["conversationId"] for a in after["activities"]] == [conversation["id"]] * 2
        # The delegated sign-in survived too (the refresh token is the tenant's), and so did the chat.
        r = srv.msteams("chat-list")
        assert r.returncode == 0, r.stderr + r.stdout
        assert "IR-42 war room" in r.stdout
        r = srv.msteams("chat-message-list", "chat=IR-42 war room")
        assert r.returncode == 0 and "Containment started" in r.stdout, r.stderr + r.stdout
        r = srv.msteams("team-list")
        assert r.returncode == 0 and "IR-43 team" in r.stdout, r.stderr + r.stdout
    finally:
        rc, out, err = srv.stop()
    assert rc == 0, err
    assert "(loaded)" in out
    saved = json.loads(state.read_text())
    assert len(saved["state"]["activities"]) == 2


def test_a_corrupt_state_file_is_exit_2_from_the_command_line(tmp_path):
    bad = tmp_path / "state.json"
    bad.write_text('{"format": "msteams-soar fake tenant state", "version": 1, "tenant_id": "x"')
    r = subprocess.run(CLI + ["emulator", "serve", "--state", str(bad)], env=_env(tmp_path / "home"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("msteams emulator serve: error: --state ") and str(bad) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
