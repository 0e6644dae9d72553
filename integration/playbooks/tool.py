"""`msteams playbook validate FILE...` and `msteams playbook run FILE --input k=v ... [--dry-run]`:
the command-line face of the loader and the runner. Progress goes to stderr, the final
context (or the dry-run plan) to stdout; `--output json` makes stdout one JSON document.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from typing import Callable

from integration.engine.errors import FileError, InputError, IntegrationError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # the playbook schema's pattern for input names
USAGE = ("usage: msteams playbook {validate FILE..., run FILE|NAME [--input NAME=VALUE ...] [--run-key KEY] "
         "[--dry-run] [--output json], runs [--status S], resume RUN_ID, worker [--once] [--interval S], list}")


def _inputs(pairs: list[str]) -> dict:
    """--input k=v, repeated; a name given twice collects a list (for array inputs)."""
    from integration.engine.untrusted import decode, quote

    values: dict = {}
    for number, item in enumerate(pairs, 1):
        # cli.main checks argv already; this keeps direct callers (tests, the API) as strict.
        item = decode(item, f"--input {number}")
        if "=" not in item:
            raise InputError(f"--input {number} expects NAME=VALUE, got {quote(item)}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise InputError(f"--input {number} has no name before '=' (got {quote(item)})")
        if not _NAME.match(k):  # the playbook schema allows no other input name
            raise InputError(f"--input {number}: {quote(k, 60)} is not an input name "
                             "(letters, digits and _, not starting with a digit)")
        if k in values:
            values[k] = (values[k] if isinstance(values[k], list) else [values[k]]) + [v]
        else:
            values[k] = v
    return values


def _summary(result) -> str:
    from integration.engine.results import markdown_table

    lines = [f"### Playbook {result.name}: {result.status}"]
    rows = [{"step": s["id"], "command": s["command"], "status": s["status"],
             "seconds": s.get("duration"), "error": s.get("error") or s.get("reason") or ""} for s in result.steps]
    lines += ["", markdown_table(rows, ["step", "command", "status", "seconds", "error"])]
    if result.outputs:
        lines += ["", markdown_table([{"output": k, "value": v} for k, v in result.outputs.items()],
                                     ["output", "value"], "Outputs")]
    lines += ["", "### Context", "", json.dumps(result.context, indent=2, ensure_ascii=False, default=str)]
    return "\n".join(lines)


class ValidationFailed(InputError):
    """Playbooks with problems; with --output json the problems travel in the one JSON error
    (`problems`: path, line, message each) instead of as lines of text before it."""

    def __init__(self, message: str, problems: list[dict]):
        super().__init__(message)
        self.problems = problems

    def details(self) -> dict:
        return {"problems": self.problems}


def validate_files(paths: list[str], out: Callable[[str], None], err: Callable[[str], None],
                   as_json: bool = False) -> int:
    from integration.engine.redact import redact
    from integration.engine.untrusted import printable
    from .loader import load

    bad = 0
    problems: list[dict] = []
    valid: list[dict] = []
    for path in paths:
        try:
            pb = load(path)
        except FileError as exc:
            bad += 1
            for problem in getattr(exc, "problems", None) or [exc]:
                if as_json:
                    problems.append({"path": getattr(problem, "path", path), "line": getattr(problem, "line", None),
                                     "message": printable(str(problem))})
                    continue
                # FILE:LINE: message, one per line (editors jump to them); the messages quote
                # the file's own text back, so they are escaped and cut here.
                err(redact(printable(str(problem))))
            continue
        if as_json:
            valid.append({"path": path, "name": pb.name, "steps": len(pb.steps),
                          "inputs": [{"name": k, "required": bool(d.get("required"))} for k, d in pb.inputs.items()]})
            continue
        inputs = ", ".join(f"{k}{'*' if d.get('required') else ''}" for k, d in pb.inputs.items()) or "none"
        out(f"{printable(path)}: ok ({len(pb.steps)} step{'s' if len(pb.steps) != 1 else ''}; inputs: {inputs})")
    if as_json:  # the good ones on stdout; the problems travel in the error on stderr
        import json

        out(json.dumps({"valid": valid}, indent=2, ensure_ascii=False))
    if bad:
        raise ValidationFailed(f"{bad} of {len(paths)} playbook{'s' if len(paths) > 1 else ''} "
                               f"{'has' if bad == 1 else 'have'} problems", problems)
    return 0


def main(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None = None,
         output: str | None = None) -> int:
    action = argv[0] if argv else None
    if action not in ("validate", "run", "runs", "resume", "worker", "list"):
        raise InputError(USAGE)
    if action == "list":
        from .loader import shipped

        argparse.ArgumentParser(prog="msteams playbook list",
                                description="The shipped playbooks, by name (run one by its name).").parse_args(argv[1:])

        if output == "json":
            import json

            out(json.dumps([{"name": name, "path": str(path)} for name, path in shipped().items()], indent=2))
            return 0
        for name, path in shipped().items():
            out(f"{name}  ({path})")
        return 0
    if action == "worker":
        return _worker(argv[1:], out=out, err=err, config=config)
    if action in ("runs", "resume"):
        return _runs(action, argv[1:], out=out, err=err, config=config, output=output)
    if action == "validate":
        p = argparse.ArgumentParser(prog="msteams playbook validate", description="Check playbooks without running them.")
        p.add_argument("files", nargs="+", metavar="FILE")
        ns = p.parse_args(argv[1:])
        return validate_files(ns.files, out, err, as_json=output == "json")

    p = argparse.ArgumentParser(prog="msteams playbook run", description="Run a playbook (or plan it with --dry-run).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE",
                   help="an input value (repeat the option; a name given twice makes a list)")
    p.add_argument("--dry-run", action="store_true", help="print each step's arguments and HTTP calls; send nothing")
    p.add_argument("--run-key", metavar="KEY", help="a key of yours for this run: running again with the same key "
                                                    "resumes that run instead of starting a new one")
    ns = p.parse_args(argv[1:])
    as_json = output == "json"
    inputs = _inputs(ns.input)

    from .runner import run_playbook

    if ns.dry_run:
        result = run_playbook(ns.file, inputs, None, dry_run=True, out=err if as_json else out)
        if as_json:
            out(result.to_json())
        if not result.ok:
            raise result.error
        return 0

    from ..dispatch import Runtime

    runtime = Runtime(config_path=config, provider=True)  # a run may name its tenants (tenant:)
    runtime.echo = err  # device-code prompts must not mix with the JSON on stdout
    try:
        result = run_playbook(ns.file, inputs, runtime, out=err, run_key=ns.run_key)
    finally:
        runtime.close()
    return _finish(result, out, as_json)


def _finish(result, out, as_json: bool) -> int:
    if result.status == "waiting" and not as_json:
        out(f"run {result.run_id} waiting for question {result.waiting_for}")
    out(result.to_json() if as_json else _summary(result))
    if not result.ok:
        if result.run_id and isinstance(result.error, IntegrationError):
            then = f"msteams playbook resume {result.run_id}"
            result.error.hint = f"{result.error.hint}; then: {then}" if result.error.hint else f"fix the cause, then: {then}"
        raise result.error
    return 0


def _runs(action: str, argv: list[str], *, out, err, config: str | None, output: str | None) -> int:
    """`playbook runs` lists the persisted runs; `playbook resume RUN_ID` continues one."""
    from ..dispatch import Runtime

    p = argparse.ArgumentParser(prog=f"msteams playbook {action}")
    if action == "runs":
        p.add_argument("--status", choices=("running", "waiting", "failed", "ok"), help="only runs with this status")
        p.add_argument("--limit", type=int, default=50)
    else:
        p.add_argument("run_id", metavar="RUN_ID")
    ns = p.parse_args(argv)
    runtime = Runtime(config_path=config, provider=True)  # a run may name its tenants (tenant:)
    runtime.echo = err
    try:
        if action == "resume":
            from .runner import resume_playbook

            return _finish(resume_playbook(ns.run_id, runtime, out=err), out, output == "json")
        rows = runtime.store.run_list(ns.status, ns.limit)
    finally:
        runtime.close()
    from integration.engine.results import markdown_table

    for r in rows:
        for k in ("created", "updated"):
            r[k] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r[k]))
    if output == "json":
        out(json.dumps(rows, indent=2))
    else:
        out(markdown_table(rows, ["id", "name", "status", "waiting_for", "run_key", "created", "updated", "owner"],
                           "Playbook runs")
            if rows else "No playbook runs in the context store.")
    return 0


def _worker(argv: list[str], *, out, err, config: str | None, sleep=None) -> int:
    """`playbook worker`: resume the runs waiting on questions that were answered or expired
    (expiry applied here too), every --interval seconds; --once: one pass (tests, cron)."""
    from integration.teams import questions
    from integration.engine.argtypes import positive_number
    from ..dispatch import Runtime
    from .runner import resume_waiting_on

    p = argparse.ArgumentParser(prog="msteams playbook worker")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--interval", type=positive_number, default=5.0, help="seconds between passes (default 5)")
    ns = p.parse_args(argv)
    runtime = Runtime(config_path=config, provider=True)  # a run may name its tenants (tenant:)
    runtime.echo = err
    sleep = sleep or runtime.sleep
    try:
        while True:
            questions.expire(runtime)
            for result in resume_waiting_on(runtime, None, out=err):
                out(f"run {result.run_id} ({result.name}): {result.status}"
                    + (f", waiting for question {result.waiting_for}" if result.waiting_for else ""))
            if ns.once:
                return 0
            sleep(max(0.1, ns.interval))
    except KeyboardInterrupt:
        return 0
    finally:
        runtime.close()
