"""``msteams emulator user-clicks --message-ref``: the fake tenant's driver cannot read the
product's context store (it imports nothing of the product), so the CLI passes the lookup in.
Through the CLI the reference is found; without the lookup the driver says what to use instead."""
from __future__ import annotations

import json

from fake_tenant.drive import main as drive

BOB = "bob.smith@contoso.example"


def test_cli_finds_the_card_by_message_ref(emu, tmp_path, monkeypatch):
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    out, err = [], []
    assert cli.main(["--config", conf, "-o", "json", "send-notification", "--user", BOB, "--message", "hi"],
                    out=out.append, err=err.append) == 0, err
    [sent] = json.loads(out[-1])
    ref = sent["messageRef"]
    code = cli.main(["--config", conf, "emulator", "user-clicks", "--user", BOB, "--message-ref", f" {ref} ",
                     "--choice", "Approve"], out=out.append, err=err.append)
    # The card was found (by its activity id): the emulator answers that it has no such button.
    assert code == 3 and "no button 'Approve'" in err[-1], err
    code = cli.main(["--config", conf, "emulator", "user-clicks", "--user", BOB, "--message-ref", "nope",
                     "--choice", "Approve"], out=out.append, err=err.append)
    assert code == 2 and err[-1] == "error: no message reference 'nope' in the context store"


def test_driver_passes_the_stripped_ref_and_config_to_the_lookup(emu):
    asked, err = [], []

    def lookup(config, ref):
        asked.append((config, ref))
        return None

    code = drive(["user-clicks", "--user", BOB, "--message-ref", " r-1 ", "--choice", "Yes", "--emulator",
                  emu.base_url, "--ca-bundle", emu.ca_bundle], err=err.append, config="c.yml",
                 activity_of_ref=lookup)
    assert code == 2 and asked == [("c.yml", "r-1")]
    assert err == ["error: no message reference ' r-1 ' in the context store"]


def test_driver_without_the_lookup_asks_for_a_question_id(emu):
    err = []
    code = drive(["user-clicks", "--user", BOB, "--message-ref", "r-1", "--choice", "Yes", "--emulator",
                  emu.base_url, "--ca-bundle", emu.ca_bundle], err=err.append)
    assert code == 2 and "--question ID" in err[-1]
