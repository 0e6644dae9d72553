"""The msteams CLI: generated subcommands, war-room form, aliases, exit codes, and no secret
or traceback in anything it prints."""
import logging
import subprocess
import sys

import pytest
import yaml

from integration.cli import main


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
