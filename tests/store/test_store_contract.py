"""The store's contract, written once and run against both backends in the same pytest pass.

First, the declared interface: each backend (sqlite.SQLiteStore, redis.RedisStore) has every
member of the protocol `integration.store.base.Store`, with its parameters, and no public
method the protocol leaves out (beyond a short list of backend-only ones), so the protocol
stays the whole of what callers may use. Then the behaviour: every test takes ``make_store``
(conftest.py), whose params give it the SQLite file and a namespace of its own in a real Redis
(tests/redis_server.py starts one for the session; without redis-server the Redis param is
skipped, with the reason, except under CI=true, where it fails).

What only one backend has stays in its own file: tests/store/test_store.py (SQLite: file mode, WAL,
rollback, its statements and staging table) and tests/store/test_redis_store.py (Redis: encryption
at rest, keys, ACL, races inside its transactions).

In the README's second pass (MSTEAMS_TEST_STORE=redis) conftest.py deselects this whole file:
its tests take their store from ``make_store``, not from the config, so the first pass has
already run each of them on both backends, and the interface checks need no store at all.
"""
from __future__ import annotations

import importlib
import inspect
import multiprocessing

import pytest

from integration.store import base
from store_helpers import NAMESAKE_LISTS, NAMESAKES, open_at, run_record


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ======================================================================= the declared interface

BACKENDS = {"sqlite": ("integration.store.sqlite", "SQLiteStore"), "redis": ("integration.store.redis", "RedisStore")}

# Public methods a backend may have beyond the protocol: none of them is for the code that
# merely uses a store (which gets one from open.open_store, typed as base.Store).
BEYOND_PROTOCOL = {
    "sqlite": set(),
    "redis": {
        "from_config",  # how the backend is built from the config: open.open_store's business
        "rotate_key",   # only the shared store encrypts (msteams store rotate-key)
        "k",            # its key names, for its own tests and tools
        "r",            # this thread's Redis client (the connection it keeps), for its own tests
    },
}


def _backend(name: str) -> type:
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def _protocol_members() -> dict[str, object]:
    """The protocol's public members: its methods and class attributes, and its annotated
    instance attributes (as None: they exist only on instances)."""
    members = {n: v for n, v in vars(base.Store).items() if not n.startswith("_")}
    for n in vars(base.Store).get("__annotations__", {}):
        members.setdefault(n, None)
    return members


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def _signature_mismatches(name: str, declared, implemented) -> list[str]:
    """How ``implemented``'s signature differs from the protocol's ``declared`` one: the same
    parameters (names, order, kinds), defaults where the protocol has them (the same values),
    and, where the backend annotates, the protocol's annotation."""
    want, got = inspect.signature(declared), inspect.signature(implemented)
    shape = [(p.name, p.kind) for p in want.parameters.values()]
    if shape != [(p.name, p.kind) for p in got.parameters.values()]:
        return [f"{name}{got} does not take the parameters of {name}{want}"]
    out = []
    for w, g in zip(want.parameters.values(), got.parameters.values()):
        if (w.default is w.empty) != (g.default is g.empty) or (w.default is not w.empty and w.default != g.default):
            out.append(f"{name}: {w.name}'s default is {g.default!r}, the protocol's {w.default!r}")
        if g.annotation is not g.empty and g.annotation != w.annotation:
            out.append(f"{name}: {w.name} is annotated {g.annotation!r}, the protocol {w.annotation!r}")
    if got.return_annotation is not got.empty and got.return_annotation != want.return_annotation:
        out.append(f"{name}: returns {got.return_annotation!r}, the protocol {want.return_annotation!r}")
    return out


def test_the_protocol_declares_the_store_and_documents_each_method():
    members = _protocol_members()
    methods = {n: v for n, v in members.items() if callable(v) or isinstance(v, staticmethod)}
    assert len(methods) >= 55 and {"path", "AUDIT_COLS"} <= set(members)
    undocumented = [n for n, v in methods.items() if not inspect.getdoc(getattr(base.Store, n))]
    assert undocumented == []
    assert base.Store.AUDIT_COLS == base.AUDIT_COLS and set(base.NAME_KINDS) <= set(base.DIRECTORY_KINDS)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_backend_has_every_protocol_member_with_its_signature(backend):
    cls = _backend(backend)
    problems = []
    for name, declared in _protocol_members().items():
        if declared is None:  # an instance attribute (path): test_a_store_is_a_base_store checks it
            continue
        if not hasattr(cls, name):
            problems.append(f"{name} is missing")
            continue
        implemented = inspect.getattr_static(cls, name)
        if isinstance(declared, staticmethod) != isinstance(implemented, staticmethod):
            problems.append(f"{name}: a staticmethod in one and not the other")
        elif callable(declared) or isinstance(declared, staticmethod):
            problems += _signature_mismatches(name, getattr(base.Store, name), getattr(cls, name))
        elif implemented != declared:
            problems.append(f"{name} is {implemented!r}, the protocol's {declared!r}")
    assert problems == []


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_backend_has_no_public_method_the_protocol_lacks(backend):
    """A method callers could use on one backend only would break on the other: it goes in the
    protocol (and in both backends), or it is private, or it is one of BEYOND_PROTOCOL's."""
    cls = _backend(backend)
    beyond = _public(cls) - set(_protocol_members())
    assert beyond == BEYOND_PROTOCOL[backend]


def test_a_store_is_a_base_store(make_store):
    s = make_store()
    assert isinstance(s, base.Store)  # every member, the instance attributes too
    assert str(s.path)


# ======================================================================= the directory cache

def test_cache_ttl_case_insensitive_keys_delete_and_counts(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    s.put("team", "Security Operations", {"id": "t1"}, ttl=60)
    s.put_many("user", [("A@X", {"id": "1"}), ("1", {"id": "1"})])
    assert s.get("team", "security operations") == {"id": "t1"}  # keys are case-insensitive
    assert s.get("team", " security operations ") == {"id": "t1"}
    assert s.counts()["team"] == 1 and s.counts()["user"] == 2
    clock.t += 61
    assert s.get("team", "Security Operations") is None
    assert [e["expired"] for e in s.entries("team")] == [True]
    s.delete("user", "a@x")
    assert s.get("user", "A@x") is None and s.get("user", "1") == {"id": "1"}


def test_counts_whole_answer_in_its_order(make_store):
    """The whole dict, keys in order (cache-show prints it as it is): every directory kind (0
    when empty), the other cache kinds in key order, then the token caches and message refs."""
    s = make_store()
    assert s.counts() == {**{k: 0 for k in base.DIRECTORY_KINDS}, "token_caches": 0, "message_refs": 0}
    s.put_many("user", [("a", {"id": "1"}), ("b", {"id": "2"})])
    s.put("zz_extra", "k", 1)
    s.put("api_key", "k", {"id": "k"})
    s.save_tokens("app", "blob")
    s.save_tokens("delegated", "blob")
    s.save_message_ref("r1", {"conversation": "c"})
    got = s.counts()
    want = {k: 0 for k in base.DIRECTORY_KINDS}
    want.update({"user": 2, "api_key": 1, "zz_extra": 1, "token_caches": 2, "message_refs": 1})
    assert got == want and list(got) == list(want)


def test_clear_keeps_tokens_unless_asked(make_store):
    s = make_store()
    s.put_many("user", [("a", {"id": "1"}), ("b", {"id": "2"})])
    s.save_tokens("app", '{"AccessToken": {}}')
    assert s.clear() == {"user": 2}
    assert s.load_tokens("app") == '{"AccessToken": {}}'
    assert s.clear(include_tokens=True) == {"token_caches": 1}
    assert s.load_tokens("app") is None and s.counts()["token_caches"] == 0


def test_put_many_is_all_or_nothing(make_store):
    s = make_store()
    rows = [("a", {"id": "1"}), ("b", {"id": "2"}), ("c", object()), ("d", {"id": "4"})]  # the third cannot be encoded
    with pytest.raises(TypeError):
        s.put_many("user", iter(rows))
    assert s.counts()["user"] == 0  # the two rows before the bad one were not written
    s.put_many("user", [("a", {"id": "1"})])  # and the store is usable again
    assert s.get("user", "A") == {"id": "1"}


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


def test_index_names_lists_every_namesake_written_since_the_run_began(make_store):
    now = [1000.0]
    s = make_store(clock=lambda: now[0])
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


@pytest.mark.parametrize("staged", [False, True])
def test_staged_names_give_the_same_lists_as_the_scan(make_store, staged):
    """put_entries(stage_names=True) lets a backend set each entry written aside, so that
    index_names groups those instead of scanning the kind (SQLite does; tests/store/test_store.py
    checks its staging): the lists must be the scan's."""
    s = make_store()
    run = s.now()
    with s.transaction():
        for u in NAMESAKES + NAMESAKES[:1]:  # one written twice is listed once
            s.put_entries("user", [u], aliases=("mail",), stage_names=staged)
    assert s.index_names("user", "user_name", since=run) == 2
    lists = {k: sorted(c["id"] for c in s.get("user_name", k)) for k in ("bob smith", "anna strasse")}
    assert lists == NAMESAKE_LISTS == {"bob smith": ["1", "3"], "anna strasse": ["4"]}


def test_staged_names_of_a_run_that_never_indexed_are_not_listed(make_store):
    now = [1000.0]
    s = make_store(clock=lambda: now[0])
    s.put_entries("user", [{"id": "old", "displayName": "Bob Smith"}], stage_names=True)  # a run that stopped
    now[0] += 10
    run = s.now()
    s.put_entries("user", [{"id": "new", "displayName": "Bob Smith"}], stage_names=True)
    assert s.index_names("user", "user_name", since=run) == 1
    assert [c["id"] for c in s.get("user_name", "bob smith")] == ["new"]


def test_prune_by_prefix_keeps_other_teams_and_wildcards_are_literal(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}]), ("t1/Old", [{"id": "c2"}]), ("t2/Old", [{"id": "c3"}]),
                                ("t*/Old", [{"id": "c4"}])])
    clock.t += 1
    s.put_many("channel_name", [("t1/General", [{"id": "c1"}])])
    assert s.prune("channel_name", before=clock.t, prefix="t1/") == 1
    assert s.get("channel_name", "t1/old") is None
    assert s.get("channel_name", "t2/old") == [{"id": "c3"}] and s.get("channel_name", "t*/old") == [{"id": "c4"}]


# ======================================================================= tokens, references, conversations, calls, secrets

def test_tokens_refs_conversations_calls_and_secrets(make_store):
    s = make_store()
    s.save_tokens("delegated", "blob-1")
    s.save_tokens("delegated", "blob-2")
    assert s.load_tokens("delegated") == "blob-2" and s.clear_tokens("delegated") == 1
    s.save_message_ref("r1", {"conversation": "c", "activity": "a"})
    assert s.get_message_ref("r1") == {"conversation": "c", "activity": "a"} and s.get_message_ref("r2") is None
    assert s.counts()["message_refs"] == 1
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
    assert s.forget_secret("signing") is True and s.forget_secret("signing") is False
    assert s.secret("signing", lambda: "new") == "new"  # forgotten: made afresh


# ======================================================================= playbook runs

def test_runs_create_once_per_key_claim_and_resume_once(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    assert s.run_create(run_record("r1", key="k"), lease=60)["id"] == "r1"
    assert s.run_create(run_record("r2", key="k"), lease=60)["id"] == "r1"  # the same key: the first run
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


# ======================================================================= bot audit log and questions

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


def test_audit_entries_added_together_in_order_once_per_activity(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    s.audit_add({"activity_id": "seen", "sender_id": "u0", "decision": "allowed"})
    s.audit_add_many([])
    s.audit_add_many([{"activity_id": "h1", "sender_id": "api-key:a", "sender_name": "a", "command": "team-list",
                       "decision": "allowed", "outcome": "ok", "detail": "HTTP 200", "duration_ms": 3},
                      {"activity_id": "seen", "sender_id": "u9", "decision": "refused"},  # recorded before: skipped
                      {"activity_id": "h2", "sender_id": "api-key:b", "decision": "refused"},  # other fields
                      {"activity_id": "h3", "sender_id": "api-key:a", "sender_name": "a", "command": "user-get",
                       "decision": "allowed", "outcome": "ok", "detail": "HTTP 200", "duration_ms": 4}])
    rows = s.audit_list()
    assert [r["activity_id"] for r in rows] == ["h3", "h2", "h1", "seen"]
    assert rows[2]["command"] == "team-list" and rows[2]["duration_ms"] == 3 and rows[2]["time"] == clock.t
    assert rows[3]["sender_id"] == "u0" and rows[1]["command"] is None
    assert len({r["id"] for r in rows}) == 4


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


# ======================================================================= mirrors

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


# ======================================================================= locks

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


# ======================================================================= retention

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
        s.run_create(run_record(rid, key=f"key-{rid}"), lease=60)
        if status != "running":
            s.run_save(rid, status, {"inputs": {}}, lease=60)
    s.run_create(run_record("r-waits", status="waiting", state={"waiting": {"question": "q-awaited"}}), lease=60)
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
    assert counted == {"outbox": 2, "runs": 2, "questions": 1, "bot_audit": 1, "call_events": 1, "message_refs": 0,
                       "expired_entries": 0}
    assert tuple(counted) == base.HISTORY_KINDS  # the kinds the protocol declares, in its order
    assert s.outbox_get("sent") is not None  # a dry run deletes nothing
    assert s.purge_history(before) == counted
    assert s.purge_history(before) == dict.fromkeys(counted, 0)

    assert [k for k in ("sent", "failed", "unknown", "pending", "sent-new") if s.outbox_get(k)] == \
        ["unknown", "pending", "sent-new"]
    assert {r["id"] for r in s.run_list()} == {"r-running", "r-waits"}
    assert s.run_create(run_record("r-again", key="key-r-ok"), lease=60)["id"] == "r-again"  # the key is free again
    assert s.run_create(run_record("r-other", key="key-r-running"), lease=60)["id"] == "r-running"  # still held
    assert [q for q in ("q-answered", "q-open", "q-awaited") if s.question_get(q)] == ["q-open", "q-awaited"]
    assert [e["activity_id"] for e in s.audit_list()] == ["a-new"]
    assert s.audit_add({"activity_id": "a-old", "decision": "accepted"}) is not None  # forgotten with its entry
    assert s.call_events("call-old") == [] and len(s.call_events("call-new")) == 1


def test_purge_history_deletes_old_message_refs_and_entries_long_expired_but_not_api_keys(make_store):
    clock = Clock()
    s = make_store(clock=clock)
    for ref in ("ref-old", "ref-again"):
        s.save_message_ref(ref, {"activityId": ref})
    s.put("http_job", "job-old", {"id": "job-old"}, ttl=3600)
    s.put("http_job", "job-again", {"id": "job-again"}, ttl=3600)
    s.put("http_idempotency", "scope-old", {"status": 200}, ttl=86400)
    s.put("api_key", "k-old", {"name": "old"}, ttl=3600)  # api-key list shows it, expired: it stays
    s.put("user", "u-kept", {"id": "u-kept"}, ttl=None)  # never expires
    clock.t += 40 * 86400
    s.save_message_ref("ref-again", {"activityId": "ref-again", "edited": True})  # saved again: as new
    s.save_message_ref("ref-new", {"activityId": "ref-new"})
    s.put("http_job", "job-again", {"id": "job-again"}, ttl=3600)  # written again: expires later
    s.put("http_job", "job-new", {"id": "job-new"}, ttl=60)
    before = clock.t - 30 * 86400

    counted = s.purge_history(before, dry_run=True)
    assert (counted["message_refs"], counted["expired_entries"]) == (1, 2)
    assert s.get_message_ref("ref-old") is not None and s.entries("http_idempotency")  # a dry run deletes nothing
    assert s.purge_history(before) == counted
    assert [r for r in ("ref-old", "ref-again", "ref-new") if s.get_message_ref(r)] == ["ref-again", "ref-new"]
    assert [e["key"] for e in s.entries("http_job")] == ["job-again", "job-new"]
    assert s.entries("http_idempotency") == []
    assert [(e["key"], e["expired"]) for e in s.entries("api_key")] == [("k-old", True)]
    assert s.get("user", "u-kept") == {"id": "u-kept"}
    assert s.counts()["message_refs"] == 2  # counted again after the purge (SQLite keeps the counts)
    assert s.purge_history(before) == dict.fromkeys(counted, 0)


def test_purge_history_of_an_empty_store_finds_nothing(make_store):
    """A store nothing was written to yet (msteams store prune on a new one): every kind at 0,
    counted or deleted."""
    s = make_store()
    assert s.purge_history(s.now(), dry_run=True) == dict.fromkeys(base.HISTORY_KINDS, 0)
    assert s.purge_history(s.now()) == dict.fromkeys(base.HISTORY_KINDS, 0)


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


# ======================================================================= across processes
# Each child opens the store at make_store.where (store_helpers.open_at), as another process
# of the same host (SQLite) or another engine (Redis) would.

def _race(target, where, n: int = 4) -> list:
    """What ``n`` processes running ``target(where, name, queue)`` at once put on the queue."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(where, f"p{i}", q)) for i in range(n)]
    [p.start() for p in procs]
    results = [q.get(timeout=60) for _ in procs]
    [p.join(60) for p in procs]
    return results


def _join_all(target, args_list) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def _writer(where, n, tag):
    s = open_at(where)
    for i in range(n):
        s.put("user", f"{tag}-{i}", {"id": f"{tag}{i}"})
    s.close()


def test_several_processes_share_the_store(make_store):
    make_store()  # there before the writers start (SQLite: the file and its tables)
    _join_all(_writer, [(make_store.where, 100, t) for t in ("a", "b", "c")])
    assert make_store().counts()["user"] == 300


def _name_writer(where, tag):
    s = open_at(where)
    for i in range(50):
        with s.transaction():
            u = {"id": f"{tag}{i}", "displayName": "Same Name", "mail": f"{tag}-{i}@x"}
            s.put_many("user", [(u["id"], u), (u["mail"], u)])
    s.close()


def test_several_processes_writing_namesakes_lose_none(make_store):
    since = make_store().now()
    _join_all(_name_writer, [(make_store.where, t) for t in ("a", "b", "c")])
    s = make_store()
    assert s.index_names("user", "user_name", since=since) == 1
    ids = [c["id"] for c in s.get("user_name", "same name")]
    assert sorted(ids) == sorted(f"{t}{i}" for t in "abc" for i in range(50))
    assert s.counts()["user"] == 300


def _create(where, who, q):
    s = open_at(where)
    run = s.run_create(run_record(f"run-{who}", key="IR-1"), lease=60)
    question, created = s.question_create("q-shared", {"text": who}, None)
    q.put((run["id"], question["value"]["text"], created))
    s.close()


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
    s.run_create(run_record("r", status="waiting", state={"waiting": {"question": "q"}}), lease=60)
    results = _race(_answer, make_store.where)
    answered = [who for who, won, _ in results if won]
    resumed = [who for who, _, row in results if row is not None]
    assert len(answered) == 1 and len(resumed) == 1
    assert s.question_get("q")["answer"] == f"answer-{answered[0]}"
