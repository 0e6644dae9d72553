"""The audit entries of HTTP API calls: each call's entry (audit_row) and the trail that
commits them in groups from the pool's threads (AuditTrail), handing the calls' answers to the
event loop once their entries are committed."""
from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time

from .answers import Answer, code_of

log = logging.getLogger("msteams.service")

# An audit entry's id ("http:" and 32 hex digits): this process's random half, then a count.
_AUDIT_PROCESS = secrets.token_hex(8)
_AUDIT_COUNT = itertools.count(1)


def audit_row(call: dict, audit: dict, answer: Answer) -> dict | None:
    """The audit entry of a call with a key (None without one)."""
    if audit["key"] is None:
        return None
    outcome = "ok" if answer.status < 300 else code_of(answer)
    detail = f"HTTP {answer.status}" + (" (replayed)" if audit.get("replayed") else "") + (
        f" (key {audit['shown']})" if audit.get("shown") else "")
    return {"activity_id": f"http:{_AUDIT_PROCESS}{next(_AUDIT_COUNT):016x}",
            "sender_id": f"api-key:{audit['key']}", "sender_name": audit["key"], "conversation_type": "http",
            "place": f"HTTP API from {call['peer']}", "command": audit["command"],
            "text": f"sha256:{audit['digest']}" if audit["digest"] else None, "decision": audit["decision"],
            "outcome": outcome, "detail": detail, "duration_ms": int((time.monotonic() - call["started"]) * 1000)}


def _settle_all(pairs: list) -> None:
    for waiter, answer in pairs:
        if not waiter.done():
            waiter.set_result(answer)


def hand_over(loop, pairs: list) -> None:
    """From any thread: each (waiter, answer) of ``pairs`` settled on ``loop``, in one call."""
    try:
        loop.call_soon_threadsafe(_settle_all, pairs)
    except RuntimeError:  # the loop is closed: the server stopped; nobody waits for these answers
        pass


class AuditTrail:
    """The audit entries of command calls, committed in groups (group commit). While calls
    run side by side, each pool thread queues its call's entry and is free at once; a thread of
    the trail writes what is queued, together, in one transaction (the entries queued while it
    writes go together next), then hands the calls' answers to the event loop (one hand-over a
    batch). A call alone (none other running, nothing queued, no write under way) writes its
    entry in its own thread: no other thread to wake. Either way a call's answer is handed over
    only once its entry is committed (or failed to be: logged, and the answer stands, as ever).
    ``close()`` writes what is queued before it returns (a graceful stop loses none); once
    closed, a call writes its entry itself."""

    def __init__(self, store):
        self.store = store
        self._cond = threading.Condition(threading.Lock())
        self._queue: list = []  # (row, loop, waiter, answer)
        self._writing = False  # the trail's thread writes
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, row: dict, loop, waiter, answer: Answer, *, alone: bool = False) -> None:
        cond = self._cond
        with cond:
            if not self._closed and not (alone and not self._writing and not self._queue):
                self._queue.append((row, loop, waiter, answer))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="msteams-api-audit", daemon=True)
                    self._thread.start()
                elif not self._writing:
                    cond.notify()
                return
        try:
            self.write([row])
        finally:
            hand_over(loop, [(waiter, answer)])

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    if self._closed:
                        return
                    cond.wait()
                self._writing = True
                batch, self._queue = self._queue, []
            try:
                self.write([b[0] for b in batch])
            finally:
                with cond:
                    self._writing = False
                by_loop: dict = {}
                for _, loop, waiter, answer in batch:
                    by_loop.setdefault(loop, []).append((waiter, answer))
                for loop, pairs in by_loop.items():
                    hand_over(loop, pairs)

    def write(self, rows: list[dict]) -> None:
        """Commit ``rows`` (together: store.audit_add_many; when that fails, each on its own);
        never raises."""
        store = self.store
        if len(rows) > 1:
            try:
                store.audit_add_many(rows)
                return
            except Exception:  # noqa: BLE001 - none was kept: each on its own, so one bad row fails alone
                pass
        for row in rows:
            try:
                store.audit_add(row)
            except Exception as exc:  # noqa: BLE001 - the answer stands; the log says the audit failed
                log.error("could not audit an HTTP API call: %s", type(exc).__name__)

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
