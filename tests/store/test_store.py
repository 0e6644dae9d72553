"""What only the SQLite store (sqlite.SQLiteStore) has: a 0600 file in WAL mode, transactions
that roll back whole, lookups by the primary key index, bulk writes in multi-row statements,
the per-connection staging of display names, and the hand-joined JSON its SQL relies on. What
both backends must do is in tests/store/test_store_contract.py."""
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.store.sqlite import SQLiteStore
from store_helpers import NAMESAKES


def test_file_mode_and_wal(tmp_path):
    s = SQLiteStore(tmp_path / "sub" / "store.sqlite3")
    s.put("user", "a@x", {"id": "1"})
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
    for extra in ("-wal", "-shm"):
        p = str(s.path) + extra
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0
    with s._conn() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_connection_keeps_durability_and_bounds_the_wal(tmp_path):
    """WAL with synchronous=NORMAL stays; checkpoints every 4000 pages (within the WAL index's
    first hash table), the WAL cut back to 64 MB after one; no memory map (see sqlite._TUNING)."""
    import threading

    s = SQLiteStore(tmp_path / "s.db")
    seen = []

    def look():
        with s._conn() as c:
            seen.append(tuple(c.execute(f"PRAGMA {p}").fetchone()[0] for p in
                              ("journal_mode", "synchronous", "wal_autocheckpoint", "journal_size_limit",
                               "mmap_size")))
        s.thread_done()

    t = threading.Thread(target=look)
    t.start()
    t.join()
    look()
    assert seen == [("wal", 1, 4000, 64 * 1024 * 1024, 0)] * 2  # synchronous 1: NORMAL


def test_writes_inside_a_transaction_commit_together_or_not_at_all(tmp_path):
    """SQLite's own: the protocol's transaction only groups writes (Redis has no rollback)."""
    s = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.put_many("user", [("a", {"id": "1"})])
            s.put_many("user_name", [("Ann", [{"id": "1"}])])
            raise RuntimeError("interrupted")
    assert s.get("user", "a") is None and s.get("user_name", "ann") is None


def test_lookup_uses_the_primary_key_index(tmp_path):
    s = SQLiteStore(tmp_path / "s.db")
    with s._conn() as c:
        plan = c.execute("EXPLAIN QUERY PLAN SELECT value, expires FROM cache WHERE kind=? AND key=?",
                         ("user", "a@x")).fetchall()
    assert "USING INDEX" in plan[0][-1] and "(kind=? AND key=?)" in plan[0][-1]


@given(st.one_of(st.dictionaries(st.text(), st.one_of(st.none(), st.text())), st.text(),
                 st.lists(st.text()), st.dictionaries(st.text(), st.integers())))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_hand_joined_json_is_what_the_encoder_writes(value):
    """Name lists are joined as text in SQL from stored values (_INDEX_NAMES), so every writer
    must encode alike."""
    from integration.store.sqlite import _dumps, _encode

    assert _dumps(value) == _encode(value)


@pytest.mark.parametrize("staged", [False, True])
def test_staged_names_are_kept_by_the_connection_until_indexed(tmp_path, staged):
    """put_entries(stage_names=True) sets each entry written aside in the connection's temp
    table, and index_names groups those and empties it. That the lists come out as the scan's
    is the contract suite's test_staged_names_give_the_same_lists_as_the_scan."""
    s = SQLiteStore(tmp_path / f"{staged}.db")
    run = s.now()
    with s.transaction():
        for u in NAMESAKES + NAMESAKES[:1]:  # one written twice is listed once
            s.put_entries("user", [u], aliases=("mail",), stage_names=staged)
    assert ("user" in s._staged()) is staged
    assert s.index_names("user", "user_name", since=run) == 2
    assert not s._staged()  # the staging is emptied by the index it fed


def test_a_rolled_back_staging_leaves_index_names_working(tmp_path):
    s = SQLiteStore(tmp_path / "s.db")
    run = s.now()
    try:
        with s.transaction():
            s.put_entries("user", [{"id": "1", "displayName": "Ann"}], stage_names=True)
            raise RuntimeError("the write failed")
    except RuntimeError:
        pass
    assert s.index_names("user", "user_name", since=run) == 0  # nothing was written, nothing listed
    s.put_entries("user", [{"id": "2", "displayName": "Ann"}], stage_names=True)
    assert s.index_names("user", "user_name", since=run) == 1
    assert s.get("user_name", "ann") == [{"id": "2", "displayName": "Ann"}]


def test_bulk_writes_span_several_statements_and_keep_every_row(tmp_path, monkeypatch):
    """put_many and put_entries insert many rows per statement: a remainder, a chunk boundary
    and a row written twice in one call all come out right."""
    monkeypatch.setattr("integration.store.sqlite._ROWS_PER_STATEMENT", 3)
    s = SQLiteStore(tmp_path / "s.db")
    s.put_many("team", [(f"T{i}", {"id": f"t{i}"}) for i in range(10)] + [("t0", {"id": "again"})])
    assert s.counts()["team"] == 10 and s.get("team", "T0") == {"id": "again"}
    users = [{"id": f"u{i}", "displayName": "Same", "mail": f"m{i}@x"} for i in range(7)]
    assert s.put_entries("user", users, aliases=("mail",)) == 7
    assert s.counts()["user"] == 14 and s.get("user", "M6@X") == users[6]
    assert s._staged() == set()  # not staged: nothing kept for index_names
    assert s._conn().conn.execute("SELECT count(*) FROM temp.entry_stage").fetchone() == (0,)


def test_the_old_class_name_still_opens_a_sqlite_store(tmp_path):
    """`Store` was the SQLite class's name before base.Store (the protocol) took it: code that
    opens a store by it, and a file written before the rename, keep working."""
    from integration.store.sqlite import Store

    assert Store is SQLiteStore
    SQLiteStore(tmp_path / "s.db").save_tokens("app", "cache")
    assert Store(tmp_path / "s.db").load_tokens("app") == "cache"


def _counted(s) -> dict:
    """What counts() must answer, counted afresh from the tables."""
    with s._conn() as c:
        kinds = dict(c.execute("SELECT kind, COUNT(*) FROM cache GROUP BY kind").fetchall())
        refs = c.execute("SELECT COUNT(*) FROM message_refs").fetchone()[0]
    return {"kinds": kinds, "refs": refs}


def _shown(counts: dict) -> dict:
    return {"kinds": {k: n for k, n in counts.items() if n and k not in ("token_caches", "message_refs")},
            "refs": counts["message_refs"]}


def test_counts_are_kept_until_a_write_moves_them_and_each_write_does(tmp_path):
    """counts() reads the cache and the references whole only after a write: otherwise one
    statement, however big the cache (a 100,000-user preload makes 300,000 rows: 12 ms a count).
    Every write path moves the count, in this process, in another one, and a write rolled back
    after counting inside its transaction leaves nothing counted."""
    s = SQLiteStore(tmp_path / "store.sqlite3")
    s.put_many("user", [(f"u{i}@x", {"id": str(i)}) for i in range(2000)])
    assert _shown(s.counts()) == _counted(s)
    statements: list[str] = []
    with s._conn() as c:
        c.set_trace_callback(statements.append)
    for _ in range(3):
        assert s.counts()["user"] == 2000
    assert len(statements) == 3 and not any("GROUP BY" in st for st in statements), statements
    with s._conn() as c:
        c.set_trace_callback(None)

    other = SQLiteStore(tmp_path / "store.sqlite3")  # another process's store, on the same file
    since = 0.0
    writes = [
        lambda: s.put("team", "SOC", {"id": "t1"}),
        lambda: other.put_many("channel", [("t1/general", {"id": "c1"}), ("t1/ir", {"id": "c2"})]),
        lambda: s.put_entries("user", [{"id": "9", "mail": "nine@x", "displayName": "Nine"}], aliases=("mail",)),
        lambda: s.index_names("user", "user_name", since=since),
        lambda: other.delete("team", "SOC"),
        lambda: s.prune("channel", before=s._clock() + 1, prefix="t1/i"),
        lambda: other.save_message_ref("ref-1", {"id": "m1"}),
        lambda: s.clear(),
    ]
    for write in writes:
        write()
        assert _shown(s.counts()) == _counted(s)
        assert _shown(other.counts()) == _counted(other)

    # counted inside a transaction that then rolls back: not kept
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.put("team", "Ghost", {"id": "g"})
            assert s.counts()["team"] == 1
            raise RuntimeError("rolled back")
    assert s.counts()["team"] == 0 and _shown(s.counts()) == _counted(s)


def test_every_method_that_writes_the_counted_tables_moves_their_generation():
    """A write path added later without `_BUMP` would leave counts() answering from before it:
    each method of the store whose statements write the cache or message_refs runs `_BUMP`."""
    import inspect
    import re

    from integration.store import sqlite

    writes = re.compile(r"INTO (cache|message_refs)\b|DELETE FROM (cache|message_refs)\b|_PUT_HEAD|_COPY_STAGED|"
                        r"_INDEX_STAGED|_INDEX_NAMES|_PURGE\b")
    writers = [name for name, fn in inspect.getmembers(sqlite.SQLiteStore, inspect.isfunction)
               if writes.search(inspect.getsource(fn))]
    assert {"put_many", "put_entries", "index_names", "prune", "delete", "clear", "save_message_ref",
            "purge_history"} <= set(writers)
    missing = [name for name in writers if "_BUMP" not in inspect.getsource(getattr(sqlite.SQLiteStore, name))]
    assert missing == [], f"write the cache or message_refs without moving the generation: {missing}"
