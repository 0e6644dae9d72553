"""The HTTP API's audit entries committed in groups (service/audit.py, AuditTrail): a call's
answer is handed over only once its entry is committed; entries queued while one write is under
way are written together, in one transaction; a row that fails fails alone; close() writes
what is queued (a graceful stop loses none)."""
from __future__ import annotations

import asyncio
import threading

from integration.frontends.service.answers import Answer
from integration.frontends.service.audit import AuditTrail
from integration.store.sqlite import SQLiteStore


class Gate(SQLiteStore):
    """A store whose audit writes can be held, and that notes them: (activity id, alone) for
    audit_add, the activity ids of each audit_add_many."""

    def __init__(self, path):
        super().__init__(path)
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.calls = []
        self.batches = []

    def audit_add(self, row):
        self.entered.set()
        self.hold.wait(10)
        if row.get("command") == "bad":
            raise ValueError("cannot store this")
        self.calls.append(row["activity_id"])
        return super().audit_add(row)

    def audit_add_many(self, rows):
        self.entered.set()
        self.hold.wait(10)
        if any(row.get("command") == "bad" for row in rows):
            raise ValueError("cannot store this")
        self.batches.append([row["activity_id"] for row in rows])
        return super().audit_add_many(rows)


def row(i, command="c"):
    return {"activity_id": f"http:{i}", "sender_id": "api-key:k", "decision": "allowed", "command": command}


def test_answers_wait_for_their_commit_and_concurrent_entries_go_together(tmp_path):
    store = Gate(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    loop = asyncio.new_event_loop()
    try:
        waiters = [loop.create_future() for _ in range(4)]
        store.hold.clear()
        first = threading.Thread(target=trail.add, args=(row(0), loop, waiters[0], Answer(200, b"0")))
        first.start()  # not alone: queued for the trail's thread, which writes it and is held there
        assert store.entered.wait(5)
        for i in (1, 2, 3):  # queued while a write is under way
            trail.add(row(i), loop, waiters[i], Answer(200, str(i).encode()))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert not any(w.done() for w in waiters)  # nothing answered before its entry is committed
        store.hold.set()
        first.join(5)
        answers = loop.run_until_complete(asyncio.wait_for(asyncio.gather(*waiters), 5))
        assert [a.body for a in answers] == [b"0", b"1", b"2", b"3"]
        assert store.calls == ["http:0"] and store.batches == [["http:1", "http:2", "http:3"]]  # one commit
        assert len(store.audit_list(limit=10)) == 4
    finally:
        trail.close()
        loop.close()


def test_a_call_alone_writes_its_own_entry_and_a_bad_row_fails_alone(tmp_path):
    store = Gate(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    loop = asyncio.new_event_loop()
    try:
        w = loop.create_future()
        trail.add(row(1), loop, w, Answer(200, b"x"), alone=True)  # written before add returns
        assert trail._thread is None and len(store.audit_list()) == 1
        assert loop.run_until_complete(asyncio.wait_for(w, 5)).body == b"x"
        trail.write([row(2), row(3, "bad"), row(4)])  # the batch fails: each on its own
        assert sorted(r["activity_id"] for r in store.audit_list()) == ["http:1", "http:2", "http:4"]
    finally:
        trail.close()
        loop.close()


def test_close_writes_what_is_queued(tmp_path):
    store = Gate(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    loop = asyncio.new_event_loop()
    try:
        store.hold.clear()
        for i in range(5):
            trail.add(row(i), loop, loop.create_future(), Answer(200, b""))
        assert store.entered.wait(5)
        closing = threading.Thread(target=trail.close)
        closing.start()
        store.hold.set()
        closing.join(10)
        assert not closing.is_alive()
        assert len(store.audit_list()) == 5
        trail.add(row(9), loop, loop.create_future(), Answer(200, b""))  # closed: written by its caller
        assert len(store.audit_list()) == 6
    finally:
        loop.close()
