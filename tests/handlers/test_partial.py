"""No failure hidden behind exit 0 (issue 24, part 0): a fan-out that reaches some items and
not others lists every item, with its status, in every output format, and exits 6 (partial);
`fail_on=none` makes it exit 0; a playbook step whose items partly failed is `partial`."""
from __future__ import annotations

import json

from integration.frontends.cli import main

BOB = "bob.smith@contoso.example"
NOBODY = "nobody.here@contoso.example"


def run(cfg_file, *argv):
    out, err = [], []
    code = main(["--config", str(cfg_file), *argv], out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def test_message_send_to_chat_lists_every_chat_and_exits_6(emu, cfg_file):
    assert run(cfg_file, "auth", "login")[0] == 0
    code, out, err = run(cfg_file, "-o", "json", "message-send-to-chat", "--chats", f"{BOB},{NOBODY}",
                         "--content", "containment started")
    assert code == 6, err
    rows = json.loads(out)
    assert "Bob Smith" in rows[0]["recipient"] and rows[1]["recipient"] == NOBODY  # input order, both there
    assert rows[0]["deliveryStatus"] == "sent" and rows[0]["id"]
    assert rows[1]["deliveryStatus"] == "failed" and "not found" in rows[1]["error"]

    code, out, _ = run(cfg_file, "-o", "context", "message-send-to-chat", "--chats", f"{BOB},{NOBODY}",
                       "--content", "second", "--dedupe-key", "ctx")
    entries = json.loads(out)["MicrosoftTeams.ChatList"]
    assert code == 6 and {e["deliveryStatus"] for e in entries} == {"sent", "failed"}
    assert any(e.get("recipient") == NOBODY and e.get("error") for e in entries)

    code, out, _ = run(cfg_file, "message-send-to-chat", "--chats", f"{BOB},{NOBODY}", "--content", "third")
    assert code == 6 and "Message sent to 1 of 2 chat(s)" in out and NOBODY in out  # the table too

    code, _, _ = run(cfg_file, "message-send-to-chat", "--chats", f"{BOB},{NOBODY}", "--content", "4th",
                     "--fail-on", "none")
    assert code == 0


def test_every_chat_failing_is_the_error_unless_fail_on_none(emu, cfg_file):
    assert run(cfg_file, "auth", "login")[0] == 0
    code, _, err = run(cfg_file, "message-send-to-chat", "--chats", f"{NOBODY},another.nobody@contoso.example",
                       "--content", "x")
    assert code == 5 and "not found" in err
    code, out, _ = run(cfg_file, "-o", "json", "message-send-to-chat", "--chats", NOBODY, "--content", "x",
                       "--fail-on", "none")
    assert code == 0 and json.loads(out)[0]["deliveryStatus"] == "failed", out + _


def test_send_notification_partial_exits_6_with_every_recipient(emu, cfg_file):
    code, out, err = run(cfg_file, "-o", "json", "send-notification", "--user", f"{BOB},{NOBODY}",
                         "--message", "rotate your password")
    assert code == 6, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["sent", "failed"]
    assert BOB in rows[0]["recipient"] and rows[1]["recipient"] == NOBODY
    assert "not found" in rows[1]["error"]
    code, _, _ = run(cfg_file, "send-notification", "--user", f"{BOB},{NOBODY}", "--message", "again",
                     "--fail-on", "none")
    assert code == 0


def test_the_python_api_reports_a_partial_result(emu, cfg_file):
    from integration import api

    with api.Client(str(cfg_file)) as teams:
        r = teams.execute("send-notification", {"user": [BOB, NOBODY], "message": "hi"})
        assert r.exit_code == api.PARTIAL_EXIT and not r.ok and r.failed == 1
        assert [o["status"] for o in r.outputs] == ["sent", "failed"]
        r = teams.execute("send-notification", {"user": [BOB, NOBODY], "message": "hi", "fail_on": "none"})
        assert r.ok and r.failed == 1


def test_a_playbook_step_whose_command_partly_failed_is_partial(emu, cfg_file, tmp_path):
    pb = tmp_path / "pb.yml"
    pb.write_text(f"""\
name: partial
steps:
  - id: notify
    command: send-notification
    args: {{user: ["{BOB}", "{NOBODY}"], message: hello}}
  - id: after
    command: cache-show
""")
    code, out, err = run(cfg_file, "-o", "json", "playbook", "run", str(pb))
    assert code == 6, err
    result = json.loads(out) if out.strip().startswith("{") else None
    assert result is None or result["status"] == "failed"

    tolerant = tmp_path / "tolerant.yml"
    tolerant.write_text(pb.read_text().replace("    command: send-notification\n",
                                               "    command: send-notification\n    fail_on: none\n"))
    code, out, err = run(cfg_file, "-o", "json", "playbook", "run", str(tolerant))
    assert code == 0, err
    steps = {s["id"]: s for s in json.loads(out)["steps"]}
    assert steps["notify"]["status"] == "partial" and steps["after"]["status"] == "ok"

    onerr = tmp_path / "onerr.yml"
    onerr.write_text(pb.read_text().replace("    command: send-notification\n",
                                            "    command: send-notification\n    on_error: continue\n"))
    code, out, err = run(cfg_file, "-o", "json", "playbook", "run", str(onerr))
    assert code == 0, err
    assert {s["id"]: s["status"] for s in json.loads(out)["steps"]} == {"notify": "partial", "after": "ok"}
