"""`msteams shell`: completion candidates from the registry, lines piped on stdin (a result
each, exit code from the failures), and a real pseudo-terminal session with TAB completion."""
import os
import select
import subprocess
import sys
import time
import types

import pytest

from integration.engine import registry
from integration.frontends.shell import Shell

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def shell():
    rt = types.SimpleNamespace(registry=registry.default_registry())
    return Shell(rt, out=lambda s: None, err=lambda s: None)


@pytest.mark.parametrize("line,expected", [
    ("chat-cr", ["chat-create "]),
    ("!chat-cr", ["!chat-create "]),
    ("microsoft-teams-ring", ["microsoft-teams-ring-user "]),
    ("ex", ["exit "]),
    ("help ring", ["ring-user "]),
    ("chat-create mem", ["member="]),
    ("!chat-create chat_type=group ", ["member=", "chat_name="]),
    ("chat-create chat_type=", ["chat_type=group ", "chat_type=oneOnOne "]),
    ("chat-create chat_type=o", ["chat_type=oneOnOne "]),
    ("cache-reset include_tokens=", ["include_tokens=true ", "include_tokens=false "]),
    ("no-such-command x", []),
])
def test_completion_candidates(shell, line, expected):
    begidx = line.rfind(" ") + 1
    got = shell.candidates(line, begidx, line[begidx:])
    assert got == expected or set(expected) <= set(got) and line.endswith(" ")


def shell_env(tmp_path, cfg=None):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), TERM="dumb", PYTHONPATH=ROOT)
    env.pop("MSTEAMS_CONFIG", None)
    if cfg:
        env["MSTEAMS_CONFIG"] = str(cfg)
    return env


def pipe(tmp_path, cfg, text):
    return subprocess.run([sys.executable, "-m", "integration.frontends.cli", "shell"], input=text, capture_output=True,
                          text=True, env=shell_env(tmp_path, cfg), timeout=30, cwd=ROOT)


def test_stdin_lines_run_in_turn_and_the_exit_code_says_if_any_failed(tmp_path, cfg_file):
    r = pipe(tmp_path, cfg_file, "\n".join([
        "# a comment, then a blank line",
        "",
        '!channel-list team="Security Operations"',
        'channel-list team="No Such Team"',
        "help ring-user",
        "!chat-creat member=a",
        "microsoft-teams-channels-list team='IT Helpdesk'",
    ]) + "\n")
    assert r.returncode == 2, r.stderr  # the last failure: a misspelt command (input mistake)
    assert "| Incident Response |" in r.stdout and "| Escalations |" in r.stdout
    assert "username (string, required)" in r.stdout
    assert "error: team 'No Such Team' not found" in r.stderr
    assert "error: unknown command 'chat-creat'" in r.stderr and "did you mean: chat-create" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr

    r = pipe(tmp_path, cfg_file, 'channel-list team="Nope"\n!channel-list team="Security Operations"\n')
    assert r.returncode == 5 and "| General |" in r.stdout
    r = pipe(tmp_path, cfg_file, '!channel-list team="Security Operations"\nexit\n!channel-list team="Nope"\n')
    assert r.returncode == 0 and "Nope" not in r.stderr
    r = pipe(tmp_path, None, "# nothing to do\n\n")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_pseudo_terminal_completes_a_command_name(tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "shell"], stdin=slave, stdout=slave,
                            stderr=slave, env=shell_env(tmp_path), cwd=ROOT, close_fds=True)
    os.close(slave)
    seen = b""

    def read_until(token: bytes, count: int = 1, timeout: float = 10.0) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen.count(token) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        return seen.count(token) >= count

    try:
        assert read_until(b"msteams> "), seen
        os.write(master, b"chat-cr\t")
        assert read_until(b"chat-create "), seen  # TAB completed the command name
        os.write(master, b"mem\t")
        assert read_until(b"member="), seen  # and the argument name
        os.write(master, b"\n")  # an empty member list: an error, and the shell goes on
        assert read_until(b"argument 'member'"), seen
        assert read_until(b"msteams> ", count=2), seen  # a new prompt after the error
        os.write(master, b"exit\n")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        os.close(master)
    assert b"Traceback" not in seen
    history = tmp_path / "data" / "msteams-soar" / "shell_history"
    assert "chat-create member=" in history.read_text()
    assert oct(history.stat().st_mode & 0o777) == "0o600"


def pipe_bytes(tmp_path, cfg, data: bytes):
    return subprocess.run([sys.executable, "-m", "integration.frontends.cli", "shell"], input=data, capture_output=True,
                          env=shell_env(tmp_path, cfg), timeout=60, cwd=ROOT)


def test_a_bad_line_fails_alone_and_the_batch_goes_on(tmp_path, cfg_file):
    """Issue 9: lines found by fuzzing that used to stop the batch with an internal error."""
    huge = "a" * 600_000
    lines = [
        b"!",  # 1
        b"!!",  # 2
        b"! ",  # 3
        b'!"',  # 4
        b"!user-get user=\xff\xfe",  # 5: not UTF-8
        '!user-get user="\x1b[31mred\x00"'.encode(),  # 6: an escape sequence and a NUL
        f"!chat-create member=a@x chat_type={huge}".encode(),  # 7: a 600 KB value
        b"help \x1b[2J",  # 8
        b'!channel-list team="Security Operations"',  # 9: a good line still runs
    ]
    r = pipe_bytes(tmp_path, cfg_file, b"\n".join(lines) + b"\n")
    err = r.stderr.decode("utf-8")
    assert "| Incident Response |" in r.stdout.decode("utf-8"), err[:2000]
    assert r.returncode == 2, err[:2000]  # the last failure: line 8, an input mistake
    assert "Traceback" not in err and "internal error" not in err
    for number in range(1, 9):
        assert f"line {number}: error: " in err, (number, err[:2000])
    assert "line 5: error: the line is not valid UTF-8 (byte 0xff at position 15)" in err
    assert "line 6: error: user '\\x1b[31mred\\x00' not found" in err
    assert "line 7: error: argument 'chat_type': expected one of group, oneOnOne, got 'aaaa" in err
    assert "…' (600000 characters)" in err
    assert "line 8: error: unknown command '\\x1b[2J'" in err
    assert "\x1b" not in err and "\x00" not in err
    assert len(err) < 3000  # the 600 KB value is not echoed


def test_a_bug_in_one_line_is_contained_to_that_line(tmp_path, monkeypatch):
    import io

    from integration import dispatch
    from integration.frontends.shell import Shell

    def broken(name, args, runtime, flow=None):
        if name == "boom":
            raise KeyError("\x1b]0;pwned\x07")
        return types.SimpleNamespace(render=lambda output: f"ran {name}")

    monkeypatch.setattr(dispatch, "execute", broken)
    out, err = [], []
    rt = types.SimpleNamespace(registry=registry.default_registry())
    sh = Shell(rt, out=out.append, err=err.append)
    code = sh.batch(io.BytesIO(b"boom x=1\nchannel-list\n"))
    assert code == 1 and out == ["ran channel-list"]
    assert err[0].startswith("line 1: internal error: KeyError") and "\x1b" not in err[0] and "\x07" not in err[0]


def test_user_get_with_invalid_utf8_in_argv_is_an_input_error(tmp_path):
    """Real argv bytes: Python decodes them with surrogateescape; the CLI must say which
    argument is bad (exit 2), not fail later with a UnicodeEncodeError."""
    r = subprocess.run([sys.executable, "-c", "import sys, integration.frontends.cli as c; sys.exit(c.main())",
                        "user-get", "--user", os.fsencode("x\udcff")], capture_output=True,
                       env=shell_env(tmp_path), timeout=30, cwd=ROOT)
    err = r.stderr.decode("utf-8")
    assert r.returncode == 2, err
    assert err.startswith("error: argument 3 is not valid UTF-8 (byte 0xff at position 1)"), err
    assert "internal error" not in err and "Traceback" not in err
