"""What only the shared Redis store (redis.RedisStore) has: token caches and secrets encrypted at
rest, key rotation, a clear error for a missing or wrong key, the ACL user docs/deploy.md gives,
and updates that stay whole when a delete races them inside its WATCH/MULTI transactions. What
both backends must do is in tests/store/test_store_contract.py (on SQLite and on a real Redis)."""
from __future__ import annotations

import json

import pytest

from store_helpers import run_record


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

    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "deploy.md"), encoding="utf-8").read()
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
    s.run_create(run_record("r", status="waiting", state={"waiting": {"question": "q"}}), lease=5)
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


def test_a_thread_sends_its_commands_on_a_connection_it_keeps_and_gives_back(make_redis_store, monkeypatch):
    """No checkout from the pool per command (redis-py polls each connection it checks out): a
    thread takes one connection at its first command and keeps it; thread_done gives it back,
    and so does the end of a thread that did not call it."""
    import gc
    import threading

    s = make_redis_store()
    pool = s.r.connection_pool
    taken, given = [], []
    get_connection, release = pool.get_connection, pool.release
    monkeypatch.setattr(pool, "get_connection", lambda *a, **k: (taken.append(threading.current_thread().name),
                                                                 get_connection(*a, **k))[1])
    monkeypatch.setattr(pool, "release", lambda conn: (given.append(conn), release(conn))[1])
    used = {}

    def work(done: bool) -> None:
        for _ in range(20):
            assert s.get("team", "nobody") is None  # a command each
        used[threading.current_thread().name] = s.r.connection
        if done:
            s.thread_done()

    for name, done in (("first", True), ("second", False)):
        t = threading.Thread(target=work, args=(done,), name=name)
        t.start()
        t.join()
    gc.collect()
    assert taken == ["first", "second"]  # 20 commands each, one checkout each
    assert used["first"] is not None and given[0] is used["first"]  # thread_done
    assert used["second"] in given  # the thread ended: its connection is back in the pool
    assert s.get("team", "nobody") is None  # the store goes on for the threads still using it


def test_a_forked_child_does_not_use_the_connection_its_parent_keeps(make_redis_store):
    import os

    s = make_redis_store()
    s.put("team", "soc", {"id": "t1"})
    parent = s.r.connection
    pid = os.fork()
    if pid == 0:  # the child: its own connection, and the store answers
        ok = False
        try:
            ok = s.r.connection is not parent and s.get("team", "soc") == {"id": "t1"}
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.r.connection is parent and s.get("team", "soc") == {"id": "t1"}  # the parent's is untouched


def test_a_batch_of_audit_entries_is_one_round_trip_and_outlives_a_flushed_script(make_redis_store):
    """audit_add_many sends its entries by the script's digest, without asking first whether the
    server has the script (no SCRIPT EXISTS); a server that lost it (SCRIPT FLUSH, a restart)
    gets it again and the batch is sent again, each entry still appended once."""
    import redis

    s = make_redis_store()
    raw = redis.Redis.from_url(make_redis_store.url)

    def asked() -> int:
        return raw.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)

    def entry(i: int) -> dict:
        return {"activity_id": f"http:{i}", "sender_id": "api-key:a", "sender_name": "a", "command": "team-list",
                "decision": "allowed", "outcome": "ok", "detail": "HTTP 200", "duration_ms": i}

    s.audit_add_many([entry(1), entry(2)])  # the script loaded by now, as after any first use
    before = asked()
    s.audit_add_many([entry(3), entry(4)])
    assert asked() == before
    raw.script_flush()
    s.audit_add_many([entry(4), entry(5), entry(6)])  # entry 4 again: a retried batch
    ids = [r["activity_id"] for r in s.audit_list()]
    assert ids == [f"http:{i}" for i in (6, 5, 4, 3, 2, 1)]
    raw.close()


def test_counting_the_cache_reads_its_set_of_kinds_not_the_whole_keyspace(make_redis_store):
    """counts (cache-show, and integration-health behind every readiness probe) reads the set of
    the cache's kinds: no SCAN of the Redis, however many keys it holds, once the set is whole; a
    store written before the set was kept is scanned once; a kind emptied since is not listed."""
    import redis

    s = make_redis_store()
    raw = redis.Redis.from_url(make_redis_store.url, decode_responses=True)

    def scans() -> int:
        return raw.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)

    s.put("user", "a@x", {"id": "1"})
    s.put("team", "soc", {"id": "t1"})
    raw.delete(s.k("kinds"))  # as a store written before the set was kept
    before = scans()
    assert s.counts()["user"] == 1 and s.counts()["team"] == 1
    assert scans() - before >= 1  # made whole once, by a scan ...
    before = scans()
    s.put("channel", "soc/general", {"id": "c1"})
    s.put("health_probe", "probe", 1.0, ttl=60)
    s.delete("health_probe", "probe")  # its hash is gone; the kind stays in the set
    counts = s.counts()
    assert scans() == before  # ... and then never again
    assert counts["channel"] == 1 and "health_probe" not in counts
    assert s.clear() == {"user": 1, "team": 1, "channel": 1}
    assert s.counts()["user"] == 0 and scans() == before
    raw.close()


def test_a_cache_kind_missing_from_the_set_is_still_counted_and_reset(make_redis_store):
    """A process of a version before the set of kinds (a rolling upgrade) writes entries without
    adding their kind to it: cache-show still counts them, and cache-reset still removes them
    (it goes by the known cache kinds), while state kinds survive the reset."""
    import redis

    s = make_redis_store()
    raw = redis.Redis.from_url(make_redis_store.url, decode_responses=True)
    s.put("user", "a@x", {"id": "1"})
    s.put("api_key", "k1", {"name": "soar"}, ttl=None)  # state: never reset
    assert s.counts()["user"] == 1  # the set is whole from here on
    raw.hset(s.k("c", "team"), "soc", raw.hget(s.k("c", "user"), "a@x"))  # as the older process writes
    raw.hset(s.k("c", "user_miss"), "ghost@x", raw.hget(s.k("c", "user"), "a@x"))
    assert "team" not in raw.smembers(s.k("kinds"))
    counts = s.counts()
    assert counts["team"] == 1 and counts["user_miss"] == 1 and counts["user"] == 1
    assert s.clear() == {"user": 1, "team": 1, "user_miss": 1}
    assert not raw.exists(s.k("c", "team")) and not raw.exists(s.k("c", "user_miss"))
    assert s.get("api_key", "k1") == {"name": "soar"}
    assert s.counts()["team"] == 0
    raw.close()


def test_counting_the_cache_is_one_round_trip_until_a_kind_is_added(make_redis_store, monkeypatch):
    """cache-show on Redis: the set of kinds is read in the same pipeline as the lengths of the
    kinds it held last time, so a count is one round trip; a kind added since costs one more,
    once, and is counted."""
    import redis
    from redis.client import Pipeline

    s = make_redis_store()
    s.put("user", "a@x", {"id": "1"})
    s.counts()  # the set read once on its own, and the kinds learnt
    trips = []
    plain, piped = redis.Redis.execute_command, Pipeline.execute

    def command(self, *args, **options):
        if not isinstance(self, Pipeline):
            trips.append(args[0])
        return plain(self, *args, **options)

    def execute(self, *args, **kwargs):
        trips.append("pipeline")
        return piped(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", command)
    monkeypatch.setattr(Pipeline, "execute", execute)
    assert s.counts()["user"] == 1
    assert trips == ["pipeline"], trips
    monkeypatch.undo()
    s.put("api_key", "k", {"name": "soar"}, ttl=None)  # a kind the last count did not know
    monkeypatch.setattr(redis.Redis, "execute_command", command)
    monkeypatch.setattr(Pipeline, "execute", execute)
    trips.clear()
    counts = s.counts()
    assert counts["api_key"] == 1 and counts["user"] == 1
    assert trips == ["pipeline", "SMEMBERS", "pipeline"], trips
    trips.clear()
    assert s.counts()["api_key"] == 1 and trips == ["pipeline"], trips
