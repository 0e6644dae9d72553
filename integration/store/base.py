"""What a context store is: the `Store` protocol that both backends implement (one SQLite file,
sqlite.SQLiteStore; a shared Redis, redis.RedisStore), the kinds of data it holds, and the rules
both backends apply alike. Callers type a store as `Store` from here and never name a backend;
`open.open_store(cfg)` picks the backend from the config.

Every guarantee written here holds on both backends and across processes: the contract suite
(tests/store/test_store_contract.py) runs the same tests against each, and checks that each backend
has every method declared here, with the same parameters, and no public method left out of it.
Where a backend gives more, its own docstring says so (SQLite's `transaction` rolls back;
Redis encrypts token caches and has `rotate_key`).

The backends and the command path import the plain rules from rules.py (re-exported here);
this module, with its Protocol class, is for type checkers, callers' annotations and the
contract suite, so a command never pays for building it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextlib import AbstractContextManager
    from pathlib import Path
    from typing import Any, ClassVar

# The rules and kinds (rules.py), re-exported: base is where callers look for what a store is.
from .rules import (AUDIT_COLS, CACHE_KINDS, DEFAULT_TTL, DIRECTORY_KINDS, HELD, HISTORY_KINDS,  # noqa: F401
                    NAME_KINDS, Busy, assume_alive, claim_decision, entry_keys, name_key)


@runtime_checkable  # isinstance(store, Store) checks that every member is there (the contract suite does)
class Store(Protocol):
    """The context store: everything the integration keeps between commands and shares between
    processes (and, with Redis, between hosts). Keys of the directory cache are case- and
    blank-insensitive (`norm`); times are the store's clock (`now`)."""

    # ---- the store itself ----
    path: Path | str
    """Where the store is, as messages show it: the SQLite file, or the Redis URL and namespace."""

    def close(self) -> None:
        """Let go of this handle's connections (SQLite: the calling thread's)."""

    def thread_done(self) -> None:
        """A worker thread is done with the store: what it holds for that thread is released."""

    def now(self) -> float:
        """The store's clock (injectable in tests): what ``updated``, TTLs and leases are measured in."""

    @staticmethod
    def norm(key: str) -> str:
        """A key as the directory cache keys it: blanks stripped, casefolded."""

    inline: ClassVar[bool]
    """Whether an event loop may run this store's operations itself (frontends/lane.py): True
    when they are local file I/O whose reads never wait (SQLite), False when each is a network
    round trip (Redis)."""

    def begin_now(self) -> AbstractContextManager[object]:
        """A write transaction begun only when no other writer holds the store: `Busy` at once
        otherwise (nothing begun, never a wait). Writes inside join it and are committed
        together on leaving; what it yields has ``intact()``: False once a failed statement
        inside rolled the whole of it back. Only a store with ``inline`` offers it (else Busy)."""

    # ---- directory cache: (kind, key) -> JSON value, with a TTL ----
    def transaction(self) -> AbstractContextManager[object]:
        """Group writes (a preload page is one commit on SQLite); each write inside stays atomic on its own."""

    def put(self, kind: str, key: str, value: Any, ttl: float | None = DEFAULT_TTL) -> None:
        """Write one entry, trusted for ``ttl`` seconds (None: until replaced)."""

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]], ttl: float | None = DEFAULT_TTL) -> None:
        """Write (key, value) pairs: all of them, or none when one fails (one that cannot be encoded)."""

    def put_entries(self, kind: str, values: Iterable[dict], *, aliases: tuple[str, ...] = (),
                    ttl: float | None = DEFAULT_TTL, stage_names: bool = False) -> int:
        """Write each value with an id under `entry_keys` (at most two alias fields); the number written."""

    def index_names(self, source: str, kind: str, *, since: float, ttl: float | None = DEFAULT_TTL) -> int:
        """Rebuild ``kind``'s name lists from the ``source`` entries written since ``since``; the names written."""

    def prune(self, kind: str, *, before: float, prefix: str | None = None) -> int:
        """Drop ``kind`` entries (keys under the literal ``prefix``) last written before ``before``; how many."""

    def get(self, kind: str, key: str) -> Any | None:
        """The value under (kind, key), or None when missing or past its TTL."""

    def delete(self, kind: str, key: str) -> None:
        """Forget one entry."""

    def entries(self, kind: str) -> list[dict]:
        """Every entry of ``kind`` by key: {key, value, age_seconds, expired}."""

    def counts(self) -> dict[str, int]:
        """Entries per kind (every DIRECTORY_KINDS, 0 when empty), plus token_caches and message_refs."""

    def clear(self, *, include_tokens: bool = False) -> dict[str, int]:
        """cache-reset: forget the directory cache (and token caches when asked); what was removed, per kind."""

    # ---- token caches (MSAL's serialized caches, per flow) ----
    def load_tokens(self, name: str) -> str | None:
        """The token cache saved under ``name``, or None."""

    def save_tokens(self, name: str, blob: str) -> None:
        """Replace the token cache under ``name``."""

    def clear_tokens(self, name: str | None = None) -> int:
        """Forget one token cache (every one without ``name``); how many were removed."""

    # ---- the store's own secrets ----
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret ``name``, made once by ``make()``: every process gets the first one made."""

    def forget_secret(self, name: str) -> bool:
        """Delete the secret ``name`` (a webhook's, when the webhook is removed); True when there was one."""

    # ---- sent-message references ----
    def save_message_ref(self, ref: str, value: dict) -> None:
        """Remember where a sent message is (so it can be edited later)."""

    def get_message_ref(self, ref: str) -> dict | None:
        """The message reference saved under ``ref``, or None."""

    # ---- outbox: delivery key -> state (delivery/outbox.py) ----
    def outbox_claim(self, key: str, *, target: str = "", lease: float, owner: str = "",
                     holder_alive: Callable[[str], bool] = assume_alive) -> dict:
        """Take the lease on a delivery key, atomically across processes: {prior, row} per `claim_decision`."""

    def outbox_set(self, key: str, state: str, *, message_id: str | None = None, reason: str | None = None,
                   attempt: bool = False, lease: float | None = None) -> None:
        """Record a delivery's state (nothing when the key is gone); ``attempt`` counts one more try."""

    def outbox_get(self, key: str) -> dict | None:
        """A delivery's row, or None."""

    def outbox_list(self, state: str | None = None, limit: int = 1000) -> list[dict]:
        """Deliveries (of one state) oldest update first."""

    def outbox_delete(self, key: str) -> None:
        """Forget a delivery key."""

    # ---- playbook runs (playbooks/runs.py) ----
    def run_create(self, run: dict, *, lease: float) -> dict:
        """Insert a run, or return the existing one with the same run_key (one run per key, across processes)."""

    def run_claim(self, run_id: str, owner: str, *, lease: float, holder_alive: Callable[[str], bool]) -> dict | None:
        """Take a run over to resume it: its row, or None when it is missing or another live process holds it."""

    def run_claim_waiting(self, run_id: str, owner: str, *, lease: float) -> dict | None:
        """Take a waiting run to resume it: exactly one caller of any process gets its row, the rest None."""

    def runs_waiting_on(self, question_id: str) -> list[str]:
        """The ids of the runs waiting on a question."""

    def run_save(self, run_id: str, status: str, state: dict, *, lease: float) -> None:
        """Save a run's status and state and renew its lease (nothing when the run is gone)."""

    def run_get(self, run_id: str) -> dict | None:
        """A run's row (with its state), or None."""

    def run_list(self, status: str | None = None, limit: int = 50) -> list[dict]:
        """Runs (of one status) newest first, without their state but with what each is waiting_for."""

    # ---- retention (msteams store prune) ----
    def purge_history(self, before: float, *, dry_run: bool = False) -> dict[str, int]:
        """Delete (or only count) the finished history last changed before ``before``, per HISTORY_KINDS."""

    # ---- bot conversation references (teams/conversations.py) ----
    def conversation_put(self, key: str, kind: str, value: dict) -> None:
        """Remember where the bot may write (apart from the cache: cache-reset keeps it)."""

    def conversation_get(self, key: str) -> dict | None:
        """The conversation reference under ``key``, or None."""

    def conversation_list(self, kind: str | None = None, limit: int = 1000) -> list[dict]:
        """References (of one kind) newest first: {key, kind, value, updated}."""

    # ---- bot audit log (every command received from Teams) ----
    AUDIT_COLS: ClassVar[tuple[str, ...]] = AUDIT_COLS

    def audit_add(self, row: dict) -> int | None:
        """Record an inbound command: its id, or None when its activity id was recorded before (a redelivery)."""

    def audit_add_many(self, rows: list[dict]) -> None:
        """Record several entries at once (one commit on SQLite: all of them or none), in order;
        one whose activity id was recorded before is skipped, as by audit_add."""

    def audit_update(self, audit_id: int, **fields: Any) -> None:
        """Set an entry's fields (those of AUDIT_COLS; others are ignored)."""

    def audit_list(self, *, limit: int = 50, sender: str | None = None, since: float | None = None) -> list[dict]:
        """Entries newest first, of a sender (id, or name in any case) and since a time when given."""

    # ---- call state changes (teams/calls.py) ----
    def call_event_add(self, call_id: str, state: str, *, code: int | None = None, subcode: int | None = None,
                       message: str | None = None) -> None:
        """Append a state change of a call."""

    def call_events(self, call_id: str) -> list[dict]:
        """A call's state changes, oldest first."""

    # ---- questions (teams/questions.py) ----
    def question_create(self, qid: str, value: dict, expires: float | None) -> tuple[dict, bool]:
        """Insert an open question: (its row, created); an existing one is returned as it is."""

    def question_get(self, qid: str) -> dict | None:
        """A question's row, or None."""

    def question_set_value(self, qid: str, value: dict) -> None:
        """Replace a question's value (nothing when it is gone)."""

    def question_answer(self, qid: str, answer: str, responder_id: str, responder_name: str,
                        reason: str | None) -> bool:
        """Answer an open question not past its expiry: True for the one caller, of any process, that wins."""

    def questions_expire(self, qid: str | None = None) -> list[str]:
        """Open questions past their expiry take their default answer; the ids expired now."""

    def question_list(self, status: str | None = None, limit: int = 100) -> list[dict]:
        """Questions (of one status) newest first."""

    # ---- mirrored incidents (teams/mirror.py) ----
    def mirror_get(self, incident_id: str) -> dict | None:
        """An incident's mirror, or None."""

    def mirror_for_conversation(self, conversation_id: str) -> dict | None:
        """The open mirror of a channel or chat (the latest updated), or None."""

    def mirror_put(self, incident_id: str, conversation_id: str, kind: str, status: str, value: dict) -> dict:
        """Create or update an incident's mirror (its ``created`` kept); the mirror as stored."""

    def mirror_list(self, status: str | None = None) -> list[dict]:
        """Mirrors (of one status) in the order they were created."""

    def mirror_entry_add(self, incident_id: str, activity_id: str, value: dict) -> int | None:
        """Append to an incident's journal: the entry's sequence, or None when the activity was journaled before."""

    def mirror_entries(self, incident_id: str | None = None, *, since: float | None = None,
                       limit: int = 10000) -> list[dict]:
        """Journal entries (of one incident, since a time) in the order Teams delivered them."""

    # ---- named locks (graph/tokenlock.py) ----
    def lock_try(self, name: str, holder: dict, *, now: float, lease: float,
                 holder_alive: Callable[[str, int, str | None], bool]) -> dict:
        """Take a lock unless a live holder's lease runs: {held: that holder or None (taken), previous}."""

    def lock_release(self, name: str, owner: str) -> None:
        """Release a lock, if ``owner`` holds it."""
