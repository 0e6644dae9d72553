"""Playbooks end to end against the emulator: a hostile input arrives literally in the message
the tenant stores, recovery with on_error against real failures, `--dry-run` sends nothing,
and `msteams playbook run` prints progress and the final context."""
import json
import textwrap
from pathlib import Path


from integration.frontends.cli import main
from integration.playbooks import run_playbook
from integration.playbooks.loader import LIBRARY_DIR

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = LIBRARY_DIR / "examples" / "notify.yml"
HOSTILE = "${inputs.incident} {{7*7}} $${x} \"double\" 'single' <script>alert('x')</script> &amp; `id`"


def run_cli(argv):
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def graph_calls(emu, since=0):
    return [(e["method"], e["path"]) for e in emu.request_log[since:] if e["path"].startswith("/v1.0")]


def test_hostile_input_is_stored_literally(emu, signed_in):
    lines = []
    r = run_playbook(EXAMPLE, {"incident": "IR-7", "note": HOSTILE}, signed_in, out=lines.append)
    assert r.status == "ok", lines
    chat = emu.state.chats[r.outputs["chat"]]
    assert chat.topic == "IR IR-7" and "The chat 'IR IR-7' is ready." in r.step("room")["readable"]
    assert chat.messages[-1].body == {"contentType": "text", "content": HOSTILE}
    assert r.context["MicrosoftTeams.ChatList"][0]["messages"][0]["content"] == HOSTILE
    assert r.step("ring")["status"] == "skipped" and r.step("dm")["status"] == "skipped"
    assert ("POST", f"/v1.0/chats/{chat.id}/messages") in graph_calls(emu)


def test_failed_call_recovers_with_a_direct_message(emu, signed_in):
    # The app lost Calls.Initiate.All: ring-user gets a 403, on_error jumps to 'dm', whose
    # `when` sees the failure and sends the on-call user a 1:1 message instead.
    app = emu.config()["client_id"]
    granted = emu.state.apps[app].application_permissions - {"Calls.Initiate.All"}
    emu.set_permissions(app, application=sorted(granted))
    lines = []
    r = run_playbook(EXAMPLE, {"incident": "IR-8", "severity": "critical", "oncall": "grace.kim@contoso.example"},
                     signed_in, out=lines.append)
    assert r.status == "ok", lines
    assert r.step("ring")["status"] == "failed" and "Calls.Initiate.All" in r.step("ring")["error"]
    assert r.step("dm")["status"] == "ok" and r.outputs["rang"] == "failed"
    dm = emu.state.chats[r.context["MicrosoftTeams.ChatList"][-1]["chatId"]]
    assert dm.chat_type == "oneOnOne" and "IR IR-8" in dm.messages[-1].body["content"]
    assert any("on_error: recovering with step 'dm'" in x for x in lines)


def test_on_error_fail_stops_at_the_failing_step(emu, signed_in):
    r = run_playbook(EXAMPLE, {"incident": "IR-12", "severity": "critical", "oncall": "nobody@contoso.example"},
                     signed_in, out=lambda s: None)
    # ring fails (unknown user) and jumps to dm, which fails for the same user: the playbook fails there
    assert r.status == "failed" and r.failed_step == "dm" and r.exit_code == 5


def test_dry_run_makes_no_request(emu, signed_in):
    before = len(emu.request_log)
    r = run_playbook(EXAMPLE, {"incident": "IR-9", "note": HOSTILE, "severity": "critical"}, signed_in,
                     dry_run=True, out=lambda s: None)
    assert r.status == "planned" and len(emu.request_log) == before
    assert r.step("brief")["plan"][0]["args"]["content"] == HOSTILE
    assert "POST /communications/calls" in r.step("ring")["plan"][0]["calls"]


def test_cli_run_prints_progress_and_context_and_exit_codes(emu, cfg_file, tmp_path):
    code, out, err = run_cli(["--config", str(cfg_file), "auth", "login"])
    assert code == 0, err
    code, out, err = run_cli(["--config", str(cfg_file), "playbook", "run", str(EXAMPLE), "--input", "incident=IR-10",
                              "--input", f"note={HOSTILE}", "--output", "json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "ok" and doc["context"]["MicrosoftTeams.ChatList"][0]["messages"][0]["body"]["content"] == HOSTILE
    assert "[1/4] room (chat-create) ok in" in err and "[2/4] brief (message-send-to-chat) ok in" in err
    code, out, err = run_cli(["--config", str(cfg_file), "playbook", "run", str(EXAMPLE), "--input", "incident=IR-11"])
    assert code == 0 and "### Playbook example-notify: ok" in out and '"MicrosoftTeams.ChatList"' in out

    failing = tmp_path / "fail.yml"
    failing.write_text(textwrap.dedent("""\
        steps:
          - {id: ring, command: ring-user, args: {username: nobody@contoso.example}}
          - {id: never, command: channel-list, args: {team: Security Operations}}
        """))
    before = len(emu.request_log)
    code, out, err = run_cli(["--config", str(cfg_file), "playbook", "run", str(failing)])
    assert code == 5 and "user 'nobody@contoso.example' not found" in err and "Traceback" not in err
    assert "| never | channel-list | skipped |" in out
    assert not [c for c in graph_calls(emu, before) if "channels" in c[1]]

    before = len(emu.request_log)
    code, out, err = run_cli(["--config", str(cfg_file), "playbook", "run", str(EXAMPLE), "--input", "incident=X",
                              "--dry-run"])
    assert code == 0 and "would call: POST /chats" in out and len(emu.request_log) == before


def test_worker_refuses_an_interval_that_is_not_a_positive_number(capsys):
    for bad in ("-5", "0", "nan", "x"):
        errors: list[str] = []
        # A usage error, exit 2, before any store is opened (a negative interval used to loop).
        assert main(["playbook", "worker", "--interval", bad], out=lambda s: None, err=errors.append) == 2
        assert "--interval" in "\n".join(errors) + capsys.readouterr().err
