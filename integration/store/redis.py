"""The shared context store, `RedisStore`: `base.Store` in Redis (store_url: redis:// or
rediss://), for several engines on several hosts: the same methods and guarantees as the SQLite
store (sqlite.SQLiteStore), so every caller works on either.

Everything lives under ``{store_namespace}:``. Writes that must be decided by one process only
(a delivery's lease, a run's claim, the first answer to a question, a redelivered activity) are
one Lua script or one WATCH/MULTI transaction, so they are atomic across hosts; a plain write is
one command or one MULTI. Token caches and the store's secrets are encrypted with Fernet under
store_key (the first key encrypts, every key decrypts: see `rotate_key`).

TTLs and leases are compared against the store's clock (injectable, as in SQLiteStore), not left
to Redis expiry, so fake clocks in tests and hosts' clocks behave as with SQLite.
"""
from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Iterable
from contextlib import contextmanager

from integration.engine.errors import STORE_SERVER_HINT, ConfigError
from .rules import (AUDIT_COLS, CACHE_KINDS, DEFAULT_TTL, DIRECTORY_KINDS, KEPT_EXPIRED, Busy, assume_alive,
                    claim_decision, entry_keys)
# The same compact JSON as the SQLite store writes (index_names joins stored values as text).
from .sqlite import _dumps, _encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SEP = "\x1f"  # between a cache entry's updated, expires and value: no JSON text holds it raw
# In the set of the cache's kinds: it was made whole once from a SCAN (a store written before the set was kept).
_KINDS_WHOLE = "\x00whole"

# KEYS: the run's hash, the waiting set. ARGV: owner, lease_until, now, run id.
_CLAIM_WAITING = """
if redis.call('HGET', KEYS[1], 'status') ~= 'waiting' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1], 'lease_until', ARGV[2], 'updated', ARGV[3])
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""

# KEYS: the question's hash, the open set. ARGV: answer, responder id, name, reason, now, id.
_ANSWER = """
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return 0 end
local exp = redis.call('HGET', KEYS[1], 'expires')
if exp and exp ~= '' and tonumber(exp) <= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'answered', 'answer', ARGV[1], 'responder_id', ARGV[2],
           'responder_name', ARGV[3], 'reason', ARGV[4], 'answered', ARGV[5], 'updated', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[6])
return 1
"""

# KEYS: the question's hash, the open set. ARGV: now, id. The default answer is the value's.
_EXPIRE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return 0 end
local exp = redis.call('HGET', KEYS[1], 'expires')
if not exp or exp == '' or tonumber(exp) > tonumber(ARGV[1]) then return 0 end
local value = cjson.decode(redis.call('HGET', KEYS[1], 'value'))
local default = value['default_answer']
if default == nil or default == cjson.null then default = '' end
redis.call('HSET', KEYS[1], 'status', 'expired', 'answer', tostring(default), 'answered', ARGV[1], 'updated', ARGV[1])
if default == '' then redis.call('HDEL', KEYS[1], 'answer') end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

# KEYS: the activity -> id hash, the sequence, the data hash, the ordered set, the per-owner set.
# ARGV: activity id, entry JSON (with "$id" to fill), time. Answers the new id, or 0 if known.
_APPEND_ONCE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('ZADD', KEYS[4], id, id)
if KEYS[5] then redis.call('ZADD', KEYS[5], id, id) end
return id
"""

# KEYS: a string key. ARGV: a value. Deletes the key only if it holds that value.
_DEL_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# KEYS: a kind's hash. ARGV: a field, the entry read from it. Deletes the field only if it still
# holds that entry (one written again meanwhile stays).
_HDEL_IF = "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0"
# KEYS: the sent-message references, the times they were saved. ARGV: before, then refs: each
# saved before then goes (one saved again meanwhile has a newer time, and stays).
_PURGE_REFS = """
local n = 0
for i = 2, #ARGV do
  local at = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if at and tonumber(at) < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS: the lock. ARGV: owner. Deletes it only if this owner holds it.
_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['owner'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _num(x) -> str:
    return "" if x is None else repr(float(x))


def _float(s) -> float | None:
    return None if s in (None, "") else float(s)


def _int(s) -> int | None:
    return None if s in (None, "") else int(s)


def _str(s) -> str | None:
    return None if s in (None, "") else s


def fernet(keys_text: str | None):
    """A MultiFernet from store_key's text (keys one per line; the first encrypts)."""
    from cryptography.fernet import Fernet, MultiFernet

    keys = [k.strip() for k in (keys_text or "").splitlines() if k.strip() and not k.strip().startswith("#")]
    if not keys:
        raise ConfigError("store_url is a shared store, and its token caches must be encrypted: store_key is not set",
                          hint="make a key with `msteams store keygen`, put it in a file only this account can "
                               "read, and name that file in store_key_file")
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, UnicodeEncodeError):
        raise ConfigError("store_key is not a Fernet key (44 characters of URL-safe base64 per line)",
                          hint="make one with `msteams store keygen`") from None


# A forked child must not write on its parent's sockets: the connections threads keep (RedisStore.r)
# are forgotten in the child (redis-py's pool does the same for the connections it holds).
_STORES: weakref.WeakSet = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for store in list(_STORES):
        store._local = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections_after_fork)


class RedisStore:
    """`base.Store` over Redis. ``client`` is a redis.Redis with decode_responses=True. Beyond the
    protocol: `from_config` (the client from the config), `rotate_key` (only this store encrypts),
    `k` (its key names) and `r` (this thread's client)."""

    def __init__(self, client, *, namespace: str = "msteams", key_text: str | None = None,
                 location: str = "redis", clock=time.time):
        self._client = client  # its pool is shared: pipelines and scripts check a connection out of it
        self._local = threading.local()
        self._counted_kinds: list[str] | None = None  # counts(): the kinds whose lengths it read last
        _STORES.add(self)
        self.ns = namespace
        self.path = location  # shown where the SQLite store shows its file
        self._clock = clock
        self._fernet = fernet(key_text)
        self._scripts = {name: client.register_script(src) for name, src in (
            ("claim_waiting", _CLAIM_WAITING), ("answer", _ANSWER),
            ("expire", _EXPIRE), ("append_once", _APPEND_ONCE), ("release", _RELEASE))}

    @property
    def r(self):
        """This thread's client: a connection of the shared pool that the thread keeps (released
        by thread_done, or when the thread ends), so a command is sent without a checkout. redis-py
        polls each connection it checks out for unread data: a system call, and among a server's
        busy threads a thread switch, on every command (`msteams serve` on Redis: ~12% more
        requests a second and a fifth fewer thread switches without it)."""
        r = getattr(self._local, "r", None)
        if r is None:
            r = self._local.r = type(self._client)(connection_pool=self._client.connection_pool,
                                                    single_connection_client=True)
        return r

    @classmethod
    def from_config(cls, cfg, *, clock=time.time) -> "RedisStore":
        from .redis_conn import redis_client, where

        client = redis_client(cfg, decode=True)
        store = cls(client, namespace=cfg.store_namespace or "msteams", key_text=cfg.store_key,
                    location=f"{where(client)} (namespace {cfg.store_namespace or 'msteams'})", clock=clock)
        store._ping()
        return store

    def _ping(self) -> None:
        import redis

        try:
            self.r.ping()
        except redis.RedisError as exc:
            raise self._error(exc, "connecting") from None

    def _error(self, exc, doing: str) -> ConfigError:
        from integration.engine.redact import redact

        reason = redact(str(exc).strip()) or type(exc).__name__
        return ConfigError(f"context store {self.path}: {doing} failed: {reason}", hint=STORE_SERVER_HINT)

    def _chunks_of(self, key: str, *, newest_first: bool = False, size: int = 500):
        """The members of a sorted set, a chunk of ``size`` at a time (a list may stop early)."""
        read = self.r.zrevrange if newest_first else self.r.zrange
        start = 0
        while ids := read(key, start, start + size - 1):
            start += len(ids)
            yield ids

    def _watched(self, key: str, decide):
        """``decide(pipe)`` with ``key`` WATCHed: it reads, then calls ``pipe.multi()`` before any
        write; when the key changed before EXEC it runs again from the start. Returns what its
        last run returned."""
        result: list = [None]

        def run(pipe):
            result[0] = decide(pipe)

        self.r.transaction(run, key)
        return result[0]

    def _update_existing(self, hkey: str, update) -> bool:
        """Run ``update(pipe)``'s writes in one MULTI only while the hash ``hkey`` exists, so a
        delete that lands between the check and the writes makes them find nothing instead of
        leaving a hash of a few fields where the record was."""
        def decide(pipe) -> bool:
            if not pipe.exists(hkey):
                return False
            pipe.multi()
            update(pipe)
            return True

        return self._watched(hkey, decide)

    def _journal(self, order: str, data: str, *, newest_first: bool = False):
        """(id, record) of a journal: ids in the sorted set ``order``, JSON records in the hash
        ``data``; an id whose record is gone is skipped. A generator, so a list may stop early."""
        for ids in self._chunks_of(order, newest_first=newest_first):
            for rid, raw in zip(ids, self.r.hmget(data, ids)):
                if raw is not None:
                    yield rid, json.loads(raw)

    def thread_done(self) -> None:
        """A worker thread is done with the store: its connection goes back to the pool."""
        r = getattr(self._local, "r", None)
        if r is not None:
            self._local.r = None
            r.close()

    def k(self, *parts: str) -> str:
        return ":".join((self.ns,) + parts)

    def close(self) -> None:
        try:
            self.thread_done()
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a connection that already broke
            pass

    # ---- directory cache: one hash per kind, field = key, value = "updated\x1fexpires\x1fjson" ----
    def now(self) -> float:
        return self._clock()

    @staticmethod
    def norm(key: str) -> str:
        return key.strip().casefold()

    inline = False  # each operation is a round trip to the server: an event loop must not wait on it

    @contextmanager
    def begin_now(self):
        """Not offered (``inline`` is False): Busy, nothing begun."""
        raise Busy("a Redis store is not written from an event loop")
        yield self  # pragma: no cover - a generator, for contextmanager

    @contextmanager
    def transaction(self):
        """Writes inside it are each atomic on their own (one command or one MULTI); Redis has
        no multi-statement rollback, and no caller needs more than that of a cache."""
        yield self

    def _entry(self, text: str, now: float, expires: float | None) -> str:
        return f"{now!r}{_SEP}{_num(expires)}{_SEP}{text}"

    @staticmethod
    def _split(raw: str) -> tuple[float, float | None, str]:
        updated, expires, text = raw.split(_SEP, 2)
        return float(updated), _float(expires), text

    def put(self, kind: str, key: str, value: Any, ttl: float | None = DEFAULT_TTL) -> None:
        self.put_many(kind, [(key, value)], ttl)

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]], ttl: float | None = DEFAULT_TTL) -> None:
        """As base.Store.put_many: one HSET of every pair."""
        now = self._clock()
        expires = now + ttl if ttl else None
        mapping, last, text = {}, None, ""
        for key, v in items:
            if v is not last:
                last, text = v, _dumps(v)
            mapping[self.norm(key)] = self._entry(text, now, expires)
        if mapping:
            pipe = self.r.pipeline(transaction=False)
            pipe.sadd(self.k("kinds"), kind)  # first, as in index_names
            pipe.hset(self.k("c", kind), mapping=mapping)
            pipe.execute()

    def put_entries(self, kind: str, values: Iterable[dict], *, aliases: tuple[str, ...] = (),
                    ttl: float | None = DEFAULT_TTL, stage_names: bool = False) -> int:
        """As base.Store.put_entries; ``stage_names`` changes nothing here, as index_names reads the
        hash it wrote anyway (Redis keeps no per-connection table to set the names aside in)."""
        if len(aliases) > 2:
            raise ValueError("put_entries takes at most two alias fields")
        written = [(v, keys) for v in values if (keys := entry_keys(v, aliases))]
        self.put_many(kind, ((k, v) for v, keys in written for k in keys), ttl)
        return len(written)

    def index_names(self, source: str, kind: str, *, since: float, ttl: float | None = DEFAULT_TTL) -> int:
        """As base.Store.index_names: the name lists of ``kind`` rebuilt from the ``source`` entries
        written since ``since`` under their own id."""
        groups: dict[str, list[str]] = {}
        for key, raw in self.r.hscan_iter(self.k("c", source), count=1000):
            updated, _, text = self._split(raw)
            if updated < since or "@" in key:
                continue
            v = json.loads(text)
            if not isinstance(v, dict) or self.norm(str(v.get("id") or "")) != key:
                continue
            name = self.norm(v.get("displayName") or "") if isinstance(v.get("displayName"), str) else ""
            if name:
                groups.setdefault(name, []).append(text)
        now = self._clock()
        expires = now + ttl if ttl else None
        mapping = {name: self._entry("[" + ",".join(texts) + "]", now, expires) for name, texts in groups.items()}
        if mapping:  # the kind first: a member whose hash never came counts 0, a hash not in the set is lost
            self.r.sadd(self.k("kinds"), kind)
        for chunk in _chunks(list(mapping.items()), 1000):
            self.r.hset(self.k("c", kind), mapping=dict(chunk))
        return len(mapping)

    def prune(self, kind: str, *, before: float, prefix: str | None = None) -> int:
        p = self.norm(prefix) if prefix is not None else None
        match = _glob_escape(p) + "*" if p else None
        old = [key for key, raw in self.r.hscan_iter(self.k("c", kind), match=match, count=1000)
               if (p is None or key.startswith(p)) and self._split(raw)[0] < before]
        removed = 0
        for chunk in _chunks(old, 1000):
            removed += self.r.hdel(self.k("c", kind), *chunk)
        return removed

    def get(self, kind: str, key: str) -> Any | None:
        import redis

        try:
            raw = self.r.hget(self.k("c", kind), key.strip().casefold())
        except redis.RedisError as exc:
            raise self._error(exc, "reading the cache") from None
        if raw is None:
            return None
        _, expires, text = self._split(raw)
        if expires is not None and expires < self._clock():
            return None
        return json.loads(text)

    def delete(self, kind: str, key: str) -> None:
        self.r.hdel(self.k("c", kind), self.norm(key))

    def _kinds(self) -> list[str]:
        """The cache's kinds, in order: the set each write adds its kind to, read in one round
        trip however many keys the Redis holds (a SCAN of them all was the cost of every
        readiness probe: integration-health counts the store). A store written before the set
        was kept is scanned once, and the set made whole. A kind whose entries are all gone
        stays in the set (Redis drops an empty hash, not the set's member): its length is 0."""
        members = self.r.smembers(self.k("kinds"))
        if _KINDS_WHOLE not in members:
            prefix = self.k("c", "")
            found = {name[len(prefix):] for name in self.r.scan_iter(match=_glob_escape(prefix) + "*", count=1000)}
            self.r.sadd(self.k("kinds"), _KINDS_WHOLE, *found)
            members = found | members
        return sorted(m for m in members if m != _KINDS_WHOLE)

    def entries(self, kind: str) -> list[dict]:
        now = self._clock()
        out = []
        for key, raw in sorted(self.r.hgetall(self.k("c", kind)).items()):
            updated, expires, text = self._split(raw)
            out.append({"key": key, "value": json.loads(text), "age_seconds": round(now - updated, 1),
                        "expired": expires is not None and expires < now})
        return out

    def counts(self) -> dict[str, int]:
        """As SQLite's: every directory kind (0 when empty), the cache's kinds in order, then the
        two totals. One round trip (a pipeline): the set of kinds read beside the lengths of the
        kinds it held at the last count; a second only when it has gained one since."""
        for _ in range(2):
            # The known cache kinds too: one a process before the set wrote may be missing from it.
            kinds = self._counted_kinds or sorted(set(self._kinds()).union(CACHE_KINDS))
            pipe = self.r.pipeline(transaction=False)
            pipe.smembers(self.k("kinds"))
            for kind in kinds:
                pipe.hlen(self.k("c", kind))
            pipe.hlen(self.k("tokens"))
            pipe.hlen(self.k("refs"))
            members, *lengths = pipe.execute()
            if _KINDS_WHOLE in members and members.issubset(kinds + [_KINDS_WHOLE]):
                self._counted_kinds = kinds
                break
            self._counted_kinds = None  # a kind more (or a set to make whole): read them first
        out = {k: 0 for k in DIRECTORY_KINDS}
        out.update((kind, n) for kind, n in zip(kinds, lengths) if n)  # as SQLite's: the kinds with entries
        out["token_caches"], out["message_refs"] = lengths[-2], lengths[-1]
        return out

    def clear(self, *, include_tokens: bool = False) -> dict[str, int]:
        # By the known cache kinds, not the set of kinds: a process of a version before the set
        # (a rolling upgrade) writes entries whose kind the set may lack, and a reset must not
        # leave them. Every other kind is state: it cannot be fetched again (base.CACHE_KINDS).
        names = [self.k("c", kind) for kind in CACHE_KINDS] + ([self.k("tokens")] if include_tokens else [])
        labels = list(CACHE_KINDS) + (["token_caches"] if include_tokens else [])
        pipe = self.r.pipeline(transaction=True)
        for name in names:
            pipe.hlen(name)
        pipe.delete(*names)
        *lengths, _ = pipe.execute()
        return {label: n for label, n in zip(labels, lengths) if n}

    # ---- token caches, encrypted ----
    def _decrypt(self, what: str, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise ConfigError(f"{what} in the shared store cannot be decrypted with store_key",
                              hint="store_key changed: put the key it was written with on a later line of "
                                   "store_key_file (then `msteams store rotate-key`), or sign in again "
                                   "(`msteams auth login`)") from None

    def _encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def load_tokens(self, name: str) -> str | None:
        token = self.r.hget(self.k("tokens"), name)
        return None if token is None else self._decrypt(f"token cache {name!r}", token)

    def save_tokens(self, name: str, blob: str) -> None:
        self.r.hset(self.k("tokens"), name, self._encrypt(blob))

    def clear_tokens(self, name: str | None = None) -> int:
        if name:
            return self.r.hdel(self.k("tokens"), name)
        n = self.r.hlen(self.k("tokens"))
        self.r.delete(self.k("tokens"))
        return n

    def rotate_key(self) -> dict[str, int]:
        """Re-encrypt every token cache and secret under store_key's first key (after a new key
        was put first and the old one kept on a later line)."""
        counts = {}
        for name in ("tokens", "secrets"):
            n = 0
            for field, token in self.r.hgetall(self.k(name)).items():
                self._decrypt(f"{name[:-1]} {field!r}", token)  # a clear error if no key fits
                self.r.hset(self.k(name), field, self._fernet.rotate(token.encode("ascii")).decode("ascii"))
                n += 1
            counts[name] = n
        return counts

    # ---- sent-message references ----
    def save_message_ref(self, ref: str, value: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("refs"), ref, json.dumps(value))
        pipe.zadd(self.k("refs", "at"), {ref: self._clock()})  # for purge_history (store prune)
        pipe.execute()

    def get_message_ref(self, ref: str) -> dict | None:
        raw = self.r.hget(self.k("refs"), ref)
        return json.loads(raw) if raw else None

    # ---- outbox: a hash per key, and a sorted set of keys by last update ----
    _OUTBOX_COLS = ("key", "state", "target", "message_id", "reason", "attempts", "lease_until", "owner", "created",
                    "updated")

    def _outbox_decode(self, h: dict) -> dict | None:
        if not h:
            return None
        return {"key": h.get("key"), "state": h.get("state"), "target": h.get("target") or "",
                "message_id": _str(h.get("message_id")), "reason": _str(h.get("reason")),
                "attempts": int(h.get("attempts") or 0), "lease_until": _float(h.get("lease_until")),
                "owner": _str(h.get("owner")), "created": _float(h.get("created")), "updated": _float(h.get("updated"))}

    def outbox_claim(self, key: str, *, target: str = "", lease: float, owner: str = "",
                     holder_alive=assume_alive) -> dict:
        """As base.Store.outbox_claim, decided in a WATCH/MULTI transaction (retried if another
        process changed the key meanwhile)."""
        hkey = self.k("outbox", key)
        result: dict = {}

        def decide(pipe):
            now = self._clock()
            row = self._outbox_decode(pipe.hgetall(hkey))
            prior, take = claim_decision(row, now, holder_alive)
            if row is None:
                row = {"key": key, "state": "claimed", "target": target, "attempts": 0}
                pipe.multi()
                pipe.hset(hkey, mapping={"key": key, "state": "claimed", "target": target, "attempts": 0,
                                         "lease_until": repr(now + lease), "owner": owner, "created": repr(now),
                                         "updated": repr(now)})
                pipe.zadd(self.k("outbox"), {key: now})
            elif take:
                pipe.multi()
                pipe.hset(hkey, mapping={"state": "claimed", "lease_until": repr(now + lease), "owner": owner,
                                         "updated": repr(now)})
                pipe.zadd(self.k("outbox"), {key: now})
            result.update(prior=prior, row=row)

        self.r.transaction(decide, hkey)
        return result

    def outbox_set(self, key: str, state: str, *, message_id: str | None = None, reason: str | None = None,
                   attempt: bool = False, lease: float | None = None) -> None:
        now = self._clock()
        hkey = self.k("outbox", key)
        fields = {"state": state, "reason": reason or "", "lease_until": repr(now + lease) if lease else "",
                  "updated": repr(now)}
        if message_id is not None:
            fields["message_id"] = message_id

        def update(pipe):
            pipe.hset(hkey, mapping=fields)
            if attempt:
                pipe.hincrby(hkey, "attempts", 1)
            pipe.zadd(self.k("outbox"), {key: now})

        self._update_existing(hkey, update)  # as the SQL UPDATE of a missing row: nothing

    def outbox_get(self, key: str) -> dict | None:
        return self._outbox_decode(self.r.hgetall(self.k("outbox", key)))

    def outbox_list(self, state: str | None = None, limit: int = 1000) -> list[dict]:
        out: list[dict] = []
        for keys in self._chunks_of(self.k("outbox")):
            if len(out) >= limit:
                break
            pipe = self.r.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self.k("outbox", key))
            for h in pipe.execute():
                row = self._outbox_decode(h)
                if row is not None and (state is None or row["state"] == state):
                    out.append(row)
                    if len(out) >= limit:
                        break
        return out

    def outbox_delete(self, key: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k("outbox", key))
        pipe.zrem(self.k("outbox"), key)
        pipe.execute()

    # ---- retention (msteams store prune) ----
    def purge_history(self, before: float, *, dry_run: bool = False) -> dict[str, int]:
        """As base.Store.purge_history. Each record is deleted in a WATCHed MULTI that checks it
        again, so one changed meanwhile (a delivery claimed again, a question answered) stays."""
        awaited = {q for rid in self.r.smembers(self.k("runs", "waiting"))
                   if (q := self._waiting_on("waiting", (self.run_get(rid) or {}).get("state") or {}))}

        def purge(hkey: str, done, also=lambda pipe, h: None) -> int:
            def decide(pipe) -> int:
                h = pipe.hgetall(hkey)
                if not (h and done(h) and (_float(h.get("updated")) or 0) < before):
                    return 0
                if not dry_run:
                    pipe.multi()
                    pipe.delete(hkey)
                    also(pipe, h)
                return 1

            return self._watched(hkey, decide)

        def old(zkey: str) -> list[str]:  # members scored by a time: updated (outbox), created (runs, questions)
            return self.r.zrangebyscore(zkey, "-inf", f"({before!r}")

        counts = {
            "outbox": sum(purge(self.k("outbox", key), lambda h: h.get("state") in ("sent", "failed"),
                                lambda pipe, h, key=key: pipe.zrem(self.k("outbox"), key))
                          for key in old(self.k("outbox"))),
            "runs": sum(purge(self.k("run", rid), lambda h: h.get("status") in ("ok", "failed"),
                              lambda pipe, h, rid=rid: self._forget_run(pipe, rid, h))
                        for rid in old(self.k("runs"))),
            "questions": sum(purge(self.k("q", qid), lambda h, qid=qid: h.get("status") != "open" and qid not in awaited,
                                   lambda pipe, h, qid=qid: pipe.zrem(self.k("qs"), qid))
                             for qid in old(self.k("qs"))),
            "bot_audit": self._purge_audit(before, dry_run),
            "call_events": 0,
            "message_refs": 0,
            "expired_entries": 0,
        }
        for key in self.r.scan_iter(match=_glob_escape(self.k("call", "")) + "*", count=1000):
            counts["call_events"] += self._purge_call(key, before, dry_run)
        counts["message_refs"] = self._purge_refs(before, dry_run)
        counts["expired_entries"] = self._purge_expired(before, dry_run)
        return counts

    def _purge_refs(self, before: float, dry_run: bool) -> int:
        """Sent-message references saved before ``before``, 500 a script. (One saved by a version
        that kept no time has none, and stays.)"""
        refs, times, upto = self.k("refs"), self.k("refs", "at"), f"({before!r}"
        if dry_run:
            return self.r.zcount(times, "-inf", upto)
        n = 0
        while True:
            chunk = self.r.zrangebyscore(times, "-inf", upto, start=0, num=500)
            if not chunk:
                return n
            n += self.r.eval(_PURGE_REFS, 2, refs, times, repr(before), *chunk)

    def _purge_expired(self, before: float, dry_run: bool) -> int:
        """Entries of every kind but KEPT_EXPIRED's that expired before ``before``: each kind's hash
        scanned, a field deleted only if it still holds the entry read (500 a round trip)."""
        n = 0
        for kind in self._kinds():
            if kind in KEPT_EXPIRED:
                continue
            hkey, gone = self.k("c", kind), []
            for field, raw in self.r.hscan_iter(hkey, count=1000):
                expires = self._split(raw)[1]
                if expires is not None and expires < before:
                    gone.append((field, raw))
                    if len(gone) >= 500:
                        n += self._delete_unchanged(hkey, gone, dry_run)
                        gone = []
            n += self._delete_unchanged(hkey, gone, dry_run)
        return n

    def _delete_unchanged(self, hkey: str, fields: list[tuple[str, str]], dry_run: bool) -> int:
        if dry_run or not fields:
            return len(fields)
        pipe = self.r.pipeline(transaction=False)
        for field, raw in fields:
            pipe.eval(_HDEL_IF, 1, hkey, field, raw)
        return sum(pipe.execute())

    def _purge_call(self, key: str, before: float, dry_run: bool) -> int:
        """A call's events, all of them once its last one is older than ``before`` (WATCHed: an
        event added meanwhile keeps the call)."""
        def decide(pipe) -> int:
            last = pipe.lindex(key, -1)
            if last is None or json.loads(last).get("time", 0) >= before:
                return 0
            n = pipe.llen(key)
            if not dry_run:
                pipe.multi()
                pipe.delete(key)
            return n

        return self._watched(key, decide)

    def _forget_run(self, pipe, rid: str, h: dict) -> None:
        pipe.zrem(self.k("runs"), rid)
        pipe.srem(self.k("runs", "waiting"), rid)
        if h.get("run_key"):  # the key may name a newer run by now: only this run's mapping goes
            pipe.eval(_DEL_IF, 1, self.k("runkey", h["run_key"]), rid)

    def _purge_audit(self, before: float, dry_run: bool) -> int:
        """Audit entries oldest first (the order is by sequence, which follows time), up to the
        first one newer than ``before``: a chunk at a time, each deleted before the next is
        read, so a long log is never held whole."""
        order, data = self.k("audit", "order"), self.k("audit", "data")
        n = kept = 0  # entries deleted (or counted); ids left in front (a dry run's)
        while True:
            ids = self.r.zrange(order, kept, kept + 499)
            if not ids:  # an empty log (or the end of it): HMGET of no fields is an error in Redis
                return n
            old, entries = [], []
            for aid, raw in zip(ids, self.r.hmget(data, ids)):
                e = json.loads(raw) if raw is not None else None
                if e is not None and e["time"] >= before:
                    break
                old.append(aid)
                if e is not None:
                    entries.append(e)
            if old and not dry_run:
                pipe = self.r.pipeline(transaction=True)
                pipe.hdel(data, *old)
                pipe.zrem(order, *old)
                activities = [e["activity_id"] for e in entries if e.get("activity_id")]
                if activities:
                    pipe.hdel(self.k("audit", "activity"), *activities)
                pipe.execute()
            n += len(entries)
            kept += len(old) if dry_run else 0
            if not old or len(old) < len(ids):
                return n

    # ---- playbook runs ----
    _RUN_COLS = ("id", "run_key", "playbook", "name", "status", "owner", "lease_until", "state", "created", "updated")

    def _run_decode(self, h: dict) -> dict | None:
        if not h:
            return None
        return {"id": h["id"], "run_key": _str(h.get("run_key")), "playbook": h.get("playbook"), "name": h.get("name"),
                "status": h.get("status"), "owner": _str(h.get("owner")), "lease_until": _float(h.get("lease_until")),
                "state": json.loads(h.get("state") or "{}"), "created": _float(h.get("created")),
                "updated": _float(h.get("updated"))}

    def _waiting_on(self, status: str, state: dict) -> str | None:
        if status != "waiting" or not isinstance(state, dict):
            return None
        w = state.get("waiting")
        return w.get("question") if isinstance(w, dict) else None

    def run_create(self, run: dict, *, lease: float) -> dict:
        """As base.Store.run_create: a run key names one run, whichever process creates it first
        (decided in a WATCH/MULTI transaction on the key)."""
        now = self._clock()
        key = self.k("runkey", run["run_key"]) if run.get("run_key") else None
        fields = {"id": run["id"], "run_key": run.get("run_key") or "", "playbook": run["playbook"], "name": run["name"],
                  "status": run["status"], "owner": run.get("owner") or "", "lease_until": repr(now + lease),
                  "state": json.dumps(run["state"]), "created": repr(now), "updated": repr(now)}
        result: dict = {}

        def create(pipe):  # called again if the key changed meanwhile: starts from nothing
            result.clear()
            if key is not None:
                existing = pipe.get(key)
                if existing and pipe.exists(self.k("run", existing)):
                    result["existing"] = existing
                    return
            pipe.multi()
            if key is not None:
                pipe.set(key, run["id"])
            pipe.hset(self.k("run", run["id"]), mapping=fields)
            pipe.zadd(self.k("runs"), {run["id"]: now})
            if self._waiting_on(run["status"], run["state"]):
                pipe.sadd(self.k("runs", "waiting"), run["id"])

        self.r.transaction(create, *([key] if key else []))
        if result.get("existing"):
            return self.run_get(result["existing"])
        return dict(run, created=now, updated=now, lease_until=now + lease)

    def run_claim(self, run_id: str, owner: str, *, lease: float, holder_alive) -> dict | None:
        hkey = self.k("run", run_id)
        result: dict = {}

        def decide(pipe):
            now = self._clock()
            row = self._run_decode(pipe.hgetall(hkey))
            result["row"] = row
            if row is None:
                return
            held = row["status"] == "running" and (row["lease_until"] or 0) > now and row["owner"] != owner
            if held and holder_alive(row["owner"]):
                result["row"] = None
                return
            pipe.multi()
            fields = {"owner": owner, "lease_until": repr(now + lease), "updated": repr(now)}
            if row["status"] == "waiting":
                fields["status"] = "running"
                pipe.srem(self.k("runs", "waiting"), run_id)
            pipe.hset(hkey, mapping=fields)

        self.r.transaction(decide, hkey)
        return result["row"]

    def run_claim_waiting(self, run_id: str, owner: str, *, lease: float) -> dict | None:
        now = self._clock()
        won = self._scripts["claim_waiting"](keys=[self.k("run", run_id), self.k("runs", "waiting")],
                                            args=[owner, repr(now + lease), repr(now), run_id])
        return self.run_get(run_id) if won else None

    def runs_waiting_on(self, question_id: str) -> list[str]:
        ids = sorted(self.r.smembers(self.k("runs", "waiting")))
        out = []
        for rid in ids:
            row = self.run_get(rid)
            if row is not None and self._waiting_on(row["status"], row["state"]) == question_id:
                out.append(rid)
        return out

    def run_save(self, run_id: str, status: str, state: dict, *, lease: float) -> None:
        now = self._clock()
        hkey = self.k("run", run_id)
        fields = {"status": status, "state": json.dumps(state, default=str), "lease_until": repr(now + lease),
                  "updated": repr(now)}

        def update(pipe):
            pipe.hset(hkey, mapping=fields)
            if self._waiting_on(status, state):
                pipe.sadd(self.k("runs", "waiting"), run_id)
            else:
                pipe.srem(self.k("runs", "waiting"), run_id)

        self._update_existing(hkey, update)

    def run_get(self, run_id: str) -> dict | None:
        return self._run_decode(self.r.hgetall(self.k("run", run_id))) if run_id else None

    def run_list(self, status: str | None = None, limit: int = 50) -> list[dict]:
        out: list[dict] = []
        for ids in self._chunks_of(self.k("runs"), newest_first=True, size=200):
            if len(out) >= limit:
                break
            for rid in ids:
                row = self.run_get(rid)
                if row is None or (status and row["status"] != status):
                    continue
                out.append({"id": row["id"], "run_key": row["run_key"], "name": row["name"], "status": row["status"],
                            "owner": row["owner"], "created": row["created"], "updated": row["updated"],
                            "waiting_for": ((row["state"] or {}).get("waiting") or {}).get("question")
                            if isinstance((row["state"] or {}).get("waiting"), dict) else None})
                if len(out) >= limit:
                    break
        return out

    # ---- bot conversation references ----
    def conversation_put(self, key: str, kind: str, value: dict) -> None:
        self.r.hset(self.k("conv"), key, json.dumps({"kind": kind, "value": value, "updated": self._clock()}))

    def conversation_get(self, key: str) -> dict | None:
        raw = self.r.hget(self.k("conv"), key)
        return json.loads(raw)["value"] if raw else None

    def conversation_list(self, kind: str | None = None, limit: int = 1000) -> list[dict]:
        rows = []
        for key, raw in self.r.hscan_iter(self.k("conv"), count=1000):
            d = json.loads(raw)
            if kind is None or d["kind"] == kind:
                rows.append({"key": key, "kind": d["kind"], "value": d["value"], "updated": d["updated"]})
        rows.sort(key=lambda r: r["updated"], reverse=True)
        return rows[:limit]

    # ---- bot audit log ----
    AUDIT_COLS = AUDIT_COLS  # base's: the fields audit_list answers

    def audit_add(self, row: dict) -> int | None:
        if row.get("activity_id"):
            return int(self._audit_once(row, self.r)) or None
        _, entry = self._audit_entry(row)
        new = self.r.incr(self.k("audit", "seq"))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("audit", "data"), new, json.dumps(entry))
        pipe.zadd(self.k("audit", "order"), {new: new})
        pipe.execute()
        return int(new)

    def _audit_entry(self, row: dict) -> tuple[float, dict]:
        now = self._clock()
        entry = {c: row.get(c) for c in self.AUDIT_COLS if c not in ("id", "time")}
        entry.update(time=now, updated=now)
        return now, entry

    def _audit_once(self, row: dict, client):
        """An entry with an activity id, appended unless that id was recorded before (the script:
        atomic), by ``client``."""
        keys, args = self._append_once(row)
        return self._scripts["append_once"](keys=keys, args=args, client=client)

    def _append_once(self, row: dict) -> tuple[list, list]:
        """The keys and arguments of the append_once script for ``row``."""
        now, entry = self._audit_entry(row)
        return ([self.k("audit", "activity"), self.k("audit", "seq"), self.k("audit", "data"), self.k("audit", "order")],
                [row["activity_id"], json.dumps(entry), repr(now)])

    def audit_add_many(self, rows: list[dict]) -> None:
        """Each entry as audit_add writes it, in order (each atomic on its own: Redis has no
        rollback); when each has an activity id (an API call's entries do), in one round trip.

        The script goes into the pipeline by its digest (EVALSHA): redis-py's script objects
        would first ask whether the server has it (SCRIPT EXISTS, a round trip more a batch). A
        server that lost it (restarted, SCRIPT FLUSH) answers NOSCRIPT; the batch is then sent
        again once the script is loaded, and each entry is still appended once, by its id."""
        if not (len(rows) > 1 and all(row.get("activity_id") for row in rows)):
            for row in rows:
                self.audit_add(row)
            return
        from redis.exceptions import NoScriptError

        script = self._scripts["append_once"]
        for attempt in range(2):
            pipe = self.r.pipeline(transaction=False)
            for row in rows:
                keys, args = self._append_once(row)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                pipe.execute()
                return
            except NoScriptError:
                if attempt:
                    raise
                self.r.script_load(script.script)

    def audit_update(self, audit_id: int, **fields) -> None:
        cols = [c for c in fields if c in self.AUDIT_COLS and c not in ("id", "time")]
        if not cols:
            return
        hkey = self.k("audit", "data")

        def update(pipe):
            raw = pipe.hget(hkey, audit_id)
            if raw is None:
                return
            entry = json.loads(raw)
            entry.update({c: fields[c] for c in cols}, updated=self._clock())
            pipe.multi()
            pipe.hset(hkey, audit_id, json.dumps(entry))

        self.r.transaction(update, hkey)

    def audit_list(self, *, limit: int = 50, sender: str | None = None, since: float | None = None) -> list[dict]:
        out: list[dict] = []
        for aid, e in self._journal(self.k("audit", "order"), self.k("audit", "data"), newest_first=True):
            if len(out) >= limit or (since is not None and e["time"] < since):
                break  # newest first: the rest is older still
            if sender and e.get("sender_id") != sender and (e.get("sender_name") or "").lower() != sender.lower():
                continue
            out.append({c: (int(aid) if c == "id" else e.get(c)) for c in self.AUDIT_COLS})
        return out

    # ---- call state changes ----
    def call_event_add(self, call_id: str, state: str, *, code: int | None = None, subcode: int | None = None,
                       message: str | None = None) -> None:
        self.r.rpush(self.k("call", call_id), json.dumps({"state": state, "code": code, "subcode": subcode,
                                                           "message": message, "time": self._clock()}))

    def call_events(self, call_id: str) -> list[dict]:
        return [json.loads(x) for x in self.r.lrange(self.k("call", call_id), 0, -1)]

    # ---- questions: a hash each, a sorted set by creation, the open ones with an expiry by it ----
    _Q_COLS = ("id", "status", "value", "expires", "answer", "responder_id", "responder_name", "reason", "answered",
               "created", "updated")

    def _q_decode(self, h: dict) -> dict | None:
        if not h:
            return None
        return {"id": h["id"], "status": h["status"], "value": json.loads(h["value"]), "expires": _float(h.get("expires")),
                "answer": h.get("answer"), "responder_id": _str(h.get("responder_id")),
                "responder_name": _str(h.get("responder_name")), "reason": _str(h.get("reason")),
                "answered": _float(h.get("answered")), "created": _float(h.get("created")),
                "updated": _float(h.get("updated"))}

    def question_create(self, qid: str, value: dict, expires: float | None) -> tuple[dict, bool]:
        now = self._clock()
        hkey = self.k("q", qid)
        created: list = []

        def create(pipe):  # called again if the question changed meanwhile: starts from nothing
            created.clear()
            if pipe.hexists(hkey, "status"):
                return
            pipe.multi()
            pipe.hset(hkey, mapping={"id": qid, "status": "open", "value": json.dumps(value), "expires": _num(expires),
                                     "created": repr(now), "updated": repr(now)})
            pipe.zadd(self.k("qs"), {qid: now})
            if expires is not None:
                pipe.zadd(self.k("qs", "open"), {qid: expires})
            created.append(True)

        self.r.transaction(create, hkey)
        return self.question_get(qid), bool(created)

    def question_get(self, qid: str) -> dict | None:
        h = self.r.hgetall(self.k("q", qid))
        return self._q_decode(h) if h.get("status") else None

    def question_set_value(self, qid: str, value: dict) -> None:
        fields = {"value": json.dumps(value), "updated": repr(self._clock())}
        self._update_existing(self.k("q", qid), lambda pipe: pipe.hset(self.k("q", qid), mapping=fields))

    def question_answer(self, qid: str, answer: str, responder_id: str, responder_name: str,
                        reason: str | None) -> bool:
        won = self._scripts["answer"](keys=[self.k("q", qid), self.k("qs", "open")],
                                      args=[answer, responder_id or "", responder_name or "", reason or "",
                                            repr(self._clock()), qid])
        return bool(won)

    def questions_expire(self, qid: str | None = None) -> list[str]:
        now = self._clock()
        due = [qid] if qid else self.r.zrangebyscore(self.k("qs", "open"), "-inf", now)
        return [i for i in due
                if self._scripts["expire"](keys=[self.k("q", i), self.k("qs", "open")], args=[repr(now), i])]

    def question_list(self, status: str | None = None, limit: int = 100) -> list[dict]:
        out = []
        for qid in self.r.zrevrange(self.k("qs"), 0, -1):
            q = self.question_get(qid)
            if q is not None and (status is None or q["status"] == status):
                out.append(q)
                if len(out) >= limit:
                    break
        return out

    # ---- mirrored incidents ----
    def _mirror_decode(self, h: dict) -> dict | None:
        if not h:
            return None
        return dict(json.loads(h["value"]), incidentId=h["incident_id"], conversationId=h["conversation_id"],
                    kind=h["kind"], status=h["status"], created=float(h["created"]), updated=float(h["updated"]))

    def mirror_get(self, incident_id: str) -> dict | None:
        return self._mirror_decode(self.r.hgetall(self.k("mirror", incident_id)))

    def mirror_for_conversation(self, conversation_id: str) -> dict | None:
        best = None
        for inc in self.r.smembers(self.k("mirror", "conv", conversation_id)):
            m = self.mirror_get(inc)
            if m and m["conversationId"] == conversation_id and m["status"] == "open" and \
                    (best is None or m["updated"] > best["updated"]):
                best = m
        return best

    def mirror_put(self, incident_id: str, conversation_id: str, kind: str, status: str, value: dict) -> dict:
        now = self._clock()
        hkey = self.k("mirror", incident_id)

        def write(pipe):
            created = pipe.hget(hkey, "created")
            prev_conv = pipe.hget(hkey, "conversation_id")
            pipe.multi()
            pipe.hset(hkey, mapping={"incident_id": incident_id, "conversation_id": conversation_id, "kind": kind,
                                     "status": status, "value": _encode(value), "created": created or repr(now),
                                     "updated": repr(now)})
            if prev_conv and prev_conv != conversation_id:
                pipe.srem(self.k("mirror", "conv", prev_conv), incident_id)
            pipe.sadd(self.k("mirror", "conv", conversation_id), incident_id)
            if not created:
                pipe.zadd(self.k("mirrors"), {incident_id: now})

        self.r.transaction(write, hkey)
        return self.mirror_get(incident_id)

    def mirror_list(self, status: str | None = None) -> list[dict]:
        out = []
        for inc in self.r.zrange(self.k("mirrors"), 0, -1):
            m = self.mirror_get(inc)
            if m is not None and (status is None or m["status"] == status):
                out.append(m)
        return out

    def mirror_entry_add(self, incident_id: str, activity_id: str, value: dict) -> int | None:
        entry = json.dumps({"incident_id": incident_id, "activity_id": activity_id, "time": self._clock(),
                            "value": _encode(value)})
        new = self._scripts["append_once"](
            keys=[self.k("mj", "activity"), self.k("mj", "seq"), self.k("mj", "data"), self.k("mj", "order"),
                  self.k("mj", "incident", incident_id)], args=[activity_id, entry, "0"])
        return int(new) or None

    def mirror_entries(self, incident_id: str | None = None, *, since: float | None = None,
                       limit: int = 10000) -> list[dict]:
        order = self.k("mj", "incident", incident_id) if incident_id is not None else self.k("mj", "order")
        out: list[dict] = []
        for seq, e in self._journal(order, self.k("mj", "data")):
            if len(out) >= limit:
                break
            if since is not None and e["time"] < since:
                continue
            out.append(dict(json.loads(e["value"]), seq=int(seq), incidentId=e["incident_id"],
                            activityId=e["activity_id"], journaledAt=e["time"]))
        return out

    def secret(self, name: str, make) -> str:
        """A secret of this store (made once by ``make()``), encrypted under store_key."""
        token = self.r.hget(self.k("secrets"), name)
        if token is None:
            self.r.hsetnx(self.k("secrets"), name, self._encrypt(make()))
            token = self.r.hget(self.k("secrets"), name)  # the first writer's, if another process won
        return self._decrypt(f"secret {name!r}", token)

    def forget_secret(self, name: str) -> bool:
        return bool(self.r.hdel(self.k("secrets"), name))

    # ---- locks (tokenlock.StoreLock) ----
    def lock_try(self, name: str, holder: dict, *, now: float, lease: float, holder_alive) -> dict:
        """As base.Store.lock_try, decided in a WATCH/MULTI transaction."""
        key = self.k("lock", name)
        result: dict = {}

        def decide(pipe):
            raw = pipe.get(key)
            cur = json.loads(raw) if raw else None
            if cur is not None and cur["owner"] != holder["owner"] and cur["expires"] > now and \
                    holder_alive(cur["host"], cur["pid"], cur.get("started")):
                result.update(held=cur, previous=None)
                return
            pipe.multi()
            # The row's lease decides (compared with the caller's clock); Redis expiry only
            # cleans up after holders that never came back.
            pipe.set(key, json.dumps(dict(holder, taken=now, expires=now + lease)), px=int((lease + 60) * 1000))
            result.update(held=None, previous=cur)

        self.r.transaction(decide, key)
        return result

    def lock_release(self, name: str, owner: str) -> None:
        self._scripts["release"](keys=[self.k("lock", name)], args=[owner])


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _glob_escape(text: str) -> str:
    """Text as a literal in a Redis MATCH pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
