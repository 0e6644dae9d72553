"""The SQLite context store: TTLs, 0600 file mode, reset, token caches, sharing across processes."""
import multiprocessing
import os
import stat

from hypothesis import given, settings
from hypothesis import strategies as st

from integration.store.sqlite import Store


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


# ---- bulk writes and display-name lists ----
import pytest  # noqa: E402


def test_put_many_is_one_transaction_all_or_nothing(tmp_path):
    s = Store(tmp_path / "s.db")
    rows = [("a", {"id": "1"}), ("b", {"id": "2"}), ("c", object()), ("d", {"id": "4"})]  # the third cannot be encoded
    with pytest.raises(TypeError):
        s.put_many("user", iter(rows))
    assert s.counts()["user"] == 0  # the two rows before the bad one were rolled back
    s.put_many("user", [("a", {"id": "1"})])  # and the connection is usable again
    assert s.get("user", "A") == {"id": "1"}


def test_writes_inside_a_transaction_commit_together_or_not_at_all(tmp_path):
    s = Store(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.put_many("user", [("a", {"id": "1"})])
            s.put_many("user_name", [("Ann", [{"id": "1"}])])
            raise RuntimeError("interrupted")
    assert s.get("user", "a") is None and s.get("user_name", "ann") is None


def test_prune_by_prefix_keeps_other_teams(tmp_path):
    now = [1000.0]
    s = Store(tmp_path / "s.db", clock=lambda: now[0])
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}]), ("t1/Old", [{"id": "c2"}]), ("t2/Old", [{"id": "c3"}])])
    now[0] += 1
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}])])
    assert s.prune("channel_name", before=now[0], prefix="t1/") == 1
    assert s.get("channel_name", "t1/old") is None and s.get("channel_name", "t2/old") == [{"id": "c3"}]


def test_lookup_uses_the_primary_key_index(tmp_path):
    s = Store(tmp_path / "s.db")
    with s._conn() as c:
        plan = c.execute("EXPLAIN QUERY PLAN SELECT value, expires FROM cache WHERE kind=? AND key=?",
                         ("user", "a@x")).fetchall()
    assert "USING INDEX" in plan[0][-1] and "(kind=? AND key=?)" in plan[0][-1]


def _name_writer(path, tag, since):
    s = Store(path)
    for i in range(50):
        with s.transaction():
            u = {"id": f"{tag}{i}", "displayName": "Same Name", "mail": f"{tag}-{i}@x"}
            s.put_many("user", [(u["id"], u), (u["mail"], u)])


def test_several_processes_writing_namesakes_lose_none(tmp_path):
    path = tmp_path / "shared.db"
    since = Store(path).now()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_name_writer, args=(path, t, since)) for t in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = Store(path)
    assert s.index_names("user", "user_name", since=since) == 1
    ids = [c["id"] for c in s.get("user_name", "same name")]
    assert sorted(ids) == sorted(f"{t}{i}" for t in "abc" for i in range(50))
    assert s.counts()["user"] == 300


@given(st.one_of(st.dictionaries(st.text(), st.one_of(st.none(), st.text())), st.text(),
                 st.lists(st.text()), st.dictionaries(st.text(), st.integers())))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_the_hand_joined_json_is_what_the_encoder_writes(value):
    """Name lists are joined as text in SQL from stored values (_INDEX_NAMES), so every writer
    must encode alike."""
    from integration.store.sqlite import _dumps, _encode

    assert _dumps(value) == _encode(value)


def test_index_names_lists_every_namesake_written_since_the_run_began(tmp_path):
    now = [1000.0]
    s = Store(tmp_path / "s.db", clock=lambda: now[0])
    s.put_many("user", [("old", {"id": "old", "displayName": "Bob Smith"})])
    s.put_many("user_name", [("bob smith", [{"id": "old", "displayName": "Bob Smith"}])])
    now[0] += 10
    run = s.now()
    bob1 = {"id": "1", "displayName": "Bob Smith", "mail": "b1@x"}
    bob3 = {"id": "3", "displayName": " bob SMITH", "mail": "b3@x"}
    strasse = {"id": "4", "displayName": "Anna Straße", "mail": "a@x"}
    nameless = {"id": "5", "displayName": None, "mail": "n@x"}
    for u in (bob1, bob3, strasse, nameless):  # each by id and by mail, as a preload writes them
        s.put_many("user", [(u["id"], u), (u["mail"], u)])
    assert s.index_names("user", "user_name", since=run) == 2
    assert sorted(c["id"] for c in s.get("user_name", "Bob Smith")) == ["1", "3"]  # "old" was not seen
    assert s.get("user_name", "ANNA STRASSE") == [strasse]  # casefolded like every other key
    assert s.prune("user_name", before=run) == 0


def test_staged_names_give_the_same_lists_as_the_scan(tmp_path):
    """put_entries(stage_names=True) sets each entry written aside, so
    index_names groups those instead of scanning the table: the lists must be the scan's."""
    users = [{"id": "1", "displayName": "Bob Smith", "mail": "b1@x"}, {"id": "3", "displayName": " bob SMITH", "mail": "b3@x"},
             {"id": "4", "displayName": "Anna Straße", "mail": "a@x"}, {"id": "5", "displayName": None, "mail": "n@x"},
             {"id": "6", "displayName": 7, "mail": "q@x"}]
    lists = {}
    for staged in (False, True):
        s = Store(tmp_path / f"{staged}.db")
        run = s.now()
        with s.transaction():
            for u in users + users[:1]:  # one written twice is listed once
                s.put_entries("user", [u], aliases=("mail",), stage_names=staged)
        assert ("user" in s._staged()) is staged
        assert s.index_names("user", "user_name", since=run) == 2
        lists[staged] = {k: sorted(c["id"] for c in s.get("user_name", k)) for k in ("bob smith", "anna strasse")}
        assert not s._staged()  # the staging is emptied by the index it fed
    assert lists[True] == lists[False] == {"bob smith": ["1", "3"], "anna strasse": ["4"]}


def test_staged_names_of_a_run_that_never_indexed_are_not_listed(tmp_path):
    now = [1000.0]
    s = Store(tmp_path / "s.db", clock=lambda: now[0])
    s.put_entries("user", [{"id": "old", "displayName": "Bob Smith"}], stage_names=True)  # a run that stopped
    now[0] += 10
    run = s.now()
    s.put_entries("user", [{"id": "new", "displayName": "Bob Smith"}], stage_names=True)
    assert s.index_names("user", "user_name", since=run) == 1
    assert [c["id"] for c in s.get("user_name", "bob smith")] == ["new"]


def test_a_rolled_back_staging_leaves_index_names_working(tmp_path):
    s = Store(tmp_path / "s.db")
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
    s = Store(tmp_path / "s.db")
    s.put_many("team", [(f"T{i}", {"id": f"t{i}"}) for i in range(10)] + [("t0", {"id": "again"})])
    assert s.counts()["team"] == 10 and s.get("team", "T0") == {"id": "again"}
    users = [{"id": f"u{i}", "displayName": "Same", "mail": f"m{i}@x"} for i in range(7)]
    assert s.put_entries("user", users, aliases=("mail",)) == 7
    assert s.counts()["user"] == 14 and s.get("user", "M6@X") == users[6]
    assert s._staged() == set()  # not staged: nothing kept for index_names
    assert s._conn().conn.execute("SELECT count(*) FROM temp.entry_stage").fetchone() == (0,)
