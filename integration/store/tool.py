"""``msteams store``: the key that encrypts token caches in a shared (Redis) store, its rotation,
and the retention of the history either store keeps.

    msteams store keygen --out FILE            a new key file (0600); refuses to overwrite one
    msteams store keygen --out FILE --rotate   a new key put first, the old ones kept after it
    msteams store rotate-key                   re-encrypt everything under the first key
    msteams store status                       where the store is and what it holds
    msteams store prune --older-than DAYS      delete finished history older than that [--dry-run]

A key is never printed: it goes to a file only this account may read, named by store_key_file.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

USAGE = "usage: msteams store {keygen --out FILE [--rotate] | rotate-key | status | prune --older-than DAYS [--dry-run]}"


def main(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None = None,
         output: str | None = None) -> int:
    from integration.engine.errors import InputError

    action = argv[0] if argv else None
    if action == "keygen":
        return keygen(argv[1:], out=out)
    if action == "rotate-key":
        return rotate_key(argv[1:], out=out, config=config)
    if action == "status":
        return status(argv[1:], out=out, config=config, as_json=output == "json")
    if action == "prune":
        return prune(argv[1:], out=out, config=config, as_json=output == "json")
    raise InputError(USAGE)


def keygen(argv: list[str], *, out) -> int:
    from cryptography.fernet import Fernet

    from integration.engine.untrusted import quote

    p = argparse.ArgumentParser(prog="msteams store keygen",
                                description="Write a new key for store_key_file (Fernet; 0600). With --rotate, "
                                            "put it first in an existing key file and keep the old keys after it.")
    p.add_argument("--out", required=True, metavar="FILE", help="the key file to write")
    p.add_argument("--rotate", action="store_true", help="add the new key in front of the keys already in FILE")
    ns = p.parse_args(argv)
    path = os.path.expanduser(ns.out)
    old: list[str] = []
    if os.path.exists(path):
        if not ns.rotate:
            raise _file_error(path, "exists: a key file is never overwritten (its key decrypts the store's tokens)",
                              "pass --rotate to put a new key in front of it, or choose another file")
        with open(path, encoding="utf-8") as f:
            old = [line.strip() for line in f if line.strip()]
    elif ns.rotate:
        raise _file_error(path, "does not exist: there is no key to rotate", "leave out --rotate to make a first key")
    text = "\n".join([Fernet.generate_key().decode("ascii")] + old) + "\n"
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)  # whole or not at all: a half-written key file would lock the store out
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise _file_error(path, f"cannot write: {exc.strerror or exc}", None) from None
    if old:
        out(f"New key added in front of {len(old)} older key(s) in {quote(path)} (mode 0600). Next: "
            "`msteams store rotate-key` on one engine, then delete the older lines.")
    else:
        out(f"Key written to {quote(path)} (mode 0600). Name it in the config: store_key_file: {path}")
    return 0


def _file_error(path: str, message: str, hint: str | None):
    from integration.engine.errors import FileError

    exc = FileError(path, message)
    exc.hint = hint
    return exc


def _open(config: str | None):
    from integration.engine.config import load
    from integration.engine.errors import ConfigError
    from .open import open_store

    cfg = load(config)
    if not cfg.store_url:
        raise ConfigError("store_url is not set: the SQLite store is a 0600 file and keeps no encrypted data",
                          hint="this command is for a shared store (store_url: redis://...)")
    return open_store(cfg)


def rotate_key(argv: list[str], *, out, config: str | None) -> int:
    argparse.ArgumentParser(prog="msteams store rotate-key",
                            description="Re-encrypt the shared store's token caches and secrets under the first "
                                        "key of store_key_file.").parse_args(argv)
    store = _open(config)
    try:
        counts = store.rotate_key()
    finally:
        store.close()
    out(f"Re-encrypted {counts['tokens']} token cache(s) and {counts['secrets']} secret(s) under the first key. "
        "The older keys in store_key_file may now be removed.")
    return 0


def status(argv: list[str], *, out, config: str | None, as_json: bool = False) -> int:
    argparse.ArgumentParser(prog="msteams store status", description="Where the store is and what it holds.") \
        .parse_args(argv)
    from integration.engine.config import load
    from .open import open_store

    store = open_store(load(config))
    try:
        counts = store.counts()
        if as_json:
            import json

            out(json.dumps({"store": str(store.path), "counts": counts}, indent=2))
        else:
            out(f"store: {store.path}")
            for kind, n in counts.items():
                out(f"  {kind}: {n}")
    finally:
        store.close()
    return 0


def prune(argv: list[str], *, out, config: str | None, as_json: bool = False) -> int:
    from integration.engine.config import load
    from .open import open_store

    p = argparse.ArgumentParser(
        prog="msteams store prune",
        description="Delete the finished history last changed more than DAYS ago: deliveries sent or failed, "
                    "playbook runs that ended, questions answered or expired that no waiting run waits on, bot "
                    "audit entries, call events, references to sent messages (message-update can no longer "
                    "edit those by message_ref), and entries that expired more than DAYS ago (HTTP jobs, "
                    "Idempotency-Key answers, webhook deliveries, cache entries; not API keys). Pending, unknown, "
                    "open and waiting records stay at any age, and so do mirror links and journals. A delivery "
                    "key pruned can be sent again: keep more days than any playbook may be re-run or resumed after.")
    p.add_argument("--older-than", required=True, type=_days, metavar="DAYS", help="age in days (at least 1)")
    p.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    ns = p.parse_args(argv)
    store = open_store(load(config))
    try:
        counts = store.purge_history(store.now() - ns.older_than * 86400.0, dry_run=ns.dry_run)
    finally:
        store.close()
    if as_json:
        import json

        out(json.dumps({"dry_run": ns.dry_run, "older_than_days": ns.older_than, "deleted": counts}, indent=2))
        return 0
    verb = "Would delete" if ns.dry_run else "Deleted"
    out(f"{verb}, older than {ns.older_than:g} day(s): " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + ".")
    return 0


def _days(text: str) -> float:
    """--older-than: a number of days, at least one (a smaller window would prune what a retry
    or a resumed run may still need)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text[:40]!r}") from None
    if not days >= 1 or days == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 1 day, and finite: {text[:40]!r}")
    return days
