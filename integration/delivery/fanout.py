"""Running one job per item on a bounded pool of worker threads: results come back in input
order, one item's failure never stops the others, and each outcome says which it was.

The workers only wait on the network and on the pacer, so threads suffice; the pacer keeps
the pool as a whole inside Microsoft's limits, however many workers there are.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from integration.engine.errors import IntegrationError

MAX_WORKERS = 32


@dataclass
class Outcome:
    index: int
    item: Any
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fan_out(items: Iterable[Any], job: Callable[[Any], Any], *, workers: int = 1,
            on_done: Callable[[Outcome], None] | None = None, progress=None) -> list[Outcome]:
    """``job(item)`` for every item, at most ``workers`` at a time; outcomes in input order.

    An IntegrationError (or any other exception) from one item is that item's outcome. A
    KeyboardInterrupt stops the pool: queued items are not started."""
    items = list(items)
    outcomes = [Outcome(i, item) for i, item in enumerate(items)]
    lock = threading.Lock()

    def run(o: Outcome) -> None:
        try:
            o.value = job(o.item)
        except IntegrationError as exc:
            o.error = exc
        except Exception as exc:  # a bug in one item must not lose the others' results
            o.error = exc
        if on_done is not None:
            with lock:
                on_done(o)
        if progress is not None:
            progress.add("sent" if o.ok else "failed")

    workers = max(1, min(int(workers or 1), MAX_WORKERS, len(items) or 1))
    try:
        if workers == 1:
            for o in outcomes:
                run(o)
            return outcomes
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool:
            futures = [pool.submit(run, o) for o in outcomes]
            try:
                for f in futures:
                    f.result()
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                raise
        return outcomes
    finally:
        if progress is not None:
            progress.done()
