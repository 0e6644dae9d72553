"""conversations.learn writes a reference only when what the activity tells differs from what
is stored (every field but learnedAt): a message in a known conversation costs reads, not a
write; a reference marked gone is written again (the mark cleared); a changed name or service
URL is written."""
from __future__ import annotations

from integration.store.sqlite import SQLiteStore
from integration.teams import conversations

BOT = "bot-app"
TENANT = "11111111-2222-3333-4444-555555555555"


def personal(text="hi", name="Bob Smith", service="https://smba.example/teams/"):
    return {"type": "message", "id": "a1", "text": text, "serviceUrl": service, "channelId": "msteams",
            "from": {"id": "29:bob", "aadObjectId": "bob-oid", "name": name},
            "conversation": {"id": "a:1on1", "conversationType": "personal", "tenantId": TENANT},
            "channelData": {"tenant": {"id": TENANT}}}


def channel_message(team_name="SOC"):
    return {"type": "message", "id": "c1", "text": "hi", "serviceUrl": "https://smba.example/teams/",
            "from": {"id": "29:bob", "aadObjectId": "bob-oid", "name": "Bob"},
            "conversation": {"id": "19:gen@thread.tacv2;messageid=1", "conversationType": "channel",
                             "tenantId": TENANT},
            "channelData": {"tenant": {"id": TENANT}, "team": {"id": "19:gen@thread.tacv2", "name": team_name,
                                                               "aadGroupId": "group-1"},
                            "channel": {"id": "19:gen@thread.tacv2", "name": "General"}}}


class Counting(SQLiteStore):
    def __init__(self, path):
        super().__init__(path)
        self.puts = []

    def conversation_put(self, key, kind, value):
        self.puts.append(key)
        super().conversation_put(key, kind, value)


def test_a_known_conversation_is_read_not_written(tmp_path):
    store = Counting(tmp_path / "s.sqlite3")
    clock = [100.0]
    keys = conversations.learn(store, BOT, personal(), clock=lambda: clock[0])
    assert len(store.puts) == 3 and keys == store.puts  # service, tenant, user
    clock[0] += 60
    assert conversations.learn(store, BOT, personal("again"), clock=lambda: clock[0]) == keys
    assert len(store.puts) == 3  # nothing new: no write
    ref = conversations.personal(store, BOT, "bob-oid")
    assert ref["learnedAt"] == 100.0 and ref["userName"] == "Bob Smith"
    conversations.learn(store, BOT, personal(name="Bob S."), clock=lambda: clock[0])
    assert store.puts[3:] == [f"user/{BOT}/bob-oid"]
    assert conversations.personal(store, BOT, "bob-oid")["userName"] == "Bob S."


def test_a_gone_reference_is_written_again_and_usable(tmp_path):
    store = Counting(tmp_path / "s.sqlite3")
    conversations.learn(store, BOT, personal())
    conversations.mark_gone(store, BOT, "user", "bob-oid", "ConversationNotFound")
    assert conversations.personal(store, BOT, "bob-oid") is None
    before = len(store.puts)
    conversations.learn(store, BOT, personal())
    assert f"user/{BOT}/bob-oid" in store.puts[before:]
    assert conversations.personal(store, BOT, "bob-oid")["conversationId"] == "a:1on1"


def test_a_moved_service_url_and_a_renamed_team_are_written(tmp_path):
    store = Counting(tmp_path / "s.sqlite3")
    conversations.learn(store, BOT, channel_message())
    first = list(store.puts)
    conversations.learn(store, BOT, channel_message())
    assert store.puts == first  # the same: read only
    conversations.learn(store, BOT, channel_message(team_name="SOC Team"))
    assert store.puts[len(first):] == [f"team/{BOT}/group-1"]
    moved = dict(personal(), serviceUrl="https://smba.other.example/teams/")
    n = len(store.puts)
    conversations.learn(store, BOT, moved)
    assert f"tenant/{BOT}/{TENANT}" in store.puts[n:]
    assert conversations.tenant_service_url(store, BOT, TENANT) == "https://smba.other.example/teams/"


class Reading(Counting):
    def __init__(self, path):
        super().__init__(path)
        self.gets = []

    def conversation_get(self, key):
        self.gets.append(key)
        return super().conversation_get(key)


def test_kept_references_read_each_once_and_learn_the_same(tmp_path):
    """A lane group of the bot endpoint learns through KeptReferences: each reference read once
    for the group, what it writes kept, and the store left as learning without it leaves it."""
    store = Reading(tmp_path / "s.sqlite3")
    kept = conversations.KeptReferences(store)
    clock = [100.0]
    first = conversations.learn(kept, BOT, personal(), clock=lambda: clock[0])
    reads = len(store.gets)
    clock[0] += 1
    assert conversations.learn(kept, BOT, personal("again"), clock=lambda: clock[0]) == first
    assert conversations.learn(kept, BOT, personal("renamed", name="Robert Smith"), clock=lambda: clock[0]) == first
    assert len(store.gets) == reads  # read once each, for the whole group
    assert store.puts == first + [first[-1]]  # the first learning's three, then the rename alone
    plain = Reading(tmp_path / "t.sqlite3")
    for text, name in (("hi", "Bob Smith"), ("again", "Bob Smith"), ("renamed", "Robert Smith")):
        conversations.learn(plain, BOT, personal(text, name=name), clock=lambda: clock[0])
    assert [(k, store.conversation_get(k)["userName"] if k.startswith("user/") else None) for k in first] == \
        [(k, plain.conversation_get(k)["userName"] if k.startswith("user/") else None) for k in first]
    kept.conversation_get(first[-1])["userName"] = "changed by a caller"  # a copy: the kept one is not
    assert kept.conversation_get(first[-1])["userName"] == "Robert Smith"
