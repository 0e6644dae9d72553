"""The event loop's lane (frontends/lane.py): store-only work run by the loop in groups, one
commit a group, the callers answered and their effects started only once it is committed; when
another writer holds the store, or a statement fails and takes the group's transaction with it,
nothing of the group is kept and each work runs again in the pool, alone. A live `msteams serve`
keeps answering while another process holds its store's write lock, and answers the command
waiting for it only once its audit entry is committed."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time

import pytest
import yaml

from integration.frontends.lane import Lane
from integration.store.rules import Busy
from integration.store.sqlite import SQLiteStore
from service_helpers import Service, make_key


def row(i: int) -> dict:
    return {"activity_id": f"lane:{i}", "sender_id": "t", "decision": "allowed", "command": f"c{i}"}


def audit_ids(path) -> list[str]:
    with sqlite3.connect(path) as c:  # another connection: sees only what was committed
        return sorted(r[0] for r in c.execute("SELECT activity_id FROM bot_audit"))


def writer(i: int, path, seen: dict, log: list):
    """A work that records an audit row; its effect notes whether the row was committed by then."""
    def work(effects):
        log.append((i, threading.current_thread().name))
        SQLiteStore.audit_add(store_of[path], row(i))
        effects.append((lambda: seen.__setitem__(i, f"lane:{i}" in audit_ids(path)), ()))
        return i * 10
    return work


store_of: dict = {}


@pytest.fixture
def lane_env(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = store_of[path] = SQLiteStore(path)
    pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pool")
    loop = asyncio.new_event_loop()
    yield path, store, Lane(store, pool), loop
    loop.close()
    pool.shutdown(wait=True)
    store_of.pop(path)


def run_all(loop, lane, works):
    async def main():
        return await asyncio.gather(*(lane.run(w) for w in works), return_exceptions=True)
    return loop.run_until_complete(main())


def test_a_group_is_one_commit_and_answers_after_it(lane_env):
    path, store, lane, loop = lane_env
    seen, log = {}, []
    assert run_all(loop, lane, [writer(i, path, seen, log) for i in range(5)]) == [0, 10, 20, 30, 40]
    assert lane.groups == 1 and lane.fallbacks == 0
    assert audit_ids(path) == [f"lane:{i}" for i in range(5)]
    assert seen == {i: True for i in range(5)}  # each effect started once the group was committed
    assert {name for _, name in log} == {threading.current_thread().name}  # on the loop's thread


def test_a_work_alone_is_flushed_at_once_and_its_exception_reaches_its_caller(lane_env):
    path, store, lane, loop = lane_env

    def fails(effects):
        raise ValueError("not a store error")

    seen, log = {}, []
    out = run_all(loop, lane, [writer(1, path, seen, log), fails])
    assert out[0] == 10 and isinstance(out[1], ValueError)
    assert audit_ids(path) == ["lane:1"] and lane.fallbacks == 0


def test_another_writer_sends_the_group_to_the_pool_without_the_loop_waiting(lane_env):
    path, store, lane, loop = lane_env
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the store

    def release():
        time.sleep(0.5)
        other.execute("COMMIT")

    seen, log = {}, []
    threading.Thread(target=release).start()
    t0 = time.monotonic()
    ticks = []

    async def main():
        async def ticking():  # the loop goes on while the works wait in the pool
            while len(ticks) < 20:
                ticks.append(time.monotonic() - t0)
                await asyncio.sleep(0.01)
        results = await asyncio.gather(*(lane.run(writer(i, path, seen, log)) for i in range(3)), ticking())
        return results[:3]

    assert loop.run_until_complete(main()) == [0, 10, 20]
    assert time.monotonic() - t0 >= 0.45  # each waited for the lock, in the pool
    assert ticks[-1] < 0.45  # ... while the loop went on
    assert lane.fallbacks == 1 and lane.groups == 0
    assert audit_ids(path) == ["lane:0", "lane:1", "lane:2"]
    assert seen == {0: True, 1: True, 2: True}
    assert all(name.startswith("pool") for i, name in log)
    other.close()


def test_a_failed_statement_reruns_the_whole_group_in_the_pool_and_keeps_each_row_once(lane_env):
    path, store, lane, loop = lane_env
    seen, log = {}, []
    tries = []

    def breaks_on_the_loop(effects):
        tries.append(threading.current_thread().name)
        if len(tries) == 1:  # a statement that fails rolls back the group's transaction
            with store._conn() as c:
                c.execute("INSERT INTO no_such_table VALUES (1)")
        store.audit_add(row(9))
        effects.append((lambda: seen.__setitem__(9, True), ()))
        return "ok"

    out = run_all(loop, lane, [writer(0, path, seen, log), breaks_on_the_loop, writer(1, path, seen, log)])
    # the failing work saw its error (a ConfigError) on the loop; in the pool it ran clean
    assert out == [0, "ok", 10]
    assert lane.fallbacks == 1 and lane.groups == 0
    assert audit_ids(path) == ["lane:0", "lane:1", "lane:9"]  # each once: the loop's writes were rolled back
    assert seen == {0: True, 1: True, 9: True}  # each effect once, after its write
    assert len(tries) == 2 and tries[1].startswith("pool")


def test_only_a_local_store_has_a_lane_and_one_only(tmp_path):
    from integration.frontends.lane import lane_of
    from integration.store.redis import RedisStore

    store = SQLiteStore(tmp_path / "s.sqlite3")
    assert Lane.available(store)
    lane = lane_of(store, None)
    assert lane is not None and lane_of(store, None) is lane  # the service and the bot share its groups
    assert lane_of(SQLiteStore(tmp_path / "t.sqlite3"), None) is not lane
    redis = RedisStore.__new__(RedisStore)
    assert not Lane.available(redis) and lane_of(redis, None) is None  # each operation a network round trip


def test_serve_answers_while_another_process_holds_its_store(emu, cfg_file, tmp_path):
    """The store-only command waits (in the pool) for the other writer and is answered only once
    its audit entry is committed; meanwhile the service answers other requests at once."""
    data = yaml.safe_load(cfg_file.read_text())
    if data.get("store_url"):
        pytest.skip("a Redis store has no lane: its requests go to the pool (the SQLite run tests this)")
    store_path = data["store_path"]
    key = make_key(cfg_file, "lane", "cache-show")
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        assert svc.post("cache-show", key=key).status_code == 200  # a first call: the lane's connection made
        other = sqlite3.connect(store_path, isolation_level=None, timeout=30)
        other.execute("BEGIN IMMEDIATE")
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                t0 = time.monotonic()
                pending = ex.submit(svc.post, "cache-show", key=key)
                time.sleep(0.3)
                health = svc.get("/v1/health")  # the loop is not waiting on the lock
                assert health.status_code == 200 and time.monotonic() - t0 < 1.0
                assert not pending.done()  # not answered before its audit entry can be committed
                other.execute("COMMIT")
                r = pending.result(30)
        finally:
            if other.in_transaction:
                other.execute("ROLLBACK")
            other.close()
        assert r.status_code == 200 and r.json()["command"] == "cache-show"
        metrics = svc.get("/metrics").text  # the first call's group committed, the second given to the pool
        assert 'msteams_lane_groups_total{outcome="committed"} 1.0' in metrics
        assert 'msteams_lane_works_total{outcome="pool"} 1.0' in metrics
    with sqlite3.connect(store_path) as c:
        rows = c.execute("SELECT command, outcome FROM bot_audit WHERE sender_id='api-key:lane'").fetchall()
    assert rows == [("cache-show", "ok"), ("cache-show", "ok")]


def test_a_pooled_command_past_the_time_limit_is_still_audited_once_done(emu, cfg_file, tmp_path):
    """A command that calls Graph runs in the pool; answered 504 before it finished, its entry
    is committed all the same once it does."""
    data = yaml.safe_load(cfg_file.read_text())
    data.update(max_retries=0, retry_budget_seconds=0, timeout=10)
    cfg_file.write_text(yaml.safe_dump(data))
    key = make_key(cfg_file, "slow", "user-list", "team-list")
    with Service(cfg_file, tmp_path, "--port", "0", "--time-limit", "0.5") as svc:
        assert svc.post("team-list", key=key).status_code == 200
        emu.faults.add(method="GET", path=r"/users", delay=1.5, count=1)
        assert svc.post("user-list", {"limit": 1}, key=key).status_code == 504
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            rows = audited(cfg_file, "api-key:slow")
            if len(rows) == 2:
                break
            time.sleep(0.1)
    assert rows == [("team-list", "ok"), ("user-list", "ok")], rows


def test_pooled_commands_alone_or_side_by_side_are_each_audited_once_before_their_answer(emu, cfg_file, tmp_path):
    """A command that ran alone in the pool commits its own entry there; commands running side
    by side hand theirs to the loop's lane, which commits them with its group (with Redis, the
    audit trail does). Either way each is committed before its answer is sent."""
    data = yaml.safe_load(cfg_file.read_text())
    key = make_key(cfg_file, "pooled", "team-list")

    def lane_works(svc) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in svc.get("/metrics").text.splitlines()
                   if line.startswith("msteams_lane_works_total{"))

    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        before = lane_works(svc)
        assert svc.post("team-list", key=key).status_code == 200
        assert audited(cfg_file, "api-key:pooled") == [("team-list", "ok")]  # committed before the answer
        assert lane_works(svc) == before  # alone: its own thread committed it
        emu.faults.add(method="GET", path=r"/teams", delay=0.4, count=4)  # four calls at once, surely
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            calls = [ex.submit(lambda: (svc.post("team-list", key=key).status_code,
                                        len(audited(cfg_file, "api-key:pooled")))) for _ in range(4)]
            answers = [c.result() for c in calls]
        side_by_side = lane_works(svc) - before
    assert [status for status, _ in answers] == [200] * 4
    assert all(n >= 2 for _, n in answers)  # its own entry was there when its answer came
    assert audited(cfg_file, "api-key:pooled") == [("team-list", "ok")] * 5
    if not data.get("store_url"):  # a Redis store has no lane: the audit trail committed them
        assert 1 <= side_by_side <= 3, side_by_side  # the last to finish ran alone


def audited(cfg_file, sender: str) -> list[tuple]:
    """(command, outcome) of a sender's audit entries, oldest first, from the config's store."""
    from integration.engine import config
    from integration.store.open import open_store

    store = open_store(config.load(str(cfg_file)))
    try:
        return [(r["command"], r["outcome"]) for r in reversed(store.audit_list(sender=sender, limit=1000))]
    finally:
        store.close()


class Contended(SQLiteStore):
    """A store another writer holds until the lane first finds it busy (then it commits)."""

    def __init__(self, path):
        super().__init__(path)
        self.other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.other.execute("BEGIN IMMEDIATE")
        self.tries: list = []

    @contextlib.contextmanager
    def begin_now(self):
        try:
            with super().begin_now() as tx:
                self.tries.append("begun")
                yield tx
        except Busy:
            self.tries.append("busy")
            self.other.execute("COMMIT")
            raise


def test_a_short_writer_is_waited_out_on_a_timer_and_the_group_stays_on_the_loop(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = store_of[path] = Contended(path)
    loop = asyncio.new_event_loop()
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pool") as pool:
        lane = Lane(store, pool)
        seen, log = {}, []
        assert run_all(loop, lane, [writer(i, path, seen, log) for i in range(3)]) == [0, 10, 20]
    loop.close()
    store_of.pop(path)
    assert store.tries == ["busy", "begun"]  # found busy, tried again on a timer, then begun
    assert lane.groups == 1 and lane.fallbacks == 0
    assert {name for _, name in log} == {threading.current_thread().name}  # on the loop, not the pool
    assert audit_ids(path) == ["lane:0", "lane:1", "lane:2"] and seen == {0: True, 1: True, 2: True}
    store.other.close()


def test_serve_under_a_busy_writer_answers_and_audits_every_call_once(emu, cfg_file, tmp_path):
    """Many concurrent store-only calls while another process writes the store in short
    transactions: every call is answered 200 and audited exactly once, whether its group ran on
    the loop, waited the writer out, or went to the pool."""
    data = yaml.safe_load(cfg_file.read_text())
    if data.get("store_url"):
        pytest.skip("a Redis store has no lane (the SQLite run tests this)")
    key = make_key(cfg_file, "busy", "cache-show")
    stop = threading.Event()

    def busy_writer():
        c = sqlite3.connect(data["store_path"], isolation_level=None, timeout=30)
        while not stop.is_set():
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT OR REPLACE INTO secrets(name, value, created) VALUES ('lane-test', 'x', 0)")
            time.sleep(0.003)  # held longer than the lane waits, now and then
            c.execute("COMMIT")
            time.sleep(0.001)
        c.close()

    with Service(cfg_file, tmp_path, "--port", "0", "--rate", "1000", "--burst", "1000") as svc:
        writer_thread = threading.Thread(target=busy_writer)
        writer_thread.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                codes = list(ex.map(lambda i: svc.post("cache-show", key=key).status_code, range(120)))
        finally:
            stop.set()
            writer_thread.join(10)
        metrics = svc.get("/metrics").text
    assert codes == [200] * 120
    assert audited(cfg_file, "api-key:busy") == [("cache-show", "ok")] * 120
    works = {o: float(line.rsplit(" ", 1)[1]) for o in ("committed", "pool") for line in metrics.splitlines()
             if line.startswith(f'msteams_lane_works_total{{outcome="{o}"}} ')}
    assert sum(works.values()) == 120, works  # each call once, on the loop or in the pool
