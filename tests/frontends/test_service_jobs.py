"""Commands as jobs over the HTTP API (issue 25), against a live `msteams serve` on the fake
tenant: `Prefer: respond-async` answers 202 with Location and Preference-Applied; the job
finishes with the synchronous answer, or fails with the problem; an unknown job is 404 and
another key without the command's scope 403; the same Idempotency-Key is the same job; and a
service killed (SIGKILL) while a send is under way leaves a job reported "interrupted" after a
restart, which runs again under the same key without sending twice."""
from __future__ import annotations

import time
import uuid

from service_helpers import Service, cli, make_key

SOC = "Security Operations"
ASYNC = {"Prefer": "respond-async"}


def channel_messages(emu, content: str) -> int:
    return sum(1 for t in emu.state.teams.values() for ch in t.channels.values() for m in ch.messages
               if (m.body or {}).get("content") == content)


def _until(svc, path: str, key: str, *statuses: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = svc.get(path, key=key)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_a_job_finishes_with_the_synchronous_answer_or_fails_with_the_problem(emu, cfg_file, tmp_path):
    key = make_key(cfg_file, "jobs", "channel-list")
    other = make_key(cfg_file, "other", "team-list")
    wide = make_key(cfg_file, "wide", "channel-*")
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        sync = svc.post("channel-list", {"team": SOC}, key=key)
        assert sync.status_code == 200, sync.text

        r = svc.post("channel-list", {"team": SOC}, key=key, headers=ASYNC)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        assert r.headers["preference-applied"] == "respond-async"
        started = r.json()
        assert location == f"/v1/jobs/{started['id']}" == started["location"]
        assert started["command"] == "channel-list" and started["status"] in ("running", "done")
        done = _until(svc, location, key, "done", "failed")
        assert done["status"] == "done", done
        assert done["result"] == sync.json()
        assert done["created"] and done["finished"] and "problem" not in done
        assert "key" not in done and "owner" not in done  # never who holds it

        # what the command answers lands in the job: a team that does not exist is a 404 problem
        r = svc.post("channel-list", {"team": "No Such Team"}, key=key, headers={"Prefer": "wait=1, respond-async"})
        assert r.status_code == 202, r.text
        failed = _until(svc, r.headers["location"], key, "done", "failed")
        assert failed["status"] == "failed" and "result" not in failed, failed
        assert failed["problem"]["status"] == 404 and failed["problem"]["code"] == "not_found"

        # refusals before the job are answered at once, as without the header
        assert svc.post("team-list", {}, key=key, headers=ASYNC).status_code == 403
        assert svc.post("no-such-command", {}, key=key, headers=ASYNC).status_code == 404
        assert svc.post("channel-list", data="[1]", key=key, headers=ASYNC).status_code == 422
        assert svc.post("channel-list", {"team": SOC}, headers=ASYNC).status_code == 401

        # reading a job: its key, or a key allowed the command; another key is refused
        assert svc.get(location, key=other).status_code == 403
        assert svc.get(location, key=wide).json()["status"] == "done"
        assert svc.get(location).status_code == 401
        for unknown in ("/v1/jobs/" + uuid.uuid4().hex, "/v1/jobs/nope"):
            r = svc.get(unknown, key=key)
            assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")

        # the same Idempotency-Key is the same job; another body under it is 422
        h = dict(ASYNC, **{"Idempotency-Key": "job-1"})
        first = svc.post("channel-list", {"team": SOC}, key=key, headers=h)
        again = svc.post("channel-list", {"team": SOC}, key=key, headers=h)
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        assert svc.post("channel-list", {"team": "Other"}, key=key, headers=h).status_code == 422
        assert _until(svc, first.headers["location"], key, "done", "failed")["status"] == "done"

    # the job outlives the service: a new one on the same store still answers it
    with Service(cfg_file, tmp_path, "--port", "0", name="svc2") as svc:
        assert _until(svc, location, key, "done")["result"] == sync.json()


def test_a_job_killed_with_its_service_is_interrupted_and_runs_again_sending_once(emu, cfg_file, tmp_path):
    assert cli(cfg_file, "auth", "login")[0] == 0  # posting to a channel needs the delegated flow
    key = make_key(cfg_file, "poster", "channel-message-send")
    content = f"job-{uuid.uuid4().hex[:8]}"
    body = {"team": SOC, "channel": "General", "content": content}
    h = dict(ASYNC, **{"Idempotency-Key": "send-1"})
    fault = emu.faults.add(method="POST", path=r"/channels/[^/]+/messages$", delay=3.0, count=1)  # a slow send
    svc = Service(cfg_file, tmp_path, "--port", "0")
    try:
        r = svc.post("channel-message-send", body, key=key, headers=h)
        assert r.status_code == 202, r.text
        location = r.headers["location"]
        deadline = time.monotonic() + 20
        while getattr(fault, "hits", 1) == 0 and time.monotonic() < deadline:  # the send is under way
            time.sleep(0.02)
        assert svc.get(location, key=key).json()["status"] == "running"
        svc.proc.kill()  # SIGKILL: no chance to record anything
        svc.proc.communicate(timeout=30)
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()
            svc.proc.communicate(timeout=30)
        svc.http.close()
    time.sleep(3.5)  # the tenant finishes (or drops) the send the dead service started

    with Service(cfg_file, tmp_path, "--port", "0", name="svc2") as svc:
        job = svc.get(location, key=key).json()
        assert job["status"] == "interrupted", job
        assert job["problem"]["code"] == "interrupted" and "Idempotency-Key" in job["problem"]["hint"]
        # run it again under the same key: the same job, done, and the message is there once
        again = svc.post("channel-message-send", body, key=key, headers=h)
        assert again.status_code == 202 and again.headers["location"] == location, again.text
        done = _until(svc, location, key, "done", "failed")
        assert done["status"] == "done", done
        assert channel_messages(emu, content) == 1
        # and again: the finished job, still one message
        assert svc.post("channel-message-send", body, key=key, headers=h).json()["status"] == "done"
        assert channel_messages(emu, content) == 1


def _wait_finished(jobs, jid: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        record = jobs.record(jid)
        if (record and record["status"] != "running") or time.monotonic() > deadline:
            return record
        time.sleep(0.01)


def test_the_same_idempotency_key_at_the_same_instant_in_two_processes_starts_one_job(make_store):
    """Two services (two Jobs over one store, as two processes have) get the same key at the
    same instant: one starts the job, the other answers that job; its record is the one work's."""
    import json
    import threading

    from integration.frontends.service.jobs import Jobs

    a, b = Jobs(make_store(), workers=2), Jobs(make_store(), workers=2)
    try:
        for rnd in range(50):
            scope = uuid.uuid4().hex + uuid.uuid4().hex
            barrier = threading.Barrier(2)
            ran: list[str] = []
            out: dict = {}

            def start(name: str, jobs) -> None:
                def work():
                    ran.append(name)
                    time.sleep(0.02)  # still running while the other start looks
                    return 200, json.dumps({"ran": name}).encode()

                barrier.wait()
                try:
                    out[name] = jobs.start(command="channel-list", key_name="k", fingerprint="fp", scope=scope,
                                           work=work)
                except BaseException as exc:  # noqa: BLE001 - reported by the asserts
                    out[name] = exc

            threads = [threading.Thread(target=start, args=(n, j)) for n, j in (("a", a), ("b", b))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert all(isinstance(v, tuple) for v in out.values()) and len(out) == 2, (rnd, out)
            started = [n for n, (_, now) in out.items() if now]
            assert len(started) == 1, (rnd, started)
            first = out[started[0]][0]
            assert out["b" if started == ["a"] else "a"][0]["id"] == first["id"]
            final = _wait_finished(a, first["id"])
            assert ran == started, (rnd, ran)  # one work, the one that started
            assert final["status"] == "done" and final["result"] == {"ran": started[0]}, (rnd, final)
            assert final["created"] == first["created"]
    finally:
        a.close()
        b.close()


def test_a_job_meeting_another_process_s_job_under_its_key_leaves_that_job_s_record(make_store):
    """Defence in depth: should two jobs of one key ever both run, the one whose work meets the
    other's (409 idempotency_in_progress) does not overwrite the other's record."""
    import json
    import threading

    from integration.frontends.service.jobs import Jobs
    from integration.frontends.service.problems import Problem

    a, b = Jobs(make_store(), workers=1), Jobs(make_store(), workers=1)
    go = threading.Event()
    try:
        scope = uuid.uuid4().hex * 2
        mine, now = a.start(command="channel-list", key_name="k", fingerprint="fp", scope=scope,
                            work=lambda: (go.wait(10), (200, b'{"ok": true}'))[1])
        assert now
        busy = Problem(409, "idempotency_in_progress", "a request with this Idempotency-Key is still running")
        other = dict(mine, run="another start of the same job")  # as a second process's start would be
        b._run(other, lambda: (409, json.dumps(busy.body()).encode()))
        assert a.record(mine["id"]) == mine  # still the first job's, running
        go.set()
        assert _wait_finished(a, mine["id"])["result"] == {"ok": True}
    finally:
        go.set()
        a.close()
        b.close()
