"""The examples in README.md run as written (issue 24, part 7): every `msteams ...` line inside a
```sh block (a line ending in a backslash joined with the next) is run by a shell, in order, as a
user would paste it, against the fake tenant (`MSTEAMS_CONFIG` naming its config, the delegated
account signed in with `msteams auth login` first, as the README says), and must exit 0. The
same for docs/usage.md and docs/two-way-teams.md, except the lines listed in SKIPPED with the
reason the test cannot give them what they need. The README's two setup commands at the top
(`python3 -m venv ...`) are not `msteams` lines and are not run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/, where `msteams` is installed
DOCS = ("README.md", "docs/usage.md", "docs/two-way-teams.md")

# Lines that cannot run here, each with why (the text of the line as extracted, continuation
# lines joined). Everything else in a ```sh block that starts with `msteams` runs.
SKIPPED = {
    "msteams emulator serve --write-config emu.yml &":
        "starts a fake tenant that runs until stopped: the test has its own, and its config",
    "msteams bot serve --port 0 --write-url bot.url &":
        "a long-running server: the bot's messaging endpoint",
    "msteams emulator user-says --user bob.smith@contoso.example --wait 10 '!team-list'":
        "a Teams user writing to the bot: needs the bot's endpoint (`msteams bot serve`) running",
    "msteams emulator user-says --user conor.obrien@contoso.example --team \"Security Operations\" "
    "--channel \"Incident Response\" --wait 10 '!channel-list team=\"Security Operations\"'":
        "a Teams user writing to the bot: needs the bot's endpoint (`msteams bot serve`) running",
    "msteams emulator install-bot --user bob.smith@contoso.example":
        "installing the bot sends its endpoint the install activity: needs `msteams bot serve` running",
    "msteams ask-wait --id q0123456789abcdef012 --timeout 600":
        "waits up to ten minutes for an answer pressed in Teams (needs the bot's endpoint), for a "
        "question id `ask` printed",
}


def examples(doc: str) -> list[str]:
    """The `msteams ...` command lines of the doc's ```sh blocks, continuation lines joined."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        block = re.sub(r"\\\n\s*", "", block)  # a backslash at the end of a line continues it
        lines += [ln.strip() for ln in block.splitlines() if ln.strip().startswith("msteams ")]
    return lines


def _key(line: str) -> str:
    """A line as SKIPPED keys it: a trailing shell comment (outside quotes) removed."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _env(cfg_file) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSTEAMS_") or k == "MSTEAMS_TEST_STORE"}
    env.update(MSTEAMS_CONFIG=str(cfg_file), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8")
    return env


def _run(line: str, cfg_file, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", line], cwd=cwd, env=_env(cfg_file), capture_output=True, text=True,
                          encoding="utf-8", timeout=120)


def test_the_examples_are_found():
    readme = examples("README.md")
    assert len(readme) >= 6 and all(ln.startswith("msteams ") for ln in readme)
    assert not any("venv" in ln for ln in readme)  # the setup commands at the top are not examples
    found = {_key(ln) for doc in DOCS for ln in examples(doc)}
    assert set(SKIPPED) <= found, f"SKIPPED names lines no doc has any more: {set(SKIPPED) - found}"


@pytest.mark.parametrize("doc", DOCS)
def test_each_example_runs_as_written(emu, cfg_file, tmp_path, doc):
    assert _run("msteams auth login", cfg_file, tmp_path).returncode == 0  # as the README says, once
    failed = []
    for line in examples(doc):
        if _key(line) in SKIPPED:
            continue
        r = _run(line, cfg_file, tmp_path)
        if r.returncode != 0:
            failed.append(f"{line}\n  exit {r.returncode}: {(r.stderr or r.stdout).strip()[-600:]}")
    assert failed == [], f"{doc}: examples that do not run as written:\n" + "\n".join(failed)
