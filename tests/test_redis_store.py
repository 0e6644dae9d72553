"""The store's contract on both backends (each test runs on SQLite and on a real Redis through
the ``make_store`` fixture), then what only the shared Redis store has: token caches encrypted
at rest, key rotation, a clear error for a wrong key or an unreachable server, and decisions
that stay atomic across processes."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from store_helpers import open_at


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---- the directory cache ----
def test_cache_ttl_case_insensitive_keys_delete_and_counts(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    s.put("team", "Security Operations", {"id": "t1"}, ttl=60)
    s.put_many("user", [("A@X", {"id": "1"}), ("1", {"id": "1"})])
    assert s.get("team", " security operations ") == {"id": "t1"}
    assert s.counts()["team"] == 1 and s.counts()["user"] == 2
    clock.t += 61
    assert s.get("team", "Security Operations") is None
    assert [e["expired"] for e in s.entries("team")] == [True]
    s.delete("user", "a@x")
    assert s.get("user", "A@x") is None and s.get("user", "1") == {"id": "1"}


def test_clear_keeps_tokens_unless_asked(make_store):
    s = make_store()
    s.put_many("user", [("a", {"id": "1"}), ("b", {"id": "2"})])
    s.save_tokens("app", '{"AccessToken": {}}')
    assert s.clear() == {"user": 2}
    assert s.load_tokens("app") == '{"AccessToken": {}}'
    assert s.clear(include_tokens=True) == {"token_caches": 1}
    assert s.load_tokens("app") is None and s.counts()["token_caches"] == 0


def test_name_lists_built_from_a_run_replace_the_old_ones_and_prune(make_store):
    clock = Clock()
    s = make_store(clock=clock)

    def preload(*users):
        run = s.now()
        for u in users:  # each by id and by mail, as a preload writes them
            s.put_many("user", [(u["id"], u), (u["mail"], u)])
        n = s.index_names("user", "user_name", since=run)
        return n, s.prune("user_name", before=run)

    bob1 = {"id": "1", "displayName": "Bob Smith", "mail": "b1@x"}
    bob3 = {"id": "3", "displayName": "bob smith ", "mail": "b3@x"}
    ann = {"id": "2", "displayName": "Ann", "mail": "a@x"}
    assert preload(bob1, bob3, ann) == (2, 0)
    assert sorted(c["id"] for c in s.get("user_name", "BOB SMITH")) == ["1", "3"]
    assert s.get("user_name", "ann") == [ann]
    clock.t += 10
    assert preload(bob3) == (1, 1)  # Ann was not seen by the second run: pruned
    assert [c["id"] for c in s.get("user_name", "Bob Smith")] == ["3"]  # "1" left the directory
    assert s.get("user_name", "ann") is None
    clock.t += 10
    zoe1, zoe2 = ({"id": "7", "displayName": "Zoë Doe", "mail": "z1@x"}, {"id": "8", "displayName": "zoë doe ", "mail": "z2@x"})
    preload(zoe1, zoe2)
    assert sorted(c["id"] for c in s.get("user_name", "ZOË DOE")) == ["7", "8"]


@pytest.mark.parametrize("stage", [False, True])
def test_put_entries_writes_each_value_under_its_id_and_aliases_once(make_store, stage):
    s = make_store()
    run = s.now()
    users = [{"id": "ID-1", "displayName": "Bob Smith", "mail": "Bob@X", "userPrincipalName": "bob@x"},
             {"id": "2", "displayName": "bob smith", "mail": None, "userPrincipalName": "b2@x"},
             {"id": "", "displayName": "No Id", "mail": "none@x"},  # skipped: nothing to key it by
             {"id": "3", "displayName": None, "mail": "3", "userPrincipalName": " C@X "}]
    assert s.put_entries("user", users, aliases=("mail", "userPrincipalName"), stage_names=stage) == 3
    assert s.counts()["user"] == 6  # id-1 and bob@x; 2 and b2@x; 3 and c@x (its mail is its id)
    assert s.get("user", "bob@x") == s.get("user", "id-1") == users[0]
    assert s.get("user", "c@x") == users[3] and s.get("user", "none@x") is None
    assert s.index_names("user", "user_name", since=run) == 1
    assert sorted(c["id"] for c in s.get("user_name", "Bob Smith")) == ["2", "ID-1"]
    with pytest.raises(ValueError):
        s.put_entries("user", users, aliases=("a", "b", "c"))


def test_prune_by_prefix_keeps_other_teams_and_wildcards_are_literal(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}]), ("t1/Old", [{"id": "c2"}]), ("t2/Old", [{"id": "c3"}]),
                                ("t*/Old", [{"id": "c4"}])])
    clock.t += 1
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}])])
    assert s.prune("channel_name", before=clock.t, prefix="t1/") == 1
    assert s.get("channel_name", "t2/old") == [{"id": "c3"}] and s.get("channel_name", "t*/old") == [{"id": "c4"}]


# ---- tokens, references, conversations, calls, secrets ----
def test_tokens_refs_conversations_calls_and_secrets(make_store):
    s = make_store()
    s.save_tokens("delegated", "blob-1")
    s.save_tokens("delegated", "blob-2")
    assert s.load_tokens("delegated") == "blob-2" and s.clear_tokens("delegated") == 1
    s.save_message_ref("r1", {"conversation": "c", "activity": "a"})
    assert s.get_message_ref("r1") == {"conversation": "c", "activity": "a"} and s.get_message_ref("r2") is None
    s.conversation_put("user:1", "personal", {"id": "a:1"})
    s.conversation_put("channel:2", "channel", {"id": "19:x"})
    assert s.conversation_get("user:1") == {"id": "a:1"}
    assert [c["key"] for c in s.conversation_list("channel")] == ["channel:2"]
    s.call_event_add("call-1", "establishing")
    s.call_event_add("call-1", "terminated", code=487, subcode=560487, message="no answer")
    assert [(e["state"], e["code"]) for e in s.call_events("call-1")] == [("establishing", None), ("terminated", 487)]
    made = []
    first = s.secret("signing", lambda: made.append(1) or "s3cret")
    assert first == "s3cret" and s.secret("signing", lambda: made.append(1) or "other") == "s3cret" and made == [1]


# ---- playbook runs ----
def _run(rid, key=None, status="running", state=None):
    return {"id": rid, "run_key": key, "playbook": "/p.yml", "name": "p", "status": status, "owner": "h:1",
            "state": state or {"inputs": {}}}


def test_runs_create_once_per_key_claim_and_resume_once(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    assert s.run_create(_run("r1", key="k"), lease=60)["id"] == "r1"
    assert s.run_create(_run("r2", key="k"), lease=60)["id"] == "r1"  # the same key: the first run
    assert s.run_get("r2") is None
    assert s.run_claim("r1", "h:2", lease=60, holder_alive=lambda o: True) is None  # h:1 holds it, alive
    assert s.run_claim("r1", "h:2", lease=60, holder_alive=lambda o: False)["id"] == "r1"  # h:1 is gone
    s.run_save("r1", "waiting", {"waiting": {"question": "q1"}}, lease=60)
    assert s.runs_waiting_on("q1") == ["r1"] and s.runs_waiting_on("q2") == []
    assert [r["waiting_for"] for r in s.run_list("waiting")] == ["q1"]
    won = s.run_claim_waiting("r1", "h:3", lease=60)
    assert won["status"] == "running" and won["owner"] == "h:3"
    assert s.run_claim_waiting("r1", "h:4", lease=60) is None and s.runs_waiting_on("q1") == []
    s.run_save("r1", "ok", {"done": 1}, lease=60)
    assert s.run_get("r1")["state"] == {"done": 1} and [r["id"] for r in s.run_list("ok")] == ["r1"]


# ---- bot audit log and questions ----
def test_audit_once_per_activity_newest_first_and_filters(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    a = s.audit_add({"activity_id": "act-1", "sender_id": "u1", "sender_name": "Ann", "command": "help",
                     "decision": "allowed"})
    assert a and s.audit_add({"activity_id": "act-1", "sender_id": "u1", "decision": "allowed"}) is None
    clock.t += 5
    s.audit_add({"activity_id": "act-2", "sender_id": "u2", "sender_name": "Bob", "decision": "refused"})
    s.audit_update(a, outcome="ok", duration_ms=12.5)
    rows = s.audit_list()
    assert [r["activity_id"] for r in rows] == ["act-2", "act-1"]
    assert rows[1]["outcome"] == "ok" and rows[1]["duration_ms"] == 12.5 and rows[1]["id"] == a
    assert [r["activity_id"] for r in s.audit_list(sender="ann")] == ["act-1"]
    assert [r["activity_id"] for r in s.audit_list(since=clock.t)] == ["act-2"]


def test_questions_first_answer_wins_and_expiry_takes_the_default(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    q, created = s.question_create("q1", {"text": "Isolate?", "default_answer": "no"}, clock.t + 60)
    assert created and q["status"] == "open"
    assert s.question_create("q1", {"text": "other"}, None) == (q, False)
    assert s.question_answer("q1", "yes", "u1", "Ann", None)
    assert not s.question_answer("q1", "no", "u2", "Bob", "late")
    assert s.question_get("q1")["answer"] == "yes" and s.question_get("q1")["responder_name"] == "Ann"
    s.question_create("q2", {"text": "Block?", "default_answer": "no"}, clock.t + 60)
    s.question_create("q3", {"text": "Forever?"}, None)
    clock.t += 61
    assert not s.question_answer("q2", "yes", "u1", "Ann", None)  # past its expiry
    assert s.questions_expire() == ["q2"]
    assert (s.question_get("q2")["status"], s.question_get("q2")["answer"]) == ("expired", "no")
    assert [x["id"] for x in s.question_list("open")] == ["q3"]
    s.question_set_value("q3", {"text": "Forever?", "card": "a1"})
    assert s.question_get("q3")["value"]["card"] == "a1"


# ---- mirrors ----
def test_mirrors_and_their_journal(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    m = s.mirror_put("inc-1", "19:a", "channel", "open", {"teamId": "t"})
    assert (m["incidentId"], m["conversationId"], m["teamId"]) == ("inc-1", "19:a", "t")
    clock.t += 1
    s.mirror_put("inc-2", "19:b", "chat", "open", {})
    assert s.mirror_for_conversation("19:a")["incidentId"] == "inc-1"
    s.mirror_put("inc-1", "19:a", "channel", "closed", {"teamId": "t"})
    assert s.mirror_for_conversation("19:a") is None
    assert [x["incidentId"] for x in s.mirror_list("open")] == ["inc-2"]
    assert s.mirror_get("inc-1")["created"] == m["created"]  # kept across updates
    first = s.mirror_entry_add("inc-2", "act-1", {"text": "hi"})
    assert first and s.mirror_entry_add("inc-2", "act-1", {"text": "again"}) is None
    clock.t += 1
    s.mirror_entry_add("inc-1", "act-2", {"text": "other"})
    s.mirror_entry_add("inc-2", "act-3", {"text": "bye"})
    assert [e["text"] for e in s.mirror_entries("inc-2")] == ["hi", "bye"]
    assert [e["activityId"] for e in s.mirror_entries()] == ["act-1", "act-2", "act-3"]
    assert [e["text"] for e in s.mirror_entries(since=clock.t)] == ["other", "bye"]


# ---- locks ----
def test_locks_one_holder_a_gone_one_replaced_release_by_owner_only(make_store):
    s = make_store()
    a = {"owner": "h:1:x", "host": "h", "pid": 1, "started": "5"}
    b = {"owner": "h:2:y", "host": "h", "pid": 2, "started": "6"}
    assert s.lock_try("tokens:app", a, now=100.0, lease=30, holder_alive=lambda *h: True)["held"] is None
    held = s.lock_try("tokens:app", b, now=101.0, lease=30, holder_alive=lambda *h: True)["held"]
    assert held["owner"] == "h:1:x" and held["expires"] == 130.0
    s.lock_release("tokens:app", "h:2:y")  # not b's to release
    got = s.lock_try("tokens:app", b, now=102.0, lease=30, holder_alive=lambda *h: False)  # a died
    assert got["held"] is None and got["previous"]["owner"] == "h:1:x"
    s.lock_release("tokens:app", "h:2:y")
    assert s.lock_try("tokens:app", a, now=103.0, lease=30, holder_alive=lambda *h: True)["previous"] is None


# ---- across processes ----
def _create(where, who, q):
    s = open_at(where)
    run = s.run_create(_run(f"run-{who}", key="IR-1"), lease=60)
    question, created = s.question_create("q-shared", {"text": who}, None)
    q.put((run["id"], question["value"]["text"], created))
    s.close()


def _race(target, where, n: int = 4) -> list:
    """What ``n`` processes running ``target(where, name, queue)`` at once put on the queue."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(where, f"p{i}", q)) for i in range(n)]
    [p.start() for p in procs]
    results = [q.get(timeout=60) for _ in procs]
    [p.join(60) for p in procs]
    return results


def test_processes_creating_one_run_key_and_one_question_get_one_of_each(make_store):
    results = _race(_create, make_store.where)
    assert len({run_id for run_id, _, _ in results}) == 1  # every process got the same run
    assert len({text for _, text, _ in results}) == 1 and sum(c for _, _, c in results) == 1
    assert len(make_store().run_list()) == 1


def _answer(where, who, q):
    s = open_at(where)
    q.put((who, s.question_answer("q", f"answer-{who}", who, who, None), s.run_claim_waiting("r", who, lease=60)))
    s.close()


def test_processes_racing_to_answer_and_resume_exactly_one_wins(make_store):
    s = make_store()
    s.question_create("q", {"text": "?"}, None)
    s.run_create(_run("r", status="waiting", state={"waiting": {"question": "q"}}), lease=60)
    results = _race(_answer, make_store.where)
    answered = [who for who, won, _ in results if won]
    resumed = [who for who, _, row in results if row is not None]
    assert len(answered) == 1 and len(resumed) == 1
    assert s.question_get("q")["answer"] == f"answer-{answered[0]}"


# ---- the shared store only ----
def test_token_caches_and_secrets_are_encrypted_at_rest(make_redis_store):
    import redis

    s = make_redis_store()
    s.save_tokens("delegated", json.dumps({"RefreshToken": {"x": {"secret": "rt-VERY-SECRET"}}}))
    s.secret("signing", lambda: "hmac-VERY-SECRET")
    raw = redis.Redis.from_url(make_redis_store.url)
    dump = b"".join(k + b"".join(raw.hgetall(k).keys()) + b"".join(raw.hgetall(k).values())
                    for k in raw.scan_iter(match=f"{make_redis_store.namespace}:*") if raw.type(k) == b"hash")
    assert b"VERY-SECRET" not in dump and b"RefreshToken" not in dump
    assert "rt-VERY-SECRET" in s.load_tokens("delegated")


def test_a_wrong_key_is_a_clear_error_and_rotation_keeps_the_old_data(make_redis_store):
    from cryptography.fernet import Fernet

    from integration.engine.errors import ConfigError

    s = make_redis_store()
    s.save_tokens("app", "cache-1")
    new = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="cannot be decrypted with store_key") as exc:
        make_redis_store(key_text=new).load_tokens("app")
    assert make_redis_store.key not in str(exc.value) and new not in str(exc.value)
    rotated = make_redis_store(key_text=f"{new}\n{make_redis_store.key}\n")  # the new key first, the old kept
    assert rotated.load_tokens("app") == "cache-1"
    assert rotated.rotate_key() == {"tokens": 1, "secrets": 0}
    assert make_redis_store(key_text=new).load_tokens("app") == "cache-1"  # the old key is no longer needed


def test_no_key_or_a_malformed_key_is_refused(make_redis_store):
    from integration.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="store_key is not set") as exc:
        make_redis_store(key_text="# only a comment\n")
    assert "msteams store keygen" in exc.value.hint
    with pytest.raises(ConfigError, match="not a Fernet key"):
        make_redis_store(key_text="short")


def test_the_acl_user_of_docs_deploy_can_do_everything_the_store_pacer_and_queue_do(redis_server, redis_namespace):
    """The ACL line docs/deploy.md gives, for this test's namespace: every kind of operation works."""
    import os
    import re
    import time

    import redis
    from cryptography.fernet import Fernet

    from integration.engine.config import Config
    from integration.delivery.pacer import Window
    from integration.delivery.queue import JobQueue
    from integration.delivery.redis_pacer import RedisPacer
    from integration.store.redis import RedisStore

    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "deploy.md"), encoding="utf-8").read()
    line = re.search(r"ACL SETUSER msteams (.+)", doc).group(1).split()
    user = f"u{redis_namespace}"
    rules = [r.replace("msteams-prod", redis_namespace).replace(">PASSWORD", ">pw") for r in line]
    redis.Redis.from_url(redis_server.url).execute_command("ACL", "SETUSER", user, "reset", *rules)
    cfg = Config(store_url=redis_server.url, store_username=user, store_password="pw", store_namespace=redis_namespace,
                 store_key=Fernet.generate_key().decode())
    s = RedisStore.from_config(cfg)
    s.put_many("user", [("1", {"id": "1", "displayName": "A"})])
    s.save_tokens("app", "x")
    assert s.load_tokens("app") == "x"
    s.outbox_claim("k", lease=5)
    s.outbox_set("k", "sent", message_id="m")
    s.question_create("q", {"t": 1}, time.time() + 5)
    assert s.question_answer("q", "y", "u", "U", None)
    s.questions_expire()
    s.run_create(_run("r", status="waiting", state={"waiting": {"question": "q"}}), lease=5)
    assert s.run_claim_waiting("r", "h:9", lease=5)
    s.audit_add({"activity_id": "a1", "decision": "x"})
    s.mirror_put("i", "19:c", "chat", "open", {})
    s.mirror_entry_add("i", "a", {})
    s.lock_try("l", {"owner": "o", "host": "h", "pid": 1}, now=time.time(), lease=5, holder_alive=lambda *a: True)
    s.lock_release("l", "o")
    s.index_names("user", "user_name", since=0)
    s.prune("user_name", before=0)
    s.counts()
    s.rotate_key()
    s.clear(include_tokens=True)
    s.close()
    p = RedisPacer.from_config(cfg)
    p.done(p.acquire([Window("bot:app", 50, 1.0)]))
    p.pause([Window("bot:app", 50, 1.0)], 0.01)
    assert p.outages == 0  # no command was refused (a refusal would have made it pace alone)
    p.close()
    q = JobQueue.from_config(cfg)
    q.enqueue("notify", {"x": 1})
    q.ack(q.take("c1", block_ms=10)[0].id)
    assert q.status()["length"] == 0 and q.active_workers() == 1
    # and nothing outside its namespace
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(redis_server.url, username=user, password="pw").set("other:key", "x")


def test_an_update_racing_a_delete_leaves_no_partial_record(make_redis_store, monkeypatch):
    """outbox_set (like run_save and question_set_value) writes only while the record exists:
    a delete landing between its check and its writes makes it find nothing, instead of
    leaving a hash of the few fields it writes where the record was."""
    import redis

    s, other = make_redis_store(), make_redis_store()
    s.outbox_claim("k", target="chat:1", lease=5)
    real, deleted = redis.client.Pipeline.exists, []

    def exists_then_deleted(pipe, *keys):
        found = real(pipe, *keys)
        if not deleted:  # the other process deletes the row just after this one saw it
            deleted.append(other.outbox_delete("k"))
        return found

    monkeypatch.setattr(redis.client.Pipeline, "exists", exists_then_deleted)
    s.outbox_set("k", "sent", message_id="m1")
    assert deleted and s.outbox_get("k") is None
    assert not s.r.exists(s.k("outbox", "k")) and s.outbox_list() == []


# ---- retention ----
def test_purge_history_deletes_only_what_is_finished_and_old(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    # Old: a delivery of each state, a run of each status, a question answered and one open,
    # one answered but still awaited by a waiting run, an audit entry, a call.
    for key, state in (("sent", "sent"), ("failed", "failed"), ("unknown", "unknown"), ("pending", None)):
        s.outbox_claim(key, target="chat:1", lease=5)
        if state:
            s.outbox_set(key, state)
    for rid, status in (("r-ok", "ok"), ("r-failed", "failed"), ("r-running", "running")):
        s.run_create(_run(rid, key=f"key-{rid}"), lease=60)
        if status != "running":
            s.run_save(rid, status, {"inputs": {}}, lease=60)
    s.run_create(_run("r-waits", status="waiting", state={"waiting": {"question": "q-awaited"}}), lease=60)
    for qid in ("q-answered", "q-open", "q-awaited"):
        s.question_create(qid, {"text": "?"}, None)
    for qid in ("q-answered", "q-awaited"):
        assert s.question_answer(qid, "yes", "u1", "Ann", None)
    s.audit_add({"activity_id": "a-old", "decision": "accepted"})
    s.call_event_add("call-old", "terminated", code=487)
    clock.t += 40 * 86400
    s.audit_add({"activity_id": "a-new", "decision": "accepted"})
    s.call_event_add("call-new", "establishing")
    s.outbox_claim("sent-new", target="chat:1", lease=5)
    s.outbox_set("sent-new", "sent")
    before = clock.t - 30 * 86400

    counted = s.purge_history(before, dry_run=True)
    assert counted == {"outbox": 2, "runs": 2, "questions": 1, "bot_audit": 1, "call_events": 1}
    assert s.outbox_get("sent") is not None  # a dry run deletes nothing
    assert s.purge_history(before) == counted
    assert s.purge_history(before) == dict.fromkeys(counted, 0)

    assert [k for k in ("sent", "failed", "unknown", "pending", "sent-new") if s.outbox_get(k)] == \
        ["unknown", "pending", "sent-new"]
    assert {r["id"] for r in s.run_list()} == {"r-running", "r-waits"}
    assert s.run_create(_run("r-again", key="key-r-ok"), lease=60)["id"] == "r-again"  # the key is free again
    assert s.run_create(_run("r-other", key="key-r-running"), lease=60)["id"] == "r-running"  # still held
    assert [q for q in ("q-answered", "q-open", "q-awaited") if s.question_get(q)] == ["q-open", "q-awaited"]
    assert [e["activity_id"] for e in s.audit_list()] == ["a-new"]
    assert s.audit_add({"activity_id": "a-old", "decision": "accepted"}) is not None  # forgotten with its entry
    assert s.call_events("call-old") == [] and len(s.call_events("call-new")) == 1


def test_purge_history_goes_through_a_long_audit_log_in_chunks(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    for i in range(1203):
        s.audit_add({"activity_id": f"old-{i}", "decision": "accepted"})
    clock.t += 10
    s.audit_add({"activity_id": "new", "decision": "accepted"})
    assert s.purge_history(clock.t - 5, dry_run=True)["bot_audit"] == 1203
    assert s.purge_history(clock.t - 5)["bot_audit"] == 1203
    assert [e["activity_id"] for e in s.audit_list()] == ["new"]
