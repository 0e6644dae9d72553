"""What a send could not record because the store failed after the message was delivered:
the delivery's sent mark and its message reference, kept in a local file (one JSON line each,
mode 0600, one file per store) and written to the store by the next run that reaches it.

Without it, a store that goes away mid fan-out (Redis stopped, a full disk) turns messages that
did arrive into errors, and the next run, finding no sent mark, would send them again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("msteams.delivery")
_lock = threading.Lock()
_replayed: set[str] = set()  # stores this process has reconciled already


def spill_path(store) -> Path:
    """This store's spill file: under the user's data directory, named by the store's identity
    (its file, or its Redis URL and namespace), so an entry is replayed into its own store."""
    from integration.engine.config import default_data_dir

    digest = hashlib.sha256(str(store.path).encode()).hexdigest()[:16]
    return default_data_dir() / "unrecorded" / f"{digest}.jsonl"


def keep(store, entry: dict) -> Path | None:
    """Append one unrecorded fact (``kind``: "sent" with key, message_id, target; or
    "message_ref" with ref, value). None when even the local file cannot be written."""
    path = spill_path(store)
    line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
    try:
        with _lock:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        _replayed.discard(str(store.path))  # something new to replay next time
        return path
    except OSError as exc:
        log.error("could not keep an unrecorded delivery in %s: %s", path, exc.strerror)
        return None


def replay(store) -> int:
    """Write what earlier runs could not record into ``store`` (once per process and store);
    how many entries were recorded. Entries that still fail stay in the file."""
    ident = str(store.path)
    if ident in _replayed:
        return 0
    path = spill_path(store)
    with _lock:
        if not path.exists():
            _replayed.add(ident)
            return 0
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return 0
        left, done = [], 0
        for line in lines:
            try:
                entry = json.loads(line)
                _record(store, entry)
                done += 1
            except ValueError:
                log.warning("ignoring an unreadable line of %s", path)
            except Exception:  # noqa: BLE001 - the store is still failing: keep it for the next run
                left.append(line)
        if left:
            tmp = path.with_suffix(".tmp")
            tmp.write_text("\n".join(left) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
            _replayed.add(ident)
    if done:
        log.info("recorded %d delivery fact(s) an earlier run could not write to the store", done)
    return done


def _record(store, entry: dict) -> None:
    if entry.get("kind") == "sent":
        key = entry["key"]
        row = store.outbox_get(key)
        if row is None:  # the claim itself is gone (a store that lost its data): make the row again
            store.outbox_claim(key, target=entry.get("target") or "", lease=1.0)
        if (row or {}).get("state") != "sent":
            store.outbox_set(key, "sent", message_id=entry.get("message_id"),
                             reason="recorded after the store came back")
    elif entry.get("kind") == "message_ref":
        store.save_message_ref(entry["ref"], entry["value"])
