"""The outbox over a real store (SQLite, and Redis): one send per key, ambiguous outcomes reconciled by
reading back or reported as unknown, expired leases of dead senders, and several processes
racing for the same keys."""
from __future__ import annotations

import multiprocessing

import pytest

from integration.engine.errors import GraphError, PermissionDenied
from integration.delivery.outbox import Outbox, UnknownDelivery, delivery_key
from integration.delivery.owners import alive
from store_helpers import open_at


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def outbox(make_store, clock):
    return Outbox(make_store(clock=clock))


def sender(log, fail=None, message_id="m1"):
    def send():
        log.append("send")
        if fail:
            exc = fail.pop(0) if isinstance(fail, list) else fail
            if exc is not None:
                raise exc
        return message_id, {"id": message_id}
    return send


def test_a_key_is_sent_once(outbox):
    log = []
    first = outbox.deliver("k", sender(log))
    again = outbox.deliver("k", sender(log))
    assert (first.state, first.reused, first.message_id) == ("sent", False, "m1")
    assert (again.state, again.reused, again.message_id) == ("sent", True, "m1")
    assert log == ["send"]


def test_a_refused_send_is_failed_and_may_be_sent_again(outbox):
    log = []
    with pytest.raises(PermissionDenied):
        outbox.deliver("k", sender(log, PermissionDenied("no")))
    assert outbox.state("k")["state"] == "failed"
    assert outbox.deliver("k", sender(log)).state == "sent"
    assert log == ["send", "send"]


def test_ambiguous_without_read_back_is_unknown_and_not_resent(outbox):
    log = []
    with pytest.raises(UnknownDelivery) as e:
        outbox.deliver("k", sender(log, GraphError("POST x: timed out")))
    assert "unknown" in str(e.value) and "resend_unknown" in str(e.value)
    again = outbox.deliver("k", sender(log))
    assert again.state == "unknown" and log == ["send"]
    forced = outbox.deliver("k", sender(log), resend_unknown=True)
    assert forced.state == "sent" and log == ["send", "send"]


def test_ambiguous_then_found_by_reading_back_is_sent_without_a_second_send(outbox):
    log = []
    d = outbox.deliver("k", sender(log, GraphError("dropped", status=502)), read_back=lambda: "m-found")
    assert (d.state, d.message_id) == ("sent", "m-found") and log == ["send"]


def test_ambiguous_then_absent_on_reading_back_is_sent_once_more(outbox):
    log = []
    d = outbox.deliver("k", sender(log, [GraphError("timed out"), None]), read_back=lambda: None)
    assert d.state == "sent" and log == ["send", "send"]


def test_a_429_that_outlasted_retries_is_failed_not_unknown(outbox):
    from integration.engine.errors import ThrottledError

    with pytest.raises(ThrottledError):
        outbox.deliver("k", sender([], ThrottledError("throttled", status=429)))
    assert outbox.state("k")["state"] == "failed"


def test_a_dead_senders_lease_runs_out_and_the_key_becomes_unknown(outbox, clock):
    store = outbox.store
    # a sender on another host that then went silent: only its lease tells
    claim = store.outbox_claim("k", target="Conor", lease=60, owner="elsewhere:1", holder_alive=alive)
    assert claim["prior"] is None
    store.outbox_set("k", "pending", attempt=True, lease=60)  # it was writing the request
    busy = outbox.deliver("k", sender([]))
    assert busy.state == "pending"
    clock.t += 61
    log = []
    late = outbox.deliver("k", sender(log))
    assert late.state == "unknown" and log == []  # cannot read back: never resend blindly
    found = outbox.deliver("k", sender(log), read_back=lambda: "m9")
    assert (found.state, found.message_id) == ("sent", "m9") and log == []


def test_a_key_held_by_a_dead_process_on_this_host_is_taken_over_at_once(outbox):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{socket.gethostname()}:{gone.stdout.strip()}"
    outbox.store.outbox_claim("k", lease=300, owner=dead, holder_alive=alive)
    outbox.store.outbox_set("k", "pending", attempt=True, lease=300)  # it died writing the request
    log = []
    d = outbox.deliver("k", sender(log))
    assert d.state == "unknown" and log == []  # no waiting for the lease, and no blind resend


def test_a_holder_that_died_before_writing_sent_nothing_and_the_key_is_sent(outbox, clock):
    """Killed while it held the key but before its request was written (resolving names,
    waiting for a pacing slot): nothing was sent, so the next sender sends, never "unknown"."""
    store = outbox.store
    store.outbox_claim("k", target="Conor", lease=60, owner="elsewhere:1", holder_alive=alive)
    assert outbox.deliver("k", sender([])).state == "pending"  # held: not taken while its lease runs
    clock.t += 61
    log = []
    d = outbox.deliver("k", sender(log))
    assert d.state == "sent" and len(log) == 1


def test_a_send_that_fails_before_the_write_is_failed_even_if_the_error_looks_ambiguous(outbox):
    """With pending_at_write the client says when it writes; an error before that (a token
    refused, a connection that never opened) cannot have been applied."""
    from integration.delivery.outbox import before_write

    with pytest.raises(GraphError):
        outbox.deliver("k1", sender([], GraphError("connection failed")), pending_at_write=True)
    assert outbox.state("k1")["state"] == "failed"

    def writes_then_times_out():
        before_write()
        raise GraphError("timed out")

    with pytest.raises(UnknownDelivery):
        outbox.deliver("k2", writes_then_times_out, pending_at_write=True)
    assert outbox.state("k2")["state"] == "unknown"


def test_keys_are_stable_and_distinct():
    assert delivery_key("run", "r1", "s1", 0) == delivery_key("run", "r1", "s1", 0)
    assert delivery_key("run", "r1", "s1", 0) != delivery_key("run", "r1", "s1", 1)
    assert len(delivery_key("x")) == 32


def _race(where, keys, q):
    store = open_at(where)
    box = Outbox(store)
    sent = []
    for k in keys:
        d = box.deliver(k, lambda k=k: (sent.append(k) or f"id-{k}", None))
        assert d.state in ("sent", "pending")
    store.close()
    q.put(sent)


def test_processes_racing_for_the_same_keys_send_each_once(make_store):
    make_store().close()
    keys = [f"k{i}" for i in range(60)]
    q = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_race, args=(make_store.where, keys, q)) for _ in range(4)]
    [p.start() for p in procs]
    sent = [k for _ in procs for k in q.get(timeout=60)]
    [p.join(timeout=60) for p in procs]
    assert sorted(sent) == sorted(keys)  # every key sent, none twice
    store = make_store()
    assert {r["state"] for r in store.outbox_list()} == {"sent"}
