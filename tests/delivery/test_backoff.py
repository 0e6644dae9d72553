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


# ---- a connection that never opened is "not sent", not "outcome unknown" (issue 24, part 2)

def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again at once: connecting is refused


def test_a_refused_connection_is_not_sent_and_retried_even_for_a_post(runtime, sleeps):
    from integration.engine.errors import NotSent
    from integration.graph.client import Client

    client = Client(f"http://127.0.0.1:{_closed_port()}/v3", runtime.auth.provider("app"), timeout=5,
                    max_retries=2, retry_budget=60, sleep=sleeps.append)
    with pytest.raises(NotSent) as e:
        client.post("/conversations/x/activities", {"type": "message", "text": "hi"})
    assert "not sent (connection refused)" in str(e.value) and "may still" not in str(e.value)
    assert len(sleeps) == 2  # retried like any failed attempt: nothing was written


def test_a_delivery_whose_connection_was_refused_is_failed_not_unknown(runtime, sleeps):
    from integration.delivery.outbox import Outbox, ambiguous
    from integration.engine.errors import NotSent
    from integration.graph.client import Client

    client = Client(f"http://127.0.0.1:{_closed_port()}/v3", runtime.auth.provider("app"), timeout=5,
                    max_retries=0, retry_budget=60, sleep=sleeps.append)

    def send():
        client.post("/conversations/x/activities", {"type": "message", "text": "hi"})
        return "id", None

    with pytest.raises(NotSent) as e:
        Outbox(runtime.store).deliver("k-refused", send, target="bob")
    assert not ambiguous(e.value)
    assert runtime.store.outbox_get("k-refused")["state"] == "failed"


def test_a_read_timeout_after_the_write_stays_ambiguous(emu, signed_in, sleeps):
    """The request was written and no answer came: that is the one unknown outcome."""
    from integration.delivery.outbox import ambiguous
    from integration.engine.errors import GraphError, NotSent

    client = signed_in.client("delegated")
    client.timeout = 0.5
    emu.faults.add(method="POST", path=r"/chats", delay=2.0, count=3)
    with pytest.raises(GraphError) as e:
        client.post("/chats", {"chatType": "group", "topic": "t", "members": []})
    assert not isinstance(e.value, NotSent) and ambiguous(e.value) and "timed out" in str(e.value)
