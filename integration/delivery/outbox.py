"""Exactly-once delivery: every outbound message has a delivery key, and its state lives in
the store (pending, sent with the message id, failed with the reason, unknown).

    new ──claim──> claimed ──about to write──> pending ──> sent   nothing under this key is sent again
                      │                          └────> failed (refused, or never written)
                      │                          └──ambiguous (timeout or reset after the write,
                      │                             5xx on a POST)──> reconcile:
                      │       read the conversation back for our message: found -> sent, absent ->
                      │       sent again once, cannot be read back -> unknown (sent again only when asked)
                      └── the holder died before writing: nothing was sent; the next sender sends

A sender holds the key (`claimed`) while it prepares and waits for its pacing slot, and marks it
`pending` only when the HTTP client is about to write the one request that sends (the client
calls :func:`before_write`): a key still `claimed` when its holder died was never sent, and
only a `pending` one whose lease ran out is of ambiguous outcome. Keys are the caller's:
(run, step, recipient) for playbooks, (command, recipient, message digest) or the caller's own
`dedupe_key` for a command run by hand.
"""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from integration.engine.errors import GraphError, IntegrationError, NotSent, ThrottledError
from .owners import alive, owner_id

LEASE_SECONDS = 300.0
STATES = ("claimed", "pending", "sent", "failed", "unknown")

# The delivery this thread is sending, if its sender lets the HTTP client say when it writes.
_writing = threading.local()
# Keys a thread of this process is delivering right now. A key held under this process's own
# name but not among them was left by an attempt that could not release it (the store failed
# mid-send): it is not "another sender", and is taken as a dead holder's.
_active: set[str] = set()
_active_lock = threading.Lock()


def _holder_alive(key: str):
    me = owner_id()

    def check(owner: str) -> bool:
        if owner == me:
            with _active_lock:
                return key in _active
        return alive(owner)

    return check


def before_write() -> None:
    """Called by the HTTP client just before it writes a request that changes something (a
    POST): the delivery being sent on this thread, if any, becomes ``pending`` now, once."""
    mark = getattr(_writing, "mark", None)
    if mark is not None:
        _writing.mark = None
        mark()


def delivery_key(*parts: Any) -> str:
    """A stable key from its parts (any JSON-able values), short enough to log."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def delivery_scope(ctx) -> tuple:
    """What makes two sends of a command "the same message": the caller's dedupe_key, the
    playbook run's step and item, or else this invocation alone (a retry inside it is still
    never a resend)."""
    if ctx.args.get("dedupe_key"):
        return ("dedupe", ctx.spec.name, ctx.args["dedupe_key"])
    scope = ctx.runtime.delivery_scope
    if scope:
        return ("run", ctx.spec.name, *scope)
    return ("once", uuid.uuid4().hex)


def ambiguous(exc: BaseException) -> bool:
    """True when a failed write may nevertheless have been applied by the service."""
    if isinstance(exc, (ThrottledError, NotSent)):
        return False  # a 429 is never applied; a request that never left cannot be
    if isinstance(exc, GraphError):
        return exc.status is None or exc.status >= 500
    return False


@dataclass
class Delivery:
    key: str
    state: str             # sent | failed | unknown | pending
    message_id: str | None = None
    reason: str | None = None
    attempts: int = 0
    reused: bool = False   # True: already delivered earlier under this key; nothing was sent now
    value: Any = None      # what the sender returned (on a fresh send)
    unrecorded: str | None = None  # sent, but the store failed to record it: why, and where it is kept

    @property
    def status(self) -> str:
        """How a row reports it: sent, already sent, sent-unrecorded (arrived; recorded on the
        next run), or the state."""
        if self.state == "sent":
            return "already sent" if self.reused else "sent-unrecorded" if self.unrecorded else "sent"
        return self.state

    @property
    def ok(self) -> bool:
        return self.state == "sent"

    def settled(self, target: str) -> "Delivery":
        """This delivery when it is sent; an error naming ``target`` when its outcome is unknown
        (resent only when asked) or another sender holds it right now."""
        if self.state == "unknown":
            raise UnknownDelivery(f"{target}: outcome unknown: {self.reason}",
                                  hint="resend with resend_unknown=true if it did not arrive")
        if self.state == "pending":
            raise IntegrationError(f"{target}: {self.reason}")
        return self


class UnknownDelivery(IntegrationError):
    """A delivery whose outcome cannot be known (exit 1): it is reported, not resent."""


def failure_of(exc: BaseException) -> tuple[str, IntegrationError]:
    """How one item of a fan-out that raised is reported: its status ("unknown" when it may
    have arrived, else "failed") and the error as ours (a library's, such as a store that went
    away, named as what it is rather than as an internal error)."""
    from integration.engine.errors import from_foreign

    err = exc if isinstance(exc, IntegrationError) else from_foreign(exc) or IntegrationError(
        f"internal error: {type(exc).__name__}")
    return ("unknown" if isinstance(err, UnknownDelivery) else "failed"), err


class Outbox:
    def __init__(self, store, *, lease: float = LEASE_SECONDS):
        self.store = store
        self.lease = lease

    def state(self, key: str) -> dict | None:
        return self.store.outbox_get(key)

    def deliver(self, key: str, send: Callable[[], tuple[str | None, Any]], *,
                read_back: Callable[[], str | None] | None = None, target: str = "",
                resend_unknown: bool = False, pending_at_write: bool = False) -> Delivery:
        """Send once under ``key``. ``send()`` returns (message id, value) or raises;
        ``read_back()`` (where the conversation can be read) returns the id of the message
        this delivery posted, or None when it is not there. ``pending_at_write``: ``send``
        writes through the Graph client, which says when it writes (:func:`before_write`), so
        the delivery is pending only from then, and a failure before it is certain: failed."""
        from . import spill

        spill.replay(self.store)  # what an earlier run sent but could not record: recorded first
        claim = self.store.outbox_claim(key, target=target, lease=self.lease, owner=owner_id(),
                                        holder_alive=_holder_alive(key))
        prior, row = claim["prior"], claim["row"]
        if prior == "pending":  # another sender holds the lease right now
            return Delivery(key, "pending", reason="another sender is delivering this message now",
                            attempts=row.get("attempts", 0))
        with _active_lock:
            _active.add(key)
        try:
            return self._deliver_claimed(key, send, prior, row, read_back, target, resend_unknown, pending_at_write)
        finally:
            with _active_lock:
                _active.discard(key)

    def _deliver_claimed(self, key, send, prior, row, read_back, target, resend_unknown, pending_at_write):
        attempts = row.get("attempts", 0)
        if prior == "sent":
            return Delivery(key, "sent", row.get("message_id"), attempts=attempts, reused=True)
        if prior in ("unknown", "stale"):  # an earlier attempt may have arrived: look first
            readable, found = self._look(read_back)
            if found:
                self.store.outbox_set(key, "sent", message_id=found, reason="found by reading the conversation back")
                return Delivery(key, "sent", found, reason="found by reading the conversation back", attempts=attempts,
                                reused=True)
            if not readable and not resend_unknown:
                reason = row.get("reason") or "an earlier attempt was interrupted; its outcome is not known"
                self.store.outbox_set(key, "unknown", reason=reason)
                return Delivery(key, "unknown", reason=reason, attempts=attempts)
        return self._send(key, send, read_back, target, pending_at_write)

    @staticmethod
    def _look(read_back) -> tuple[bool, str | None]:
        """(could the conversation be read, the id of our message there or None)."""
        if read_back is None:
            return False, None
        try:
            return True, read_back()
        except IntegrationError:
            return False, None

    def _send(self, key: str, send, read_back, target: str, pending_at_write: bool = False) -> Delivery:
        for attempt in (0, 1):
            written: list[bool] = []

            def mark() -> None:
                self.store.outbox_set(key, "pending", attempt=True, lease=self.lease)
                written.append(True)

            if pending_at_write:
                _writing.mark = mark
            else:
                mark()
            try:
                message_id, value = send()
            except IntegrationError as exc:
                reason = exc.message.splitlines()[0]
                if not written or not ambiguous(exc):  # refused, or never written: not applied
                    self.store.outbox_set(key, "failed", reason=reason)
                    raise
                # The write may have been applied: look before sending again.
                readable, found = self._look(read_back)
                if found:
                    self.store.outbox_set(key, "sent", message_id=found, reason="found by reading the conversation back")
                    return Delivery(key, "sent", found, reason="found by reading the conversation back")
                if readable and attempt == 0:
                    continue  # read back and absent: it was not applied; send once more
                self.store.outbox_set(key, "unknown", reason=reason)
                raise UnknownDelivery(f"{target or 'delivery ' + key[:12]}: outcome unknown: {reason}",
                                      hint="it may have arrived: check the conversation, and resend with "
                                           "resend_unknown=true only if it did not") from None
            finally:
                _writing.mark = None
            try:
                self.store.outbox_set(key, "sent", message_id=message_id)
            except Exception as exc:  # noqa: BLE001 - the message arrived: never report it as failed
                why = self.unrecorded(exc, {"kind": "sent", "key": key, "message_id": message_id, "target": target})
                return Delivery(key, "sent", message_id, attempts=attempt + 1, value=value, unrecorded=why)
            return Delivery(key, "sent", message_id, attempts=attempt + 1, value=value)
        raise AssertionError("unreachable")

    def unrecorded(self, exc: BaseException, entry: dict) -> str:
        """The store failed to record something a send did (a sent mark, a message reference):
        keep it locally for the next run (delivery/spill.py) and say so."""
        from . import spill

        err = failure_of(exc)[1]
        kept = spill.keep(self.store, entry)
        where = f"kept in {kept}; recorded on the next run" if kept else "and it could not be kept locally either"
        return f"sent, but not recorded: {err.message.splitlines()[0]} ({where})"

    def forget(self, key: str) -> None:
        self.store.outbox_delete(key)

