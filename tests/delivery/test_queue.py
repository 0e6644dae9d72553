"""The worker pool's job queue against a real Redis: taking, acking, taking over a dead
worker's jobs after the visibility timeout, dead letters, status; and its errors."""
import time

import pytest

from integration.engine import config as config_mod
from integration.engine.errors import ConfigError
from integration.delivery.queue import GROUP, JobQueue, QueueError, connect


@pytest.fixture
def q(redis_server, redis_namespace):
    cfg = config_mod.Config(store_url=redis_server.url, store_namespace=redis_namespace, source="test")
    queue = JobQueue.from_config(cfg, max_deliveries=3)
    yield queue
    queue.r.delete(queue.stream, queue.dead, queue.notes)
    queue.r.close()


def test_jobs_are_handed_out_once_in_order_and_leave_the_stream_when_acked(q):
    ids = q.enqueue_many([("notify", {"n": i}) for i in range(5)])
    assert len(set(ids)) == 5
    a = q.take("a", block_ms=10, count=3)
    b = q.take("b", block_ms=10, count=10)
    assert [j.body["n"] for j in a] == [0, 1, 2] and [j.body["n"] for j in b] == [3, 4]
    assert q.take("c", block_ms=10) == []  # nothing is handed out twice while taken
    st = q.status()
    assert st["length"] == 5 and st["pending"] == 5 and st["waiting"] == 0
    assert {c["name"]: c["pending"] for c in st["consumers"]} == {"a": 3, "b": 2}
    for j in a + b:
        q.ack(j.id)
    st = q.status()
    assert st["length"] == 0 and st["pending"] == 0 and st["dead"] == 0


def test_a_dead_workers_jobs_are_taken_over_only_after_the_visibility_timeout(q):
    q.enqueue("notify", {"k": "x"})
    (job,) = q.take("dies", block_ms=10)
    assert q.claim_stale("alive", min_idle_seconds=5) == []  # not idle long enough yet
    time.sleep(0.15)
    (again,) = q.claim_stale("alive", min_idle_seconds=0.1)
    assert again.id == job.id and again.body == {"k": "x"} and again.deliveries == 2
    q.ack(again.id)
    assert q.status()["pending"] == 0


def test_touch_keeps_a_running_job_from_being_taken_over(q):
    q.enqueue("resume", {"question": "q1"})
    (job,) = q.take("slow", block_ms=10)
    time.sleep(0.15)
    q.touch("slow", [job.id])
    assert q.claim_stale("other", min_idle_seconds=0.1) == []
    info = q.r.xpending_range(q.stream, GROUP, min=job.id, max=job.id, count=1)[0]
    assert info["consumer"] == "slow" and info["times_delivered"] == 1


def test_a_job_handed_out_too_often_is_dead_lettered_and_reported(q):
    q.enqueue("notify", {"k": "poison"})
    q.take("w1", block_ms=10)
    for n in range(2, 4):
        time.sleep(0.02)
        (j,) = q.claim_stale(f"w{n}", min_idle_seconds=0.01)
        assert j.deliveries == n
    time.sleep(0.02)
    assert q.claim_stale("w4", min_idle_seconds=0.01) == []  # the 4th hand-out is over max_deliveries=3
    st = q.status()
    assert st["length"] == 0 and st["pending"] == 0 and st["dead"] == 1
    (dead,) = q.dead_letters()
    assert dead["kind"] == "notify" and '"poison"' in dead["body"] and dead["deliveries"] == 4
    assert "handed out 4 times" in dead["reason"]


def test_bury_moves_a_refused_job_with_its_reason(q):
    q.enqueue("notify", {"k": "bad"})
    (job,) = q.take("w", block_ms=10)
    q.bury(job, "user not found")
    assert q.status()["pending"] == 0 and q.dead_letters()[0]["reason"] == "user not found"


def test_a_malformed_entry_is_dead_lettered_not_dropped(q):
    q.ensure_group()
    q.r.xadd(q.stream, {"something": "else"})
    assert q.take("w", block_ms=10) == []
    assert q.dead_letters()[0]["reason"].startswith("not a job")


def test_unreachable_redis_is_a_clear_error_without_the_password(redis_namespace):
    cfg = config_mod.Config(store_url="redis://127.0.0.1:1/0", store_password="s3cret-pw",
                            store_namespace=redis_namespace, source="test")
    with pytest.raises(QueueError) as err:
        JobQueue.from_config(cfg).enqueue("notify", {})
    assert "cannot reach redis://127.0.0.1:1/0" in err.value.message and "s3cret-pw" not in str(err.value.to_dict())
    assert "store_url" in err.value.hint


def test_no_store_url_is_a_config_error():
    with pytest.raises(ConfigError, match="store_url"):
        connect(config_mod.Config(source="test"))


def test_a_worker_restarted_under_its_name_gets_its_own_unfinished_jobs_back_at_once(q):
    q.enqueue_many([("notify", {"n": 1}), ("notify", {"n": 2})])
    taken = q.take("w", block_ms=10, count=2)
    q.ack(taken[0].id)
    (mine,) = q.own_pending("w")
    assert mine.id == taken[1].id and mine.body == {"n": 2}
    assert q.own_pending("someone-else") == []
