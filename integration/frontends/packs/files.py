"""What every pack generator shares: writing its files under the output directory, and the
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
