"""The event loop's lane: work that touches only a local store (an API call answered from the
store, the bot's acceptance of an activity) run by the HTTP services' event loop itself, in
groups, rather than handed to a thread and back.

Why: under load each hand-off between the loop and a pool thread is a handful of thread switches
(the interpreter lock passes at every socket call of either side), which cost the services
several times the CPU of the work itself (benchmarks/api.py, section c).

How: the work queued during one turn of the loop runs at the start of the next, inside one write
transaction begun without waiting (``store.begin_now``), and is committed together (one commit
for the group: group commit); only then are the callers answered and the effects each work
deferred (a reply to send, a command to run: ``effects.append((fn, args))``) started. The loop
never waits for another writer: when one holds the store, the group is tried again on a timer
(BUSY_WAITS, the loop serving others meanwhile); when it still does, or a statement fails and
takes the group's transaction with it, nothing of the group was kept and each work runs in the pool,
alone and as it always did (writes committed one by one, waiting for the lock as any thread
does). So a work must leave nothing but store writes and deferred effects before it returns (its
metrics and rate-limit counts may then count twice: a rare fallback's price). A store whose
operations are network round trips (Redis: ``inline`` False) has no lane: the callers hop.
"""
from __future__ import annotations

import asyncio
import logging
import weakref

from integration.engine import metrics
from integration.store.rules import Busy

log = logging.getLogger("msteams.lane")


MAX_TURNS = 3
# Seconds the loop gives another writer before a group goes to the pool (1.75 ms in all).
BUSY_WAITS = (0.00025, 0.0005, 0.001)


class Effects(list):
    """What a work is given: a list to append the effects it defers to, as ``(fn, args)``; in
    a group, also ``shared``, a dict the group's works share (they all read one snapshot of the
    store: the group holds its write lock from first to last, so what one read, the next would
    read too), and ``before_commit``, functions run in the group's transaction after its last
    work (one statement for what each would write alone). Both are None for a work run alone."""

    __slots__ = ("shared", "before_commit")

    def __init__(self, shared: dict | None = None, before_commit: list | None = None):
        super().__init__()
        self.shared, self.before_commit = shared, before_commit


class _Broken(Exception):
    """A statement failed inside the group and rolled its transaction back."""


class Lane:
    """The lane of one store. ``run(work)`` (on the loop) answers ``work(effects)``'s result
    (or raises its exception); ``pool`` (an Executor) runs the work the lane gives back."""

    def __init__(self, store, pool):
        self.store = store
        self.pool = pool
        self._queue: list = []  # (work, future)
        self.groups = 0  # committed on the loop (tests; the metrics count them too)
        self.fallbacks = 0  # groups given back to the pool

    @staticmethod
    def available(store) -> bool:
        return bool(getattr(store, "inline", False))

    def run(self, work) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            loop.call_soon(self._tick, loop, 1, 0)
        self._queue.append((work, future))
        return future

    def _tick(self, loop, seen: int, turns: int) -> None:
        """Flush, or wait one more turn of the loop while the group grows (a burst of requests
        arrives over a few turns; one commit for more of them is cheaper than one for each),
        up to MAX_TURNS. A work queued alone is flushed at the first turn: no wait."""
        n = len(self._queue)
        if n > seen and turns < MAX_TURNS:
            loop.call_soon(self._tick, loop, n, turns + 1)
        else:
            self._flush(loop)

    def _flush(self, loop, busy: int = 0) -> None:
        group, self._queue = self._queue, []
        done = []
        begun = False
        try:
            with self.store.begin_now() as tx:
                begun = True
                shared: dict = {}
                before: list = []
                for work, future in group:
                    effects = Effects(shared, before)
                    try:
                        outcome = (work(effects), None)
                    except Exception as exc:  # noqa: BLE001 - the caller's to handle, as from a thread
                        outcome = (None, exc)
                    if not tx.intact():
                        raise _Broken
                    done.append((future, outcome, effects))
                for fn in before:
                    fn()
                if not tx.intact():
                    raise _Broken
        except Exception as exc:  # noqa: BLE001 - Busy, _Broken, a failed commit: nothing of the group kept
            if isinstance(exc, Busy) and not begun and busy < len(BUSY_WAITS):
                # Another writer's transaction is short, mostly: a timer (the loop serves others
                # meanwhile), and what arrives in the meantime joins the group.
                self._queue = group + self._queue
                loop.call_later(BUSY_WAITS[busy], self._flush, loop, busy + 1)
                return
            self.fallbacks += 1
            metrics.lane_group("pool", len(group))
            if not isinstance(exc, (_Broken, Busy)):
                log.warning("the event loop's store group failed (%s): its work runs in threads",
                            type(exc).__name__)
            for work, future in group:
                self.pool.submit(_alone, loop, future, work)
            return
        self.groups += 1
        metrics.lane_group("committed", len(group))
        for future, (result, error), effects in done:
            _start(effects)
            _settle(future, result, error)


def lane_of(store, pool) -> Lane | None:
    """The lane of ``store`` (one a store, so the service and the bot endpoint of one ``serve
    --bot`` share its groups and commits), made with ``pool`` for what it gives back; None
    for a store without one (``available``)."""
    if not Lane.available(store):
        return None
    lane = _lanes.get(store)
    if lane is None:
        lane = _lanes[store] = Lane(store, pool)
    return lane


_lanes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _start(effects: list) -> None:
    for fn, args in effects:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - one effect failing must not stop the others or the answer
            log.exception("a deferred effect failed")


def _alone(loop, future, work) -> None:
    """In a pool thread: ``work`` as it always ran there (no group), its effects, its answer."""
    effects = Effects()
    try:
        result, error = work(effects), None
    except Exception as exc:  # noqa: BLE001 - raised again on the loop
        result, error = None, exc
    _start(effects)
    settle_from_thread(loop, future, result, error)


def settle_from_thread(loop, future, result, error: BaseException | None) -> None:
    """From any thread: ``future`` of ``loop`` given ``result`` (or ``error``, raised to its
    awaiter), in one call onto the loop; nothing when it is done already (the request was
    cancelled) or the loop is closed (the server stopped: nobody waits)."""
    try:
        loop.call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:
        pass


def _settle(future, result, error) -> None:
    if future.done():  # the request was cancelled (the client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
