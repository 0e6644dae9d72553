"""A bot send whose outcome is ambiguous is read back through Graph before it is called unknown
(issue 24, part 2): a 1:1 message through the user's chat with the bot's app, a channel post
through the channel, with the app flow. Against the fake tenant over real HTTP, with faults
that lose a request's answer after it was applied (or before): arrived -> "sent" and nothing
sent again; not arrived -> sent once more; cannot be read (no permission, no app flow, a
channel without its team) -> "unknown", as before."""
from __future__ import annotations

import collections
import json

import pytest

from engine_fixtures import make_config
from integration.delivery.outbox import UnknownDelivery
from integration.dispatch import Runtime, execute
from integration.teams import readback
from teams_helpers import grant_exactly

CONOR, PRIYA, BOB = "conor.obrien@contoso.example", "priya.patel@contoso.example", "bob.smith@contoso.example"
ACTIVITIES = r"/v3/conversations/[^/]+/activities$"
LOOKUPS = ["User.Read.All", "Team.ReadBasic.All", "Channel.ReadBasic.All"]  # names only: nothing to read back with
CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Approve isolation of WS-17?"}]}


def bot_messages(emu, text: str) -> collections.Counter:
    """How many of the bot's activities with this text each conversation holds."""
    return collections.Counter(a["conversationId"] for a in emu.state.activities.values()
                               if a["activity"].get("text") == text)


def chat_reads(emu) -> list[str]:
    return [e["path"] for e in emu.request_log if e["method"] == "GET" and "/v1.0/" in e["path"]
            and ("/teamwork/installedApps" in e["path"] or "/messages" in e["path"])]


def test_an_ambiguous_send_that_arrived_is_found_and_not_sent_again(emu, runtime):
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)  # applied, answer lost
    r = execute("send-notification", {"user": [CONOR], "message": "rb arrived", "dedupe_key": "rb-1"}, runtime)
    row = r.outputs[0]
    assert row["status"] == "sent" and row["error"] is None
    (aid,) = [k for k, a in emu.state.activities.items() if a["activity"].get("text") == "rb arrived"]
    assert row["activityId"] == aid  # Graph's message id is the activity id
    assert list(bot_messages(emu, "rb arrived").values()) == [1]
    assert runtime.store.outbox_get(row["deliveryKey"])["state"] == "sent"
    # Its reference was kept: message-update edits the message that arrived.
    execute("message-update", {"message_ref": row["messageRef"], "message": "rb edited"}, runtime)
    assert emu.state.activities[aid]["edits"] == 1
    # The same key again: nothing sent.
    before = len(emu.state.activities)
    again = execute("send-notification", {"user": [CONOR], "message": "rb arrived", "dedupe_key": "rb-1"}, runtime)
    assert again.outputs[0]["status"] == "already sent" and len(emu.state.activities) == before


def test_an_ambiguous_send_that_did_not_arrive_is_sent_exactly_once_more(emu, runtime):
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, count=1)  # written, dropped before it was applied
    r = execute("send-notification", {"user": [CONOR, PRIYA], "message": "rb lost", "dedupe_key": "rb-2"}, runtime)
    assert [o["status"] for o in r.outputs] == ["sent", "sent"]
    counts = bot_messages(emu, "rb lost")
    assert len(counts) == 2 and set(counts.values()) == {1}
    assert {o["activityId"] for o in r.outputs} == {k for k, a in emu.state.activities.items()
                                                    if a["activity"].get("text") == "rb lost"}


def test_a_card_only_message_is_matched_by_its_card(emu, runtime):
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
    r = execute("send-notification", {"user": [BOB], "adaptive_card": CARD, "dedupe_key": "rb-card"}, runtime)
    assert r.outputs[0]["status"] == "sent"
    cards = [k for k, a in emu.state.activities.items() if a["activity"].get("attachments")]
    assert cards == [r.outputs[0]["activityId"]]


def test_without_the_read_permissions_it_stays_unknown_and_is_found_once_they_are_granted(emu, runtime):
    grant_exactly(emu, runtime, "app", LOOKUPS)
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
    args = {"user": [CONOR], "message": "rb no permission", "dedupe_key": "rb-3"}
    with pytest.raises(UnknownDelivery) as e:
        execute("send-notification", args, runtime)
    assert "unknown" in str(e.value)
    assert list(bot_messages(emu, "rb no permission").values()) == [1]  # arrived, not sent again
    again = execute("send-notification", dict(args, fail_on="none"), runtime)
    assert again.outputs[0]["status"] == "unknown"  # still not resent blindly
    # Granted: the next run reads it back and settles it, sending nothing.
    grant_exactly(emu, runtime, "app", LOOKUPS + list(readback.USER_PERMISSIONS))
    settled = execute("send-notification", args, runtime)
    assert settled.outputs[0]["status"] == "already sent" and settled.outputs[0]["activityId"]
    assert list(bot_messages(emu, "rb no permission").values()) == [1]


def test_without_the_app_flow_it_stays_unknown(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, client_secret=None), sleep=sleeps)
    rt.echo = lambda s: None
    try:
        assert not rt.auth.ready("app")
        emu.faults.add(method="POST", path=ACTIVITIES, drop=True, count=1)
        conor = emu.state.user(CONOR)["id"]
        with pytest.raises(UnknownDelivery):
            execute("send-notification", {"user": [conor], "message": "rb no app", "dedupe_key": "rb-4"}, rt)
    finally:
        rt.close()
    assert bot_messages(emu, "rb no app") == collections.Counter()  # not applied, and not resent blindly


def test_a_sender_that_died_after_writing_is_settled_by_reading_back(emu, runtime):
    args = {"user": [CONOR, PRIYA], "message": "rb died", "dedupe_key": "rb-5"}
    first = execute("send-notification", args, runtime).outputs
    # Both keys as a sender killed right after writing leaves them (pending, its lease gone);
    # Priya's message never arrived.
    for o in first:
        runtime.store.outbox_set(o["deliveryKey"], "pending")
    priya_aid = first[1]["activityId"]
    with emu.state.lock:
        del emu.state.activities[priya_aid]
        for chat in emu.state.chats.values():
            chat.messages[:] = [m for m in chat.messages if m.id != priya_aid]
    again = execute("send-notification", args, runtime).outputs
    assert [o["status"] for o in again] == ["already sent", "sent"]
    assert again[0]["activityId"] == first[0]["activityId"]
    counts = bot_messages(emu, "rb died")
    assert len(counts) == 2 and set(counts.values()) == {1}


def test_an_older_identical_message_is_not_taken_for_this_one(emu, runtime):
    execute("send-notification", {"user": [CONOR], "message": "rb twice", "dedupe_key": "rb-6a"}, runtime)
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
    r = execute("send-notification", {"user": [CONOR], "message": "rb twice", "dedupe_key": "rb-6b"}, runtime)
    newest = max(k for k, a in emu.state.activities.items() if a["activity"].get("text") == "rb twice")
    assert r.outputs[0]["status"] == "sent" and r.outputs[0]["activityId"] == newest
    assert list(bot_messages(emu, "rb twice").values()) == [2]


def test_the_chat_is_looked_up_once_per_user(emu, runtime):
    for n in (1, 2):
        emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
        execute("send-notification", {"user": [PRIYA], "message": f"rb cached {n}"}, runtime)
    reads = chat_reads(emu)
    assert sum("/teamwork/installedApps" in p and not p.endswith("/chat") for p in reads) == 1
    assert sum(p.endswith("/messages") for p in reads) == 2
    assert runtime.store.get(readback.KIND, f"{emu.config()['bot_id']}/{emu.state.user(PRIYA)['id']}".lower())


def test_a_channel_post_is_read_back_when_its_team_is_known(emu, runtime):
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
    args = {"team": "Security Operations", "channel": "Incident Response", "message": "rb channel"}
    r = execute("send-notification", args, runtime)
    assert r.outputs[0]["status"] == "sent"
    posts = [m for t in emu.state.teams.values() for ch in t.channels.values() for m in ch.messages
             if "rb channel" in m.body["content"]]
    assert [m.id for m in posts] == [r.outputs[0]["activityId"]]
    # A channel id without its team: nothing to read it back with.
    channel = next(c.id for t in emu.state.teams.values() for c in t.channels.values()
                   if c.display_name == "Incident Response")
    emu.faults.add(method="POST", path=ACTIVITIES, drop=True, after=True, count=1)
    with pytest.raises(UnknownDelivery):
        execute("send-notification", {"channel": channel, "message": "rb channel id"}, runtime)


# ---- the match, on messages as Teams shows them ----
BOT = "9c2e4b6d-8f1a-4d3c-b5e7-2a4c6e8f0b1d"


def _msg(content, *, attachments=(), sender=BOT, created="2030-01-01T00:00:10.000Z"):
    return {"id": "1", "createdDateTime": created, "deletedDateTime": None, "body": {"contentType": "html",
            "content": content}, "attachments": list(attachments),
            "from": {"application": {"id": sender, "applicationIdentityType": "bot"}, "user": None}}


def test_text_is_compared_as_words_whatever_the_markup():
    sent = {"type": "message", "textFormat": "markdown",
            "text": "Incident 42: <at>Conor</at> see [the runbook](https://x.example/rb) &amp; isolate **WS-17**"}
    shown = ('<p>Incident 42: <at id="0">Conor</at> see <a href="https://x.example/rb">the runbook</a> '
             '&amp; isolate <strong>WS-17</strong></p>')
    since = 1893456000.0  # 2030-01-01T00:00:00Z
    assert readback.matches(_msg(shown), sent, BOT, since)
    assert not readback.matches(_msg(shown.replace("42", "43")), sent, BOT, since)
    assert not readback.matches(_msg(shown, sender="another-app"), sent, BOT, since)
    assert not readback.matches(_msg(shown, created="2029-12-31T23:58:00.000Z"), sent, BOT, since)  # before the attempt
    assert readback.matches(_msg(shown, created="2029-12-31T23:59:30.000Z"), sent, BOT, since)  # within the skew
    autolinked = {"type": "message", "text": "see https://x.example/a"}
    assert readback.matches(_msg('see <a href="https://x.example/a">https://x.example/a</a>'), autolinked, BOT, since)


def test_a_card_only_message_is_compared_by_its_card():
    sent = {"type": "message", "attachments": [{"contentType": readback.ADAPTIVE, "content": CARD}]}
    att = {"id": "a1", "contentType": readback.ADAPTIVE, "content": json.dumps(CARD)}
    assert readback.matches(_msg('<attachment id="a1"></attachment>', attachments=[att]), sent, BOT, None)
    other = dict(att, content=json.dumps({**CARD, "body": [{"type": "TextBlock", "text": "Something else"}]}))
    assert not readback.matches(_msg('<attachment id="a1"></attachment>', attachments=[other]), sent, BOT, None)
    assert not readback.matches(_msg("Approve isolation of WS-17?"), sent, BOT, None)  # text, no card
