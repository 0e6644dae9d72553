"""Graph chats over real HTTP: create (member rules, oneOnOne get-or-create), list and page
/me/chats, $filter / $expand, PATCH topic, and chat members."""
from __future__ import annotations

from urllib.parse import quote

import pytest

import msal_helpers
from graph_helpers import ALICE, BOB, CONOR, MEMBER_TYPE, SVC, H, create_chat, err, member


def uid(emu, upn: str) -> str:
    return emu.state.user(upn)["id"]


@pytest.fixture
def bob_token(emu):
    return msal_helpers.delegated_token(emu, login_hint=BOB)


# ------------------------------------------------------------------------------- create

def test_one_on_one_created_twice_returns_the_same_chat(emu, http, delegated_token):
    r1 = create_chat(http, emu, delegated_token, "oneOnOne", [SVC, BOB])
    r2 = create_chat(http, emu, delegated_token, "oneOnOne", [BOB.upper(), uid(emu, SVC)])
    assert r1.status_code == r2.status_code == 201, (r1.text, r2.text)
    c1, c2 = r1.json(), r2.json()
    assert c1["id"] == c2["id"]
    a, b = sorted([uid(emu, SVC), uid(emu, BOB)])
    assert c1["id"] == f"19:{a}_{b}@unq.gbl.spaces"
    assert c1["chatType"] == "oneOnOne" and c1["topic"] is None
    assert c1["tenantId"] == emu.state.tenant_id and c1["webUrl"].startswith("https://teams.microsoft.com/l/chat/")
    assert {"createdDateTime", "lastUpdatedDateTime", "onlineMeetingInfo"} <= set(c1)
    assert len(emu.state.chats) == 1


def test_group_chat(emu, http, delegated_token):
    r = create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="Incident #42 <b>war room</b>")
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["chatType"] == "group" and c["topic"] == "Incident #42 <b>war room</b>"
    assert c["id"].startswith("19:") and c["id"].endswith("@thread.v2") and len(c["id"]) == 3 + 32 + 10
    again = create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="x").json()
    assert again["id"] != c["id"]  # group chats are never deduplicated


def test_group_chat_without_the_caller_is_403(emu, http, delegated_token):
    err(create_chat(http, emu, delegated_token, "group", [BOB, ALICE, CONOR], topic="t"), 403, "Forbidden")
    err(create_chat(http, emu, delegated_token, "oneOnOne", [BOB, ALICE]), 403, "Forbidden")
    assert emu.state.chats == {}


def test_app_only_may_create_chats(emu, http, app_token):
    r = create_chat(http, emu, app_token, "group", [BOB, ALICE, CONOR], topic="from the app")
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("body,status", [
    ({"members": [member(SVC), member(BOB)]}, 400),  # no chatType
    ({"chatType": "channel", "members": [member(SVC), member(BOB)]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), member(BOB), member(ALICE)]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC)]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), member(SVC)]}, 400),
    ({"chatType": "oneOnOne", "topic": "no", "members": [member(SVC), member(BOB)]}, 400),
    ({"chatType": "group", "members": [member(SVC)]}, 400),
    ({"chatType": "group"}, 400),
    ({"chatType": "group", "members": "everyone"}, 400),
    ({"chatType": "group", "topic": 42, "members": [member(SVC), member(BOB)]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), {**member(BOB), "@odata.type": "#microsoft.graph.user"}]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), {**member(BOB), "roles": "owner"}]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), {**member(BOB), "user@odata.bind": "https://evil.example/v1.0/users('x')"}]}, 400),
    ({"chatType": "oneOnOne", "members": [member(SVC), member("ghost@contoso.example")]}, 404),
    ({"chatType": "oneOnOne", "members": [member(SVC), member("00000000-0000-0000-0000-000000000000")]}, 404),
    ({"chatType": "oneOnOne", "members": [member(SVC), member("O''Brien")]}, 400),
    ([1, 2], 400),
])
def test_invalid_chat_bodies(emu, http, delegated_token, body, status):
    r = http.post(emu.graph_url + "/chats", headers=H(delegated_token), json=body)
    err(r, status)


def test_not_json_is_400(emu, http, delegated_token):
    r = http.post(emu.graph_url + "/chats", headers={**H(delegated_token), "Content-Type": "application/json"},
                  data=b"{not json")
    err(r, 400, "BadRequest")


# ------------------------------------------------------------------------------- get / list

def test_get_chat_and_membership_rule(emu, http, delegated_token, bob_token):
    cid = create_chat(http, emu, delegated_token, "group", [SVC, ALICE, CONOR], topic="t").json()["id"]
    r = http.get(emu.graph_url + f"/chats/{cid}?$expand=members", headers=H(delegated_token))
    assert r.status_code == 200, r.text
    assert len(r.json()["members"]) == 3
    err(http.get(emu.graph_url + f"/chats/{cid}", headers=H(bob_token)), 403, "Forbidden")
    err(http.get(emu.graph_url + "/chats/19:00000000000000000000000000000000@thread.v2", headers=H(delegated_token)),
        404, "NotFound")
    err(http.get(emu.graph_url + "/chats/not-a-chat", headers=H(delegated_token)), 400)


def test_me_chats_pages_with_top_50_and_refuses_51(emu, http, delegated_token):
    others = [u["userPrincipalName"] for u in emu.state.users.values() if u["userPrincipalName"] != SVC]
    created = set()
    for i in range(57):
        r = create_chat(http, emu, delegated_token, "group", [SVC, others[i % len(others)], others[(i + 1) % len(others)]],
                   topic=f"chat {i}")
        created.add(r.json()["id"])
    # one chat without the service account must not be listed
    create_chat(http, emu, msal_helpers.app_token(emu), "group", [BOB, ALICE], topic="not mine")
    err(http.get(emu.graph_url + "/me/chats?$top=51", headers=H(delegated_token)), 400)
    url, seen, pages = emu.graph_url + "/me/chats?$top=50", [], 0
    while url:
        r = http.get(url, headers=H(delegated_token))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["value"]) <= 50
        seen += [c["id"] for c in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
    assert pages == 2 and len(seen) == 57 and set(seen) == created


def test_me_chats_filter_and_expand(emu, http, delegated_token):
    create_chat(http, emu, delegated_token, "oneOnOne", [SVC, BOB])
    create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="Incident 7")
    create_chat(http, emu, delegated_token, "group", [SVC, CONOR], topic="Other")
    base = emu.graph_url + "/me/chats?$filter="

    def topics(expr, extra=""):
        r = http.get(base + quote(expr) + extra, headers=H(delegated_token))
        assert r.status_code == 200, r.text
        return sorted(str(c["topic"]) for c in r.json()["value"])

    assert topics("chatType eq 'group'") == ["Incident 7", "Other"]
    assert topics("chatType eq 'oneOnOne'") == ["None"]
    assert topics("startswith(topic,'Inc')") == ["Incident 7"]
    alice = uid(emu, ALICE)
    assert topics(f"members/any(m: m/userId eq '{alice}')") == ["Incident 7"]
    r = http.get(emu.graph_url + "/me/chats?$expand=members,lastMessagePreview", headers=H(delegated_token))
    for c in r.json()["value"]:
        assert c["lastMessagePreview"] is None
        assert all(m["@odata.type"] == MEMBER_TYPE for m in c["members"])
    for bad in ["$filter=" + quote("shoeSize eq 1"), "$expand=owners", "$orderby=topic", "$top=0"]:
        err(http.get(emu.graph_url + "/me/chats?" + bad, headers=H(delegated_token)), 400)


def test_expand_members_caps_at_25(emu, http, delegated_token):
    # a big group chat: add members straight into the state (the seeded tenant has a dozen users)
    cid = create_chat(http, emu, delegated_token, "group", [SVC, BOB], topic="big").json()["id"]
    from fake_tenant.state import Membership

    with emu.state.lock:
        for i in range(40):
            emu.state.chats[cid].members.append(Membership(f"m{i}", uid(emu, ALICE), []))
    r = http.get(emu.graph_url + "/me/chats?$expand=members", headers=H(delegated_token))
    assert len(r.json()["value"][0]["members"]) == 25


def test_chats_listing_by_caller_kind(emu, http, delegated_token, app_token):
    create_chat(http, emu, delegated_token, "oneOnOne", [SVC, BOB])
    r = http.get(emu.graph_url + "/chats", headers=H(delegated_token))
    assert r.status_code == 200 and len(r.json()["value"]) == 1
    err(http.get(emu.graph_url + "/chats", headers=H(app_token)), 400)
    r = http.get(emu.graph_url + f"/users/{BOB}/chats", headers=H(app_token))
    assert r.status_code == 200 and len(r.json()["value"]) == 1
    assert http.get(emu.graph_url + f"/users/{ALICE}/chats", headers=H(app_token)).json()["value"] == []
    err(http.get(emu.graph_url + f"/users/{BOB}/chats", headers=H(delegated_token)), 403)


# ------------------------------------------------------------------------------- PATCH

def test_patch_topic(emu, http, delegated_token):
    one = create_chat(http, emu, delegated_token, "oneOnOne", [SVC, BOB]).json()["id"]
    group = create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="old").json()["id"]
    err(http.patch(emu.graph_url + f"/chats/{one}", headers=H(delegated_token), json={"topic": "x"}), 400)
    r = http.patch(emu.graph_url + f"/chats/{group}", headers=H(delegated_token), json={"topic": "new 'topic'"})
    assert r.status_code == 204 and r.content == b""
    assert http.get(emu.graph_url + f"/chats/{group}", headers=H(delegated_token)).json()["topic"] == "new 'topic'"
    err(http.patch(emu.graph_url + f"/chats/{group}", headers=H(delegated_token), json={"topic": ["x"]}), 400)


# ------------------------------------------------------------------------------- members

def test_chat_members(emu, http, delegated_token):
    cid = create_chat(http, emu, delegated_token, "group", [SVC, BOB], topic="t").json()["id"]
    r = http.post(emu.graph_url + f"/chats/{cid}/members", headers=H(delegated_token),
                  json={**member(ALICE), "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    assert r.content == b""
    loc = r.headers["Location"]
    assert loc.startswith(f"/chats/{cid}/members/")
    mid = loc.rsplit("/", 1)[1]
    err(http.post(emu.graph_url + f"/chats/{cid}/members", headers=H(delegated_token), json=member(ALICE)),
        409, "Conflict")
    r = http.get(emu.graph_url + f"/chats/{cid}/members", headers=H(delegated_token))
    members = r.json()["value"]
    assert len(members) == 3
    alice = next(m for m in members if m["email"] == ALICE)
    assert alice == {"@odata.type": MEMBER_TYPE, "id": mid, "roles": ["owner"], "displayName": "Alice Johnson",
                     "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z", "userId": uid(emu, ALICE),
                     "email": ALICE, "tenantId": emu.state.tenant_id}
    r = http.get(emu.graph_url + f"/chats/{cid}/members/{mid}", headers=H(delegated_token))
    assert r.status_code == 200 and r.json()["userId"] == uid(emu, ALICE)
    assert http.delete(emu.graph_url + f"/chats/{cid}/members/{mid}", headers=H(delegated_token)).status_code == 204
    err(http.get(emu.graph_url + f"/chats/{cid}/members/{mid}", headers=H(delegated_token)), 404)


def test_members_of_one_on_one_cannot_change(emu, http, delegated_token):
    cid = create_chat(http, emu, delegated_token, "oneOnOne", [SVC, BOB]).json()["id"]
    err(http.post(emu.graph_url + f"/chats/{cid}/members", headers=H(delegated_token), json=member(ALICE)), 400)
    mid = emu.state.chats[cid].members[0].id
    err(http.delete(emu.graph_url + f"/chats/{cid}/members/{mid}", headers=H(delegated_token)), 400)


def test_history_hidden_from_a_member_added_without_history(emu, http, delegated_token):
    cid = create_chat(http, emu, delegated_token, "group", [SVC, CONOR], topic="t").json()["id"]
    r = http.post(emu.graph_url + f"/chats/{cid}/messages", headers=H(delegated_token),
                  json={"body": {"content": "before bob"}})
    assert r.status_code == 201, r.text
    import time

    time.sleep(0.01)
    assert http.post(emu.graph_url + f"/chats/{cid}/members", headers=H(delegated_token),
                     json=member(BOB)).status_code == 201
    http.post(emu.graph_url + f"/chats/{cid}/messages", headers=H(delegated_token), json={"body": {"content": "after"}})
    bob = msal_helpers.delegated_token(emu, login_hint=BOB)
    seen = [m["body"]["content"] for m in http.get(emu.graph_url + f"/chats/{cid}/messages", headers=H(bob)).json()["value"]]
    assert seen == ["after"]
    mine = [m["body"]["content"] for m in
            http.get(emu.graph_url + f"/chats/{cid}/messages", headers=H(delegated_token)).json()["value"]]
    assert mine == ["after", "before bob"]
