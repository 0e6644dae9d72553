"""Webhooks out (delivery/webhooks.py, `msteams webhook ...`), on the Standard Webhooks spec:
a real receiver on loopback verifies every delivery with the standardwebhooks library and
refuses a replay; events come from where they happen (a playbook run that waits for a click
through the fake tenant, the answer, a command from Teams, a mirrored message); a failing
receiver gets the same webhook-id again after a backoff; one that always fails ends in the
dead letters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from engine_fixtures import Sleeps, make_config, store_settings
from integration.delivery import webhooks
from integration.dispatch import Runtime, execute
from integration.engine.config import Config
from integration.frontends import cli
from integration.frontends.bot import server as bot_server
from integration.store.open import open_store
from ask_helpers import GRACE, LIBRARY, ROLE_MAP
from bot_helpers import BOB, CONOR, SOC, access_yaml
from webhook_helpers import Receiver

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Clock:
    """The store's clock: real time plus what a test moves it on by."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _cli(cfg_path, *argv) -> tuple[int, str, str]:
    out, err = [], []
    rc = cli.main(["--config", str(cfg_path), *argv], out=out.append, err=err.append)
    return rc, "\n".join(out), "\n".join(err)


def _add(cfg_path, receiver, *events, name=None) -> str:
    """`msteams webhook add` as a user runs it; the receiver learns the secret it prints."""
    args = ["-o", "json", "webhook", "add", receiver.url] + [a for e in events for a in ("--event", e)]
    rc, out, err = _cli(cfg_path, *args, *(["--name", name] if name else []))
    assert rc == 0, err
    added = json.loads(out)
    assert added["secret"].startswith("whsec_")
    receiver.secret = added["secret"]
    return added["name"]


def _deliveries(cfg_path, *args) -> list[dict]:
    rc, out, err = _cli(cfg_path, "-o", "json", "webhook", "deliveries", *args)
    assert rc == 0, err
    data = json.loads(out)
    return data["deliveries"] if isinstance(data, dict) else data


# ------------------------------------------------------------------ a store alone (no tenant)

class Local:
    """A store and its config file, as `msteams webhook` and an emitter see them."""

    def __init__(self, tmp_path):
        import yaml

        settings = store_settings(tmp_path)
        self.cfg = Config(**settings, source="test")
        self.path = tmp_path / "config.yml"
        self.path.write_text(yaml.safe_dump(settings))
        self.clock = Clock()
        self.store = open_store(self.cfg)
        self.store._clock = self.clock

    def emit(self, n: int, event: str = "run.finished") -> None:
        assert webhooks.emit(self.store, self.cfg, event, {"runId": f"r{n}", "status": "ok"}, key=(f"r{n}", "ok"))

    def queued(self) -> dict:
        return {r["webhookId"]: r for r in webhooks.deliveries(self.store, self.cfg)}


@pytest.fixture
def local(tmp_path):
    lo = Local(tmp_path)
    yield lo
    lo.store.close()


def test_a_receiver_failing_twice_gets_the_same_webhook_id_after_each_backoff_then_the_rest_in_order(local, receiver):
    _add(local.path, receiver, "run.finished")
    receiver.failures = 2
    local.emit(1)
    [first] = receiver.arrived
    row = local.queued()[first]
    assert (row["state"], row["attempts"], row["lastStatus"]) == ("failed", 1, 500)
    due = local.store.get(webhooks.QUEUE, next(e["key"] for e in local.store.entries(webhooks.QUEUE)))["nextAt"]
    assert 15 <= due - local.clock() <= 17  # the first backoff: 15 s (+ up to 10 % jitter)
    local.emit(2)  # not due yet: the first is not tried again, and the second waits behind it (order)
    assert receiver.arrived == [first] and len(local.queued()) == 2
    local.clock.offset += 20
    local.emit(3)  # the next emit finds the first due: 500 again, then a longer backoff
    assert receiver.arrived == [first, first]
    row = local.queued()[first]
    assert (row["state"], row["attempts"]) == ("failed", 2)
    local.clock.offset += 20
    assert webhooks.pump(local.store, local.cfg)["sent"] == 0  # 40 s later: the second backoff (1 min) runs
    local.clock.offset += 60
    out = webhooks.pump(local.store, local.cfg)  # as the worker pool does every few seconds
    assert out["sent"] == 3 and out["events"] == {"run.finished": 3}
    assert receiver.arrived[:3] == [first] * 3 and len(receiver.arrived) == 5
    assert [a["data"]["runId"] for a in receiver.accepted] == ["r1", "r2", "r3"]
    assert receiver.accepted[0]["id"] == first and receiver.refused == []
    states = {r["webhookId"]: (r["state"], r["attempts"], r["lastStatus"]) for r in _deliveries(local.path)}
    assert states[first] == ("sent", 3, 204)
    assert sorted(states.values()) == [("sent", 1, 204), ("sent", 1, 204), ("sent", 3, 204)]
    # emitting an event again (a run reported twice) sends nothing: it is one event, one webhook-id
    assert not webhooks.emit(local.store, local.cfg, "run.finished", {"runId": "r1"}, key=("r1", "ok"))
    assert webhooks.retry(local.store, local.cfg)["sent"] == 0 and len(receiver.arrived) == 5


def test_a_receiver_that_always_fails_ends_in_the_dead_letters_and_a_retry_by_hand_delivers(local, receiver):
    name = _add(local.path, receiver, "run.finished")
    receiver.always_fail = True
    local.emit(1)
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        rc, out, err = _cli(local.path, "webhook", "deliveries", "--retry")  # at once, whatever the backoff
        assert rc == 0, err
    assert len(receiver.arrived) == webhooks.MAX_ATTEMPTS and len(set(receiver.arrived)) == 1
    [dead] = _deliveries(local.path, "--state", "dead")
    assert (dead["webhookId"], dead["event"], dead["webhook"]) == (receiver.arrived[0], "run.finished", name)
    assert (dead["attempts"], dead["lastStatus"]) == (webhooks.MAX_ATTEMPTS, 500)
    assert "gave up after 8 attempts" in dead["reason"]
    assert _deliveries(local.path, "--state", "failed") == []
    rc, out, _ = _cli(local.path, "webhook", "deliveries", "--state", "dead")
    assert rc == 0 and dead["webhookId"] in out and "attempts 8" in out and "last 500" in out and "dead" in out
    # a dead letter is not retried by itself...
    local.clock.offset += 7 * 86400
    assert webhooks.pump(local.store, local.cfg, force=True)["sent"] == 0
    # ...but by hand, once the receiver works again: the same webhook-id
    receiver.always_fail = False
    rc, out, err = _cli(local.path, "webhook", "deliveries", "--retry", "--state", "dead")
    assert rc == 0 and "1 sent" in out, (out, err)
    assert [a["id"] for a in receiver.accepted] == [dead["webhookId"]]
    rc, out, _ = _cli(local.path, "webhook", "list")
    assert "1 sent" in out and "0 dead" in out


def test_a_refusal_for_good_is_dead_at_once_a_429_waits_its_retry_after_and_a_day_is_the_limit(local, receiver):
    _add(local.path, receiver, "run.finished")
    receiver.status = 400
    local.emit(1)
    [row] = local.queued().values()
    assert (row["state"], row["attempts"], row["lastStatus"]) == ("dead", 1, 400)
    receiver.status, receiver.headers = 429, {"Retry-After": "600"}
    local.emit(2)
    row = local.queued()[receiver.arrived[-1]]
    assert (row["state"], row["lastStatus"]) == ("failed", 429)
    [q] = [e["value"] for e in local.store.entries(webhooks.QUEUE)]
    assert q["nextAt"] - local.clock() >= 599
    receiver.status = 503
    local.clock.offset += 25 * 3600  # a day later: this attempt fails too, and it was the last
    webhooks.pump(local.store, local.cfg)
    row = local.queued()[receiver.arrived[-1]]
    assert row["state"] == "dead" and "gave up after 24 hours" in row["reason"]


def test_a_receiver_refuses_a_replayed_or_stale_delivery(local, receiver):
    _add(local.path, receiver, "run.finished")
    local.emit(1)
    [(headers, body)] = receiver.raw
    assert receiver.types() == ["run.finished"] and headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-id"] == "msg_" + webhooks.event_id("run.finished", "r1", "ok")
    # the very same delivery again: the signature holds, the id was taken: refused
    assert requests.post(receiver.url, data=body, headers=headers, timeout=5).status_code == 409
    # made to look fresh: the signature covers the timestamp, so it no longer matches
    fresh = dict(headers, **{"webhook-timestamp": str(int(time.time()) + 1), "webhook-id": "msg_other"})
    assert requests.post(receiver.url, data=body, headers=fresh, timeout=5).status_code == 401
    # signed properly, but 10 minutes old: outside the library's tolerance
    old = webhooks.signature_headers(receiver.secret, "msg_old", int(time.time()) - 600, body)
    assert requests.post(receiver.url, data=body, headers=old, timeout=5).status_code == 401
    assert [why for _, why in receiver.refused] == ["replayed", "No matching signature found",
                                                    "Message timestamp too old"]
    assert len(receiver.accepted) == 1


def test_the_secret_is_printed_once_never_listed_and_forgotten_with_its_webhook(local, receiver):
    rc, out, err = _cli(local.path, "webhook", "add", receiver.url, "--event", "run.finished", "--event",
                        "question.answered", "--name", "soar")
    assert rc == 0, err
    secret = out.splitlines()[-1]
    assert secret.startswith("whsec_") and out.count(secret) == 1
    receiver.secret = secret
    local.emit(1)
    for args in (["webhook", "list"], ["-o", "json", "webhook", "list"], ["webhook", "deliveries"],
                 ["-o", "json", "webhook", "deliveries"]):
        rc, out, err = _cli(local.path, *args)
        assert rc == 0 and secret not in out and secret not in err, args
    rc, out, _ = _cli(local.path, "webhook", "list")
    assert "soar: " + receiver.url in out and "run.finished, question.answered" in out and "1 sent" in out
    # kept among the store's secrets only, not with the subscription or its deliveries
    for kind in (webhooks.SUBS, webhooks.QUEUE, webhooks.DONE, webhooks.EVENT_BODIES):
        assert secret not in json.dumps(local.store.entries(kind))
    [sub] = [s for s in webhooks.subscriptions(local.store) if s["name"] == "soar"]
    assert local.store.secret(f"webhook:{sub['id']}", lambda: "made anew") == secret
    # state, not cache: cache-reset keeps the webhook and its deliveries
    local.store.clear(include_tokens=True)
    assert [s["name"] for s in webhooks.subscriptions(local.store)] == ["soar"] and len(_deliveries(local.path)) == 1
    # the same name again is refused; removing it forgets the secret and its deliveries
    rc, _, err = _cli(local.path, "webhook", "add", receiver.url, "--event", "run.finished", "--name", "SOAR")
    assert rc == 2 and "exists" in err
    rc, out, _ = _cli(local.path, "webhook", "remove", "soar")
    assert rc == 0 and "removed" in out
    assert local.store.secret(f"webhook:{sub['id']}", lambda: "made anew") == "made anew"
    assert _deliveries(local.path) == [] and webhooks.subscriptions(local.store) == []
    rc, _, err = _cli(local.path, "webhook", "remove", "soar")
    assert rc != 0 and "no webhook named" in err


def test_a_second_webhook_to_the_same_url_is_added_with_a_warning_naming_the_events_sent_twice(local, receiver):
    rc, _, err = _cli(local.path, "webhook", "add", receiver.url, "--event", "run.finished", "--event", "run.waiting")
    assert rc == 0 and err == "", err
    rc, out, err = _cli(local.path, "-o", "json", "webhook", "add", receiver.url, "--event", "run.waiting",
                        "--event", "question.answered")
    assert rc == 0 and json.loads(out)["name"].endswith("-2")  # added: stdout stays the JSON it was
    assert json.loads(out)["sent_twice"] == [{"webhook": "127.0.0.1", "events": ["run.waiting"]}]
    assert err.startswith("warning: webhook '127.0.0.1' already sends run.waiting to this URL") and \
        "msteams webhook remove 127.0.0.1" in err and "question.answered" not in err, err
    # another URL, or the same URL for other events: nothing to say
    rc, out, err = _cli(local.path, "-o", "json", "webhook", "add", receiver.url + "other", "--event", "run.waiting")
    assert rc == 0 and err == "", err
    assert json.loads(out)["sent_twice"] == []
    rc, _, err = _cli(local.path, "webhook", "add", receiver.url, "--event", "mirror.entry")
    assert rc == 0 and err == "", err
    assert len(webhooks.subscriptions(local.store)) == 4


def test_the_secret_is_encrypted_in_a_shared_store(redis_server, redis_namespace, tmp_path):
    import redis
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    cfg = Config(store_url=redis_server.url, store_namespace=redis_namespace, store_key=key, source="test")
    store = open_store(cfg)
    try:
        sub, secret = webhooks.add(store, "https://soar.example/hooks", ["run.finished"])
        raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
        kept = raw.hget(f"{redis_namespace}:secrets", f"webhook:{sub['id']}")
        assert kept and secret not in kept and Fernet(key.encode()).decrypt(kept.encode()).decode() == secret
        everything = [raw.dump(k) or b"" for k in raw.scan_iter(f"{redis_namespace}:*")]
        assert not any(secret.encode() in blob for blob in everything)
    finally:
        store.close()


LOCAL_PLAYBOOK = """
name: local-only
steps:
  - id: look
    command: mirror-entries
    args: {incident_id: "1"}
outputs:
  entries: ${steps.look.outputs}
"""


FAILING_PLAYBOOK = """
name: fails
inputs:
  when: {type: string, required: true}
steps:
  - id: look
    command: mirror-entries
    args: {incident_id: "1", since: "${inputs.when}"}
"""


def test_a_failed_run_reports_its_error_and_each_failure_after_a_resume_is_an_event_of_its_own(local, receiver,
                                                                                                tmp_path):
    from integration.playbooks import run_playbook
    from integration.playbooks.runner import resume_playbook

    _add(local.path, receiver, "run.finished")
    pb = tmp_path / "fails.yml"
    pb.write_text(FAILING_PLAYBOOK)
    runtime = Runtime(local.cfg, sleep=Sleeps())
    try:
        r = run_playbook(pb, {"when": "garbage"}, runtime, out=lambda s: None)
        assert r.status == "failed"
        again = resume_playbook(r.run_id, runtime, out=lambda s: None)
        assert again.status == "failed"
    finally:
        runtime.close()
    assert receiver.types() == ["run.finished", "run.finished"] and len(set(receiver.arrived)) == 2
    first = receiver.accepted[0]["data"]
    assert (first["runId"], first["status"], first["failedStep"]) == (r.run_id, "failed", "look")
    assert first["error"]["code"] and "since" in first["error"]["message"]
    assert first["steps"] == [{"id": "look", "status": "failed"}]


def test_a_webhook_that_fails_never_fails_what_emits(local, receiver, monkeypatch, tmp_path):
    from integration.playbooks import run_playbook

    _add(local.path, receiver, "run.finished")
    receiver.httpd.shutdown()
    receiver.httpd.server_close()  # nobody listens: the connection is refused
    pb = tmp_path / "local-only.yml"
    pb.write_text(LOCAL_PLAYBOOK)
    runtime = Runtime(local.cfg, sleep=Sleeps())
    try:
        r = run_playbook(pb, {}, runtime, out=lambda s: None)
        assert r.status == "ok" and r.exit_code == 0
        [row] = webhooks.deliveries(runtime.store, local.cfg)
        assert (row["event"], row["state"], row["lastStatus"]) == ("run.finished", "failed", "refused")

        def broken(*a, **k):
            raise RuntimeError("the store went away")

        monkeypatch.setattr(webhooks, "enqueue", broken)
        assert run_playbook(pb, {}, runtime, out=lambda s: None).status == "ok"  # logged, not raised
        assert webhooks.emit(local.store, local.cfg, "run.finished", {}, key=("x",)) is False
    finally:
        runtime.close()


def test_concurrent_retries_from_several_processes_send_each_event_once_in_order(local, receiver):
    _add(local.path, receiver, "run.finished")
    receiver.always_fail = True
    for n in range(25):
        local.emit(n)
    assert len(receiver.arrived) == 1  # the first failed; the rest wait behind it
    receiver.always_fail = False
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "--config", str(local.path),
                               "webhook", "deliveries", "--retry", "--limit", "1"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert receiver.accepted  # the processes delivered (what one left behind another's lease is sent next)
    webhooks.pump(local.store, local.cfg, force=True)
    ids = [a["id"] for a in receiver.accepted]
    assert len(ids) == len(set(ids)) == 25 and receiver.refused == []
    assert [a["data"]["runId"] for a in receiver.accepted] == [f"r{n}" for n in range(25)]


# ------------------------------------------------------------------ events where they happen

class Bot:
    """The bot endpoint on loopback with the fake tenant playing Teams (as tests/teams/test_ask.py)."""

    def __init__(self, emu, tmp_path):
        access = tmp_path / "access.yml"
        access.write_text(access_yaml(emu))
        self.emu = emu
        self.runtime = Runtime(make_config(emu, tmp_path, bot_access_file=str(access)), sleep=Sleeps())
        self.runtime.echo = lambda s: None
        self.endpoint = bot_server.build(self.runtime, workers=2)
        self.server = bot_server.BotServer(self.endpoint).start()
        emu.teams.register(self.server.messaging_endpoint)

    def click(self, user, choice, **kw):
        rec = self.emu.teams.user_clicks(user, choice, **kw)
        assert self.endpoint.processor.drain(20)
        return rec

    def says(self, user, text, **kw):
        rec = self.emu.teams.user_says(user, text, **kw)
        assert rec["status"] in (200, 202), rec
        assert self.endpoint.processor.drain(20)
        return rec

    def close(self):
        self.emu.teams.register(None)
        self.server.stop()
        self.runtime.close()


@pytest.fixture
def bot(emu, tmp_path):
    b = Bot(emu, tmp_path)
    yield b
    b.close()


def test_a_run_that_waits_for_a_click_sends_run_waiting_question_answered_and_run_finished_once_each(
        bot, receiver, cfg_file):
    from integration.playbooks import run_playbook

    name = _add(cfg_file, receiver, "run.waiting", "question.answered", "run.finished")
    inputs = {"request_id": "REQ-42", "requester": BOB, "roles": ["prod-admin"], "reason": "Hotfix for INC-7",
              "role_to_recipients": ROLE_MAP, "suggested_reviewers": [CONOR]}
    r = run_playbook(os.path.join(LIBRARY, "access-request.yml"), inputs, bot.runtime, out=lambda s: None)
    assert r.status == "waiting", r.error
    assert receiver.types() == ["run.waiting"]
    waiting = receiver.accepted[0]["data"]
    assert (waiting["runId"], waiting["playbook"], waiting["status"], waiting["questionId"]) == (
        r.run_id, "access-request", "waiting", r.waiting_for)
    bot.click(GRACE, "Approve", question=r.waiting_for, reason="ok for 4h")
    assert bot.runtime.store.run_get(r.run_id)["status"] == "ok"
    assert receiver.types() == ["run.waiting", "question.answered", "run.finished"]
    answered, finished = receiver.accepted[1]["data"], receiver.accepted[2]["data"]
    assert (answered["id"], answered["status"], answered["answer"], answered["responder"], answered["reason"]) == (
        r.waiting_for, "answered", "approved", "Grace Kim", "ok for 4h")
    assert (finished["runId"], finished["status"], finished["error"]) == (r.run_id, "ok", None)
    assert finished["outputs"] and all(s["status"] in ("ok", "skipped") for s in finished["steps"])
    assert receiver.refused == [] and len(receiver.arrived) == 3 and len(set(receiver.arrived)) == 3
    # the run reported again (resumed when finished) is the same event: nothing more is sent
    from integration.playbooks.runner import resume_playbook

    assert resume_playbook(r.run_id, bot.runtime, out=lambda s: None).status == "ok"
    assert len(receiver.arrived) == 3
    rows = _deliveries(cfg_file)
    assert sorted((d["event"], d["state"], d["attempts"], d["webhook"]) for d in rows) == [
        ("question.answered", "sent", 1, name), ("run.finished", "sent", 1, name), ("run.waiting", "sent", 1, name)]
    assert {d["webhookId"] for d in rows} == set(receiver.arrived)


def test_commands_from_teams_and_mirrored_messages_are_events_too(bot, receiver, cfg_file):
    _add(cfg_file, receiver, "command.received", "mirror.entry")
    rec = bot.says(CONOR, f'!channel-list team="{SOC}"')
    bot.says(BOB, f'!team-delete team="{SOC}"')  # not allowed: refused, audited, an event all the same
    assert receiver.types() == ["command.received", "command.received"]
    ran, refused = (a["data"] for a in receiver.accepted)
    assert (ran["command"], ran["decision"], ran["outcome"], ran["activityId"]) == (
        "channel-list", "allowed", "ok", rec["activityId"])
    assert ran["sender"]["name"] == "Conor O'Brien" and ran["text"].startswith("!channel-list")
    assert (refused["command"], refused["decision"], refused["outcome"]) == ("team-delete", "denied", "refused")
    assert ran["auditId"] != refused["auditId"]
    execute("mirror-investigation", {"incident_id": "42", "team": SOC}, bot.runtime)
    bot.says(BOB, "Seeing beacons from <b>WS-17</b>", team=SOC, channel="incident-42", mention_bot=False)
    assert receiver.types()[-1] == "mirror.entry"
    entry = receiver.accepted[-1]["data"]
    assert (entry["incidentId"], entry["author"], entry["text"]) == ("42", "Bob Smith", "Seeing beacons from WS-17")
    assert receiver.refused == []


def test_the_worker_pool_retries_the_deliveries_that_are_due(redis_server, redis_namespace, receiver, monkeypatch):
    from cryptography.fernet import Fernet

    from integration.delivery.queue import JobQueue
    from integration.frontends import worker as worker_mod

    cfg = Config(store_url=redis_server.url, store_namespace=redis_namespace, store_key=Fernet.generate_key().decode(),
                 source="test")
    monkeypatch.setattr(worker_mod, "WEBHOOK_TICK", 0.05)
    rt = worker_mod.WorkerRuntime(cfg)
    clock = Clock()
    rt.store._clock = clock
    try:
        _, receiver.secret = webhooks.add(rt.store, receiver.url, ["run.finished"])
        receiver.failures = 1
        webhooks.emit(rt.store, cfg, "run.finished", {"runId": "r1", "status": "ok"}, key=("r1", "ok"))
        assert receiver.accepted == [] and len(receiver.arrived) == 1
        clock.offset += 20  # its backoff has passed; nothing else is emitted: the pool retries it
        w = worker_mod.Worker(rt, JobQueue.from_config(cfg), name="w-webhooks", concurrency=1, visibility=1.0,
                              out=lambda s: None)
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        w.stopping.set()
        t.join(20)
        assert [a["id"] for a in receiver.accepted] == receiver.arrived[:1]
        assert [r["state"] for r in webhooks.deliveries(rt.store, cfg)] == ["sent"]
    finally:
        rt.close()
