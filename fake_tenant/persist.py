"""The fake tenant's state on disk (``msteams emulator serve --state FILE``): what callers
created (chats, messages, channels, teams and memberships, bot conversations, activities,
meetings, calls...) and the refresh tokens Entra issued, kept across restarts as a real
tenant keeps them.

The file is JSON written by a generic round trip of :class:`~fake_tenant.state.TenantState`'s
attributes: dataclasses, sets, tuples and dicts with non-text keys are tagged, so a field or
attribute added to the state later is saved and loaded without code here. Only dataclasses of
the ``fake_tenant`` package are rebuilt from a file, and only attributes a fresh TenantState
has are set; anything else in the file (another program's JSON, another tenant, another seed,
a damaged file) is a :class:`StateFileError` whose message is one line naming the file.

Writes are atomic (a temporary file in the same directory, then a rename) and private (mode
0600: the state holds the tenant's messages and live refresh tokens).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

from .state import TenantState

FORMAT = "msteams-soar fake tenant state"
VERSION = 1

# TenantState attributes that are not the tenant's data: the lock is the process's, and the
# seed is what --tenant/--users give at every start (the file only records its fingerprint).
_NOT_SAVED = frozenset({"lock", "_seed"})

# Tags of the values JSON has no type for; a plain dict using one of them as a key is written
# in the tagged form too, so it cannot be mistaken for one on the way back.
_DC, _SET, _TUPLE, _DICT = "__dataclass__", "__set__", "__tuple__", "__dict__"
_TAGS = frozenset({_DC, _SET, _TUPLE, _DICT})
_PACKAGE = __name__.rpartition(".")[0]  # "fake_tenant"


class StateFileError(ValueError):
    """A state file that cannot be loaded or written; ``str()`` is one line naming the file."""


# ---- the generic round trip ----

def encode(value: Any) -> Any:
    """``value`` as JSON-ready data; raises TypeError for a type the file cannot hold."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not _TAGS.intersection(value):
            return {k: encode(v) for k, v in value.items()}
        return {_DICT: [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        items = [encode(v) for v in value]
        try:  # a stable order, so an unchanged state writes the same bytes (and is not rewritten)
            items.sort()
        except TypeError:
            pass
        return {_SET: items}
    if isinstance(value, tuple):
        return {_TUPLE: [encode(v) for v in value]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not cls.__module__.startswith(_PACKAGE + "."):
            raise TypeError(f"cannot save a {cls.__module__}.{cls.__qualname__}")
        return {_DC: f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot save a {type(value).__module__}.{type(value).__qualname__}")


def _dataclass(name: Any) -> type:
    if not isinstance(name, str) or ":" not in name:
        raise ValueError(f"bad dataclass name {name!r}")
    module, _, qualname = name.partition(":")
    # Only dataclasses of the fake tenant's modules already loaded (the state's own are): a file
    # must not make the loader import a module (and run its top level) or build anything else.
    obj: Any = sys.modules.get(module) if module.startswith(_PACKAGE + ".") else None
    if obj is None:
        raise ValueError(f"{name!r} is not a fake tenant type")
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"unknown type {name!r}") from None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        raise ValueError(f"{name!r} is not a fake tenant type")
    return obj


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`; raises ValueError for data it did not write."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise ValueError(f"unexpected {type(data).__name__}")
    tags = _TAGS.intersection(data)
    if not tags:
        return {k: decode(v) for k, v in data.items()}
    tag = next(iter(tags))
    if tag == _DC:
        if set(data) != {_DC, "fields"} or not isinstance(data["fields"], dict):
            raise ValueError("malformed dataclass entry")
        cls = _dataclass(data[_DC])
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data["fields"]) - set(known)
        if unknown:
            raise ValueError(f"{cls.__qualname__} has no field {sorted(unknown)[0]!r}")
        values = {k: decode(v) for k, v in data["fields"].items()}
        # A field added since the file was written is missing from it: the constructor gives
        # it its default (one without a default is a TypeError, reported as a bad file).
        obj = cls(**{k: v for k, v in values.items() if known[k].init})
        for k, v in values.items():
            if not known[k].init:
                setattr(obj, k, v)
        return obj
    if len(data) != 1 or not isinstance(data[tag], list):
        raise ValueError(f"malformed {tag} entry")
    if tag == _SET:
        return {decode(v) for v in data[tag]}
    if tag == _TUPLE:
        return tuple(decode(v) for v in data[tag])
    out = {}
    for pair in data[tag]:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError("malformed dict entry")
        out[decode(pair[0])] = decode(pair[1])
    return out


# ---- a tenant's state as a document ----

def seed_fingerprint(state: TenantState) -> str:
    """Which seed (--tenant file, --users N) the state grew from: a state saved from another
    seed names users, teams and apps this one does not have, so it is refused, not mixed in."""
    text = json.dumps(state._seed, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def dump(state: TenantState, tokens=None, fingerprint: str | None = None) -> dict:
    """The document saved for ``state`` (and the refresh tokens of ``tokens``, a TokenService);
    ``fingerprint`` is :func:`seed_fingerprint`'s, when the caller already has it."""
    with state.lock:
        saved = {k: encode(v) for k, v in vars(state).items() if k not in _NOT_SAVED}
    doc = {"format": FORMAT, "version": VERSION, "tenant_id": state.tenant_id,
           "seed": fingerprint or seed_fingerprint(state), "state": saved}
    if tokens is not None:
        # Refresh tokens are the tenant's too: a client signed in before a restart stays signed
        # in, as with Entra. TokenService keeps them in _refresh (tokens.py has no accessor);
        # access tokens are not kept: the signing key is new at each start, and clients get a
        # new access token on the 401, as after a key rollover.
        with tokens._lock:
            doc["refresh_tokens"] = encode(dict(tokens._refresh))
    return doc


def restore(doc: Any, state: TenantState, tokens=None, source: str = "state file") -> dict:
    """Put the document :func:`dump` made into ``state`` (and its refresh tokens into ``tokens``,
    when given); returns those refresh tokens (token -> grant) for a token service started later.
    Raises :class:`StateFileError` naming ``source``, before changing anything, when ``doc`` is
    not a state of this tenant and seed. The modules of the types it holds must be loaded
    (:meth:`StateFile.load` loads the Graph routes'; a started emulator has)."""
    def bad(problem: str) -> StateFileError:
        return StateFileError(f"{source}: {problem}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad("not a fake tenant state file (one written by `msteams emulator serve --state`)")
    if doc.get("version") != VERSION:
        raise bad(f"state file version {doc.get('version')!r}; this fake tenant reads version {VERSION}")
    if doc.get("tenant_id") != state.tenant_id:
        raise bad(f"the state of tenant {doc.get('tenant_id')}, not of {state.tenant_id} "
                  "(use another --state file for this tenant)")
    if doc.get("seed") != seed_fingerprint(state):
        raise bad("saved from another tenant seed (--tenant or --users differ); "
                  "start with the same ones, or use another --state file")
    saved = doc.get("state")
    if not isinstance(saved, dict):
        raise bad("damaged state: no 'state' object")
    fresh = TenantState()
    try:
        values = {}
        for name, data in saved.items():
            if name in _NOT_SAVED or not hasattr(fresh, name):
                raise ValueError(f"unknown tenant attribute {name!r}")
            value = decode(data)
            default = getattr(fresh, name)
            if default is not None and value is not None and type(value) is not type(default):
                raise ValueError(f"{name!r} is a {type(value).__name__}, expected a {type(default).__name__}")
            values[name] = value
        grants = decode(doc.get("refresh_tokens") or {})
        if not isinstance(grants, dict):
            raise ValueError("'refresh_tokens' is not an object")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        # A damaged or hand-edited file can fail anywhere in decoding: whatever it is, one line.
        raise bad(f"damaged state: {e}") from None
    with state.lock:
        # Attributes missing from the file (added to TenantState since) keep their seeded value.
        for name, value in values.items():
            setattr(state, name, value)
    if tokens is not None:
        restore_refresh_tokens(tokens, grants)
    return grants


def restore_refresh_tokens(tokens, grants: dict) -> None:
    """Make the saved refresh tokens redeemable again at ``tokens`` (a TokenService)."""
    with tokens._lock:
        tokens._refresh.update(grants)


# ---- the file ----

def read(path: str) -> Any:
    """The JSON document in ``path``, or None when there is no such file (a first start)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateFileError(f"{path}: cannot read state file ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8
        raise StateFileError(f"{path}: not a fake tenant state file (invalid JSON: {e})") from None


def write(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600: readers see the old or the new
    file, never half of one, even when the process dies mid-write."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class StateFile:
    """Keeps an emulator's state in ``path``: :meth:`load` at start, :meth:`tick` often (it
    saves when requests were answered since the last save, at most every ``interval`` seconds)
    and :meth:`save` at shutdown.

    The tenant changes only while it answers a request (Graph, Entra, the Bot Connector, the
    admin API), so the emulator's ``handle`` is wrapped to count them: an idle tenant costs no
    serialising (a 10,000-user directory takes a tenth of a second to write). Every
    ``recheck`` seconds the state is compared anyway, for changes made through the Python API."""

    def __init__(self, path: str, emulator, interval: float = 1.0, recheck: float = 30.0):
        self.path = os.path.abspath(path)
        self.emulator = emulator
        self.interval = interval
        self.recheck = recheck
        self._last_text: str | None = None
        self._fingerprint = seed_fingerprint(emulator.state)  # the seed does not change while it runs
        self._last_check = self._last_compare = 0.0
        self._answered = 0  # requests answered so far
        self._answered_at_save = -1  # ... when the state was last compared with the file
        self._lock = threading.Lock()
        self._grants: dict = {}
        handle = emulator.handle

        def counted(*args, **kwargs):
            try:
                return handle(*args, **kwargs)
            finally:
                self._answered += 1

        emulator.handle = counted

    def load(self) -> bool:
        """Restore the saved state, if the file exists; True when something was loaded. Call it
        before ``emulator.start()`` (no request sees the seed in between), then :meth:`started`."""
        from .server import load_graph_routes

        doc = read(self.path)
        if doc is None:
            return False
        load_graph_routes()  # the state holds their types (GraphMessage...); start() would load them anyway
        self._grants = restore(doc, self.emulator.state, self.emulator.tokens, source=self.path)
        return True

    def started(self) -> None:
        """Once the emulator has started: its new token service honours the saved refresh tokens."""
        if self._grants and self.emulator.tokens is not None:
            restore_refresh_tokens(self.emulator.tokens, self._grants)
        self._grants = {}

    def _text(self) -> str:
        # Keys in the order the state has them: dicts are insertion ordered (a team's General
        # channel first, chats and activities oldest first), and listings keep that order.
        return json.dumps(dump(self.emulator.state, self.emulator.tokens, self._fingerprint), ensure_ascii=False,
                          separators=(",", ":"))

    def save(self, force: bool = False) -> bool:
        """Write the state when it differs from what was last written (or ``force``); True when
        written. A failure is a :class:`StateFileError`."""
        with self._lock:
            answered = self._answered  # before reading: a request answered meanwhile is looked at again
            for attempt in range(3):
                try:
                    text = self._text()
                    break
                except (TypeError, ValueError, RecursionError) as e:
                    raise StateFileError(f"{self.path}: cannot save the tenant's state ({e})") from None
                except RuntimeError:
                    # "changed size during iteration": something changed the state outside its
                    # lock while it was read; a moment later it is consistent again.
                    if attempt == 2:
                        raise StateFileError(f"{self.path}: the state kept changing while it was saved") from None
                    time.sleep(0.05)
            self._answered_at_save, self._last_compare = answered, time.monotonic()
            if text == self._last_text and not force:
                return False
            try:
                write(self.path, text)
            except OSError as e:
                raise StateFileError(f"{self.path}: cannot write state file ({e.strerror or e})") from None
            self._last_text = text
            return True

    def tick(self) -> bool:
        """Save if ``interval`` has passed since the last tick and the state may have changed
        (a request was answered since the last save, or ``recheck`` has passed); True when written."""
        now = time.monotonic()
        if now - self._last_check < self.interval:
            return False
        self._last_check = now
        if self._answered == self._answered_at_save and now - self._last_compare < self.recheck:
            return False
        return self.save()


__all__ = ["FORMAT", "VERSION", "StateFile", "StateFileError", "decode", "dump", "encode", "read", "restore",
           "restore_refresh_tokens", "seed_fingerprint", "write"]
