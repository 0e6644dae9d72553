"""`msteams store`: key files (0600, never overwritten, rotation), rotate-key and status on a
real Redis, and an unreachable or misconfigured shared store as a clear error with its exit code."""
from __future__ import annotations

import os
import socket
import stat

from integration.frontends.cli import main


def run(argv):
    lines, errors = [], []
    code = main(argv, out=lines.append, err=errors.append)
    run.err = "\n".join(errors)
    return code, "\n".join(lines)


def _config(tmp_path, url, namespace, key_file, **extra) -> str:
    p = tmp_path / "config.yml"
    lines = [f"store_url: {url}", f"store_namespace: {namespace}", f"store_key_file: {key_file}"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def test_keygen_writes_a_private_file_never_overwrites_and_rotates_in_front(tmp_path):
    key_file = tmp_path / "store.key"
    code, text = run(["store", "keygen", "--out", str(key_file)])
    first = key_file.read_text().strip()
    assert code == 0 and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600 and len(first) == 44
    assert first not in text  # the key is never printed
    assert run(["store", "keygen", "--out", str(key_file)])[0] == 2
    assert "never overwritten" in run.err and key_file.read_text().strip() == first
    code, text = run(["store", "keygen", "--out", str(key_file), "--rotate"])
    keys = key_file.read_text().split()
    assert code == 0 and len(keys) == 2 and keys[1] == first and keys[0] not in text


def test_status_and_rotate_key_on_a_real_redis(tmp_path, make_redis_store):
    key_file = tmp_path / "store.key"
    key_file.write_text(make_redis_store.key + "\n")
    os.chmod(key_file, 0o600)
    s = make_redis_store()
    s.save_tokens("app", "cache")
    s.put("user", "a@x", {"id": "1"})
    cfg = _config(tmp_path, make_redis_store.url, make_redis_store.namespace, key_file)
    code, text = run(["--config", cfg, "store", "status"])
    assert code == 0 and "token_caches: 1" in text and "user: 1" in text and make_redis_store.namespace in text
    assert run(["store", "keygen", "--out", str(key_file), "--rotate"])[0] == 0
    code, text = run(["--config", cfg, "store", "rotate-key"])
    assert code == 0 and "1 token cache(s)" in text
    new_only = key_file.read_text().split()[0]
    assert make_redis_store(key_text=new_only).load_tokens("app") == "cache"


def test_an_unreachable_store_is_a_config_error_without_the_password(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    key_file = tmp_path / "store.key"
    run(["store", "keygen", "--out", str(key_file)])
    pw = tmp_path / "pw"
    pw.write_text("hunter2-redis-pass\n")
    cfg = _config(tmp_path, f"redis://127.0.0.1:{port}/0", "x", key_file, store_password_file=pw, timeout=2)
    code, _ = run(["--config", cfg, "store", "status"])
    err = run.err
    assert code == 3 and f"127.0.0.1:{port}/0" in err and "connecting failed" in err
    assert "hunter2" not in err and "Traceback" not in err


def test_a_shared_store_without_a_key_is_refused_before_any_write(tmp_path, redis_server):
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"store_url: {redis_server.url}\nstore_namespace: nokey\n")
    code, _ = run(["--config", str(cfg), "store", "status"])
    err = run.err
    assert code == 3 and "store_key is not set" in err and "msteams store keygen" in err


def test_rediss_with_the_configured_ca_bundle_and_an_untrusted_server_refused(tmp_path):
    import redis_server as rs

    server = rs.start_or_skip(tls=True)
    try:
        key_file = tmp_path / "store.key"
        run(["store", "keygen", "--out", str(key_file)])
        cfg = _config(tmp_path, server.url, "tls", key_file, store_ca_bundle=server.ca_path)
        code, text = run(["--config", cfg, "store", "status"])
        assert code == 0 and f"127.0.0.1:{server.port}/0" in text, run.err
        # the same server without its CA: the system's CAs do not vouch for it
        cfg = _config(tmp_path, server.url, "tls", key_file, timeout=3)
        code, _ = run(["--config", cfg, "store", "status"])
        assert code == 3 and "certificate" in run.err.lower() and "Traceback" not in run.err
    finally:
        server.stop()


def test_prune_counts_then_deletes_old_finished_history_from_the_configured_store(tmp_path):
    from integration.store.sqlite import SQLiteStore

    db = tmp_path / "store.sqlite3"
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"store_path: {db}\n")
    clock = [1_000_000.0]
    s = SQLiteStore(db, clock=lambda: clock[0])
    s.outbox_claim("old", target="chat:1", lease=5)
    s.outbox_set("old", "sent", message_id="m1")
    s.outbox_claim("stuck", target="chat:1", lease=5)
    s.outbox_set("stuck", "unknown", reason="no answer")
    s.save_message_ref("ref-1", {"activityId": "a1"})
    s.put("http_idempotency", "bench:k1", {"status": 200, "body": "..."}, ttl=86400)  # a whole answer, kept 24 h
    s.put("api_key", "digest", {"name": "old"}, ttl=3600)
    s.close()
    # The store's clock is the wall clock for the CLI: the rows above are decades old to it.
    code, text = run(["--config", str(cfg), "store", "prune", "--older-than", "30", "--dry-run"])
    assert code == 0 and text.startswith("Would delete, older than 30 day(s): 1 outbox,") and "0 runs" in text
    assert SQLiteStore(db).outbox_get("old") is not None
    code, text = run(["--config", str(cfg), "store", "prune", "--older-than", "30"])
    assert code == 0 and text.startswith("Deleted, older than 30 day(s): 1 outbox,")
    assert text.endswith(", 1 message_refs, 1 expired_entries.")
    assert SQLiteStore(db).outbox_get("old") is None and SQLiteStore(db).outbox_get("stuck")["state"] == "unknown"
    kept = SQLiteStore(db)
    assert kept.get_message_ref("ref-1") is None and kept.entries("http_idempotency") == []
    assert [e["key"] for e in kept.entries("api_key")] == ["digest"]  # api-key list still shows it, expired


def test_prune_refuses_a_window_under_a_day_or_no_number(tmp_path):
    for bad in (["--older-than", "0.5"], ["--older-than", "nan"], ["--older-than", "-3"], ["--older-than", "x\x1b[2J"], []):
        try:
            code = run(["store", "prune"] + bad)[0]
        except SystemExit as exc:  # argparse exits by itself
            code = exc.code
        assert code == 2, bad


def test_a_store_failing_mid_command_is_a_store_error_not_a_bug(tmp_path, make_redis_store, monkeypatch):
    """The store's server dropping the connection (or a SQLite file locked) halfway through a
    command is exit 3 naming the store, not "internal error ... this is a bug"."""
    import sqlite3

    import redis

    from integration.store.redis import RedisStore
    from integration.store.sqlite import SQLiteStore

    key_file = tmp_path / "store.key"
    key_file.write_text(make_redis_store.key + "\n")
    os.chmod(key_file, 0o600)
    cfg = _config(tmp_path, make_redis_store.url, make_redis_store.namespace, key_file)

    def dropped(self, *a, **k):
        raise redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(RedisStore, "purge_history", dropped)
    code, _ = run(["--config", cfg, "store", "prune", "--older-than", "30"])
    assert code == 3 and "context store (Redis) failed: Connection closed by server." in run.err
    assert "internal error" not in run.err and "Redis server is up" in run.err
    code, _ = run(["--config", cfg, "--output", "json", "store", "prune", "--older-than", "30"])
    assert code == 3 and '"code": "config"' in run.err

    def locked(self, *a, **k):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SQLiteStore, "purge_history", locked)
    sqlite_cfg = tmp_path / "sqlite.yml"
    sqlite_cfg.write_text(f"store_path: {tmp_path / 'store.sqlite3'}\n")
    code, _ = run(["--config", str(sqlite_cfg), "store", "prune", "--older-than", "30"])
    assert code == 3 and "context store (SQLite) failed: database is locked" in run.err


def test_a_bug_is_still_reported_as_one(tmp_path, monkeypatch):
    from integration.store.sqlite import SQLiteStore

    monkeypatch.setattr(SQLiteStore, "purge_history", lambda self, *a, **k: {}["missing"])
    cfg = tmp_path / "sqlite.yml"
    cfg.write_text(f"store_path: {tmp_path / 'store.sqlite3'}\n")
    code, _ = run(["--config", str(cfg), "store", "prune", "--older-than", "30"])
    assert code == 1 and "internal error: KeyError" in run.err
