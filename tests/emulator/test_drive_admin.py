"""`msteams emulator uninstall-bot` and `forget-conversations`: an admin takes the bot away from a
user, or the tenant forgets the bot's conversations, from the command line, so a user can see
the product heal (the next send opens the conversation again) or fail by name."""
from __future__ import annotations

import json

BOB = "bob.smith@contoso.example"


def run(cli, conf, *argv):
    out, err = [], []
    return cli.main(["--config", conf, *argv], out=out.append, err=err.append), out, err


def test_uninstall_and_forget_from_the_command_line(emu, tmp_path, monkeypatch):
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    assert run(cli, conf, "send-notification", "--user", BOB, "--message", "one")[0] == 0

    code, out, _ = run(cli, conf, "emulator", "forget-conversations", "--user", BOB)
    assert code == 0 and "forgot 1 conversation" in out[-1]
    code, out, _ = run(cli, conf, "-o", "json", "send-notification", "--user", BOB, "--message", "two")
    assert code == 0 and json.loads(out[-1])[0]["status"] == "sent"  # healed: opened again

    code, out, _ = run(cli, conf, "emulator", "uninstall-bot", "--user", BOB)
    assert code == 0 and "uninstalled" in out[-1]
    code, _, err = run(cli, conf, "send-notification", "--user", BOB, "--message", "three")
    assert code == 4 and "the app is not installed for this user" in err[0]
    code, _, err = run(cli, conf, "emulator", "uninstall-bot", "--user", "nobody@contoso.example")
    assert code == 2 and "no user" in err[-1]
