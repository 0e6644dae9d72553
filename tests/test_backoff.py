"""Retry-After as Microsoft Graph sends it (seconds) and as RFC 9110 also allows it (an HTTP
date, as proxies and the Bot Connector may send): both are honoured (issue 24, part 7)."""
from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from integration.delivery.backoff import retry_after_seconds, retry_delay

NOW = 1_780_000_000.0


@pytest.mark.parametrize("value,seconds", [("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0)])
def test_seconds(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds


def test_an_http_date_is_the_time_until_it():
    assert retry_after_seconds(formatdate(NOW + 12, usegmt=True), now=NOW) == pytest.approx(12.0)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0  # past: retry now


@pytest.mark.parametrize("value", [None, "", "  ", "soon", "nan", "inf", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_absent_or_unreadable_is_none(value):
    assert retry_after_seconds(value, now=NOW) is None


def test_the_delay_follows_a_date_and_backs_off_without_one():
    rng = random.Random(1)
    in_30 = formatdate(__import__("time").time() + 30, usegmt=True)
    assert 28.0 <= retry_delay(in_30, 0, rng) <= 31.5
    assert 4.0 <= retry_delay("nonsense", 2, rng) <= 5.0  # 2**2, plus jitter


def test_the_client_waits_until_an_http_date_retry_after(emu, runtime, sleeps):
    import time

    emu.faults.add(method="GET", path=r"/users", status=429, count=1,
                   retry_after=formatdate(time.time() + 20, usegmt=True))
    assert runtime.client("app").get("/users", params={"$top": 1})["value"]
    assert len(sleeps) == 1 and 17.0 <= sleeps[0] <= 22.0, sleeps  # not the 1 s of a backoff
