"""The SQLite context store: TTLs, 0600 file mode, reset, token caches, sharing across processes."""
import multiprocessing
import os
import stat

from integration.store import Store


def test_file_mode_and_wal(tmp_path):
    s = Store(tmp_path / "sub" / "store.sqlite3")
    s.put("user", "a@x", {"id": "1"})
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
    for extra in ("-wal", "-shm"):
        p = str(s.path) + extra
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0
    with s._conn() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ttl_expiry_with_injected_clock(tmp_path):
    now = [1000.0]
    s = Store(tmp_path / "s.db", clock=lambda: now[0])
    s.put("team", "Security Operations", {"id": "t1"}, ttl=60)
    assert s.get("team", "security operations") == {"id": "t1"}  # keys are case-insensitive
    now[0] += 61
    assert s.get("team", "Security Operations") is None


def test_clear_keeps_tokens_unless_asked(tmp_path):
    s = Store(tmp_path / "s.db")
    s.put_many("user", [("a", {"id": "1"}), ("b", {"id": "2"})])
    s.save_tokens("app", "{}")
    removed = s.clear()
    assert removed == {"user": 2}
    assert s.load_tokens("app") == "{}"
    assert s.clear(include_tokens=True) == {"token_caches": 1}
    assert s.load_tokens("app") is None


def test_message_refs_roundtrip(tmp_path):
    s = Store(tmp_path / "s.db")
    s.save_message_ref("r1", {"conversation": "c", "activity": "a"})
    assert s.get_message_ref("r1") == {"conversation": "c", "activity": "a"}
    assert s.counts()["message_refs"] == 1


def _writer(path, n, tag):
    s = Store(path)
    for i in range(n):
        s.put("user", f"{tag}-{i}", {"id": f"{tag}{i}"})


def test_several_processes_share_the_store(tmp_path):
    path = tmp_path / "shared.db"
    Store(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, 100, t)) for t in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert Store(path).counts()["user"] == 300
