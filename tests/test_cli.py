"""The msteams CLI: generated subcommands, war-room form, aliases, exit codes, and no secret
or traceback in anything it prints."""
import logging
import os
import subprocess
import sys

import pytest
import yaml
from registry_helpers import KINDS, write_broken

from integration.cli import main
from integration.playbooks.loader import shipped as _shipped_playbooks


def run(argv):
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def test_help_lists_commands_and_is_fast_path():
    r = subprocess.run([sys.executable, "-m", "integration.cli", "--help"], capture_output=True, text=True)
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
    from integration.cli import build_parser
    from integration.registry import load

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
        r = subprocess.run([sys.executable, "-m", "integration.cli", *argv], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and f"{path}:{line}: " in r.stderr and fragment in r.stderr, (argv, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr and not r.stdout


def test_help_paths_import_no_heavy_module(tmp_path):
    """With the registry cache warm, help needs neither PyYAML nor jsonschema, requests or msal."""
    code = ("import sys; from integration.cli import main; rc = main(sys.argv[1:], out=lambda s: None); "
            "print(rc, sorted(m for m in ('yaml', 'jsonschema', 'requests', 'msal') if m in sys.modules))")
    for argv in (["--help"], ["help", "chat-create"], ["help", "chat-create"]):
        r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "0 []", r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert r.stdout.strip().endswith("[]"), r.stdout + r.stderr


def test_help_lists_every_command_and_a_command_gets_its_own_flags():
    from integration.registry import default_registry

    r = subprocess.run([sys.executable, "-m", "integration.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for spec in default_registry():
        if not spec.name.startswith("auth-"):
            assert f"    {spec.name}" in r.stdout, spec.name
    r = subprocess.run([sys.executable, "-m", "integration.cli", "channel-list", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--team VALUE" in r.stdout and "--channel-name" not in r.stdout
