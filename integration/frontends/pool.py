"""The HTTP services' thread pool: each work goes to the thread that went idle last.

Why: a request's thread keeps its own store connection (SQLite's page cache, its Redis
connection) and the processor's caches of what it just ran. The standard library's
ThreadPoolExecutor wakes whichever idle thread the OS picks, so once a burst has started all
its threads, requests that come one at a time go round all of them, each finding its
connection's pages stale (the others wrote since) and its caches cold: ``team-list`` over HTTP at
concurrency 1 after 16 concurrent calls paid 0.24-0.34 ms more a call than here (3 runs of two
services side by side); here it pays what a service that only ever had one thread pays. The
thread that finished last takes the next work, and the others stay asleep until the load needs
them.

Otherwise as ThreadPoolExecutor: threads are started up to ``max_workers`` as work finds none
idle; work that finds every thread busy waits its turn (first come, first served); ``shutdown``
ends the threads once the work given them is done; and at the interpreter's exit the work
already given still runs to its end (a command's audit entry is written) before the process
goes.
"""
from __future__ import annotations

import threading
import weakref
from collections import deque
from concurrent.futures import Executor, Future

_pools: "weakref.WeakSet[WarmPool]" = weakref.WeakSet()
_exiting = False
_END = object()  # a thread's word to end


class _Slot:
    """An idle thread's mailbox: ``wake`` is held while it sleeps; whoever releases it has put
    the thread's next work (or None: end) in ``work``."""

    __slots__ = ("wake", "work")

    def __init__(self):
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work = None


class WarmPool(Executor):
    """An Executor (``submit``, ``shutdown``, ``map``) of at most ``max_workers`` threads; the
    idle ones form a stack, and new work wakes the one on top."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "pool"):
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []  # the sleeping threads, the one that went idle last at the end
        self._waiting: deque = deque()  # work that found every thread busy
        self._threads: set[threading.Thread] = set()
        self._started = 0
        self._closed = False
        _pools.add(self)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        work = (future, fn, args, kwargs)
        with self._lock:
            if self._closed or _exiting:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                slot = self._idle.pop()
                slot.work = work
                slot.wake.release()
                return future
            self._waiting.append(work)
            if len(self._threads) < self._max:
                self._started += 1
                thread = threading.Thread(target=self._serve, name=f"{self._prefix}_{self._started}")
                self._threads.add(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        slot = _Slot()
        try:
            work = self._idle_or_next(slot)
            while work is not _END:
                if work is None:  # asleep on the idle stack until given work (None: end)
                    slot.wake.acquire()
                    work, slot.work = slot.work, None
                    if work is None:
                        return
                future, fn, args, kwargs = work
                if not future.set_running_or_notify_cancel():
                    work = self._idle_or_next(slot)
                    continue
                # The thread goes back on the idle stack before its caller hears: one that calls
                # again at once (a loop of one-at-a-time calls) finds this thread, not another.
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - the caller's, through its future
                    work = self._idle_or_next(slot)
                    future.set_exception(exc)
                    del exc
                else:
                    work = self._idle_or_next(slot)
                    future.set_result(result)
                    del result
                del future, fn, args, kwargs
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _idle_or_next(self, slot: _Slot):
        """For a thread with nothing to do: the oldest waiting work; else None, the thread put on
        the idle stack (last in, first out); or _END once the pool is shut down."""
        with self._lock:
            if self._waiting:
                return self._waiting.popleft()
            if self._closed or _exiting:
                return _END
            self._idle.append(slot)
            return None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._waiting:
                    self._waiting.popleft()[0].cancel()
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for slot in idle:
            slot.work = None
            slot.wake.release()
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    @property
    def threads(self) -> int:
        """How many threads the pool has now (started, not ended)."""
        with self._lock:
            return len(self._threads)


def _at_exit() -> None:
    """As ThreadPoolExecutor's: before the interpreter joins its threads, the sleeping ones are
    woken to end, and the busy ones end once their work (and what waits) is done."""
    global _exiting
    _exiting = True
    pools = list(_pools)
    for pool in pools:
        pool.shutdown(wait=False)
    for pool in pools:
        with pool._lock:
            threads = list(pool._threads)
        for thread in threads:
            thread.join()


threading._register_atexit(_at_exit)  # what concurrent.futures.thread does, for the same reason
