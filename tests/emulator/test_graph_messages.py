"""Chat and channel messages over real HTTP: verbatim storage, who may post, size limit,
mentions and cards, listing and paging, edits, replies."""
from __future__ import annotations

import json

import pytest

import msal_helpers
from graph_helpers import ALICE, BOB, SVC, H, channel_id, create_chat, err, team_id

HOSTILE = "<script>alert('x')</script>'\"${x}{{y}}%s\\u0000 & &amp; <at id=\"9\">no</at> \U0001F4A9 ‮"


@pytest.fixture
def chat(emu, http, delegated_token) -> str:
    r = create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="t")
    assert r.status_code == 201, r.text
    return r.json()["id"]


def channel(emu, team_name: str, channel_name: str) -> tuple[str, str]:
    return team_id(emu, team_name), channel_id(emu, team_name, channel_name)


def post(http, url, token, content, **extra):
    return http.post(url, headers=H(token), json={"body": {"content": content, **extra.pop("body_extra", {})}, **extra})


# ------------------------------------------------------------------------------- chat messages

def test_hostile_text_is_stored_and_returned_verbatim(emu, http, delegated_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    r = post(http, url, delegated_token, HOSTILE)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["body"] == {"contentType": "text", "content": HOSTILE}
    assert m["chatId"] == chat and m["messageType"] == "message" and m["replyToId"] is None
    assert m["id"].isdigit() and m["etag"]
    assert m["from"]["user"]["id"] == emu.state.user(SVC)["id"]
    assert m["from"]["user"]["userIdentityType"] == "aadUser" and m["from"]["application"] is None
    assert m["channelIdentity"] is None and m["importance"] == "normal" and m["reactions"] == []
    stored = emu.state.snapshot()["chats"][chat]["messages"][0]["body"]["content"]
    assert stored == HOSTILE
    got = http.get(url + "/" + m["id"], headers=H(delegated_token)).json()
    assert got["body"]["content"] == HOSTILE


def test_html_body(emu, http, delegated_token, chat):
    r = post(http, emu.graph_url + f"/chats/{chat}/messages", delegated_token, "<b>bold</b> <i>it</i>",
             body_extra={"contentType": "html"})
    assert r.status_code == 201 and r.json()["body"] == {"contentType": "html", "content": "<b>bold</b> <i>it</i>"}


def test_app_token_cannot_post_a_chat_message(emu, http, app_token, chat):
    e = err(post(http, emu.graph_url + f"/chats/{chat}/messages", app_token, "hi"), 403, "Forbidden")
    assert e["message"]
    assert emu.state.chats[chat].messages == []


def test_app_token_refused_even_with_group_readwrite(emu, http, chat):
    # Group.ReadWrite.All lets an app past the permission check for channel posts; Graph still refuses
    cfg = emu.config()
    app = emu.state.app(cfg["client_id"])
    emu.set_permissions(app.app_id, application=set(app.application_permissions) | {"Group.ReadWrite.All"})
    token = msal_helpers.app_token(emu)
    tid, cid = channel(emu, "Security Operations", "General")
    err(post(http, emu.graph_url + f"/teams/{tid}/channels/{cid}/messages", token, "hi"), 403, "Forbidden")


def test_message_over_the_size_limit_is_refused(emu, http, delegated_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    err(post(http, url, delegated_token, "x" * 30_000), 413, "RequestEntityTooLarge")
    assert post(http, url, delegated_token, "x" * 27_000).status_code == 201


@pytest.mark.parametrize("body", [
    {},
    {"body": {}},
    {"body": {"content": ""}},
    {"body": {"content": "   "}},
    {"body": {"content": 5}},
    {"body": "hello"},
    {"body": {"content": "x", "contentType": "markdown"}},
    {"body": {"content": "x"}, "importance": "extreme"},
    {"body": {"content": "x"}, "mentions": "bob"},
    # a mention needs html and an <at id> in the body
    {"body": {"content": "hi Bob"}, "mentions": [{"id": 0, "mentionText": "Bob",
                                                   "mentioned": {"user": {"id": "x"}}}]},
    {"body": {"content": "hi Bob", "contentType": "html"},
     "mentions": [{"id": 0, "mentionText": "Bob", "mentioned": {"user": {"id": "x"}}}]},
    # a card must be referenced from the body and be a JSON string of an AdaptiveCard
    {"body": {"content": "card"}, "attachments": [{"id": "a1", "contentType": "application/vnd.microsoft.card.adaptive",
                                                   "content": json.dumps({"type": "AdaptiveCard"})}]},
    {"body": {"content": "<attachment id=\"a1\"></attachment>", "contentType": "html"},
     "attachments": [{"id": "a1", "contentType": "application/vnd.microsoft.card.adaptive",
                      "content": {"type": "AdaptiveCard"}}]},
    {"body": {"content": "<attachment id=\"a1\"></attachment>", "contentType": "html"},
     "attachments": [{"id": "a1", "contentType": "application/vnd.microsoft.card.adaptive", "content": "{nope"}]},
])
def test_invalid_message_bodies_are_400(emu, http, delegated_token, chat, body):
    err(http.post(emu.graph_url + f"/chats/{chat}/messages", headers=H(delegated_token), json=body), 400, "BadRequest")


def test_mentions_and_adaptive_card(emu, http, delegated_token, chat):
    bob = emu.state.user(BOB)
    card = json.dumps({"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Alert"}]})
    body = {"body": {"contentType": "html",
                     "content": "Hi <at id=\"0\">Bob</at> <attachment id=\"card1\"></attachment>"},
            "mentions": [{"id": 0, "mentionText": "Bob",
                          "mentioned": {"user": {"id": bob["id"], "displayName": "Bob Smith",
                                                 "userIdentityType": "aadUser"}}}],
            "attachments": [{"id": "card1", "contentType": "application/vnd.microsoft.card.adaptive",
                             "content": card}]}
    r = http.post(emu.graph_url + f"/chats/{chat}/messages", headers=H(delegated_token), json=body)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["mentions"][0]["mentioned"]["user"]["id"] == bob["id"]
    assert m["attachments"][0]["content"] == card and m["attachments"][0]["id"] == "card1"


def test_non_member_cannot_post_or_read(emu, http, chat):
    conor = msal_helpers.delegated_token(emu, login_hint="conor.obrien@contoso.example")
    err(post(http, emu.graph_url + f"/chats/{chat}/messages", conor, "hi"), 403, "Forbidden")
    err(http.get(emu.graph_url + f"/chats/{chat}/messages", headers=H(conor)), 403)


def test_list_newest_first_top_and_paging(emu, http, delegated_token, app_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    for i in range(23):
        assert post(http, url, delegated_token, f"m{i}").status_code == 201
    err(http.get(url + "?$top=51", headers=H(delegated_token)), 400)
    err(http.get(url + "?$orderby=subject desc", headers=H(delegated_token)), 400)
    err(http.get(url + "?$orderby=createdDateTime asc", headers=H(delegated_token)), 400)
    seen, next_url = [], url + "?$top=10&$orderby=createdDateTime desc"
    while next_url:
        r = http.get(next_url, headers=H(app_token))  # Chat.Read.All lets the app read
        assert r.status_code == 200, r.text
        seen += [m["body"]["content"] for m in r.json()["value"]]
        next_url = r.json().get("@odata.nextLink")
    assert seen == [f"m{i}" for i in range(22, -1, -1)]
    r = http.get(url, headers=H(delegated_token))
    assert len(r.json()["value"]) == 20 and "@odata.nextLink" in r.json()  # default page: 20


def test_filter_on_last_modified(emu, http, delegated_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    first = post(http, url, delegated_token, "one").json()
    r = http.get(url + "?$orderby=lastModifiedDateTime desc&$filter=lastModifiedDateTime gt "
                 + first["lastModifiedDateTime"], headers=H(delegated_token))
    assert r.status_code == 200 and r.json()["value"] == []
    r = http.get(url + "?$filter=lastModifiedDateTime gt 2000-01-01T00:00:00Z", headers=H(delegated_token))
    assert [m["id"] for m in r.json()["value"]] == [first["id"]]


def test_only_the_sender_may_edit(emu, http, delegated_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    m = post(http, url, delegated_token, "draft").json()
    bob = msal_helpers.delegated_token(emu, login_hint=BOB)
    err(http.patch(f"{url}/{m['id']}", headers=H(bob), json={"body": {"content": "hijack"}}), 403)
    r = http.patch(f"{url}/{m['id']}", headers=H(delegated_token),
                   json={"body": {"contentType": "html", "content": "<p>final</p>"}})
    assert r.status_code == 204, r.text
    got = http.get(f"{url}/{m['id']}", headers=H(delegated_token)).json()
    assert got["body"] == {"contentType": "html", "content": "<p>final</p>"}
    assert got["lastEditedDateTime"] and got["lastModifiedDateTime"] >= m["lastModifiedDateTime"]
    err(http.get(f"{url}/999", headers=H(delegated_token)), 404, "NotFound")


def test_message_ids_are_unique(emu, http, delegated_token, chat):
    url = emu.graph_url + f"/chats/{chat}/messages"
    ids = [post(http, url, delegated_token, str(i)).json()["id"] for i in range(15)]
    assert len(set(ids)) == 15 and ids == sorted(ids, key=int)


# ------------------------------------------------------------------------------- channel messages

def test_channel_post_replies_and_listing(emu, http, delegated_token):
    tid, cid = channel(emu, "Security Operations", "Incident Response")
    url = emu.graph_url + f"/teams/{tid}/channels/{cid}/messages"
    r = http.post(url, headers=H(delegated_token), json={"subject": "Incident 42", "body": {"content": HOSTILE}})
    assert r.status_code == 201, r.text
    root = r.json()
    assert root["channelIdentity"] == {"teamId": tid, "channelId": cid} and root["chatId"] is None
    assert root["subject"] == "Incident 42" and root["body"]["content"] == HOSTILE
    rr = post(http, f"{url}/{root['id']}/replies", delegated_token, "ack")
    assert rr.status_code == 201, rr.text
    reply = rr.json()
    assert reply["replyToId"] == root["id"]
    got = http.get(f"{url}/{root['id']}/replies", headers=H(delegated_token)).json()["value"]
    assert [x["id"] for x in got] == [reply["id"]]
    assert http.get(f"{url}/{root['id']}/replies/{reply['id']}", headers=H(delegated_token)).json()["body"]["content"] == "ack"
    listing = http.get(url + "?$expand=replies", headers=H(delegated_token)).json()["value"]
    assert [m["id"] for m in listing] == [root["id"]] and listing[0]["replies"][0]["id"] == reply["id"]
    err(post(http, f"{url}/123/replies", delegated_token, "x"), 404)
    r = http.patch(f"{url}/{root['id']}", headers=H(delegated_token), json={"body": {"content": "edited"}})
    assert r.status_code == 204, r.text
    assert emu.state.snapshot()["channel_messages"][0]["body"]["content"] == "edited"


def test_channel_post_needs_team_and_private_channel_membership(emu, http):
    wei = msal_helpers.delegated_token(emu, login_hint="wei.chen@contoso.example")  # IT Helpdesk only
    tid, cid = channel(emu, "Security Operations", "General")
    err(post(http, emu.graph_url + f"/teams/{tid}/channels/{cid}/messages", wei, "hi"), 403)
    bob = msal_helpers.delegated_token(emu, login_hint=BOB)  # in the team, not in Threat Intel
    tid, pid = channel(emu, "Security Operations", "Threat Intel")
    err(post(http, emu.graph_url + f"/teams/{tid}/channels/{pid}/messages", bob, "hi"), 403)
    conor = msal_helpers.delegated_token(emu, login_hint="conor.obrien@contoso.example")
    assert post(http, emu.graph_url + f"/teams/{tid}/channels/{pid}/messages", conor, "hi").status_code == 201
