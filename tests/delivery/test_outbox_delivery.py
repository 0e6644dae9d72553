"""Exactly-once end to end against the fake tenant: writes the service applied but whose answer
was lost (a dropped connection, a timeout), 429 storms with and without Retry-After, 503s; in
each, the tenant's state shows every recipient reached once, or the recipient is reported as
failed or unknown by name."""
from __future__ import annotations

import collections

import pytest

from engine_fixtures import make_config
from integration.dispatch import Runtime, execute
from integration.delivery.outbox import UnknownDelivery

PEOPLE = ["conor.obrien@contoso.example", "priya.patel@contoso.example", "bob.smith@contoso.example"]


def chat_messages(emu, content: str) -> collections.Counter:
    """How many times each chat holds a message with this content."""
    return collections.Counter(cid for cid, c in emu.state.chats.items() for m in c.messages
                               if (m.body or {}).get("content") == content)


def bot_messages(emu, text: str) -> collections.Counter:
    return collections.Counter(a["conversationId"] for a in emu.state.activities.values()
                               if a["activity"].get("text") == text)


def test_a_chat_post_applied_but_dropped_is_found_by_reading_back(emu, signed_in):
    emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", drop=True, after=True, count=1)
    r = execute("message-send-to-chat", {"chat": PEOPLE[0], "content": "drop-after"}, signed_in)
    assert r.outputs[0]["deliveryStatus"] == "sent"
    assert list(chat_messages(emu, "drop-after").values()) == [1]


def test_a_chat_post_applied_then_timed_out_is_not_sent_twice(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, timeout=0.3), sleep=sleeps)
    rt.echo = lambda s: None
    try:
        execute("auth-login", {}, rt)
        emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", delay=0.8, after=True, count=1)
        r = execute("message-send-to-chat", {"chat": PEOPLE[1], "content": "slow-after"}, rt)
        assert r.outputs[0]["deliveryStatus"] == "sent" and r.outputs[0]["messages"]["id"]
    finally:
        rt.close()
    assert list(chat_messages(emu, "slow-after").values()) == [1]


def test_a_chat_post_dropped_before_it_was_applied_is_sent_once_more(emu, signed_in):
    emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", drop=True, count=1)
    execute("message-send-to-chat", {"chat": PEOPLE[2], "content": "drop-before"}, signed_in)
    assert list(chat_messages(emu, "drop-before").values()) == [1]


def test_many_chats_with_429_storms_and_503s_reach_each_once(emu, signed_in, sleeps):
    emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", status=429, retry_after=1, count=3)
    emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", status=429, count=2)  # no Retry-After
    emu.faults.add(method="POST", path=r"/chats/[^/]+/messages$", status=503, count=2)
    r = execute("message-send-to-chat", {"chats": PEOPLE, "content": "storm", "dedupe_key": "storm-1"}, signed_in)
    assert [o["deliveryStatus"] for o in r.outputs] == ["sent"] * 3
    counts = chat_messages(emu, "storm")
    assert len(counts) == 3 and set(counts.values()) == {1}
    again = execute("message-send-to-chat", {"chats": PEOPLE, "content": "storm", "dedupe_key": "storm-1"}, signed_in)
    assert [o["deliveryStatus"] for o in again.outputs] == ["already sent"] * 3
    assert set(chat_messages(emu, "storm").values()) == {1}
    assert sleeps  # the 429s were waited out, not surfaced


def test_a_bot_send_applied_but_dropped_is_unknown_and_never_resent(emu, runtime):
    # Without the permissions to read the chat back (tests/teams/test_bot_readback.py reads it back).
    from teams_helpers import grant_exactly

    grant_exactly(emu, runtime, "app", ["User.Read.All", "Team.ReadBasic.All", "Channel.ReadBasic.All"])
    emu.faults.add(method="POST", path=r"/v3/conversations/[^/]+/activities$", drop=True, after=True, count=1)
    args = {"user": PEOPLE[:1], "message": "bot-drop-after", "dedupe_key": "b1"}
    with pytest.raises(UnknownDelivery) as e:
        execute("send-notification", args, runtime)
    assert "Conor O'Brien" in str(e.value) and "unknown" in str(e.value)
    again = execute("send-notification", dict(args, user=PEOPLE[:2]), runtime)
    assert [o["status"] for o in again.outputs] == ["unknown", "sent"]
    assert set(bot_messages(emu, "bot-drop-after").values()) == {1}  # Conor once (the dropped one), Priya once


def test_bot_fanout_through_429s_with_and_without_retry_after(emu, runtime, sleeps):
    emu.faults.add(method="POST", path=r"/activities$", status=429, retry_after=2, count=2)
    emu.faults.add(method="POST", path=r"/activities$", status=429, count=2)
    emu.faults.add(method="POST", path=r"/activities$", status=503, count=1)
    r = execute("send-notification", {"user": PEOPLE, "message": "bot-storm"}, runtime)
    assert [o["status"] for o in r.outputs] == ["sent"] * 3
    assert len(bot_messages(emu, "bot-storm")) == 3 and set(bot_messages(emu, "bot-storm").values()) == {1}


def channel_messages(emu, content: str) -> int:
    return sum(1 for t in emu.state.teams.values() for ch in t.channels.values() for m in ch.messages
               if (m.body or {}).get("content") == content)


def test_a_channel_post_applied_but_dropped_is_found_and_a_second_run_with_the_key_posts_nothing(emu, signed_in):
    emu.faults.add(method="POST", path=r"/channels/[^/]+/messages$", drop=True, after=True, count=1)
    args = {"team": "Security Operations", "channel": "General", "content": "chan-drop-after", "dedupe_key": "c1"}
    execute("channel-message-send", args, signed_in)
    assert channel_messages(emu, "chan-drop-after") == 1
    again = execute("channel-message-send", args, signed_in)
    assert "not sent again" in again.message and channel_messages(emu, "chan-drop-after") == 1
