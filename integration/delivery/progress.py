"""Progress of long fan-outs and preloads: one self-overwriting line on stderr (counts, rate,
ETA, time waited for the tenant's limits and 429s), only when stderr is a terminal and the
user did not ask for quiet or JSON output. Nothing is printed otherwise."""
from __future__ import annotations

import sys
import threading
import time

REDRAW_SECONDS = 0.1


class Progress:
    def __init__(self, label: str, total: int | None = None, *, stream=None, enabled: bool = True, pacer=None,
                 clock=time.monotonic):
        self.label, self.total, self.pacer, self.clock = label, total, pacer, clock
        self.stream = stream if stream is not None else sys.stderr
        self.on = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.counts: dict[str, int] = {}
        self.started = clock()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + n
            now = self.clock()
            if self.on and (now - self._drawn >= REDRAW_SECONDS or self._finished()):
                self._drawn = now
                self.stream.write("\r" + self.line(now) + "\x1b[K")
                self.stream.flush()

    def _finished(self) -> bool:
        return self.total is not None and sum(self.counts.values()) >= self.total

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        done = sum(self.counts.values())
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        parts = [f"{self.label}: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())]
        if self.total:
            parts[0] += f" of {self.total}"
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0 and done < self.total:
            parts.append(f"ETA {(self.total - done) / rate:.0f}s")
        if self.pacer is not None and (self.pacer.waited or self.pacer.paused):
            parts.append(f"paced {self.pacer.waited:.1f}s, {self.pacer.paused} 429s waited out")
        return "  ".join(parts)

    def done(self) -> None:
        if self.on and self.counts:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
