"""The context store: one SQLite file (WAL mode, mode 0600) holding cached directory data
(users, teams, channels, members, chats) with TTLs, MSAL's serialized token caches, and
references to messages the integration sent (so they can be edited later). Several
processes may share it: every write is its own short transaction.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError

DEFAULT_TTL = 24 * 3600.0
DIRECTORY_KINDS = ("user", "team", "channel", "chat", "chat_topic", "member")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    updated REAL NOT NULL, expires REAL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS tokens (name TEXT PRIMARY KEY, blob TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS message_refs (ref TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, target TEXT NOT NULL DEFAULT '',
    message_id TEXT, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    lease_until REAL, created REAL NOT NULL, updated REAL NOT NULL
);
"""


class Store:
    def __init__(self, path: str | Path, *, clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self._local = threading.local()
        self._create()

    # ---- connection ----
    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it is 0600 from its first byte; SQLite gives the
            # -wal and -shm files the database file's permissions.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            raise ConfigError(f"context store {str(self.path)!r}: {exc.strerror}",
                              hint="set store_path in the config to a writable file") from None
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.DatabaseError as exc:
                raise ConfigError(f"context store {str(self.path)!r} is not usable: {exc}",
                                  hint="run `msteams cache-reset` or remove the file") from None
            self._local.conn = conn
        return _Tx(conn)  # type: ignore[return-value]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- directory cache ----
    @staticmethod
    def norm(key: str) -> str:
        return key.strip().casefold()

    def put(self, kind: str, key: str, value: Any, ttl: float | None = DEFAULT_TTL) -> None:
        self.put_many(kind, [(key, value)], ttl)

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]], ttl: float | None = DEFAULT_TTL) -> None:
        now = self._clock()
        rows = [(kind, self.norm(k), json.dumps(v), now, now + ttl if ttl else None) for k, v in items]
        with self._conn() as c:
            c.executemany("INSERT OR REPLACE INTO cache(kind,key,value,updated,expires) VALUES (?,?,?,?,?)", rows)

    def get(self, kind: str, key: str) -> Any | None:
        with self._conn() as c:
            row = c.execute("SELECT value, expires FROM cache WHERE kind=? AND key=?", (kind, self.norm(key))).fetchone()
        if row is None or (row[1] is not None and row[1] < self._clock()):
            return None
        return json.loads(row[0])

    def delete(self, kind: str, key: str) -> None:
        with self._conn() as c:
            c.execute("DELETE FROM cache WHERE kind=? AND key=?", (kind, self.norm(key)))

    def entries(self, kind: str) -> list[dict]:
        now = self._clock()
        with self._conn() as c:
            rows = c.execute("SELECT key, value, updated, expires FROM cache WHERE kind=? ORDER BY key", (kind,)).fetchall()
        return [{"key": k, "value": json.loads(v), "age_seconds": round(now - u, 1),
                 "expired": e is not None and e < now} for k, v, u, e in rows]

    def counts(self) -> dict[str, int]:
        with self._conn() as c:
            rows = c.execute("SELECT kind, COUNT(*) FROM cache GROUP BY kind").fetchall()
            tokens = c.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
            refs = c.execute("SELECT COUNT(*) FROM message_refs").fetchone()[0]
        out = {k: 0 for k in DIRECTORY_KINDS}
        out.update(dict(rows))
        out["token_caches"] = tokens
        out["message_refs"] = refs
        return out

    def clear(self, *, include_tokens: bool = False) -> dict[str, int]:
        """cache-reset: forget directory data (and tokens when asked). Returns what was removed."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            removed = dict(c.execute("SELECT kind, COUNT(*) FROM cache GROUP BY kind").fetchall())
            c.execute("DELETE FROM cache")
            if include_tokens:
                removed["token_caches"] = c.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]
                c.execute("DELETE FROM tokens")
            c.execute("COMMIT")
        return removed

    # ---- token caches (MSAL serialized) ----
    def load_tokens(self, name: str) -> str | None:
        with self._conn() as c:
            row = c.execute("SELECT blob FROM tokens WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def save_tokens(self, name: str, blob: str) -> None:
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO tokens(name, blob, updated) VALUES (?,?,?)", (name, blob, self._clock()))

    def clear_tokens(self, name: str | None = None) -> int:
        with self._conn() as c:
            if name:
                return c.execute("DELETE FROM tokens WHERE name=?", (name,)).rowcount
            return c.execute("DELETE FROM tokens").rowcount

    # ---- sent-message references ----
    def save_message_ref(self, ref: str, value: dict) -> None:
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO message_refs(ref, value, created) VALUES (?,?,?)",
                      (ref, json.dumps(value), self._clock()))

    def get_message_ref(self, ref: str) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT value FROM message_refs WHERE ref=?", (ref,)).fetchone()
        return json.loads(row[0]) if row else None

    # ---- outbox (delivery key -> state; see outbox.py) ----
    _OUTBOX_COLS = ("key", "state", "target", "message_id", "reason", "attempts", "lease_until", "created", "updated")

    def _outbox_row(self, c, key: str) -> dict | None:
        row = c.execute(f"SELECT {','.join(self._OUTBOX_COLS)} FROM outbox WHERE key=?", (key,)).fetchone()
        return dict(zip(self._OUTBOX_COLS, row)) if row else None

    def outbox_claim(self, key: str, *, target: str = "", lease: float) -> dict:
        """Take the lease on a delivery key, atomically across processes. ``prior`` is what the
        key was: None (new), 'sent', 'pending' (someone holds it: not taken), 'stale' (a holder
        died), 'failed' or 'unknown'."""
        now = self._clock()
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            row = self._outbox_row(c, key)
            if row is None:
                c.execute("INSERT INTO outbox(key,state,target,lease_until,created,updated) VALUES (?,?,?,?,?,?)",
                          (key, "pending", target, now + lease, now, now))
                prior, row = None, {"key": key, "state": "pending", "target": target, "attempts": 0}
            elif row["state"] == "sent":
                prior = "sent"
            elif row["state"] == "pending" and (row["lease_until"] or 0) > now:
                prior = "pending"
            else:
                prior = "stale" if row["state"] == "pending" else row["state"]
                c.execute("UPDATE outbox SET state='pending', lease_until=?, updated=? WHERE key=?",
                          (now + lease, now, key))
            c.execute("COMMIT")
        return {"prior": prior, "row": row}

    def outbox_set(self, key: str, state: str, *, message_id: str | None = None, reason: str | None = None,
                   attempt: bool = False, lease: float | None = None) -> None:
        now = self._clock()
        with self._conn() as c:
            c.execute("UPDATE outbox SET state=?, message_id=COALESCE(?, message_id), reason=?, "
                      "attempts=attempts+?, lease_until=?, updated=? WHERE key=?",
                      (state, message_id, reason, 1 if attempt else 0, now + lease if lease else None, now, key))

    def outbox_get(self, key: str) -> dict | None:
        with self._conn() as c:
            return self._outbox_row(c, key)

    def outbox_list(self, state: str | None = None, limit: int = 1000) -> list[dict]:
        cols = ",".join(self._OUTBOX_COLS)
        with self._conn() as c:
            rows = (c.execute(f"SELECT {cols} FROM outbox WHERE state=? ORDER BY updated LIMIT ?", (state, limit))
                    if state else c.execute(f"SELECT {cols} FROM outbox ORDER BY updated LIMIT ?", (limit,))).fetchall()
        return [dict(zip(self._OUTBOX_COLS, r)) for r in rows]

    def outbox_delete(self, key: str) -> None:
        with self._conn() as c:
            c.execute("DELETE FROM outbox WHERE key=?", (key,))


class _Tx:
    """`with store._conn() as c:` yields the connection; errors become ConfigError with the path."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and issubclass(exc_type, sqlite3.Error):
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise ConfigError(f"context store error: {exc}") from None
        return False
