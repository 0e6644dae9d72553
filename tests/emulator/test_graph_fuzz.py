"""Hostile input on every Graph route: odd bodies, odd query options, odd path segments. Any
answer but a 5xx is acceptable; a 500 is a bug in a handler."""
from __future__ import annotations

import itertools
import re
from urllib.parse import quote

import pytest

from graph_helpers import ALICE, BOB, SVC, H, create_chat
from fake_tenant.core import ROUTES

BODIES = [None, b"", b"{", b"[]", b"\"text\"", b"null", b"42", b"{\"a\":" + b"[" * 2000 + b"]" * 2000 + b"}",
          {}, {"body": None}, {"body": {"content": None, "contentType": 5}}, {"members": [None, 1, "x", {}]},
          {"chatType": "group", "members": [{"@odata.type": "#microsoft.graph.aadUserConversationMember",
                                             "roles": [None], "user@odata.bind": 5}]},
          {"displayName": None, "membershipType": [], "members": {}},
          {"requests": [{"id": None, "method": None, "url": None}]},
          {"requests": [{"id": "1", "method": "GET", "url": "/users", "headers": [], "dependsOn": "x"}]},
          {"requests": [{"id": "1", "method": "POST", "url": "/$batch", "headers": {"Content-Type": "application/json"},
                         "body": {"requests": []}}]},
          {"startDateTime": "9999-99-99T99:99:99Z", "endDateTime": {}, "participants": {"attendees": [None]}},
          {"callbackUri": "https://x", "targets": [None, {"identity": []}], "requestedModalities": [None],
           "mediaConfig": []},
          {"topic": {"x": 1}, "visibleHistoryStartDateTime": "yesterday", "policyViolation": "x"},
          {"mentions": [{"id": True, "mentionText": None, "mentioned": None}], "attachments": [None],
           "body": {"content": "<at id=\"1\">x</at>"}}]

QUERIES = ["$top=-1", "$top=1e9", "$top=%20", "$filter=%27", "$filter=" + quote("a eq 'b' or (c"),
           "$filter=" + quote("x/any(y:y/z/w eq 1)"), "$select=%00", "$expand=members(%24top%3D1)",
           "$orderby=" + quote("a desc desc"), "$skiptoken=%FF%FE", "$search=" + quote('"a:b" OR'),
           "$count=true", "$top=1&$top=2"]

SEGMENTS = ["%27", "%2F", "..", "%00", "19:x@thread.v2", "00000000-0000-0000-0000-000000000000", "x" * 3000,
            "%F0%9F%92%A9", "me"]


def _fill(pattern: str, ids: dict, odd: str | None = None) -> str:
    def sub(m):
        return odd if odd is not None else ids.get(m.group(1), "x")

    return re.sub(r"\{(\w+)\}", sub, pattern)


@pytest.fixture
def ids(emu, http, delegated_token, app_token) -> dict:
    """Real ids, so that hostile bodies reach the handlers' validation rather than a 404."""
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    ch = next(c for c in team.channels.values() if c.membership_type == "private")
    auth = H(delegated_token)
    chat = create_chat(http, emu, delegated_token, "group", [SVC, BOB, ALICE], topic="t").json()["id"]
    chat_msg = http.post(emu.graph_url + f"/chats/{chat}/messages", headers=auth,
                         json={"body": {"content": "x"}}).json()["id"]
    chan_url = emu.graph_url + f"/teams/{team.id}/channels/{quote(ch.id)}/messages"
    root = http.post(chan_url, headers=auth, json={"body": {"content": "x"}}).json()["id"]
    reply = http.post(f"{chan_url}/{root}/replies", headers=auth, json={"body": {"content": "x"}}).json()["id"]
    call = http.post(emu.graph_url + "/communications/calls", headers=H(app_token), json={
        "callbackUri": "https://x.example/cb", "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": emu.state.user(BOB)["id"]}}}]}).json()["id"]
    chat_member = emu.state.chats[chat].members[-1].id
    return {"user_id": BOB, "group_id": team.id, "team_id": team.id, "channel_id": quote(ch.id),
            "membership_id": ch.members[-1].id, "chat_id": chat, "message_id": chat_msg, "reply_id": reply,
            "call_id": call, "_chat_member": chat_member, "_root": root}


def _ids_for(pattern: str, ids: dict) -> dict:
    out = dict(ids)
    if pattern.startswith("/chats/"):
        out["membership_id"] = ids["_chat_member"]
    if "/channels/" in pattern:
        out["message_id"] = ids["_root"]
    return out


def _send(http, emu, token, method, url, body):
    headers = H(token)
    if isinstance(body, (dict, list)):
        return http.request(method, url, headers=headers, json=body)
    if body is not None:
        headers["Content-Type"] = "application/json"
    return http.request(method, url, headers=headers, data=body)


def test_no_route_crashes_on_hostile_input(emu, http, app_token, delegated_token, ids):
    failures = []
    for route in ROUTES:
        tokens = [delegated_token] if route.pattern.startswith("/me") else [app_token, delegated_token]
        rids = _ids_for(route.pattern, ids)
        urls = [_fill(route.pattern, rids, s) for s in SEGMENTS if "{" in route.pattern]
        for token in tokens:
            for url in urls:
                r = _send(http, emu, token, route.method, emu.graph_url + url, None)
                if r.status_code >= 500:
                    failures.append((route.method, url[:80], "-", r.status_code))
            base = emu.graph_url + _fill(route.pattern, rids)
            if route.method in ("POST", "PATCH"):
                for body in BODIES:
                    r = _send(http, emu, token, route.method, base, body)
                    if r.status_code >= 500:
                        failures.append((route.method, route.pattern, repr(body)[:80], r.status_code))
            if route.method == "GET":
                for qs in QUERIES:
                    r = _send(http, emu, token, "GET", base + "?" + qs, None)
                    if r.status_code >= 500:
                        failures.append((route.method, route.pattern, qs, r.status_code))
    assert failures == []
    assert not [x for x in emu.request_log if x["status"] >= 500]


def test_batch_items_with_hostile_urls(emu, http, app_token):
    urls = ["/users/%27", "users?$filter=%27", "/users/" + "%" * 10, "?", "/", "//users", "/../users",
            "/users?$top=1&$top=2", "/v1.0/users", "/users#frag", "\u202e/users"]
    reqs = [{"id": str(i), "method": m, "url": u, **({"headers": {"Content-Type": "application/json"}, "body": {}}
                                                       if m == "POST" else {})}
            for i, (u, m) in enumerate(itertools.product(urls, ["GET"]))]
    r = http.post(emu.graph_url + "/$batch", headers=H(app_token), json={"requests": reqs})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert all(x["status"] < 500 for x in r.json()["responses"]), r.json()
