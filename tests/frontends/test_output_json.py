"""`--output json` everywhere, and every `--help` exits 0 (issue 24, part 6): the tool
subcommands print JSON a platform can parse, `shell -o json` writes one JSON object per input
line (NDJSON) on stdout with errors on stderr, and each group's `--help` is a success."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from integration.frontends.cli import main

GROUPS_AND_ACTIONS = ["playbook", "playbook run", "playbook validate", "playbook runs", "playbook list", "bot",
                      "bot serve", "bot audit", "store", "store status", "store prune", "worker", "worker status",
                      "emulator", "emulator serve", "auth", "auth login", "shell", "demo", "app-package", "docs",
                      "permissions", "help", "channel-list"]


@pytest.mark.parametrize("words", GROUPS_AND_ACTIONS)
def test_every_help_exits_0(words):
    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", *words.split(), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usage" in (r.stdout + r.stderr).lower()


def run(*argv, stdin=None, cfg=None):
    out, err = [], []
    args = (["--config", str(cfg)] if cfg else []) + list(argv)
    kw = {"out": out.append, "err": err.append}
    if stdin is not None:
        from integration.frontends import shell

        old = sys.stdin
        sys.stdin = stdin
        try:
            code = main(args, **kw)
        finally:
            sys.stdin = old
        return code, out, err
    return main(args, **kw), out, err


def test_permissions_as_json():
    code, out, _ = run("-o", "json", "permissions")
    data = json.loads("\n".join(out))
    assert code == 0 and "ChatMessage.Send" in data["delegated"]["total"]
    assert data["delegated"]["commands"]["message-send-to-chat"]


def test_playbook_list_and_validate_as_json():
    code, out, _ = run("-o", "json", "playbook", "list")
    names = {p["name"] for p in json.loads("\n".join(out))}
    assert code == 0 and {"access-request", "incident-war-room"} <= names
    code, out, _ = run("-o", "json", "playbook", "validate", "playbooks/access-request.yml")
    valid = json.loads("\n".join(out))["valid"]
    assert code == 0 and valid[0]["name"] == "access-request" and valid[0]["steps"] == 3


class _Pipe(io.TextIOWrapper):
    def isatty(self):
        return False


def test_shell_json_is_one_object_per_input_line(emu, cfg_file):
    lines = b"help cache-show\ncache-show\n!nope-command x=1\n\n# a comment\ncache-show\n"
    stdin = _Pipe(io.BytesIO(lines), encoding="utf-8")
    code, out, err = run("-o", "json", "shell", "--no-history", stdin=stdin, cfg=cfg_file)
    assert code == 2  # the unknown command's line
    objects = [json.loads(line) for line in out]  # every stdout line is one JSON object
    assert [o["input_line"] for o in objects] == [1, 2, 6]
    assert "help" in objects[0] and objects[1]["command"] == "cache-show" and objects[1]["exit_code"] == 0
    errors = [json.loads(line) for line in err]
    assert errors[-1]["error"]["input_line"] == 3 and errors[-1]["error"]["code"] == "input"


def test_store_status_and_prune_as_json(emu, cfg_file):
    code, out, _ = run("-o", "json", "store", "status", cfg=cfg_file)
    data = json.loads("\n".join(out))
    assert code == 0 and data["store"] and isinstance(data["counts"], dict)
    code, out, _ = run("-o", "json", "store", "prune", "--older-than", "30", "--dry-run", cfg=cfg_file)
    data = json.loads("\n".join(out))
    assert code == 0 and data["dry_run"] is True and isinstance(data["deleted"], dict)
    from integration.store.rules import HISTORY_KINDS

    assert list(data["deleted"]) == list(HISTORY_KINDS)  # every kind, message_refs and expired_entries too
    assert all(isinstance(n, int) for n in data["deleted"].values())
