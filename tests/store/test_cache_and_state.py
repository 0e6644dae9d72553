"""Cache and state apart (issue 24, part 3): cache-reset removes only what can be fetched again
(the directory) and says what it removed; delivery records, conversation references, runs,
questions, mirrors' delivered marks, message references, audit and a sign-in in progress stay.
A store written before conversation references had their own key keeps them after the upgrade."""
from __future__ import annotations

import pytest

from integration.dispatch import execute
from integration.teams import conversations

BOB = "bob.smith@contoso.example"


@pytest.mark.parametrize("tokens", [False, True])
def test_cache_reset_removes_the_directory_and_keeps_state(emu, signed_in, tokens):
    rt = signed_in
    sent = execute("send-notification", {"user": BOB, "message": "state test"}, rt)  # outbox, ref, conversation
    execute("channel-list", {"team": "Security Operations"}, rt)  # directory entries
    store = rt.store
    uid = emu.state.user(BOB)["id"]
    store.put("mirror_webhook", "delivered-through", 41, ttl=None)
    store.put("auth_flow", "delegated-device-code", {"user_code": "X"}, ttl=600)
    q, _ = store.question_create("q-state", {"text": "keep me?"}, None)
    key = sent.outputs[0]["deliveryKey"]
    before = {"outbox": store.outbox_get(key), "ref": store.get_message_ref(sent.outputs[0]["messageRef"]),
              "opened": conversations.opened(store, rt.cfg.bot_id, uid)}
    assert all(before.values()), before
    assert store.counts().get("team", 0) + store.counts().get("channel", 0) > 0

    r = execute("cache-reset", {"include_tokens": tokens}, rt)
    removed = r.raw
    assert removed and set(removed) <= {"user", "team", "channel", "chat", "chat_topic", "member", "user_name",
                                        "team_name", "channel_name", "user_miss", "health_probe", "token_caches"}
    assert "removed" in r.message and str(sum(removed.values())) in r.message
    assert ("token_caches" in removed) == tokens
    counts = store.counts()
    assert counts.get("team", 0) == 0 and counts.get("channel", 0) == 0
    assert store.outbox_get(key) == before["outbox"]
    assert store.get_message_ref(sent.outputs[0]["messageRef"]) == before["ref"]
    assert conversations.opened(store, rt.cfg.bot_id, uid) == before["opened"]
    assert store.get("mirror_webhook", "delivered-through") == 41
    assert store.get("auth_flow", "delegated-device-code") == {"user_code": "X"}
    assert store.question_get("q-state")["value"]["text"] == "keep me?"
    # and the bot still writes into the conversation it had, without opening another
    creates = [e for e in emu.request_log if e["path"].endswith("/v3/conversations")]
    execute("send-notification", {"user": BOB, "message": "after the reset"}, rt)
    assert [e for e in emu.request_log if e["path"].endswith("/v3/conversations")] == creates


def test_a_store_written_before_keeps_its_opened_conversations(emu, runtime):
    """Before, the bot's opened 1:1 conversations lived in the directory cache as
    `bot_conversation`: an upgraded store reads them there once and keeps them as state."""
    execute("send-notification", {"user": BOB, "message": "first"}, runtime)
    uid = emu.state.user(BOB)["id"]
    store, bot = runtime.store, runtime.cfg.bot_id
    conv_id = conversations.opened(store, bot, uid)["conversationId"]
    # the store as the previous version left it: the reference in the cache table only
    store.put("bot_conversation", f"{bot}/{uid}", {"id": conv_id})
    _forget_opened(store, bot, uid)
    assert conversations.opened(store, bot, uid)["conversationId"] == conv_id  # read from the old place
    store.delete("bot_conversation", f"{bot}/{uid}")
    assert conversations.opened(store, bot, uid)["conversationId"] == conv_id  # and kept as state now
    creates = len([e for e in emu.request_log if e["path"].endswith("/v3/conversations")])
    execute("send-notification", {"user": BOB, "message": "second"}, runtime)
    assert len([e for e in emu.request_log if e["path"].endswith("/v3/conversations")]) == creates


def _forget_opened(store, bot, uid):
    """Take the new key away, as a store from before never had it."""
    if hasattr(store, "_conn"):
        with store._conn() as c:
            c.execute("DELETE FROM conversations WHERE key=?", (f"opened/{bot}/{uid.lower()}",))
    else:
        store.r.hdel(store.k("conv"), f"opened/{bot}/{uid.lower()}")
