"""The embedded context store, `SQLiteStore`: `base.Store` over one SQLite file (WAL mode,
mode 0600) holding cached directory data (users, teams, channels, members, chats) with TTLs,
MSAL's serialized token caches, references to messages the integration sent (so they can be
edited later), and the deliveries, runs, questions, audit log, mirrors and locks of the
protocol. Several processes may share it: every write is one short transaction (a bulk write
too: all its rows or none), and `transaction()` groups writes into one that rolls back whole.

Display names live in their own kinds (``user_name``, ``team_name``, ``channel_name``) whose
value is the list of every object with that name, so a name shared by two people is answered
as ambiguous from the store instead of being left for Graph.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from integration.engine.errors import ConfigError
# The names every backend shares live in base (the store's door); imported here too, so that
# `from integration.store.sqlite import DEFAULT_TTL` (and the rest) keeps working.
from .rules import (AUDIT_COLS, CACHE_KINDS, DEFAULT_TTL, DIRECTORY_KINDS, HISTORY_KINDS, KEPT_EXPIRED, NAME_KINDS,  # noqa: F401
                   Busy, assume_alive, claim_decision, entry_keys, name_key)

# Only type checkers read these (no run-time import of typing's names for an annotation).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
    lease_until REAL, owner TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, run_key TEXT UNIQUE, playbook TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, owner TEXT, lease_until REAL, state TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bot_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, activity_id TEXT UNIQUE,
    tenant_id TEXT, sender_id TEXT, sender_name TEXT, conversation_type TEXT, conversation_id TEXT,
    place TEXT, command TEXT, text TEXT, decision TEXT NOT NULL, outcome TEXT, detail TEXT,
    duration_ms REAL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bot_audit_time ON bot_audit(time);
CREATE TABLE IF NOT EXISTS call_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, state TEXT NOT NULL,
    code INTEGER, subcode INTEGER, message TEXT, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_id, id);
CREATE TABLE IF NOT EXISTS questions (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, value TEXT NOT NULL, expires REAL,
    answer TEXT, responder_id TEXT, responder_name TEXT, reason TEXT, answered REAL,
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS mirrors (
    incident_id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    value TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mirrors_conversation ON mirrors(conversation_id, status);
CREATE TABLE IF NOT EXISTS mirror_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL, activity_id TEXT NOT NULL UNIQUE,
    time REAL NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mirror_entries_incident ON mirror_entries(incident_id, id);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL,
    pid INTEGER NOT NULL, started TEXT, taken REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS generations (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""


_GET = "SELECT value, expires FROM cache WHERE kind=? AND key=?"
# SQLiteStore.index_names: the entries under their own id (not their mail or UPN copies, skipped
# cheaply first by the '@' no id has), grouped by name. NOT INDEXED: reading the table in its own
# order is a third of the cost of fetching each row through the key index's order. The values are the compact JSON _dumps wrote, so the lists are too.
_INDEX_NAMES = """INSERT INTO cache(kind,key,value,updated,expires)
SELECT ?, name, '[' || group_concat(value, ',') || ']', ?, ? FROM (
  SELECT msteams_name(json_extract(value, '$.displayName')) AS name, value FROM cache NOT INDEXED
  WHERE kind=? AND updated>=? AND instr(key, '@')=0 AND key=msteams_name(json_extract(value, '$.id')))
WHERE name != '' GROUP BY name
ON CONFLICT(kind,key) DO UPDATE SET value=excluded.value, updated=excluded.updated, expires=excluded.expires"""
# SQLiteStore.put_entries: the values go through a temp table of the writing connection (no other
# connection sees it, and it goes with the connection); SQLite then copies each to its id and
# alias keys itself, and the table keeps them for index_names. Appended to, with no key to keep
# in order as it grows: an entry written twice is listed once, as its last write, by the query.
# ``updated`` drops what a run that never indexed left behind.
_ENTRY_STAGE = """CREATE TEMP TABLE IF NOT EXISTS entry_stage (kind TEXT NOT NULL, id TEXT NOT NULL,
name TEXT NOT NULL, value TEXT NOT NULL, updated REAL NOT NULL, alias1 TEXT, alias2 TEXT)"""
_STAGE_HEAD = "INSERT INTO temp.entry_stage(kind,id,name,value,updated,alias1,alias2) VALUES "
_COPY_STAGED = """INSERT INTO cache(kind,key,value,updated,expires)
SELECT kind, id, value, updated, ?2 FROM temp.entry_stage WHERE rowid>?1
UNION ALL SELECT kind, alias1, value, updated, ?2 FROM temp.entry_stage WHERE rowid>?1 AND alias1 IS NOT NULL
UNION ALL SELECT kind, alias2, value, updated, ?2 FROM temp.entry_stage WHERE rowid>?1 AND alias2 IS NOT NULL
ON CONFLICT(kind,key) DO UPDATE SET value=excluded.value, updated=excluded.updated, expires=excluded.expires"""
_INDEX_STAGED = """INSERT INTO cache(kind,key,value,updated,expires)
SELECT ?1, name, '[' || group_concat(value, ',') || ']', ?2, ?3 FROM temp.entry_stage
WHERE rowid IN (SELECT max(rowid) FROM temp.entry_stage WHERE kind=?4 AND updated>=?5 GROUP BY id) AND name != ''
GROUP BY name
ON CONFLICT(kind,key) DO UPDATE SET value=excluded.value, updated=excluded.updated, expires=excluded.expires"""


# SQLiteStore.counts: one statement answering one row (the cache's rows per kind as a JSON object,
# the token caches, the message references), so one sqlite3_step hands the interpreter lock
# away, not one a kind (each step releases it; in a busy server, each release is a thread switch).
_COUNTS = """SELECT (SELECT json_group_object(kind, n) FROM (SELECT kind, COUNT(*) AS n FROM cache GROUP BY kind)),
(SELECT COUNT(*) FROM tokens), (SELECT COUNT(*) FROM message_refs)"""
# Counting a table reads all of it (12 ms for a 300,000-row cache: a 100,000-user preload by id,
# mail and name), so counts() keeps what it counted until a write moves the table's generation:
# every write to the cache or to message_refs sets it, in its own transaction, to a random value
# (a rolled-back write's value is never seen again, so counts taken inside that transaction are
# never reused).
_BUMP = "INSERT INTO generations(name, n) VALUES (?, random()) ON CONFLICT(name) DO UPDATE SET n=excluded.n"
_GENERATIONS = """SELECT (SELECT n FROM generations WHERE name='cache'), (SELECT n FROM generations WHERE name='message_refs'),
(SELECT COUNT(*) FROM tokens)"""


# SQLiteStore.purge_history: what each kind of history keeps whatever its age is in the WHERE;
# its keys are base.HISTORY_KINDS, in that order (the contract suite checks purge_history's answer).
_PURGE = {
    "outbox": "FROM outbox WHERE state IN ('sent','failed') AND updated < ?",
    "runs": "FROM runs WHERE status IN ('ok','failed') AND updated < ?",
    "questions": "FROM questions WHERE status != 'open' AND updated < ? AND id NOT IN (SELECT "
                 "json_extract(state, '$.waiting.question') FROM runs WHERE status='waiting' AND "
                 "json_extract(state, '$.waiting.question') IS NOT NULL)",
    "bot_audit": "FROM bot_audit WHERE time < ?",
    # a call's events go together, once its last one is old: a call is never left half-told
    "call_events": "FROM call_events WHERE call_id IN (SELECT call_id FROM call_events GROUP BY call_id "
                   "HAVING max(time) < ?)",
    "message_refs": "FROM message_refs WHERE created < ?",
    "expired_entries": "FROM cache WHERE expires < ? AND kind NOT IN (" + ",".join(f"'{k}'" for k in KEPT_EXPIRED) + ")",
}


# An upsert, not INSERT OR REPLACE: a preload that refreshes the cache updates each row in place
# instead of deleting it and its index entry and inserting both again (~40% less work).
_PUT_HEAD = "INSERT INTO cache(kind,key,value,updated,expires) VALUES "
_PUT_TAIL = " ON CONFLICT(kind,key) DO UPDATE SET value=excluded.value, updated=excluded.updated, expires=excluded.expires"
# Rows per INSERT ... VALUES statement (fewer where SQLite allows fewer parameters).
_ROWS_PER_STATEMENT = 256
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # compact: see _INDEX_NAMES
_string = json.encoder.encode_basestring  # C; the same escaping as the encoder's with ensure_ascii=False


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, tail: str, width: int, rows: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return head + ",".join([one] * rows) + tail


def _insert_rows(conn: sqlite3.Connection, head: str, tail: str, width: int, rows: Iterable[tuple]) -> None:
    """``head`` VALUES (...),(...)``tail`` for many rows at once: one statement per chunk, not one
    per row, so a writer thread hands the interpreter lock back and forth once per chunk (per
    row, each handoff stalled the thread paging Graph beside it: a preload lost a tenth of its
    speed to them)."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(conn, "getlimit") else 999
    per = max(1, min(_ROWS_PER_STATEMENT, limit // width))
    it = iter(rows)
    while block := list(itertools.islice(it, per)):
        conn.execute(_values_sql(head, tail, width, len(block)), [x for row in block for x in row])


def _dumps(value) -> str:
    """Compact JSON. A flat mapping of strings (a user, team or channel view: most of what a
    preload writes) is joined by hand, byte for byte what the encoder writes, at a third of
    its cost: a 10,000-user preload encodes 20,000 of them."""
    if type(value) is dict:
        parts = []
        for k, v in value.items():
            if type(k) is not str or (v is not None and type(v) is not str):
                return _encode(value)
            parts.append(_string(k) + ":" + ("null" if v is None else _string(v)))
        return "{" + ",".join(parts) + "}"
    if type(value) is str:
        return _string(value)
    return _encode(value)


# Each connection's tuning (measured under `msteams serve`, whose every request commits an audit
# row: benchmarks/api.py, phase c). The WAL is checkpointed (its pages copied into the file, both
# fdatasync'ed: the p99 of the requests that land on one) every 4000 pages instead of every 1000:
# a quarter as many stalls, and a page rewritten meanwhile is copied once, not each time; p99 of
# cache-show at concurrency 8 ~14 -> ~9.5 ms, CPU unchanged. Bounded: 4000 frames still fit the
# WAL index's first hash table (4062), so a read looks pages up in one table (16000 cost ~8% more
# CPU a request); the WAL grows to ~64 MB (16 KB pages) and is cut back to that once a checkpoint
# has emptied it (journal_size_limit), should a long reader have held a checkpoint off. Durability
# is as before (WAL, synchronous=NORMAL: a commit is in the WAL, the WAL synced at checkpoints).
# Tried and left out: mmap_size (a WAL reader drops its map whenever another connection has
# committed, here every request: +80 us CPU a request), a bigger cache_size (the same: the page
# cache of a connection starts empty after another's commit; no change), temp_store=MEMORY (the
# staging table of put_entries is meant to spill to its temp file on a large directory).
# How long a statement waits for another connection's write lock (begin_now: not at all).
BUSY_TIMEOUT_MS = 30000
_TUNING = ("PRAGMA wal_autocheckpoint=4000", "PRAGMA journal_size_limit=67108864")


class SQLiteStore:
    """`base.Store` in one SQLite file at ``path`` (created 0600 if missing). Each thread
    gets its own connection (`thread_done` closes it)."""

    def __init__(self, path: str | Path, *, clock=time.time):
        self.path = Path(path)
        self._clock = clock
        self._local = threading.local()
        self._counted: tuple | None = None  # counts(): (the generations, the cache's kinds, message_refs)
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
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
                # 16 KB pages: inserts at random keys (a preload) cost about a quarter less CPU than
                # with the default 4 KB, as fewer pages split. Takes effect only on a new file.
                conn.execute("PRAGMA page_size=16384")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                for pragma in _TUNING:
                    conn.execute(pragma)
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
            self._local.staged = None

    def thread_done(self) -> None:
        """A worker thread is done with the store: its own connection is closed."""
        self.close()

    # ---- directory cache ----
    def now(self) -> float:
        """The store's clock (injectable in tests): what ``updated`` and TTLs are measured in."""
        return self._clock()

    @staticmethod
    def norm(key: str) -> str:
        return key.strip().casefold()

    def put(self, kind: str, key: str, value: Any, ttl: float | None = DEFAULT_TTL) -> None:
        self.put_many(kind, [(key, value)], ttl)

    # A file on this host: reads never wait (WAL), and begin_now never waits for a writer, so an
    # event loop may run store work itself (frontends/lane.py) rather than hop to a thread.
    inline = True

    @contextmanager
    def begin_now(self):
        """BEGIN IMMEDIATE without waiting (busy_timeout 0 for that statement alone): `Busy` when
        another connection writes. Committed on leaving; rolled back on an error, or when the
        commit fails (then raised as ConfigError)."""
        with self._conn() as c:
            if c.in_transaction:
                raise Busy("a transaction is open on this thread already")
            c.execute("PRAGMA busy_timeout=0")
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise  # not another writer: the store's error (_Tx: ConfigError)
                raise Busy(str(exc)) from None
            finally:
                c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            try:
                yield _Open(c)
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            if c.in_transaction:
                try:
                    c.execute("COMMIT")
                except sqlite3.Error:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE ... COMMIT; rolled back on any error). Writes
        inside it join it: a preload page is one commit, not one per row (the connection is in
        autocommit mode, where each statement of an executemany commits on its own)."""
        with self._conn() as c:
            if c.in_transaction:
                yield c
                return
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]], ttl: float | None = DEFAULT_TTL) -> None:
        """Write (key, value) pairs: all of them, or none when one fails."""
        with self.transaction() as c:
            # A generator, so the rows are not held twice; it runs inside the transaction.
            _insert_rows(c, _PUT_HEAD, _PUT_TAIL, 5, self._rows(kind, items, ttl))
            c.execute(_BUMP, ("cache",))

    def put_entries(self, kind: str, values: Iterable[dict], *, aliases: tuple[str, ...] = (),
                    ttl: float | None = DEFAULT_TTL, stage_names: bool = False) -> int:
        """Write each value (a mapping with an "id") under its id and under each of its
        ``aliases`` fields (at most two: a user under its mail and UPN), all or none; values
        without an id are skipped. With ``stage_names`` the values are also kept, with their
        display names, for this thread's next ``index_names`` of ``kind``: a preload's name
        lists are then grouped from what it wrote instead of found again by scanning the whole
        table. Returns the number of values written."""
        if len(aliases) > 2:
            raise ValueError("put_entries takes at most two alias fields")
        now = self._clock()
        expires = now + ttl if ttl else None
        rows = []
        for v in values:
            keys = entry_keys(v, aliases)
            if keys:
                keys += [None] * (3 - len(keys))
                rows.append((kind, keys[0], name_key(v.get("displayName")), _dumps(v), now, keys[1], keys[2]))
        if not rows:
            return 0
        with self.transaction() as c:
            if not self._staged():
                # The staging outgrows memory on a large directory: 512 KB of its pages are
                # kept, the rest go to its temp file (by default it took 10 MB per 100k users).
                c.execute("PRAGMA temp.cache_size=-512")
            c.execute(_ENTRY_STAGE)  # in the transaction: a rollback takes the table back too
            first = c.execute("SELECT coalesce(max(rowid), 0) FROM temp.entry_stage").fetchone()[0]
            _insert_rows(c, _STAGE_HEAD, "", 7, rows)
            c.execute(_COPY_STAGED, (first, expires))
            c.execute(_BUMP, ("cache",))
            if stage_names:
                self._staged().add(kind)
            else:
                c.execute("DELETE FROM temp.entry_stage WHERE rowid>?", (first,))
        return len(rows)

    def _staged(self) -> set:
        """The kinds this thread's connection holds staged names of (its temp table dies with it)."""
        staged = getattr(self._local, "staged", None)
        if staged is None:
            staged = self._local.staged = set()
        return staged

    def _rows(self, kind: str, items: Iterable[tuple[str, Any]], ttl: float | None):
        now = self._clock()
        expires = now + ttl if ttl else None
        last, text = None, ""
        for k, v in items:
            if v is not last:  # one object under several keys is encoded once
                last, text = v, _dumps(v)
            yield kind, k.strip().casefold(), text, now, expires

    def index_names(self, source: str, kind: str, *, since: float, ttl: float | None = DEFAULT_TTL) -> int:
        """Rebuild ``kind``'s name lists (one of NAME_KINDS) from the ``source`` entries written
        since ``since`` under their own id, by displayName: each list holds every entry with
        that name, and replaces the list written before. One statement after a preload's
        pages, instead of merging each page's namesakes into the lists as they come (that
        rewrote a growing list per namesake, quadratic in a common name's size). When this
        thread staged ``source`` entries (``put_entries(stage_names=True)``), the lists are built
        from those alone, and the staging is emptied. Returns the number of names written."""
        now = self._clock()
        expires = now + ttl if ttl else None
        with self.transaction() as c:
            c.execute(_BUMP, ("cache",))
            if source in self._staged():
                c.execute(_ENTRY_STAGE)  # gone if the transaction that made it was rolled back
                n = c.execute(_INDEX_STAGED, (kind, now, expires, source, since)).rowcount
                c.execute("DELETE FROM temp.entry_stage WHERE kind=?", (source,))
                self._staged().discard(source)
                return n
            c.create_function("msteams_name", 1, name_key, deterministic=True)
            return c.execute(_INDEX_NAMES, (kind, now, expires, source, since)).rowcount

    def prune(self, kind: str, *, before: float, prefix: str | None = None) -> int:
        """Drop ``kind`` entries (with keys under ``prefix``) last written before ``before``:
        after a complete preload, the names it did not see are names nobody has any more."""
        with self.transaction() as c:
            c.execute(_BUMP, ("cache",))
            if prefix is None:
                return c.execute("DELETE FROM cache WHERE kind=? AND updated<?", (kind, before)).rowcount
            p = self.norm(prefix)
            # A key range instead of LIKE, so the primary key index serves it and no '%' or '_'
            # in a name is a wildcard.
            return c.execute("DELETE FROM cache WHERE kind=? AND key>=? AND key<? AND updated<?",
                             (kind, p, p + "\U0010ffff", before)).rowcount

    def get(self, kind: str, key: str) -> Any | None:
        # The hot path of every name lookup: no per-call objects beyond the query itself; the
        # statement text is constant, so sqlite3's statement cache reuses the prepared
        # statement, and (kind, key) is the primary key, so its index answers it.
        conn = getattr(self._local, "conn", None) or self._conn().conn
        try:
            row = conn.execute(_GET, (kind, key.strip().casefold())).fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"context store error: {exc}") from None
        if row is None or (row[1] is not None and row[1] < self._clock()):
            return None
        return json.loads(row[0])

    def delete(self, kind: str, key: str) -> None:
        with self.transaction() as c:
            c.execute("DELETE FROM cache WHERE kind=? AND key=?", (kind, self.norm(key)))
            c.execute(_BUMP, ("cache",))

    def entries(self, kind: str) -> list[dict]:
        now = self._clock()
        with self._conn() as c:
            rows = c.execute("SELECT key, value, updated, expires FROM cache WHERE kind=? ORDER BY key", (kind,)).fetchall()
        return [{"key": k, "value": json.loads(v), "age_seconds": round(now - u, 1),
                 "expired": e is not None and e < now} for k, v, u, e in rows]

    def counts(self) -> dict[str, int]:
        """Entries per cache kind (every directory kind, 0 when empty), then ``token_caches``
        and ``message_refs``. One statement answering one row (`_GENERATIONS`) while the cache
        and the references are as last counted (`_BUMP`), two when they moved (`_COUNTS`): each
        call into SQLite (each statement, each row fetched) releases and takes back the
        interpreter lock, and among a server's busy threads each handoff is a thread switch
        (three statements and a row a kind cost ~80 us of CPU a call there, ~20 us alone). A
        process of a version before the generations writes without moving them: until a write
        of this one does, what it wrote is not counted here."""
        with self._conn() as c:
            cache_gen, refs_gen, tokens = c.execute(_GENERATIONS).fetchone()
            counted = self._counted
            if counted is None or counted[0] != (cache_gen, refs_gen):
                kinds, _, refs = c.execute(_COUNTS).fetchone()
                counted = self._counted = ((cache_gen, refs_gen), json.loads(kinds), refs)
        _, kinds, refs = counted
        out = {k: 0 for k in DIRECTORY_KINDS}
        for kind in sorted(kinds):  # as GROUP BY orders them: UTF-8 bytes sort as code points do
            out[kind] = kinds[kind]
        out["token_caches"] = tokens  # after the cache's kinds, and over one of the same name
        out["message_refs"] = refs
        return out

    def clear(self, *, include_tokens: bool = False) -> dict[str, int]:
        """cache-reset: forget what can be fetched again (CACHE_KINDS; and tokens when asked).
        Returns what was removed, per kind."""
        marks = ",".join("?" * len(CACHE_KINDS))
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            removed = dict(c.execute(f"SELECT kind, COUNT(*) FROM cache WHERE kind IN ({marks}) GROUP BY kind",
                                     CACHE_KINDS).fetchall())
            c.execute(f"DELETE FROM cache WHERE kind IN ({marks})", CACHE_KINDS)
            c.execute(_BUMP, ("cache",))
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
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO message_refs(ref, value, created) VALUES (?,?,?)",
                      (ref, json.dumps(value), self._clock()))
            c.execute(_BUMP, ("message_refs",))

    def get_message_ref(self, ref: str) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT value FROM message_refs WHERE ref=?", (ref,)).fetchone()
        return json.loads(row[0]) if row else None

    # ---- outbox (delivery key -> state; see outbox.py) ----
    _OUTBOX_COLS = ("key", "state", "target", "message_id", "reason", "attempts", "lease_until", "owner", "created",
                    "updated")

    def _outbox_row(self, c, key: str) -> dict | None:
        row = c.execute(f"SELECT {','.join(self._OUTBOX_COLS)} FROM outbox WHERE key=?", (key,)).fetchone()
        return dict(zip(self._OUTBOX_COLS, row)) if row else None

    def outbox_claim(self, key: str, *, target: str = "", lease: float, owner: str = "",
                     holder_alive=assume_alive) -> dict:
        """Take the lease on a delivery key, atomically across processes. ``prior`` is what the
        key was: None (new), 'sent', 'pending' (someone holds it: not taken), 'stale' (a holder
        died or its lease ran out), 'failed' or 'unknown'."""
        now = self._clock()
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            row = self._outbox_row(c, key)
            prior, take = claim_decision(row, now, holder_alive)
            if row is None:
                c.execute("INSERT INTO outbox(key,state,target,lease_until,owner,created,updated) VALUES (?,?,?,?,?,?,?)",
                          (key, "claimed", target, now + lease, owner, now, now))
                row = {"key": key, "state": "claimed", "target": target, "attempts": 0}
            elif take:
                c.execute("UPDATE outbox SET state='claimed', lease_until=?, owner=?, updated=? WHERE key=?",
                          (now + lease, owner, now, key))
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

    # ---- playbook runs (see playbooks/runs.py) ----
    _RUN_COLS = ("id", "run_key", "playbook", "name", "status", "owner", "lease_until", "state", "created", "updated")

    def _run_row(self, c, where: str, value: str) -> dict | None:
        row = c.execute(f"SELECT {','.join(self._RUN_COLS)} FROM runs WHERE {where}=?", (value,)).fetchone()
        if row is None:
            return None
        out = dict(zip(self._RUN_COLS, row))
        out["state"] = json.loads(out["state"])
        return out

    def run_create(self, run: dict, *, lease: float) -> dict:
        """Insert a new run, or return the existing one with the same run_key (not replaced)."""
        now = self._clock()
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            existing = self._run_row(c, "run_key", run["run_key"]) if run.get("run_key") else None
            if existing is None:
                c.execute("INSERT INTO runs(id,run_key,playbook,name,status,owner,lease_until,state,created,updated) "
                          "VALUES (?,?,?,?,?,?,?,?,?,?)",
                          (run["id"], run.get("run_key"), run["playbook"], run["name"], run["status"], run.get("owner"),
                           now + lease, json.dumps(run["state"]), now, now))
            c.execute("COMMIT")
        return existing or dict(run, created=now, updated=now, lease_until=now + lease)

    def run_claim(self, run_id: str, owner: str, *, lease: float, holder_alive) -> dict | None:
        """Take a run over for resuming. None when another live process holds it."""
        now = self._clock()
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            row = self._run_row(c, "id", run_id)
            if row is not None:
                held = row["status"] == "running" and (row["lease_until"] or 0) > now and row["owner"] != owner
                if held and holder_alive(row["owner"]):
                    c.execute("COMMIT")
                    return None
                # A waiting run becomes running in the same transaction: a second claimer finds it held.
                c.execute("UPDATE runs SET owner=?, lease_until=?, updated=?, "
                          "status=CASE WHEN status='waiting' THEN 'running' ELSE status END WHERE id=?",
                          (owner, now + lease, now, run_id))
            c.execute("COMMIT")
        return row

    def run_claim_waiting(self, run_id: str, owner: str, *, lease: float) -> dict | None:
        """Take a waiting run to resume it: exactly one caller (of any process) gets it."""
        now = self._clock()
        with self.transaction() as c:
            cur = c.execute("UPDATE runs SET status='running', owner=?, lease_until=?, updated=? "
                            "WHERE id=? AND status='waiting'", (owner, now + lease, now, run_id))
            return self._run_row(c, "id", run_id) if cur.rowcount == 1 else None

    def runs_waiting_on(self, question_id: str) -> list[str]:
        with self._conn() as c:
            return [r[0] for r in c.execute("SELECT id FROM runs WHERE status='waiting' "
                                            "AND json_extract(state, '$.waiting.question')=?", (question_id,))]

    def run_save(self, run_id: str, status: str, state: dict, *, lease: float) -> None:
        now = self._clock()
        with self._conn() as c:
            c.execute("UPDATE runs SET status=?, state=?, lease_until=?, updated=? WHERE id=?",
                      (status, json.dumps(state, default=str), now + lease, now, run_id))

    def run_get(self, run_id: str) -> dict | None:
        with self._conn() as c:
            return self._run_row(c, "id", run_id)

    def run_list(self, status: str | None = None, limit: int = 50) -> list[dict]:
        cols = "id, run_key, name, status, owner, created, updated, json_extract(state, '$.waiting.question')"
        with self._conn() as c:
            rows = (c.execute(f"SELECT {cols} FROM runs WHERE status=? ORDER BY created DESC LIMIT ?", (status, limit))
                    if status else c.execute(f"SELECT {cols} FROM runs ORDER BY created DESC LIMIT ?", (limit,))).fetchall()
        return [dict(zip(("id", "run_key", "name", "status", "owner", "created", "updated", "waiting_for"), r))
                for r in rows]


    # ---- retention (msteams store prune) ----
    def purge_history(self, before: float, *, dry_run: bool = False) -> dict[str, int]:
        """Delete (or with ``dry_run`` only count) the finished records last changed before
        ``before``, per HISTORY_KINDS: deliveries sent or failed, playbook runs that ended,
        questions answered or expired that no waiting run still waits on, bot audit entries,
        call events, sent-message references, and entries that expired before then (but API
        keys'). Whatever is pending, unknown, open or waiting is kept at any age, and so are
        mirror links and journals (an incident's record)."""
        with self.transaction() as c:
            counts = {kind: (c.execute(f"SELECT COUNT(*) {where}", (before,)).fetchone()[0] if dry_run
                             else c.execute(f"DELETE {where}", (before,)).rowcount)
                      for kind, where in _PURGE.items()}
            # counts() reads a table again only once something of it went
            for table, kind in (("message_refs", "message_refs"), ("cache", "expired_entries")):
                if counts[kind] and not dry_run:
                    c.execute(_BUMP, (table,))
            return counts

    # ---- bot conversation references (learned from inbound activities; see bot/conversations.py) ----
    # Kept apart from the directory cache: cache-reset must not forget where the bot may write.
    def conversation_put(self, key: str, kind: str, value: dict) -> None:
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO conversations(key, kind, value, updated) VALUES (?,?,?,?)",
                      (key, kind, _dumps(value), self._clock()))

    def conversation_get(self, key: str) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT value FROM conversations WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def conversation_list(self, kind: str | None = None, limit: int = 1000) -> list[dict]:
        with self._conn() as c:
            rows = (c.execute("SELECT key, kind, value, updated FROM conversations WHERE kind=? ORDER BY updated DESC "
                              "LIMIT ?", (kind, limit)) if kind else
                    c.execute("SELECT key, kind, value, updated FROM conversations ORDER BY updated DESC LIMIT ?",
                              (limit,))).fetchall()
        return [{"key": k, "kind": kd, "value": json.loads(v), "updated": u} for k, kd, v, u in rows]

    # ---- bot audit log (every command received from Teams; see bot/activities.py) ----
    AUDIT_COLS = AUDIT_COLS  # base's: the fields audit_list answers

    def audit_add(self, row: dict) -> int | None:
        """Record an inbound command; None when its activity id was recorded before (a
        redelivery: the command must not run twice)."""
        cols = [c for c in self.AUDIT_COLS if c not in ("id", "time") and c in row]
        now = self._clock()
        with self._conn() as c:
            cur = c.execute(f"INSERT OR IGNORE INTO bot_audit(time, updated, {','.join(cols)}) "
                            f"VALUES (?,?,{','.join('?' for _ in cols)})", (now, now, *(row[k] for k in cols)))
            return cur.lastrowid if cur.rowcount else None

    def audit_add_many(self, rows: list[dict]) -> None:
        """Record entries at once, in order (the HTTP API's entries of concurrent calls: group
        commit): one INSERT statement for consecutive rows with the same fields (an API call's
        entries all have the same), so a batch is one commit and one call into SQLite (each
        releases and takes back the interpreter lock: under load, a thread switch each), not
        one each; all of them or none. A redelivered activity id is skipped, as by audit_add."""
        if not rows:
            return
        now = self._clock()
        runs: list[tuple[tuple, list]] = []  # consecutive rows with the same fields: one statement each
        fields: dict = {}  # a row's keys -> its columns (a batch's rows mostly have the same keys)
        for row in rows:
            keys = tuple(row)
            cols = fields.get(keys)
            if cols is None:
                cols = fields[keys] = tuple(c for c in self.AUDIT_COLS if c not in ("id", "time") and c in row)
            if not runs or runs[-1][0] != cols:
                runs.append((cols, []))
            runs[-1][1].append((now, now, *(row[k] for k in cols)))
        # One statement (autocommitted, atomic on its own) when the rows fit one; else a transaction.
        one = len(runs) == 1 and len(rows) <= min(_ROWS_PER_STATEMENT, 999 // (len(runs[0][0]) + 2))
        with (self._conn if one else self.transaction)() as c:
            for cols, values in runs:
                _insert_rows(c, f"INSERT OR IGNORE INTO bot_audit(time, updated, {','.join(cols)}) VALUES ", "",
                             len(cols) + 2, values)

    def audit_update(self, audit_id: int, **fields) -> None:
        cols = [c for c in fields if c in self.AUDIT_COLS and c not in ("id", "time")]
        if not cols:
            return
        with self._conn() as c:
            c.execute(f"UPDATE bot_audit SET {','.join(f'{k}=?' for k in cols)}, updated=? WHERE id=?",
                      (*(fields[k] for k in cols), self._clock(), audit_id))

    def audit_list(self, *, limit: int = 50, sender: str | None = None, since: float | None = None) -> list[dict]:
        """The newest entries first."""
        where, params = [], []
        if sender:
            where.append("(sender_id=? OR lower(sender_name)=lower(?))")
            params += [sender, sender]
        if since is not None:
            where.append("time>=?")
            params.append(since)
        sql = f"SELECT {','.join(self.AUDIT_COLS)} FROM bot_audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._conn() as c:
            rows = c.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
        return [dict(zip(self.AUDIT_COLS, r)) for r in rows]

    # ---- call state changes (Graph's notifications to the bot endpoint's /api/calls; see bot/calls.py) ----
    def call_event_add(self, call_id: str, state: str, *, code: int | None = None, subcode: int | None = None,
                       message: str | None = None) -> None:
        with self._conn() as c:
            c.execute("INSERT INTO call_events(call_id, state, code, subcode, message, time) VALUES (?,?,?,?,?,?)",
                      (call_id, state, code, subcode, message, self._clock()))

    def call_events(self, call_id: str) -> list[dict]:
        """The call's state changes, oldest first."""
        with self._conn() as c:
            rows = c.execute("SELECT state, code, subcode, message, time FROM call_events WHERE call_id=? ORDER BY id",
                             (call_id,)).fetchall()
        return [dict(zip(("state", "code", "subcode", "message", "time"), r)) for r in rows]


    # ---- questions (ask; see integration/teams/questions.py) ----
    _Q_COLS = ("id", "status", "value", "expires", "answer", "responder_id", "responder_name", "reason", "answered",
               "created", "updated")

    def _q_row(self, c, qid: str) -> dict | None:
        row = c.execute(f"SELECT {','.join(self._Q_COLS)} FROM questions WHERE id=?", (qid,)).fetchone()
        if row is None:
            return None
        out = dict(zip(self._Q_COLS, row))
        out["value"] = json.loads(out["value"])
        return out

    def question_create(self, qid: str, value: dict, expires: float | None) -> tuple[dict, bool]:
        """Insert an open question; (the row, created). An existing one is returned as it is."""
        now = self._clock()
        with self.transaction() as c:
            existing = self._q_row(c, qid)
            if existing is None:
                c.execute("INSERT INTO questions(id,status,value,expires,created,updated) VALUES (?,?,?,?,?,?)",
                          (qid, "open", json.dumps(value), expires, now, now))
                return self._q_row(c, qid), True
        return existing, False

    def question_get(self, qid: str) -> dict | None:
        with self._conn() as c:
            return self._q_row(c, qid)

    def question_set_value(self, qid: str, value: dict) -> None:
        with self._conn() as c:
            c.execute("UPDATE questions SET value=?, updated=? WHERE id=?", (json.dumps(value), self._clock(), qid))

    def question_answer(self, qid: str, answer: str, responder_id: str, responder_name: str,
                        reason: str | None) -> bool:
        """Record the answer if the question is still open and not past its expiry: True for
        the one caller that wins (one UPDATE ... WHERE status='open': atomic across processes)."""
        now = self._clock()
        with self._conn() as c:
            cur = c.execute("UPDATE questions SET status='answered', answer=?, responder_id=?, responder_name=?, "
                            "reason=?, answered=?, updated=? WHERE id=? AND status='open' "
                            "AND (expires IS NULL OR expires > ?)",
                            (answer, responder_id, responder_name, reason, now, now, qid, now))
            return cur.rowcount == 1

    def questions_expire(self, qid: str | None = None) -> list[str]:
        """Open questions past their expiry take their default answer; the ids expired now."""
        now = self._clock()
        with self.transaction() as c:
            where, params = "status='open' AND expires IS NOT NULL AND expires <= ?", [now]
            if qid:
                where += " AND id=?"
                params.append(qid)
            ids = [r[0] for r in c.execute(f"SELECT id FROM questions WHERE {where}", params).fetchall()]
            for i in ids:
                default = json.loads(c.execute("SELECT value FROM questions WHERE id=?", (i,)).fetchone()[0]) \
                    .get("default_answer")
                c.execute("UPDATE questions SET status='expired', answer=?, answered=?, updated=? WHERE id=?",
                          (default, now, now, i))
        return ids

    def question_list(self, status: str | None = None, limit: int = 100) -> list[dict]:
        with self._conn() as c:
            ids = [r[0] for r in (c.execute("SELECT id FROM questions WHERE status=? ORDER BY created DESC LIMIT ?",
                                            (status, limit)) if status else
                                  c.execute("SELECT id FROM questions ORDER BY created DESC LIMIT ?",
                                            (limit,))).fetchall()]
            return [self._q_row(c, i) for i in ids]

    # ---- mirrored incidents (mirror-investigation; see integration/teams/mirror.py) ----
    def _mirror_row(self, row) -> dict | None:
        if not row:
            return None
        return dict(json.loads(row[4]), incidentId=row[0], conversationId=row[1], kind=row[2], status=row[3],
                    created=row[5], updated=row[6])

    def mirror_get(self, incident_id: str) -> dict | None:
        with self._conn() as c:
            return self._mirror_row(c.execute("SELECT incident_id, conversation_id, kind, status, value, created, "
                                              "updated FROM mirrors WHERE incident_id=?", (incident_id,)).fetchone())

    def mirror_for_conversation(self, conversation_id: str) -> dict | None:
        """The open mirror of a channel or chat (by its id, the thread part dropped), or None."""
        with self._conn() as c:
            return self._mirror_row(c.execute("SELECT incident_id, conversation_id, kind, status, value, created, "
                                              "updated FROM mirrors WHERE conversation_id=? AND status='open' "
                                              "ORDER BY updated DESC LIMIT 1", (conversation_id,)).fetchone())

    def mirror_put(self, incident_id: str, conversation_id: str, kind: str, status: str, value: dict) -> dict:
        now = self._clock()
        with self.transaction() as c:
            c.execute("INSERT INTO mirrors(incident_id, conversation_id, kind, status, value, created, updated) "
                      "VALUES (?,?,?,?,?,?,?) ON CONFLICT(incident_id) DO UPDATE SET conversation_id=excluded."
                      "conversation_id, kind=excluded.kind, status=excluded.status, value=excluded.value, "
                      "updated=excluded.updated", (incident_id, conversation_id, kind, status, _encode(value), now, now))
        return self.mirror_get(incident_id)

    def mirror_list(self, status: str | None = None) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT incident_id, conversation_id, kind, status, value, created, updated FROM mirrors"
                             + (" WHERE status=?" if status else "") + " ORDER BY created",
                             (status,) if status else ()).fetchall()
        return [self._mirror_row(r) for r in rows]

    def mirror_entry_add(self, incident_id: str, activity_id: str, value: dict) -> int | None:
        """Append to an incident's journal; None when this activity was journaled before."""
        with self._conn() as c:
            cur = c.execute("INSERT OR IGNORE INTO mirror_entries(incident_id, activity_id, time, value) "
                            "VALUES (?,?,?,?)", (incident_id, activity_id, self._clock(), _encode(value)))
            return cur.lastrowid if cur.rowcount else None

    def mirror_entries(self, incident_id: str | None = None, *, since: float | None = None,
                       limit: int = 10000) -> list[dict]:
        """In arrival order (the order Teams delivered them)."""
        where, params = [], []
        if incident_id is not None:
            where.append("incident_id=?")
            params.append(incident_id)
        if since is not None:
            where.append("time>=?")
            params.append(since)
        sql = "SELECT id, incident_id, activity_id, time, value FROM mirror_entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._conn() as c:
            rows = c.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [dict(json.loads(v), seq=i, incidentId=inc, activityId=a, journaledAt=t) for i, inc, a, t, v in rows]

    def secret(self, name: str, make) -> str:
        """A secret of this store (made once by ``make()``): kept in the store file, which is 0600."""
        with self.transaction() as c:
            row = c.execute("SELECT value FROM secrets WHERE name=?", (name,)).fetchone()
            if row:
                return row[0]
            value = make()
            c.execute("INSERT INTO secrets(name, value, created) VALUES (?,?,?)", (name, value, self._clock()))
            return value

    def forget_secret(self, name: str) -> bool:
        with self._conn() as c:
            return c.execute("DELETE FROM secrets WHERE name=?", (name,)).rowcount > 0

    # ---- named locks (tokenlock.StoreLock) ----
    _LOCK_COLS = ("owner", "host", "pid", "started", "taken", "expires")

    def lock_try(self, name: str, holder: dict, *, now: float, lease: float, holder_alive) -> dict:
        """Take the named lock for ``holder`` (owner, host, pid, started) unless another holder
        has it with its lease running and ``holder_alive(host, pid, started)``. Returns
        ``{"held": <that holder> or None (taken), "previous": the holder replaced, if any}``."""
        with self.transaction() as c:  # BEGIN IMMEDIATE: one writer decides at a time
            row = c.execute("SELECT owner, host, pid, started, taken, expires FROM locks WHERE name=?",
                            (name,)).fetchone()
            cur = dict(zip(self._LOCK_COLS, row)) if row else None
            if cur is not None and cur["owner"] != holder["owner"] and cur["expires"] > now and \
                    holder_alive(cur["host"], cur["pid"], cur["started"]):
                return {"held": cur, "previous": None}
            c.execute("INSERT OR REPLACE INTO locks(name, owner, host, pid, started, taken, expires) "
                      "VALUES (?,?,?,?,?,?,?)", (name, holder["owner"], holder["host"], holder["pid"],
                                                 holder.get("started"), now, now + lease))
        return {"held": None, "previous": cur}

    def lock_release(self, name: str, owner: str) -> None:
        with self._conn() as c:
            c.execute("DELETE FROM locks WHERE name=? AND owner=?", (name, owner))


class _Open:
    """What begin_now yields: ``intact()`` is whether its transaction is still open (a failed
    statement inside rolls all of it back: _Tx)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def intact(self) -> bool:
        return self.conn.in_transaction


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


# The class's name before base.Store (the protocol) took it: kept for the code and tests that
# open a SQLite store by it (`from integration.store.sqlite import Store`).
Store = SQLiteStore
