"""API keys of the HTTP API: made, listed, revoked and checked; what a key's scopes allow; a
rate limit per key.

A key is ``mst_`` and 43 random base62 characters (256 bits; the prefix lets a secret scanner
recognise one). It is shown once, by ``msteams api-key create``; the store keeps only its
sha256 (a fast hash is enough for a random key of that length: there is nothing to guess) in
the kind ``api_key``, state that ``cache-reset`` never removes, keyed by that hash, with the
key's name, scopes, creation and expiry (the store's TTL too, so an expired key is gone for
every process). Every request reads the record again: a key revoked by one process is refused
by every process sharing the store on its next request. When it was last used is kept apart
(``api_key_used``, written at most once a minute per key and process), so that a request never
writes a revoked key back.

Scopes: a command name (or one of its aliases, kept as the name), or a glob over command names
(``chat-*``, ``*``). A destructive command (``destructive: true`` in commands.yml) is allowed
only by a scope naming it, never by a glob; so is ``metrics`` (``GET /metrics`` on a service
not bound to loopback).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from fnmatch import fnmatchcase

from integration.engine.errors import InputError
from integration.engine.untrusted import quote

PREFIX = "mst_"
KIND = "api_key"
USED_KIND = "api_key_used"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"mst_[0-9A-Za-z]{43}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
GLOB_CHARS = set("*?[")
# Scopes that name something other than a command: granted only by name, as destructive commands are.
SPECIAL_SCOPES = {"metrics": "GET /metrics on a service not bound to loopback"}
# Starting, reading and resuming a shipped playbook's runs: playbook:NAME, or a glob over
# playbooks (playbook:*); a glob over commands never grants one.
PLAYBOOK = "playbook:"
USED_EVERY = 60.0  # seconds between two writes of a key's last use by one process


def new_token() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(43))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> float:
    """'90d', '12h', '30m', '2w', '1y' (365 days) as seconds; 'never' as 0."""
    if text.strip().lower() == "never":
        return 0.0
    m = re.fullmatch(r"\s*(\d{1,6})\s*([mhdwy])\s*", text.lower())
    if not m or int(m.group(1)) == 0:
        raise InputError(f"--expires {quote(text)}: give a duration such as 30m, 12h, 90d, 2w, 1y (or never)")
    return int(m.group(1)) * {"m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[m.group(2)]


def is_glob(scope: str) -> bool:
    return bool(GLOB_CHARS & set(scope))


def check_scopes(scopes: list[str], registry) -> list[str]:
    """Scopes as kept: each a command name (aliases turned into the name), a glob matching at
    least one command, or a special scope. An InputError names the first that is none of these."""
    if not scopes:
        raise InputError("give at least one --scope (a command name or a glob such as 'chat-*'): a key "
                         "without scopes could do nothing")
    out: list[str] = []
    for raw in scopes:
        scope = raw.strip()
        if scope in SPECIAL_SCOPES:
            kept = scope
        elif scope.startswith(PLAYBOOK):
            from integration.playbooks.loader import shipped

            names = list(shipped())
            book = scope[len(PLAYBOOK):]
            if not (any(fnmatchcase(n, book) for n in names) if is_glob(book) else book in names):
                raise InputError(f"--scope {quote(raw)}: no shipped playbook {'matches' if is_glob(book) else 'is'} "
                                 f"{quote(book)}", hint="`msteams playbook list` lists them")
            kept = scope
        elif is_glob(scope):
            if not re.fullmatch(r"[a-z0-9*?\[\]!-]+", scope):
                raise InputError(f"--scope {quote(raw)}: a glob over command names uses lowercase letters, digits, "
                                 "dashes and * ? [ ]")
            if not any(fnmatchcase(n, scope) for n in registry.names()):
                raise InputError(f"--scope {quote(raw)} matches no command", hint="`msteams --help` lists the commands")
            kept = scope
        else:
            spec = registry.get(scope) if scope else None
            if spec is None:
                raise InputError(f"--scope {quote(raw)}: no such command",
                                 hint="a scope is a command name, a glob such as 'chat-*', or: "
                                      + ", ".join(SPECIAL_SCOPES))
            kept = spec.name
        if kept not in out:
            out.append(kept)
    return out


def allows(scopes, name: str, *, destructive: bool = False) -> bool:
    """Whether scopes allow a command (or special scope): by name always; by a glob only when
    the command is not destructive (special scopes are never matched by a glob)."""
    for scope in scopes:
        if scope == name:
            return True
        if name.startswith(PLAYBOOK):  # only a glob over playbooks
            if scope.startswith(PLAYBOOK) and is_glob(scope) and fnmatchcase(name, scope):
                return True
            continue
        if not destructive and name not in SPECIAL_SCOPES and is_glob(scope) and not scope.startswith(PLAYBOOK) \
                and fnmatchcase(name, scope):
            return True
    return False


def only_by_name(scopes, registry) -> list[str]:
    """The destructive commands a key's scopes name (what its globs leave out, said at create)."""
    return [s for s in scopes if not is_glob(s) and (spec := registry.get(s)) is not None and spec.destructive]


class Refused(Exception):
    """A key that cannot be used: missing from the store, revoked, expired or malformed."""


class Keys:
    """The API keys in a store."""

    def __init__(self, store, *, clock=time.time):
        self.store = store
        self.clock = clock
        self._used: dict[str, float] = {}  # digest -> when this process last wrote its use
        self._lock = threading.Lock()

    # ---- made, listed, revoked (msteams api-key ...) ----
    def create(self, name: str, scopes: list[str], *, expires_in: float = 0.0,
               tenants: list[str] | None = None) -> tuple[str, dict]:
        """A new key: (the key, to be shown once; its record). A live key of the same name is
        refused (revoke it first); an expired one is replaced. ``tenants``: the tenant profiles
        (names or globs) it may act for, on a service with tenant profiles (tenancy.py)."""
        if not NAME.fullmatch(name or ""):
            raise InputError(f"--name {quote(name)}: 1 to 64 letters, digits, dots, dashes or underscores")
        for entry in self._entries():
            if entry["value"].get("name") == name:
                if not entry["expired"]:
                    raise InputError(f"an API key named {quote(name)} exists", hint=f"`msteams api-key revoke {name}` first")
                self._forget(entry["key"])
        token = new_token()
        now = self.clock()
        record = {"name": name, "scopes": list(scopes), "tenants": list(tenants or []), "created": now,
                  "expires": now + expires_in if expires_in else None, "shown": token[:8] + "...",
                  "sha256": digest(token)}
        self.store.put(KIND, record["sha256"], record, ttl=expires_in or None)
        return token, record

    def list(self) -> list[dict]:
        """Every key, by name: name, scopes, created, expires, last_used, status (active,
        expired); never the key."""
        out = []
        for entry in self._entries():
            v = {k: x for k, x in entry["value"].items() if k != "sha256"}
            v["last_used"] = self.store.get(USED_KIND, entry["key"])
            v["status"] = "expired" if entry["expired"] or (v.get("expires") and v["expires"] <= self.clock()) \
                else "active"
            out.append(v)
        return sorted(out, key=lambda v: (v.get("name") or "", v.get("created") or 0))

    def revoke(self, name: str) -> int:
        """Forget every key of that name: refused by every process from its next request. How many."""
        gone = 0
        for entry in self._entries():
            if entry["value"].get("name") == name:
                self._forget(entry["key"])
                gone += 1
        return gone

    def _entries(self) -> list[dict]:
        return [e for e in self.store.entries(KIND) if isinstance(e.get("value"), dict)]

    def _forget(self, key: str) -> None:
        self.store.delete(KIND, key)
        self.store.delete(USED_KIND, key)

    # ---- checked on every request ----
    def authenticate(self, token: str) -> dict:
        """The record of a key sent with a request (read from the store every time), or Refused."""
        if not _TOKEN.fullmatch(token or ""):
            raise Refused("not an API key of this service")
        key = digest(token)
        record = self.store.get(KIND, key)
        if not isinstance(record, dict) or not hmac.compare_digest(str(record.get("sha256", "")), key):
            raise Refused("unknown or revoked API key")
        if record.get("expires") and record["expires"] <= self.clock():
            raise Refused("expired API key")
        self._note_use(key)
        return record

    def _note_use(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            if now - self._used.get(key, 0.0) < USED_EVERY:
                return
            self._used[key] = now
        try:
            self.store.put(USED_KIND, key, now, ttl=None)
        except Exception:  # noqa: BLE001 - the last use is a courtesy; a failing write must not refuse the call
            pass


class RateLimiter:
    """A token bucket per key, in this process: ``rate`` requests a second on average, bursts of
    ``burst``. ``take(name)`` is 0 when the request may go, else the seconds until it may."""

    def __init__(self, rate: float, burst: int, *, clock=time.monotonic):
        self.rate, self.burst, self.clock = float(rate), max(1, int(burst)), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0
