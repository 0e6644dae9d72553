"""What every pack generator shares: a command's description with its rules between arguments,
which commands change something (sent with an
Idempotency-Key, so a platform's retry never sends twice), the code a generated module uses to
tell our problem+json errors, the code that names the instance's tenant profile
(``X-Msteams-Tenant``, from its ``tenant`` setting), writing the files under the output directory, and the
`msteams pack PLATFORM --out DIR` command around it (an unwritable directory is a FileError
naming it, exit 2, never a traceback)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def write_files(out_dir: str | Path, files: dict[str, str | bytes]) -> list[Path]:
    """Each ``relative path -> text or bytes`` under ``out_dir``; the paths written."""
    out = Path(out_dir)
    written = []
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def pack_command(argv: list[str], out, *, platform: str, what: str, root: str,
                 write: Callable[[str], list[Path]]) -> int:
    """`msteams pack PLATFORM --out DIR`: ``write(DIR)`` the pack whose files go under DIR/root."""
    p = argparse.ArgumentParser(prog=f"msteams pack {platform}",
                                description=f"Write {what} (DIR/{root}/), generated from commands.yml.")
    p.add_argument("--out", required=True, metavar="DIR", help=f"the directory to write {root}/ under")
    ns = p.parse_args(argv)
    try:
        files = write(ns.out)
    except OSError as exc:
        from integration.engine.errors import FileError

        raise FileError(ns.out, f"cannot write: {exc.strerror}") from None
    out(f"wrote {len(files)} files under {Path(ns.out) / root}")
    return 0


def described(spec) -> str:
    """The command's description, and the rules between its arguments (commands.yml's
    arguments.allOf): a platform's form has no place for them, its command's help does."""
    from integration.engine.arguments import rules

    said = rules(spec)
    return spec.description + (" Rules: " + "; ".join(said) + "." if said else "")


def changes_something(spec) -> bool:
    """A command that changes something (sends, creates): sent with an Idempotency-Key."""
    if spec.local:
        return False
    calls = [spec.request["method"]] if spec.request else [c.split(" ", 1)[0] for c in spec.calls]
    return not calls or not all(c.upper() == "GET" for c in calls)


# Generated code (Python the platform runs, with nothing of ours installed): our error's message
# and hint from a problem+json answer. Pasted into each pack's module at __PROBLEM_MESSAGE__.
PROBLEM_MESSAGE_PY = '''def problem_message(response):
    """Our error's message and hint from a problem+json answer (anything else: its status)."""
    try:
        body = response.json()
    except ValueError:
        return "HTTP {}: {}".format(response.status_code, (response.text or "")[:300])
    if not isinstance(body, dict):
        return "HTTP {}".format(response.status_code)
    message = body.get("detail") or body.get("title") or "HTTP {}".format(response.status_code)
    if body.get("hint"):
        message = message.rstrip() + ("" if message.rstrip().endswith((".", "!", "?")) else ".")
        message += " Hint: {}".format(body["hint"])
    return "{} ({}, HTTP {})".format(message, body.get("code") or "error", response.status_code)'''


# Generated code: the header naming the instance's tenant profile (its `tenant` setting), for a
# `msteams serve` with several tenants (docs/tenants.md); none when the setting is empty. A value
# that is no profile name is refused before any request. Pasted at __TENANT_HEADERS__ (the
# module imports `re`), with the pattern of the profile names the service takes.
TENANT_HEADERS_PY = '''TENANT_HEADER = "X-Msteams-Tenant"
TENANT_NAME = re.compile(r"__TENANT_PATTERN__")  # a tenant profile's name, as msteams serve takes it


def tenant_headers(tenant):
    """The X-Msteams-Tenant header naming the instance's tenant profile (none when the setting is
    empty: a msteams serve with one tenant). A value that is no profile name raises ValueError."""
    name = str(tenant if tenant is not None else "").strip()
    if not name:
        return {}
    if not TENANT_NAME.fullmatch(name):
        raise ValueError("the tenant setting {!r} is not a tenant profile name (1 to 32 lowercase letters, digits, "
                         "'_' or '-', starting with a letter or digit)".format(name))
    return {TENANT_HEADER: name}'''


def tenant_headers_py() -> str:
    """TENANT_HEADERS_PY with the pattern of a tenant profile's name (the config's own)."""
    from integration.engine.config import TENANT_NAME

    return TENANT_HEADERS_PY.replace("__TENANT_PATTERN__", TENANT_NAME.pattern)
