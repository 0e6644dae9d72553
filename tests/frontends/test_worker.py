"""The worker pool end to end: notifications queued with send-notification queue=true and sent by
`msteams worker` processes against the fake tenant and a real Redis: each exactly once with two
workers, still exactly once (none lost) when one is killed with SIGKILL mid-run and the other
takes its jobs over; SIGTERM finishes the running jobs and exits 0; a question asked by a run on
"host A", answered through the endpoint of "host B", resumes the run on a worker."""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from cryptography.fernet import Fernet

from engine_fixtures import make_config
from fake_tenant import Emulator
from integration.dispatch import Runtime, execute
from integration.engine.errors import ArgumentError
from integration.delivery.queue import JobQueue
from integration.frontends.worker import DEAD, RETRY, verdict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = "IR-88: rotate your credentials now"


@pytest.fixture(scope="module")
def big():
    with Emulator(users=60, throttling=False) as emu:
        yield emu


class Pool:
    """A config file shared by the producer and the workers (same store, same Redis namespace)."""

    def __init__(self, emu, tmp_path, redis_url: str, namespace: str):
        self.emu, self.tmp_path = emu, tmp_path
        self.cfg_path = tmp_path / "config.yml"
        emu.write_config(str(self.cfg_path))
        data = yaml.safe_load(self.cfg_path.read_text())
        # store_key: once the whole store may live in Redis (store_url), it is encrypted under it.
        self.overrides = {"store_url": redis_url, "store_namespace": namespace, "store_key": Fernet.generate_key().decode()}
        data.update(store_path=str(tmp_path / "store.sqlite3"), **self.overrides)
        self.cfg_path.write_text(yaml.safe_dump(data))
        self.procs: list[subprocess.Popen] = []

    def runtime(self) -> Runtime:
        cfg = make_config(self.emu, self.tmp_path, **self.overrides)
        rt = Runtime(cfg)
        rt.echo = lambda s: None
        return rt

    def queue(self) -> JobQueue:
        return JobQueue.from_config(make_config(self.emu, self.tmp_path, **self.overrides))

    def worker(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, MSTEAMS_CONFIG=str(self.cfg_path), PYTHONPATH=REPO)
        p = subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "worker", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()


@pytest.fixture
def pool(big, tmp_path, redis_server, redis_namespace):
    big.reset()
    big.faults.clear()
    p = Pool(big, tmp_path, redis_server.url, redis_namespace)
    yield p
    p.stop()
    q = p.queue()
    q.r.delete(q.stream, q.dead, q.notes)


def users(emu, n: int) -> list[str]:
    return sorted(u["id"] for u in emu.state.users.values())[:n]


def received(emu, text: str = TEXT) -> collections.Counter:
    return collections.Counter(a["activity"]["recipient"]["id"] if a["activity"].get("recipient") else
                               a["conversationId"] for a in emu.state.activities.values()
                               if a["activity"].get("text") == text)


def per_conversation(emu, text: str = TEXT) -> collections.Counter:
    return collections.Counter(a["conversationId"] for a in emu.state.activities.values()
                               if a["activity"].get("text") == text)


def queue_notifications(pool, recipients: list[str], **extra) -> list[dict]:
    rt = pool.runtime()
    try:
        r = execute("send-notification", {"user": recipients, "message": TEXT, "queue": True, **extra}, rt)
    finally:
        rt.close()
    return r.outputs


def wait_for(cond, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            err = proc.stderr.read() if proc is not None and proc.poll() is not None else ""
            raise AssertionError(f"timed out waiting for {what} {err}")
        time.sleep(0.02)


def finish(p: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


# ---- producing ----

def test_queue_true_queues_one_job_per_recipient_with_the_in_process_delivery_key(pool):
    ids = users(pool.emu, 3)
    rows = queue_notifications(pool, ids, dedupe_key="IR-88")
    assert [r["status"] for r in rows] == ["queued"] * 3 and not pool.emu.state.activities
    q = pool.queue()
    st = q.status()
    assert st["length"] == 3 and st["waiting"] == 3
    jobs = q.take("inspect", block_ms=10, count=10)
    assert [j.body["key"] for j in jobs] == [r["deliveryKey"] for r in rows]
    assert all(j.kind == "notify" and j.body["activity"]["text"] == TEXT for j in jobs)
    # the key is the one the in-process send uses: sending in-process now reuses nothing queued,
    # and the workers later find those keys already sent
    rt = pool.runtime()
    try:
        sent = execute("send-notification", {"user": ids, "message": TEXT, "dedupe_key": "IR-88"}, rt).outputs
    finally:
        rt.close()
    assert [r["deliveryKey"] for r in sent] == [r["deliveryKey"] for r in rows]
    assert [r["messageRef"] for r in sent] == [r["messageRef"] for r in rows]
    again = queue_notifications(pool, ids, dedupe_key="IR-88")
    assert [r["status"] for r in again] == ["already sent"] * 3
    assert q.status()["waiting"] == 0  # nothing queued for them again


def test_queue_true_without_store_url_is_refused_before_anything_is_sent(big, tmp_path):
    big.reset()
    cfg = make_config(big, tmp_path)
    cfg.store_url = None  # whatever store the suite runs on, this engine has no shared Redis
    rt = Runtime(cfg)
    try:
        with pytest.raises(ArgumentError, match="store_url") as err:
            execute("send-notification", {"user": users(big, 1), "message": TEXT, "queue": True}, rt)
    finally:
        rt.close()
    assert err.value.argument == "queue" and not big.state.activities


def test_what_a_failure_means_for_a_job():
    from integration.engine.errors import GraphError, NotFound, ThrottledError
    from integration.handlers.notify import HeldElsewhere
    from integration.delivery.outbox import UnknownDelivery

    assert verdict(HeldElsewhere("x")) == RETRY and verdict(ThrottledError("x", status=429)) == RETRY
    assert verdict(GraphError("x", status=503)) == RETRY and verdict(GraphError("x", status=None)) == RETRY
    assert verdict(GraphError("x", status=403)) == DEAD and verdict(NotFound("x")) == DEAD
    assert verdict(UnknownDelivery("x")) == DEAD and verdict(RuntimeError("bug")) == RETRY


# ---- workers ----

def test_two_worker_processes_send_every_notification_exactly_once(pool):
    ids = users(pool.emu, 40)
    queue_notifications(pool, ids)
    a = pool.worker("--name", "a", "--concurrency", "4", "--until-empty")
    b = pool.worker("--name", "b", "--concurrency", "4", "--until-empty")
    (ca, outa, erra), (cb, outb, errb) = finish(a), finish(b)
    assert (ca, cb) == (0, 0), erra + errb
    counts = per_conversation(pool.emu)
    assert len(counts) == 40 and max(counts.values()) == 1
    assert "sent" in outa and "sent" in outb  # both took a share
    st = pool.queue().status()
    assert st["length"] == 0 and st["pending"] == 0 and st["dead"] == 0
    rt = pool.runtime()
    try:
        assert len(rt.store.outbox_list("sent", 1000)) == 40
    finally:
        rt.close()


def test_a_killed_worker_s_jobs_are_taken_over_and_still_sent_exactly_once(pool):
    pool.emu.faults.add(method="POST", path=r"/activities$", delay=0.05, count=10_000)  # a slow Bot Connector
    ids = users(pool.emu, 40)
    queue_notifications(pool, ids)
    doomed = pool.worker("--name", "doomed", "--concurrency", "4", "--visibility-timeout", "1")
    wait_for(lambda: len(pool.emu.state.activities) >= 8, 60, "the first sends", doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    before = len(pool.emu.state.activities)
    q = pool.queue()
    left = {c["name"]: c["pending"] for c in q.status()["consumers"]}
    assert before < 40 and left.get("doomed", 0) >= 1  # it died holding jobs
    code, out, err = finish(pool.worker("--name", "heir", "--concurrency", "4", "--visibility-timeout", "1",
                                        "--until-empty"), 120)
    assert code == 0, err
    counts = per_conversation(pool.emu)
    assert max(counts.values()) == 1, "a recipient got the message twice"
    rt = pool.runtime()
    try:
        unknown = rt.store.outbox_list("unknown", 1000)
        sent = rt.store.outbox_list("sent", 1000)
    finally:
        rt.close()
    # Only a send on the wire at the kill can be unknown (it is reported, never resent unasked);
    # a job waiting for its pacing slot is not marked, so it is simply sent by the heir.
    assert len(unknown) <= 4 and len(sent) + len(unknown) == 40
    assert len(counts) >= 40 - len(unknown)
    st = q.status()
    assert st["length"] == 0 and st["pending"] == 0 and st["dead"] == len(unknown)
    assert all("outcome unknown" in d["reason"] for d in q.dead_letters())


def test_sigterm_finishes_the_running_jobs_then_exits_0(pool):
    pool.emu.faults.add(method="POST", path=r"/activities$", delay=0.3, count=10_000)
    ids = users(pool.emu, 20)
    queue_notifications(pool, ids)
    w = pool.worker("--name", "polite", "--concurrency", "3")
    wait_for(lambda: len(pool.emu.state.activities) >= 2, 60, "the first sends", w)
    w.send_signal(signal.SIGTERM)
    code, out, err = finish(w, 30)
    assert code == 0, err
    assert "stopped" in out
    q = pool.queue()
    st = q.status()
    sent = len(per_conversation(pool.emu))
    # nothing half done: every job it took is either sent and acked or still waiting untaken
    assert st["pending"] == 0 and st["length"] == 20 - sent and 2 <= sent < 20
    rt = pool.runtime()
    try:
        assert not rt.store.outbox_list("pending", 100) and not rt.store.outbox_list("unknown", 100)
    finally:
        rt.close()


def test_worker_status_shows_the_queue_and_the_outbox(pool):
    queue_notifications(pool, users(pool.emu, 5))
    env = dict(os.environ, MSTEAMS_CONFIG=str(pool.cfg_path), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "--output", "json", "worker", "status"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["waiting"] == 5 and st["pending"] == 0 and st["dead"] == 0 and "sent" in st["outbox"]
    proc = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "worker", "status"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "5 waiting" in proc.stdout


def test_worker_without_store_url_exits_3_with_a_hint(big, tmp_path):
    cfg = tmp_path / "config.yml"
    big.write_config(str(cfg))
    env = dict(os.environ, MSTEAMS_CONFIG=str(cfg), PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "worker"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "store_url" in proc.stderr and "Traceback" not in proc.stderr


# ---- a run resumed on a worker ----

from ask_helpers import WAITING_PLAYBOOK as WAITING  # noqa: E402 - the same ask-then-tell playbook


def test_a_run_asked_on_host_a_answered_on_host_b_resumes_on_a_worker(pool, tmp_path):
    from integration.frontends.bot import server as bot_server

    conor = next(u for u in pool.emu.state.users.values() if u["mail"] == "conor.obrien@contoso.example")
    pb = tmp_path / "ask-then-tell.yml"
    pb.write_text(textwrap.dedent(WAITING))
    env = dict(os.environ, MSTEAMS_CONFIG=str(pool.cfg_path), PYTHONPATH=REPO)
    # host A: the run starts, asks, and waits
    proc = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "playbook", "run", str(pb), "--input",
                           f"who={conor['mail']}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    run_id, qid = first.split()[1], first.split()[-1]
    # host C: a worker of the pool, running
    worker = pool.worker("--name", "c")
    wait_for(lambda: pool.queue().active_workers() == 1, 30, "the worker to start", worker)
    # host B: the bot endpoint, its own runtime, the same Redis; the answer arrives there
    host_b = pool.runtime()
    endpoint = bot_server.build(host_b, workers=2)
    server = bot_server.BotServer(endpoint).start()
    pool.emu.teams.register(server.messaging_endpoint)
    try:
        pool.emu.teams.user_clicks(conor["mail"], "Yes", question=qid)
        assert endpoint.processor.drain(20)
        # handed to the pool, not resumed here: the worker finishes it
        wait_for(lambda: host_b.store.run_get(run_id)["status"] == "ok", 60, "the worker to resume the run", worker)
    finally:
        pool.emu.teams.register(None)
        server.stop()
        host_b.close()
    worker.send_signal(signal.SIGTERM)
    code, out, err = finish(worker, 60)
    assert code == 0, err
    assert f"run {run_id} (ask-then-tell): ok" in out
    texts = [a["activity"].get("text") for a in pool.emu.state.activities.values()]
    assert texts.count("Decision: Yes (Conor O'Brien)") == 1


def test_without_a_running_pool_the_endpoint_resumes_the_run_itself(pool, tmp_path):
    from integration.frontends.bot import server as bot_server
    from integration.playbooks import run_playbook

    pb = tmp_path / "ask-then-tell.yml"
    pb.write_text(textwrap.dedent(WAITING))
    host_b = pool.runtime()
    r = run_playbook(pb, {"who": "conor.obrien@contoso.example"}, host_b, out=lambda s: None)
    assert r.status == "waiting" and pool.queue().active_workers() == 0
    endpoint = bot_server.build(host_b, workers=2)
    server = bot_server.BotServer(endpoint).start()
    pool.emu.teams.register(server.messaging_endpoint)
    try:
        pool.emu.teams.user_clicks("conor.obrien@contoso.example", "No", question=r.waiting_for)
        assert endpoint.processor.drain(20)
        assert host_b.store.run_get(r.run_id)["status"] == "ok"  # nobody to hand it to: resumed here
        assert pool.queue().status()["length"] == 0
    finally:
        pool.emu.teams.register(None)
        server.stop()
        host_b.close()


def test_a_refused_delivery_goes_to_the_dead_letters_with_its_reason_and_the_rest_are_sent(pool):
    from integration.frontends.worker import Worker, WorkerRuntime

    ids = users(pool.emu, 4)
    queue_notifications(pool, ids)
    pool.emu.faults.add(method="POST", path=r"/activities$", status=403, count=1)  # one send refused for good
    rt = WorkerRuntime(make_config(pool.emu, pool.tmp_path, **pool.overrides))
    lines: list[str] = []
    try:
        assert Worker(rt, pool.queue(), name="inproc", concurrency=1, visibility=1.0, until_empty=True,
                      out=lines.append).run() == 0
        failed = rt.store.outbox_list("failed", 100)
    finally:
        rt.close()
    assert len(per_conversation(pool.emu)) == 3 and len(failed) == 1
    q = pool.queue()
    st = q.status()
    assert st["length"] == 0 and st["dead"] == 1
    (dead,) = q.dead_letters()
    assert dead["kind"] == "notify" and "403" in dead["reason"] and dead["deliveries"] == 1
    assert "job:dead 1" in lines[-1] and "job:done 3" in lines[-1]
