"""`msteams shell`: the analyst's war-room prompt. Each line is a command in war-room form
(`!chat-create member=a@x chat_name="IR 42"`) or the plain form (`chat-create member=a@x`),
run through `execute()` with one Runtime for the session; results print as tables.

At a terminal: readline history (kept under the user's data dir, best effort) and TAB
completion of command names, aliases, argument names (`name=`) and enum values from the
registry; `help [COMMAND]`; `exit`, `quit` or EOF leave. A failing line prints the error and
the shell goes on, whatever the failure (a bug included). With stdin not a terminal, lines
(read as bytes, each checked for UTF-8 on its own) run one after another, each result printed
and each failure reported as `line N: error: ...`; the exit code is 0 only if every line
succeeded (else the last failure's code).
Blank lines and `#` comments are skipped either way.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

PROMPT = "msteams> "
BUILTINS = ("help", "exit", "quit")
HISTORY_LENGTH = 1000


class _Leave(Exception):
    """`exit` / `quit` typed: stop reading lines."""


class Shell:
    def __init__(self, runtime, out: Callable[[str], None], err: Callable[[str], None], *,
                 output: str = "table", flow: str | None = None):
        self.runtime = runtime
        self.registry = runtime.registry
        self.out, self.err = out, err
        self.output = output or "table"
        self.flow = flow

    # -- one line
    def run_line(self, line: str | bytes, number: int | None = None) -> int | None:
        """Run one line (text, or raw bytes from a pipe); its exit code, or None for a blank
        line or comment. Never raises but _Leave (exit/quit) and Ctrl-C: whatever goes wrong,
        a user mistake or a bug, is reported for this line alone (`line N: error: ...` when
        `number` is given) so the session or batch goes on."""
        from integration.engine.errors import IntegrationError, exit_code_for

        try:
            from integration.engine.untrusted import decode

            text = decode(line, "the line").strip()
            if not text or text.startswith("#"):
                return None
            words = text.lstrip("!").split()  # empty for a line of just "!" or "!!"
            if words and words[0] in ("exit", "quit"):
                raise _Leave
            if words and words[0] in ("help", "?"):
                return self.help(words[1] if len(words) > 1 else None, number)
            from integration.engine.arguments import parse_warroom
            from integration.dispatch import execute

            name, args = parse_warroom(text)
            result = execute(name, args, self.runtime, flow=self.flow)
            if self.output == "json":  # NDJSON: one object per input line, errors on stderr
                self._line_json(number, {"command": result.command, "exit_code": result.exit_code,
                                         "failed": result.failed,
                                         "result": result.raw if result.raw is not None else result.outputs})
            else:
                self.out(result.render(self.output))
            return result.exit_code  # a report that found a problem (integration-health) counts as failing
        except (_Leave, BrokenPipeError):  # leaving, or nobody reads the output any more
            raise
        except IntegrationError as exc:
            if self.output == "json":
                self._report_json(number, exc.to_dict())
            else:
                self._report(number, f"error: {exc}")
            return exit_code_for(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not end the analyst's session or the batch
            import logging

            from integration.engine.untrusted import clean

            logging.getLogger("msteams.shell").debug("internal error", exc_info=True)
            what = f"internal error: {type(exc).__name__}: {clean(str(exc), 300)}"
            if self.output == "json":
                self._report_json(number, {"code": "internal", "message": what,
                                           "hint": "this is a bug; -vv shows details", "exit_code": 1})
            else:
                self._report(number, f"{what} (this is a bug; -vv shows details)")
            return 1

    def _report(self, number: int | None, message: str) -> None:
        from integration.engine.redact import redact
        from integration.engine.untrusted import escape_controls

        # Values in messages go through quote(); escaping the whole line is the last guard.
        self.err(redact(escape_controls(f"line {number}: {message}" if number else message)))

    def _report_json(self, number: int | None, error: dict) -> None:
        """--output json: the CLI's JSON error (IntegrationError.to_dict, already escaped and
        redacted), one line each, with the number of the input line when reading a batch."""
        import json

        from integration.engine.redact import redact
        from integration.engine.untrusted import escape_controls

        error = {k: redact(escape_controls(v)) if isinstance(v, str) else v for k, v in error.items()}
        if number:
            error["input_line"] = number
        self.err(json.dumps({"error": error}, ensure_ascii=False))

    def _line_json(self, number: int | None, fields: dict) -> None:
        import json

        self.out(json.dumps({"input_line": number, **fields}, ensure_ascii=False, default=str))

    def help(self, name: str | None, number: int | None = None) -> int:
        from integration.engine.errors import InputError

        if self.output == "json":  # the help text as one JSON line, like every other answer
            lines: list[str] = []
            shown, self.output, out = self.output, "table", self.out
            self.out = lines.append
            try:
                code = self.help(name)
            finally:
                self.output, self.out = shown, out
            self._line_json(number, {"help": "\n".join(lines)})
            return code

        if not name:
            by_cat: dict[str, list[str]] = {}
            for spec in self.registry:
                by_cat.setdefault(spec.category, []).append(spec.name)
            lines = ["Commands (`help COMMAND` for arguments; TAB completes names and arguments):"]
            lines += [f"  {cat}: {', '.join(names)}" for cat, names in sorted(by_cat.items())]
            lines.append("Type `!command arg=value` or `command arg=value`; quote values with spaces. "
                         "`exit` or Ctrl-D leaves.")
            self.out("\n".join(lines))
            return 0
        spec = self.registry.get(name.lstrip("!"))
        if spec is None:
            import difflib

            close = difflib.get_close_matches(name, self.registry.all_names(), n=3)
            from integration.engine.untrusted import quote

            raise InputError(f"unknown command {quote(name)}", hint=f"did you mean: {', '.join(close)}?" if close
                             else "`help` lists the commands")
        from .docs import command_help

        self.out(command_help(spec))
        return 0

    # -- completion
    def candidates(self, buffer: str, begidx: int, text: str) -> list[str]:
        """What TAB offers for the word `text` starting at `begidx` in the line `buffer`."""
        before = buffer[:begidx]
        if not before.strip():
            bang = text.startswith("!")
            stem = text[1:] if bang else text
            names = self.registry.all_names() + ([] if bang else list(BUILTINS))
            return [("!" if bang else "") + n + " " for n in names if n.startswith(stem)]
        first = before.split()[0].lstrip("!")
        if first in ("help", "?"):
            return [n + " " for n in self.registry.all_names() if n.startswith(text)]
        spec = self.registry.get(first)
        if spec is None:
            return []
        from integration.engine.arguments import canonical_name

        props = spec.arguments.get("properties", {})
        if "=" in text:  # a value: offer the argument's enum (or true/false)
            key, partial = text.split("=", 1)
            prop = props.get(canonical_name(spec, key) or "", {})
            values = list(prop.get("enum", ())) or (["true", "false"] if prop.get("type") == "boolean" else [])
            return [f"{key}={v} " for v in map(str, values) if v.startswith(partial)]
        used = {canonical_name(spec, tok.split("=", 1)[0]) for tok in before.split()[1:] if "=" in tok}
        names = [a for a in props if a.startswith(text) and a not in used]
        # XSOAR's names too, once a first letter is typed (an empty word offers ours only)
        names += [a for a, c in spec.argument_aliases.items() if text and a.startswith(text) and c not in used]
        return [f"{a}=" for a in names]

    def complete(self, text: str, state: int) -> str | None:
        """The readline completer: called with state 0, 1, ... until it returns None."""
        import readline

        if state == 0:
            try:
                self._matches = self.candidates(readline.get_line_buffer(), readline.get_begidx(), text)
            except Exception:  # noqa: BLE001 - a completion bug must never kill the prompt
                self._matches = []
        return self._matches[state] if state < len(self._matches) else None

    # -- loops
    def batch(self, lines: Iterable[str | bytes]) -> int:
        """Every line runs, whatever the ones before did; 0 if all succeeded, else the last
        failing line's exit code."""
        failed = 0
        for number, line in enumerate(lines, 1):
            try:
                code = self.run_line(line, number)
            except _Leave:
                break
            if code:
                failed = code
        return failed

    def interactive(self, history: Path | None) -> int:
        readline = _setup_readline(self, history)
        self.out("msteams shell: `help` lists the commands, TAB completes, `exit` or Ctrl-D leaves.")
        try:
            while True:
                try:
                    line = input(PROMPT)
                except UnicodeDecodeError as exc:  # bytes typed or pasted that are not UTF-8
                    self.err(f"error: the line is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} "
                             f"at position {exc.start})")
                    continue
                except EOFError:
                    self.out("")
                    break
                except KeyboardInterrupt:  # Ctrl-C drops the line being typed, as shells do
                    self.out("")
                    continue
                try:
                    self.run_line(line)
                except _Leave:
                    break
                except KeyboardInterrupt:
                    self.err("interrupted")
        finally:
            if readline is not None and history is not None:
                _save_history(readline, history)
        return 0


def _setup_readline(shell: Shell, history: Path | None):
    try:
        import readline
    except ImportError:  # no readline on this platform: a plain prompt still works
        return None
    readline.set_completer(shell.complete)
    # Only whitespace separates words, so '!chat-cr' and 'member=' complete as typed.
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    readline.set_history_length(HISTORY_LENGTH)
    if history is not None:
        try:
            readline.read_history_file(str(history))
        except OSError:
            pass  # first session, or unreadable: start empty
    return readline


def _save_history(readline, history: Path) -> None:
    try:
        history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        readline.write_history_file(str(history))
        os.chmod(history, 0o600)  # lines name incidents and people
    except OSError:
        pass  # best effort: a read-only home must not break leaving the shell


def default_history() -> Path:
    from integration.engine.config import default_data_dir

    return default_data_dir() / "shell_history"


def main(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None = None,
         output: str | None = None, flow: str | None = None, stdin=None) -> int:
    p = argparse.ArgumentParser(prog="msteams shell", description="An interactive war-room prompt; "
                                "or pipe lines of commands on stdin.")
    p.add_argument("--history", metavar="FILE", help=f"history file (default: {default_history()})")
    p.add_argument("--no-history", action="store_true", help="do not read or write a history file")
    ns = p.parse_args(argv)
    stdin = stdin or sys.stdin

    from integration.dispatch import Runtime

    runtime = Runtime(config_path=config)
    runtime.echo = err if output == "json" else out  # stdout holds only the JSON lines then
    shell = Shell(runtime, out, err, output=output or "table", flow=flow)
    try:
        if stdin.isatty():
            history = None if ns.no_history else Path(ns.history) if ns.history else default_history()
            return shell.interactive(history)
        # Raw bytes where there are any, so one line of invalid UTF-8 fails alone, by its number.
        return shell.batch(getattr(stdin, "buffer", stdin))
    finally:
        runtime.close()
