"""The fake tenant checks every Graph request against Microsoft's Graph v1.0 metadata
(``fake_tenant/conformance.py``, the slice ``fake_tenant/graph_metadata.json``): unknown paths,
methods, body properties (top level and nested) and ``@odata.type`` are refused as Graph
refuses them; response properties the metadata does not list are flagged."""
import json
import os

import pytest

from fake_tenant import conformance, core
from fake_tenant.build_graph_metadata import build
from fake_tenant.core import Response
from graph_helpers import BOB, SVC, H, err, member, team_id
from integration.dispatch import execute
from msal_helpers import stub_route
from teams_helpers import add_message, make_chat

REFERENCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference", "graph_v1_subset.json")


def test_checks_are_on_by_default(emu, http):
    assert emu.conformance_checks
    r = http.get(emu.base_url + "/_emulator/conformance")
    assert r.status_code == 200 and r.json()["checks"] is True and r.json()["invented"] == []


def test_unknown_body_property_is_400_naming_it(emu, http, delegated_token):
    chat = make_chat(emu, [SVC, BOB], "conformance")
    url = f"{emu.graph_url}/chats/{chat}/messages"
    e = err(http.post(url, headers=H(delegated_token), json={"body": {"content": "hi"}, "importanceLevel": "high"}),
            400, "BadRequest")
    assert "'importanceLevel'" in e["message"] and "microsoft.graph.chatMessage" in e["message"]
    # nested, where the metadata gives the property's type (itemBody)
    e = err(http.post(url, headers=H(delegated_token), json={"body": {"content": "hi", "format": "html"}}),
            400, "BadRequest")
    assert "'format'" in e["message"] and "microsoft.graph.itemBody" in e["message"] and "body.format" in e["message"]
    # in a collection
    e = err(http.post(url, headers=H(delegated_token),
                      json={"body": {"content": "hi"}, "mentions": [{"id": 0, "mentionText": "Bob", "who": "bob"}]}),
            400, "BadRequest")
    assert "'who'" in e["message"] and "mentions[0]" in e["message"]
    ok = http.post(url, headers=H(delegated_token), json={"body": {"content": "hi"}})
    assert ok.status_code == 201, ok.text


def test_unknown_or_incompatible_odata_type_is_400(emu, http, delegated_token):
    chat = make_chat(emu, [SVC, BOB], "types")
    url = f"{emu.graph_url}/chats/{chat}/members"
    body = dict(member("alice.johnson@contoso.example"), **{"@odata.type": "#microsoft.graph.aadUserMember"})
    e = err(http.post(url, headers=H(delegated_token), json=body), 400, "BadRequest")
    assert "microsoft.graph.aadUserMember" in e["message"] and "could not be resolved" in e["message"]
    body["@odata.type"] = "#microsoft.graph.chatMessage"  # a real type, not a conversationMember
    e = err(http.post(url, headers=H(delegated_token), json=body), 400, "BadRequest")
    assert "incompatible type 'microsoft.graph.chatMessage'" in e["message"]


def test_action_parameters_are_checked(emu, http, app_token):
    tid = team_id(emu, next(t.display_name for t in emu.state.teams.values()))
    r = http.post(f"{emu.graph_url}/teams/{tid}/archive", headers=H(app_token), json={"readOnlyForMembers": True})
    e = err(r, 400, "BadRequest")
    assert "'readOnlyForMembers'" in e["message"] and "archive" in e["message"]


def test_unknown_path_is_400_and_unknown_method_405(emu, http, app_token):
    e = err(http.get(emu.graph_url + "/chats/x/widgets", headers=H(app_token)), 400, "BadRequest")
    assert e["message"] == "Resource not found for the segment 'widgets'."
    assert http.put(emu.graph_url + "/chats", headers=H(app_token), json={}).status_code == 405


def test_every_route_is_in_the_metadata_and_the_slice_is_small():
    routes = [core.Route("GET", "/widgets/{id}", lambda c, r: None, *core._compile("/widgets/{id}"))]
    with pytest.raises(RuntimeError, match="widgets"):
        conformance.check_routes(routes)
    assert os.path.getsize(conformance.META_PATH) < 64_000


@pytest.mark.skipif(not os.path.exists(REFERENCE), reason="the reference metadata is outside the repository")
def test_the_vendored_slice_is_what_the_build_script_makes():
    from fake_tenant.server import load_graph_routes

    load_graph_routes()
    with open(REFERENCE, encoding="utf-8") as f:
        src = json.load(f)
    real = [(r.method, r.pattern) for r in core.ROUTES if conformance.norm_path(r.pattern) in conformance.load()["paths"]]
    built = build(src, real)
    vendored = {k: v for k, v in conformance.load().items() if not k.startswith("_")}
    assert built == vendored, "rebuild: python -m fake_tenant.build_graph_metadata <graph_v1_subset.json>"


def test_invented_response_properties_are_flagged(emu, http, delegated_token):
    chat = make_chat(emu, [SVC, BOB], "invented")

    def handler(ctx, req):
        return Response(200, {"@odata.context": "x", "id": "1", "messageType": "message",
                              "body": {"content": "x", "contentType": "text", "colour": "red"},
                              "from": {"user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": "u",
                                                "userIdentityType": "aadUser"}},
                              "senderName": "Bob"})

    with stub_route("GET", "/chats/{chat_id}/messages/{message_id}", handler):
        r = http.get(f"{emu.graph_url}/chats/{chat}/messages/1", headers=H(delegated_token))
    assert r.status_code == 200
    flagged = http.get(emu.base_url + "/_emulator/conformance").json()["invented"]
    assert {(f["type"], f["property"], f["at"]) for f in flagged} == {
        ("chatMessage", "senderName", "senderName"), ("itemBody", "colour", "body.colour")}
    assert all(f["route"] == "/chats/{chat_id}/messages/{message_id}" for f in flagged)
    emu.reset()
    assert emu.conformance == []
    emu.conformance_total["invented"] -= len(flagged)  # provoked on purpose: not the suite's (conftest)


def test_commands_get_only_what_the_metadata_lists(emu, signed_in):
    """A few commands end to end: every Graph request they make passes the checks, and the
    fake tenant's replies carry no property the metadata does not list."""
    chat = make_chat(emu, [SVC, BOB], "IR 7")
    add_message(emu, chat, BOB, "hello")
    execute("chat-list", {"expand": "members"}, signed_in)
    execute("chat-message-list", {"chat": chat}, signed_in)
    execute("message-send-to-chat", {"chat": chat, "content": "from the playbook"}, signed_in)
    execute("team-list", {}, signed_in)
    execute("user-list", {}, signed_in)
    graph = [e for e in emu.request_log if e["path"].startswith("/v1.0")]
    assert len(graph) >= 5
    assert all(e["status"] < 400 for e in graph), graph
    assert emu.conformance == [], emu.conformance
