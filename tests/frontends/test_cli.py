"""The msteams CLI: generated subcommands, war-room form, aliases, exit codes, and no secret
or traceback in anything it prints."""
import json
import logging
import os
import subprocess
import sys

import pytest
import yaml
from registry_helpers import KINDS, write_broken

from integration.frontends.cli import main
from integration.playbooks.loader import shipped as _shipped_playbooks


def run(argv):
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def test_help_lists_commands_and_is_fast_path():
    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "chat-create" in r.stdout and "ring-user" in r.stdout


def test_help_command():
    code, out, _ = run(["help", "microsoft-teams-chat-create"])
    assert code == 0 and "chat_type" in out and "Chat.Create" in out


def test_warroom_form_and_table(cfg_file):
    code, out, err = run(["--config", str(cfg_file), '!channel-list team="Security Operations"'])
    assert code == 0, err
    assert "| Incident Response |" in out


def test_flags_form_json_and_alias(cfg_file):
    code, out, err = run(["--config", str(cfg_file), "-o", "json", "microsoft-teams-channels-list",
                          "--team", "IT Helpdesk"])
    assert code == 0, err
    assert '"displayName": "Escalations"' in out


def test_auth_login_then_status(cfg_file):
    code, out, err = run(["--config", str(cfg_file), "auth", "login"])
    assert code == 0, err
    assert "Signed in as soar-svc@contoso.example" in out
    code, out, err = run(["--config", str(cfg_file), "auth", "status"])
    assert code == 0 and "ChatMessage.Send" in out and "| delegated | True | True |" in out


@pytest.mark.parametrize("argv,code,text", [
    (["nonsense-cmd"], 2, "unknown command"),
    (["!chat-creat member=a"], 2, "did you mean: chat-create"),
    (["!chat-create chat_type=triple member=a"], 2, "argument 'chat_type'"),
    (["!ring-user"], 2, "argument 'username': is required"),
    (['!channel-list team="Nope Team"'], 5, "team 'Nope Team' not found"),
    # a command line's byte that is not UTF-8 (\xff reaches argv as U+DCFF): named, never a traceback
    (["channel-list", "--team", "Sec\udcffOps"], 2, "argument 5 is not valid UTF-8 (byte 0xff at position 3)"),
])
def test_exit_codes_and_messages(cfg_file, argv, code, text):
    got, out, err = run(["--config", str(cfg_file)] + argv)
    assert got == code and text in err and "Traceback" not in err + out


def test_missing_config_file_is_exit_3(tmp_path):
    code, _, err = run(["--config", str(tmp_path / "missing.yml"), "!ring-user username=x"])
    assert code == 3 and "cannot read" in err


def test_wrong_secret_never_printed_or_logged(cfg_file, caplog):
    wrong = "Wr0ng-Secret-Value-That-Must-Not-Leak"
    data = yaml.safe_load(cfg_file.read_text())
    data["client_secret"] = wrong
    cfg_file.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.DEBUG):
        code, out, err = run(["-vv", "--config", str(cfg_file), '!channel-list team="Security Operations"'])
    assert code == 3
    assert "invalid_client" in err and "AADSTS7000215" in err
    assert wrong not in out + err + caplog.text
    right = "emu~Graph.Secret"
    assert right not in out + err + caplog.text


def test_emulator_needs_serve():
    code, _, err = run(["emulator", "start"])
    assert code == 2 and "msteams emulator serve" in err


def test_command_argument_may_share_a_global_option_name():
    from integration.frontends.cli import build_parser
    from integration.engine.registry import load

    build_parser(load(validate=False))  # no argparse conflict, whatever the registry names its arguments


def test_docs_write_to_unwritable_path_is_a_clear_error(tmp_path):
    target = tmp_path / "missing-dir" / "commands.md"
    code, _, err = run(["docs", "--write", str(target)])
    assert code == 2 and f"{target}: cannot write" in err and "internal error" not in err


# ---------------------------------------------------------------- a broken registry on every entry point

PLAYBOOK = str(_shipped_playbooks()["alert-notify"])
ENTRY_POINTS = {
    "help COMMAND": ["help", "chat-create"],
    "help": ["help"],
    "--help": ["--help"],
    "no arguments": [],
    "a command": ["cache-show"],
    "a command by alias, with flags": ["microsoft-teams-chat-create", "--member", "a@x"],
    "war-room form": ["!cache-show"],
    "shell": ["shell", "--no-history"],
    "playbook validate": ["playbook", "validate", PLAYBOOK],
    "playbook run --dry-run": ["playbook", "run", PLAYBOOK, "--dry-run", "--input", "title=x"],
    "docs": ["docs"],
    "permissions": ["permissions"],
    "auth status": ["auth", "status"],
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_registry_is_exit_2_with_file_and_line_everywhere(tmp_path, monkeypatch, kind, entry):
    path, line, fragment = write_broken(tmp_path, kind)
    monkeypatch.setenv("MSTEAMS_REGISTRY", str(path))
    code, out, err = run(ENTRY_POINTS[entry])
    assert code == 2, (code, out, err)
    assert f"error: {path}:{line}: " in err and fragment in err
    assert "internal error" not in err + out and "Traceback" not in err + out


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_registry_in_a_real_process(tmp_path, kind):
    path, line, fragment = write_broken(tmp_path, kind)
    env = dict(os.environ, MSTEAMS_REGISTRY=str(path))
    for argv in (["--help"], ["help", "chat-create"], ["!cache-show"]):
        r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", *argv], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and f"{path}:{line}: " in r.stderr and fragment in r.stderr, (argv, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr and not r.stdout


def test_help_paths_import_no_heavy_module(tmp_path):
    """With the registry cache warm, help needs neither PyYAML nor jsonschema, requests or msal."""
    code = ("import sys; from integration.frontends.cli import main; rc = main(sys.argv[1:], out=lambda s: None); "
            "print(rc, sorted(m for m in ('yaml', 'jsonschema', 'requests', 'msal') if m in sys.modules))")
    for argv in (["--help"], ["help", "chat-create"], ["help", "chat-create"]):
        r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "0 []", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert r.stdout.strip().endswith("[]"), r.stdout + r.stderr


def test_help_lists_every_command_and_a_command_gets_its_own_flags():
    from integration.engine.registry import default_registry

    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for spec in default_registry():
        if not spec.name.startswith("auth-"):
            assert f"    {spec.name}" in r.stdout, spec.name
    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "channel-list", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--team VALUE" in r.stdout and "--channel-name" not in r.stdout


# ---------------------------------------------------------------- --output json: errors as JSON on stderr

def _json_error(err: str) -> dict:
    """stderr holds exactly one line, a JSON object with the documented fields."""
    import json

    lines = err.splitlines()
    assert len(lines) == 1, err
    doc = json.loads(lines[0])
    assert set(doc) == {"error"}
    e = doc["error"]
    assert {"code", "message", "hint", "exit_code"} <= set(e)
    assert isinstance(e["code"], str) and isinstance(e["message"], str) and isinstance(e["exit_code"], int)
    assert "Traceback" not in err
    return e


@pytest.mark.parametrize("argv,exit_code,kind,text", [
    (["nonsense-cmd"], 2, "input", "unknown command 'nonsense-cmd'"),
    (["!chat-creat member=a"], 2, "input", "unknown command"),
    (["!chat-create chat_type=triple member=a"], 2, "input", "argument 'chat_type'"),
    (['!channel-list team="Nope Team"'], 5, "not_found", "team 'Nope Team' not found"),
    (["channel-list", "--bogus"], 2, "input", "unrecognized arguments: --bogus"),  # argparse
    (["channel-list", "--team"], 2, "input", "expected one argument"),  # argparse, in the subcommand
    (["playbook", "run"], 2, "input", "the following arguments are required"),  # a tool's own parser
    (["docs", "--nope"], 2, "input", "unrecognized arguments: --nope"),
    (["auth", "nope"], 2, "input", "usage: msteams auth"),
])
@pytest.mark.parametrize("form", [["-o", "json"], ["--output=json"], ["-ojson"], "after"])
def test_output_json_errors_are_one_json_object_on_stderr(cfg_file, argv, exit_code, kind, text, form):
    full = ["--config", str(cfg_file)] + (argv + ["--output", "json"] if form == "after" else form + argv)
    got, out, err = run(full)
    e = _json_error(err)
    assert got == exit_code == e["exit_code"] and e["code"] == kind and text in e["message"], err
    assert out == ""


def test_output_json_error_details(cfg_file):
    _, _, err = run(["--config", str(cfg_file), "-o", "json", "!chat-create chat_type=triple member=a"])
    e = _json_error(err)
    assert e["argument"] == "chat_type"
    _, _, err = run(["--config", str(cfg_file), "-o", "json", "channel-list", "--bogus"])
    assert _json_error(err)["hint"].startswith("usage: msteams")  # argparse's usage line, on one line


def test_output_json_config_and_auth_errors(cfg_file, tmp_path):
    code, _, err = run(["-o", "json", "--config", str(tmp_path / "missing.yml"), "!ring-user username=x"])
    e = _json_error(err)
    assert code == 3 and e["code"] == "config" and e["exit_code"] == 3 and "cannot read" in e["message"]
    wrong = "Wr0ng-Secret-Value-That-Must-Not-Leak"
    data = yaml.safe_load(cfg_file.read_text())
    data["client_secret"] = wrong
    cfg_file.write_text(yaml.safe_dump(data))
    code, out, err = run(["-o", "json", "--config", str(cfg_file), '!channel-list team="Security Operations"'])
    e = _json_error(err)
    assert code == 3 and e["code"] == "auth" and "invalid_client" in e["message"]
    assert wrong not in out + err and "emu~Graph.Secret" not in out + err


def test_output_json_error_text_is_escaped_and_redacted():
    """The JSON is the last guard as the text is: no control character survives parsing, and a
    registered secret or a token is masked, in the message, the hint and the details."""
    import json

    from integration.engine import redact
    from integration.frontends.cli import _print_error
    from integration.engine.errors import ArgumentError, IntegrationError

    secret = "Sup3r-Secret-For-The-Json-Test"
    redact.register(secret)
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0xxxx.c2lnbmF0dXJlLXBhcnQ"
    lines: list[str] = []
    _print_error(IntegrationError(f"bad \x1b[2J\x07 \u202egnp.exe {secret}", hint=f"\x00 token {jwt}"), lines.append, True)
    _print_error(ArgumentError(f"a\x1b{secret}", "value \x9b1m"), lines.append, True)
    for line in lines:
        assert "\x1b" not in line and secret not in line and jwt not in line
        e = json.loads(line)["error"]
        for value in (e["message"], e["hint"] or "", e.get("argument", "")):
            assert not any(c in value for c in "\x00\x07\x1b\x9b\u202e"), value
            assert secret not in value and jwt not in value
    first = json.loads(lines[0])["error"]
    assert "\\x1b[2J" in first["message"] and "\\u202e" in first["message"] and "***" in first["message"]
    assert first == {"code": "error", "message": first["message"], "hint": first["hint"], "exit_code": 1}


def test_output_json_escapes_a_user_value_end_to_end(cfg_file):
    code, _, err = run(["--config", str(cfg_file), "-o", "json", '!channel-list team="\x1b[31mNope\u202e"'])
    e = _json_error(err)
    assert code == 5 and e["code"] == "not_found" and "\x1b" not in e["message"] and "\u202e" not in e["message"]
    assert "\\x1b[31mNope\\u202e" in e["message"]


def test_output_json_internal_error_and_interrupt(monkeypatch):
    import integration.frontends.cli as cli

    def boom(argv, out, err):
        raise ValueError("something \x1b[0m broke")

    monkeypatch.setattr(cli, "_main", boom)
    code, out, err = run(["-o", "json", "cache-show"])
    e = _json_error(err)
    assert code == 1 and e["code"] == "internal" and e["exit_code"] == 1 and "ValueError" in e["message"]
    assert "\x1b" not in e["message"] and "bug" in e["hint"]

    def interrupted(argv, out, err):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_main", interrupted)
    code, _, err = run(["-o", "json", "cache-show"])
    assert code == 130 and _json_error(err) == {"code": "interrupted", "message": "interrupted", "hint": None,
                                                  "exit_code": 130}
    code, _, err = run(["cache-show"])
    assert code == 130 and err == "interrupted"


def test_without_json_errors_stay_text_and_argparse_is_untouched(cfg_file, capsys):
    run(["--config", str(cfg_file), "-o", "json", "channel-list", "--bogus"])  # turns the hook on, then off
    code, out, err = run(["--config", str(cfg_file), "nonsense-cmd"])
    assert code == 2 and err.startswith("error: unknown command") and "{" not in err
    capsys.readouterr()
    code, out, err = run(["--config", str(cfg_file), "channel-list", "--bogus"])
    printed = capsys.readouterr().err  # argparse writes its usage to sys.stderr itself
    assert code == 2 and "usage: msteams" in printed and "unrecognized arguments: --bogus" in printed
    assert not printed.lstrip().startswith("{")
    code, _, err = run(["--config", str(cfg_file), "-o", "table", "nonsense-cmd"])
    assert code == 2 and err.startswith("error: ")


def test_output_json_in_a_real_process(cfg_file):
    for argv, exit_code in ((["-o", "json", "channel-list", "--bogus"], 2),
                            (["-o", "json", "--config", str(cfg_file), '!channel-list team="Nope Team"'], 5)):
        r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", *argv], capture_output=True, text=True)
        assert r.returncode == exit_code and r.stdout == "", r.stderr
        assert _json_error(r.stderr.strip())["exit_code"] == exit_code


def test_the_documented_json_error_example_is_what_the_cli_prints(cfg_file):
    """The JSON error example of docs/usage.md (once in the README) is exactly what the CLI prints."""
    import json
    from pathlib import Path

    usage = (Path(__file__).resolve().parents[2] / "docs" / "usage.md").read_text(encoding="utf-8")
    example = json.loads(usage.split("```json\n")[1].split("```")[0])
    code, _, err = run(["--config", str(cfg_file), "-o", "json", '!channel-list team="Nope Team"'])
    assert code == 5 and json.loads(err) == example


def test_output_json_playbook_validate_problems_travel_in_the_error(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nsteps:\n  - id: a\n    command: \"nope\\x1b[2J\"\n")
    code, out, err = run(["-o", "json", "playbook", "validate", str(bad), PLAYBOOK])
    e = _json_error(err)
    assert code == 2 and e["code"] == "input" and e["message"] == "1 of 2 playbooks has problems"
    [problem] = e["problems"]
    assert problem["path"] == str(bad) and problem["line"] == 4 and "unknown command" in problem["message"]
    assert "\x1b" not in err  # the good one is still reported on stdout, as JSON too
    assert [v["path"] for v in json.loads(out)["valid"]] == [PLAYBOOK]
    code, _, err = run(["playbook", "validate", str(bad)])  # text: FILE:LINE lines, then the error
    assert code == 2 and f"{bad}:4: " in err and err.splitlines()[-1] == "error: 1 of 1 playbook has problems"


def test_output_json_shell_batch_reports_each_failed_line(cfg_file):
    import json

    lines = '!channel-list team="Nope Team"\n!chat-creat\n!channel-list team="IT Helpdesk"\n!ring-user\n'
    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "--config", str(cfg_file), "-o", "json", "shell",
                        "--no-history"], input=lines, capture_output=True, text=True)
    errors = [json.loads(line)["error"] for line in r.stderr.splitlines()]
    assert [(e["input_line"], e["code"], e["exit_code"]) for e in errors] == [
        (1, "not_found", 5), (2, "input", 2), (4, "input", 2)]
    assert errors[2]["argument"] == "username" and r.returncode != 0
    assert "Escalations" in r.stdout  # line 3 ran
