"""The progress line: drawn only on a terminal, with counts, rate, ETA and pacing; nothing when
stderr is not a terminal or the user asked for quiet."""
from __future__ import annotations

import io

from integration.delivery.fanout import fan_out
from integration.delivery.pacer import Pacer
from integration.delivery.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_terminal_gets_counts_rate_eta_and_pacing():
    clock, out = Clock(), Tty()
    pacer = Pacer()
    pacer.waited, pacer.paused = 2.5, 3
    p = Progress("notifying", 10, stream=out, pacer=pacer, clock=clock)
    for _ in range(4):
        clock.t += 1.0
        p.add("sent")
    clock.t += 1.0
    p.add("failed")
    p.done()
    text = out.getvalue()
    assert "notifying: 4 sent, 1 failed of 10" in text
    assert "1.0/s" in text and "ETA 5s" in text and "paced 2.5s, 3 429s waited out" in text
    assert text.endswith("\n")


def test_not_a_terminal_or_quiet_prints_nothing():
    plain = io.StringIO()
    Progress("x", 2, stream=plain).add("sent")
    quiet = Tty()
    p = Progress("x", 2, stream=quiet, enabled=False)
    p.add("sent")
    p.done()
    assert plain.getvalue() == "" and quiet.getvalue() == ""


def test_fan_out_reports_each_outcome_and_finishes_the_line():
    out = Tty()
    p = Progress("sending", 5, stream=out)

    def job(i):
        if i == 3:
            raise ValueError("boom")
        return i

    outcomes = fan_out(range(5), job, workers=3, progress=p)
    assert [o.ok for o in outcomes] == [True, True, True, False, True]
    assert p.counts == {"sent": 4, "failed": 1}
    assert out.getvalue().endswith("\n")
