"""The Bot Connector: bot tokens, proactive 1:1 conversations (get-or-create), activities with
Adaptive Cards, in-place edits, channel threads and replies, and refusal of non-bot tokens."""
from __future__ import annotations

import pytest

import msal_helpers as mh
from msal_helpers import bearer

CARD = {"contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Alert"}]}}


@pytest.fixture
def bot(emu, http, bot_token):
    class Bot:
        cfg = emu.config()
        url = emu.bot_service_url + "v3/conversations"

        def post(self, path="", body=None, token=bot_token):
            return http.post(self.url + path, headers=bearer(token), json=body)

        def put(self, path, body, token=bot_token):
            return http.put(self.url + path, headers=bearer(token), json=body)

        def open(self, user_id, **extra):
            body = {"bot": {"id": "28:" + self.cfg["bot_id"]}, "members": [{"id": "29:" + user_id}],
                    "tenantId": self.cfg["tenant_id"], "isGroup": False}
            body.update(extra)
            return self.post("", body)

    return Bot()


def _channel(emu, team_name, channel_name):
    team = next(t for t in emu.state.teams.values() if t.display_name == team_name)
    ch = next(c for c in team.channels.values() if c.display_name == channel_name)
    return team, ch


def test_bot_token_and_one_to_one_get_or_create(emu, bot):
    bob = emu.state.user("bob.smith@contoso.example")
    r1 = bot.open(bob["id"])
    assert r1.status_code == 201, r1.text
    conv = r1.json()["id"]
    assert conv.startswith("a:")
    # Same user (named differently) -> same conversation.
    r2 = bot.post("", {"bot": {"id": bot.cfg["bot_id"]}, "members": [{"id": "x", "aadObjectId": bob["id"]}],
                       "channelData": {"tenant": {"id": bot.cfg["tenant_id"]}}})
    assert r2.status_code == 201 and r2.json()["id"] == conv
    other = bot.open(emu.state.user("zoe.muller@contoso.example")["id"])
    assert other.json()["id"] != conv
    assert len(emu.state.bot_conversations) == 2


def test_unknown_user_and_bad_requests(emu, bot):
    r = bot.open("00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert set(r.json()["error"]) == {"code", "message"}
    bob = emu.state.user("bob.smith@contoso.example")["id"]
    assert bot.post("", {"bot": {"id": bot.cfg["bot_id"]}, "members": [{"id": "29:" + bob}]}).status_code == 400
    assert bot.open(bob, tenantId="11111111-1111-1111-1111-111111111111").status_code == 403
    assert bot.open(bob, isGroup=True).status_code == 400
    assert bot.open(bob, bot={"id": "28:someone-else"}).status_code == 403
    assert bot.post("/a:nope/activities", {"type": "message", "text": "hi"}).status_code == 404


def test_post_activity_and_edit_in_place(emu, bot):
    conv = bot.open(emu.state.user("bob.smith@contoso.example")["id"]).json()["id"]
    r = bot.post(f"/{conv}/activities", {"type": "message", "text": "Incident 7 opened", "attachments": [CARD]})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    rec = emu.state.activities[aid]
    assert rec["conversationId"] == conv and rec["edits"] == 0
    assert rec["activity"]["attachments"][0]["content"]["type"] == "AdaptiveCard"
    updated = {"type": "message", "attachments": [dict(CARD, content=dict(CARD["content"], body=[
        {"type": "TextBlock", "text": "Alert acknowledged"}]))]}
    r = bot.put(f"/{conv}/activities/{aid}", updated)
    assert r.status_code == 200 and r.json() == {"id": aid}
    rec = emu.state.activities[aid]
    assert rec["edits"] == 1
    assert rec["activity"]["attachments"][0]["content"]["body"][0]["text"] == "Alert acknowledged"
    assert "text" not in rec["activity"]
    assert bot.put(f"/{conv}/activities/999", updated).status_code == 404
    snap = emu.state.snapshot()
    assert any(a["conversationId"] == conv for a in snap["activities"])


def test_activity_validation(emu, bot):
    conv = bot.open(emu.state.user("bob.smith@contoso.example")["id"]).json()["id"]
    assert bot.post(f"/{conv}/activities", {"type": "message"}).status_code == 400
    assert bot.post(f"/{conv}/activities", {"type": "event", "text": "x"}).status_code == 400
    bad_card = {"contentType": CARD["contentType"], "content": {"body": []}}
    assert bot.post(f"/{conv}/activities", {"type": "message", "attachments": [bad_card]}).status_code == 400
    r = bot.post(f"/{conv}/activities", {"type": "message", "text": "x" * 30_000})
    assert r.status_code == 413
    r = bot.post(f"/{conv}/activities", {"type": "message", "text": "**hi**", "textFormat": "markdown",
                                         "entities": [{"type": "mention", "text": "<at>Bob</at>",
                                                       "mentioned": {"id": "29:x", "name": "Bob"}}]})
    assert r.status_code == 201


def test_channel_post_creates_thread_and_reply(emu, bot, http, delegated_token):
    team, ch = _channel(emu, "Security Operations", "Incident Response")
    r = bot.post("", {"isGroup": True, "bot": {"id": bot.cfg["bot_id"]},
                      "channelData": {"channel": {"id": ch.id}, "tenant": {"id": bot.cfg["tenant_id"]}},
                      "activity": {"type": "message", "text": "New incident", "attachments": [CARD]}})
    assert r.status_code == 201, r.text
    thread_conv, root = r.json()["id"], r.json()["activityId"]
    assert thread_conv == f"{ch.id};messageid={root}"
    # Posting to the channel id starts another thread; posting to the thread id replies.
    r = bot.post(f"/{ch.id}/activities", {"type": "message", "text": "Second incident"})
    assert r.status_code == 201
    r = bot.post(f"/{thread_conv}/activities", {"type": "message", "text": "Update: contained"})
    assert r.status_code == 201
    reply = r.json()["id"]
    msgs = [m for m in emu.state.snapshot()["channel_messages"] if m["channelId"] == ch.id]
    assert [m["id"] for m in msgs][:1] == [root] and len(msgs) == 2
    assert [x["id"] for x in msgs[0]["replies"]] == [reply]
    # Graph sees the bot's message as an application message.
    g = http.get(f"{emu.graph_url}/teams/{team.id}/channels/{ch.id}/messages/{root}", headers=bearer(delegated_token))
    assert g.status_code == 200, g.text
    assert g.json()["from"]["application"]["id"] == bot.cfg["bot_id"]
    # Edit the root in place.
    r = bot.put(f"/{ch.id}/activities/{root}", {"type": "message", "text": "New incident (P1)"})
    assert r.status_code == 200 and emu.state.activities[root]["edits"] == 1
    assert "P1" in next(m for m in ch.messages if m.id == root).body["content"]


def test_conversation_members(emu, bot, http, bot_token):
    bob = emu.state.user("bob.smith@contoso.example")
    conv = bot.open(bob["id"]).json()["id"]
    r = http.get(f"{bot.url}/{conv}/members", headers=bearer(bot_token))
    assert r.status_code == 200
    assert [m["aadObjectId"] for m in r.json()] == [bob["id"]]
    _, ch = _channel(emu, "Security Operations", "Threat Intel")
    r = http.get(f"{bot.url}/{ch.id}/members", headers=bearer(bot_token))
    assert sorted(m["userPrincipalName"] for m in r.json()) == sorted(
        emu.state.users[m.user_id]["userPrincipalName"] for m in ch.members)


def test_non_bot_tokens_are_refused(emu, http, bot, app_token):
    bob = emu.state.user("bob.smith@contoso.example")["id"]
    body = {"bot": {"id": bot.cfg["bot_id"]}, "members": [{"id": "29:" + bob}], "tenantId": bot.cfg["tenant_id"]}
    # A Graph token (wrong audience).
    r = bot.post("", body, token=app_token)
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    # A Bot Framework audience token for an app that is not a registered bot.
    graph_app_bot_aud = mh.confidential_app(emu).acquire_token_for_client(mh.BOT_DEFAULT)["access_token"]
    r = bot.post("", body, token=graph_app_bot_aud)
    assert r.status_code == 401 and "not a registered bot" in r.json()["error"]["message"]
    r = http.post(bot.url, json=body)
    assert r.status_code == 401
    emu.expire_tokens()
    assert bot.post("", body).status_code == 401
    log = [e for e in emu.request_log if e["path"].startswith("/botframework/")]
    assert log and all(e["status"] == 401 for e in log)


def test_plain_text_channel_post_is_escaped_in_the_graph_view(emu, http, bot_token):
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    channel = next(c for c in team.channels.values() if c.display_name == "Incident Response")
    base = emu.bot_service_url.rstrip("/")
    conv = http.post(f"{base}/v3/conversations", headers={"Authorization": f"Bearer {bot_token}"},
                     json={"isGroup": True, "channelData": {"channel": {"id": channel.id}},
                           "tenantId": emu.state.tenant_id,
                           "activity": {"type": "message", "text": "x"}}).json()
    r = http.post(f"{base}/v3/conversations/{conv['id']}/activities", headers={"Authorization": f"Bearer {bot_token}"},
                  json={"type": "message", "text": "<script>alert(1)</script> & <at>Bob</at>", "textFormat": "plain"})
    assert r.status_code in (200, 201), r.text
    bodies = [m.body["content"] for m in channel.messages] + [x.body["content"] for m in channel.messages for x in m.replies]
    assert any("&lt;script&gt;alert(1)&lt;/script&gt; &amp; <at>Bob</at>" in b for b in bodies), bodies


# ---- throttling at the published bot limits (fake clock: no real waits) ----

class _Clock:
    def __init__(self, t: float = 5000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _throttled(emu) -> _Clock:
    clock = _Clock()
    emu.throttle.clock = clock
    emu.set_throttling(True)
    return clock


def test_eighth_send_to_one_conversation_in_a_second_is_429_throttled(emu, bot):
    clock = _throttled(emu)
    conv = bot.open(emu.state.user("bob.smith@contoso.example")["id"]).json()["id"]
    sent = len(emu.state.activities)
    rs = [bot.post(f"/{conv}/activities", {"type": "message", "text": f"update {i}"}) for i in range(8)]
    assert [r.status_code for r in rs] == [201] * 7 + [429]
    assert rs[7].headers["Retry-After"] == "1"
    assert rs[7].json() == {"error": {"code": "Throttled", "message": rs[7].json()["error"]["message"]}}
    assert "per bot per conversation" in rs[7].json()["error"]["message"]
    assert len(emu.state.activities) == sent + 7  # the refused send was not applied
    # Updating an activity counts in the same conversation.
    aid = rs[0].json()["id"]
    assert bot.put(f"/{conv}/activities/{aid}", {"type": "message", "text": "edited"}).status_code == 429
    emu.set_throttling(True, retry_after=False)
    r = bot.post(f"/{conv}/activities", {"type": "message", "text": "again"})
    assert r.status_code == 429 and "Retry-After" not in r.headers
    clock.t += 1
    assert bot.put(f"/{conv}/activities/{aid}", {"type": "message", "text": "edited"}).status_code == 200
    statuses = [e["status"] for e in emu.request_log if e["path"].startswith("/botframework/v3/conversations/a:")]
    assert statuses[-4:] == [429, 429, 429, 200]


def test_channel_threads_and_first_messages_count_in_their_conversation(emu, bot):
    _throttled(emu)
    _, ch = _channel(emu, "Security Operations", "Incident Response")
    first = bot.post("", {"isGroup": True, "bot": {"id": bot.cfg["bot_id"]}, "tenantId": bot.cfg["tenant_id"],
                          "channelData": {"channel": {"id": ch.id}},
                          "activity": {"type": "message", "text": "New incident"}})
    assert first.status_code == 201
    thread = first.json()["id"]
    assert [bot.post(f"/{ch.id}/activities", {"type": "message", "text": "x"}).status_code for _ in range(3)] == [201] * 3
    # Replies in the thread are messages in the channel: the 8th request in it is refused.
    codes = [bot.post(f"/{thread}/activities", {"type": "message", "text": "y"}).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    # Opening 1:1 conversations (no message) counts against the app only...
    bob = emu.state.user("bob.smith@contoso.example")["id"]
    assert [bot.open(bob).status_code for _ in range(8)] == [201] * 8
    # ...opening with a first message counts in that conversation.
    codes = [bot.open(bob, activity={"type": "message", "text": "hi"}).status_code for _ in range(8)]
    assert codes == [201] * 7 + [429]


def test_51_requests_in_a_second_across_conversations_are_429_per_app(emu, bot, http, bot_token):
    clock = _throttled(emu)
    users = list(emu.state.users)
    convs = [bot.open(u).json()["id"] for u in users]
    n = len(convs)
    codes = [bot.post(f"/{convs[i % n]}/activities", {"type": "message", "text": str(i)}).status_code
             for i in range(50 - n)]
    assert codes == [201] * (50 - n) and (50 - n) / n <= 7
    r = http.get(f"{bot.url}/{convs[-1]}/members", headers=bearer(bot_token))
    assert r.status_code == 429 and "per app per tenant" in r.json()["error"]["message"]
    assert r.headers["Retry-After"] == "1"
    clock.t += 1
    assert http.get(f"{bot.url}/{convs[-1]}/members", headers=bearer(bot_token)).status_code == 200


def test_throttling_off_never_refuses_a_bot(emu, bot):
    assert emu.throttling is False
    conv = bot.open(emu.state.user("bob.smith@contoso.example")["id"]).json()["id"]
    assert {bot.post(f"/{conv}/activities", {"type": "message", "text": "x"}).status_code for _ in range(20)} == {201}


def test_each_bot_app_has_its_own_budget_in_a_conversation():
    from fake_tenant import Emulator
    from fake_tenant.tenant import read_seed

    seed = read_seed()
    seed["apps"].append({"name": "Second Bot", "kind": "bot", "app_id": "5b0d9e2a-7c41-4f3e-8a6d-1e2f3a4b5c6d",
                         "secret": "emu~Second.Bot-Secret-1"})
    with Emulator(tenant=seed, throttling=True) as emu:
        clock = _Clock()
        emu.throttle.clock = clock
        s = mh.http_session(emu.ca_bundle)
        tokens = [mh.confidential_app(emu, app_id, secret, http=s).acquire_token_for_client(mh.BOT_DEFAULT)["access_token"]
                  for app_id, secret in ((emu.config()["bot_id"], emu.config()["bot_secret"]),
                                         ("5b0d9e2a-7c41-4f3e-8a6d-1e2f3a4b5c6d", "emu~Second.Bot-Secret-1"))]
        _, ch = _channel(emu, "Security Operations", "Incident Response")
        url = f"{emu.bot_service_url}v3/conversations/{ch.id}/activities"

        def send(token):
            return s.post(url, headers=bearer(token), json={"type": "message", "text": "x"}).status_code

        # Each bot gets its own 7 per second in the channel (with two bots the 14 per second for
        # all bots together is reached only with both; tests/emulator/test_throttle.py has three).
        assert [send(tokens[0]) for _ in range(8)] == [201] * 7 + [429]
        assert [send(tokens[1]) for _ in range(8)] == [201] * 7 + [429]
        clock.t += 1
        assert [send(tokens[0]) for _ in range(2)] == [201, 429]  # 8 per 2 s
        assert [send(tokens[1]) for _ in range(2)] == [201, 429]
        s.close()
