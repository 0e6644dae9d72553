"""The playbooks shipped in playbooks/, end to end against the emulator: the requests each one
makes (emu.request_log), what the tenant holds afterwards, and the final context."""
import json

import pytest

from integration.playbooks import run_playbook
from integration.playbooks.loader import LIBRARY_DIR

ROOT = LIBRARY_DIR
WAR_ROOM = ROOT / "incident-war-room.yml"
ACCESS = ROOT / "access-request.yml"
ACCESS_RESOLVE = ROOT / "access-request-resolve.yml"
ALERT = ROOT / "alert-notify.yml"
PAGE = ROOT / "page-oncall.yml"
HOSTILE = "${inputs.incident_id} {{7*7}} $${x} \"double\" 'single' <script>alert('x')</script> &amp; @Bob Smith; `id`"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
RESPONDERS = ["conor.obrien@contoso.example", "Zoë Müller"]


def run(path, inputs, rt):
    lines = []
    r = run_playbook(path, inputs, rt, out=lines.append)
    r.lines = lines
    return r


def calls(emu, since=0):
    """(method, path) of Graph and Bot Connector requests, in order."""
    return [(e["method"], e["path"]) for e in emu.request_log[since:]
            if e["path"].startswith(("/v1.0", "/botframework"))]


def posts(emu, suffix, since=0):
    return [p for m, p in calls(emu, since) if m == "POST" and p.endswith(suffix)]


def uid(emu, mail):
    return emu.state.user(mail)["id"]


def team_of(emu, name):
    return next(t for t in emu.state.teams.values() if t.display_name == name)


def activities_to(emu, conversation_id):
    return [a for a in emu.state.activities.values() if a["conversationId"] == conversation_id]


def card_of(activity):
    [att] = [a for a in activity["activity"].get("attachments", []) if a["contentType"] == ADAPTIVE]
    return att["content"]


def card_texts(card):
    out = []

    def visit(node):
        if isinstance(node, dict):
            for k in ("text", "value", "title"):
                if isinstance(node.get(k), str):
                    out.append(node[k])
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)
    visit(card)
    return out


# ------------------------------------------------------------------ incident-war-room

def test_war_room_chat_meeting_cards_and_brief(emu, signed_in):
    r = run(WAR_ROOM, {"incident_id": "IR-4711", "title": "Suspicious OAuth consent", "severity": "high",
                       "responders": RESPONDERS}, signed_in)
    assert r.status == "ok", r.lines
    chat = emu.state.chats[r.outputs["chat_id"]]
    assert chat.chat_type == "group" and chat.topic == "IR-4711 Suspicious OAuth consent"
    members = {emu.state.users[m.user_id]["mail"] for m in chat.members}
    assert members == {"conor.obrien@contoso.example", "zoe.muller@contoso.example", "soar-svc@contoso.example"}
    # the brief: plain text, with the bridge link
    brief = chat.messages[-1].body
    assert brief["contentType"] == "text" and r.outputs["meeting_url"] in brief["content"]
    assert brief["content"].startswith("IR-4711 (high): Suspicious OAuth consent. Bridge: https://")
    # the meeting, organized by the signed-in account, with the responders
    [meeting] = emu.state.meetings.values()
    assert meeting["subject"] == "IR-4711 bridge: Suspicious OAuth consent"
    assert r.outputs["meeting_url"] == meeting["joinWebUrl"]
    # one incident card to each responder, 1:1 through the bot, its button opening the bridge
    refs = r.outputs["card_refs"]
    assert [x["status"] for x in refs] == ["sent", "sent"] and all(x["messageRef"] for x in refs)
    for ref in refs:
        [act] = activities_to(emu, ref["conversationId"])
        card = card_of(act)
        assert card["body"][0]["text"] == "Incident IR-4711"
        assert card["actions"][0]["url"] == meeting["joinWebUrl"]
    # no call below critical, and no channel
    assert r.step("ring")["status"] == "skipped" and r.outputs["call"] == "skipped"
    assert r.step("channel")["status"] == "skipped" and not emu.state.calls
    # the requests, in order
    seq = calls(emu)
    order = [seq.index(("POST", "/v1.0/chats")), seq.index(("POST", "/v1.0/me/onlineMeetings")),
             seq.index(("POST", "/botframework/v3/conversations")),
             seq.index(("POST", f"/v1.0/chats/{chat.id}/messages"))]
    assert order == sorted(order)
    assert not posts(emu, "/communications/calls") and not [p for m, p in seq if "/channels" in p]
    # the final context: the chat (with its message), the meeting, the notifications
    ctx = r.context
    assert ctx["MicrosoftTeams.ChatList"][0]["chatId"] == chat.id
    assert ctx["MicrosoftTeams.CreateMeeting"][0]["joinWebUrl"] == meeting["joinWebUrl"]
    assert len(ctx["MicrosoftTeams.Notification"]) == 2


def test_war_room_critical_rings_the_on_call_user(emu, signed_in):
    r = run(WAR_ROOM, {"incident_id": "IR-1", "title": "Ransomware", "severity": "critical",
                       "responders": RESPONDERS, "oncall": "priya.patel@contoso.example"}, signed_in)
    assert r.status == "ok", r.lines
    [call] = emu.state.calls.values()
    assert call["targets"][0]["identity"]["user"]["id"] == uid(emu, "priya.patel@contoso.example")
    assert r.outputs["call"] == "ok" and r.outputs["call_id"] == call["id"]
    assert r.context["MicrosoftTeams.Call"][0]["callId"] == call["id"]
    assert posts(emu, "/communications/calls") == ["/v1.0/communications/calls"]


def test_war_room_failed_call_is_reported_and_the_room_stays(emu, signed_in):
    emu.faults.add(method="POST", path=r"/communications/calls", status=500, count=5)
    r = run(WAR_ROOM, {"incident_id": "IR-2", "title": "x", "severity": "critical", "responders": RESPONDERS,
                       "oncall": "Priya Patel"}, signed_in)
    assert r.status == "ok" and r.outputs["call"] == "failed" and r.outputs["chat_id"] in emu.state.chats
    assert "HTTP 500" in r.step("ring")["error"]


def test_war_room_private_channel(emu, signed_in):
    r = run(WAR_ROOM, {"incident_id": "IR-77", "title": "Data exfiltration", "severity": "medium",
                       "responders": ["conor.obrien@contoso.example", "Bob Smith"], "private_channel": True,
                       "team": "Security Operations", "oncall": "Priya Patel"}, signed_in)
    assert r.status == "ok", r.lines
    team = team_of(emu, "Security Operations")
    chan = team.channels[r.outputs["channel_id"]]
    assert chan.display_name == "IR-77" and chan.membership_type == "private" and chan.description == "Data exfiltration"
    members = {emu.state.users[m.user_id]["mail"]: m.roles for m in chan.members}
    assert members["conor.obrien@contoso.example"] == ["owner"] and "bob.smith@contoso.example" in members
    # the card is posted into the channel, not to each responder; no group chat, no brief
    [act] = activities_to(emu, chan.id)
    assert card_of(act)["body"][1]["text"] == "Data exfiltration"
    assert r.outputs["card_refs_channel"][0]["status"] == "sent" and r.outputs["card_refs"] is None
    assert [c.chat_type for c in emu.state.chats.values()] == ["meeting"]  # the bridge's chat only
    assert r.step("brief")["status"] == "skipped"
    assert posts(emu, f"/teams/{team.id}/channels") and not posts(emu, "/v1.0/chats")
    assert r.context["MicrosoftTeams.ChannelList"][0]["channelId"] == chan.id


def test_war_room_hostile_title_arrives_literally(emu, signed_in):
    r = run(WAR_ROOM, {"incident_id": "IR-666", "title": HOSTILE, "responders": RESPONDERS}, signed_in)
    assert r.status == "ok", r.lines
    chat = emu.state.chats[r.outputs["chat_id"]]
    assert chat.topic == f"IR-666 {HOSTILE}"
    assert chat.messages[-1].body["contentType"] == "text" and HOSTILE in chat.messages[-1].body["content"]
    [meeting] = emu.state.meetings.values()
    assert meeting["subject"] == f"IR-666 bridge: {HOSTILE}"
    for ref in r.outputs["card_refs"]:
        [act] = activities_to(emu, ref["conversationId"])
        assert HOSTILE in card_texts(card_of(act))
        assert act["activity"]["textFormat"] == "plain" and "entities" not in act["activity"]  # no @mention parsed


# ------------------------------------------------------------------ page-oncall

def test_page_oncall_rings(emu, runtime):
    r = run(PAGE, {"oncall": "Priya Patel", "reason": "IR-1", "wait": 0}, runtime)  # rings only
    assert r.status == "ok", r.lines
    [call] = emu.state.calls.values()
    assert r.outputs == {"call": "ok", "call_id": call["id"], "call_error": None, "message": "skipped",
                         "message_ref": None, "outcome": None}
    assert posts(emu, "/communications/calls") == ["/v1.0/communications/calls"]
    assert not [p for m, p in calls(emu) if p.startswith("/botframework")]
    assert r.context["MicrosoftTeams.Call"][0]["userName"] == "Priya Patel"


def test_page_oncall_sends_a_message_when_the_call_is_not_possible(emu, runtime):
    app = emu.config()["client_id"]
    emu.set_permissions(app, application=sorted(set(emu.state.apps[app].application_permissions)
                                                - {"Calls.Initiate.All"}))
    r = run(PAGE, {"oncall": "priya.patel@contoso.example", "reason": HOSTILE, "wait": 0}, runtime)
    assert r.status == "ok", r.lines
    assert r.outputs["call"] == "failed" and "Calls.Initiate.All" in r.outputs["call_error"]
    assert r.outputs["message"] == "ok" and r.outputs["message_ref"]
    assert not emu.state.calls
    assert any("on_error: recovering with step 'message'" in x for x in r.lines)
    # the 1:1 conversation is with the on-call user, the reason in it literally
    [conv] = [c for c in emu.state.bot_conversations.values() if not c.get("isGroup")]
    [act] = activities_to(emu, conv["id"])
    assert act["activity"]["text"].endswith(HOSTILE) and act["activity"]["textFormat"] == "plain"
    assert uid(emu, "priya.patel@contoso.example") in conv["members"]
    seq = calls(emu)
    assert seq.index(("POST", "/v1.0/communications/calls")) < seq.index(("POST", "/botframework/v3/conversations"))
    assert r.context["MicrosoftTeams.Notification"][0]["status"] == "sent"


def test_page_oncall_fails_when_neither_call_nor_message_works(emu, runtime):
    r = run(PAGE, {"oncall": "nobody@contoso.example", "reason": "x"}, runtime)
    assert r.status == "failed" and r.failed_step == "message" and r.exit_code == 5
    assert r.step("ring")["status"] == "failed" and not emu.state.activities


# ------------------------------------------------------------------ access-request and its resolution

ROLE_MAP = {"prod-admin": ["grace.kim@contoso.example", "nobody@contoso.example"],
            "*": ["Security Operations/Incident Response", "Grace Kim"]}


def request(emu, rt, **extra):
    inputs = {"request_id": "REQ-42", "requester": "bob.smith@contoso.example", "roles": ["prod-admin", "db-reader"],
              "reason": "Hotfix for INC-7", "role_to_recipients": ROLE_MAP, "suggested_reviewers": ["Alice Johnson"],
              "fallback": ["hannah.schmidt@contoso.example"], **extra}
    r = run(ACCESS, inputs, rt)
    # The playbook asks (one question, a card per reviewer) and waits for the decision
    # (tests/teams/test_ask.py clicks); the cards it sent are the question's.
    assert r.status == "waiting", r.lines
    route = r.step("route")["outputs"]
    r.outputs = {"message_refs": rt.store.question_get(r.waiting_for)["value"]["refs"],
                 "recipients": route["recipients"], "unresolved": route["unresolved"], "failed": []}
    return r


def test_access_request_routes_by_role_and_posts_cards(emu, runtime):
    r = request(emu, runtime)
    ir = next(c for c in team_of(emu, "Security Operations").channels.values() if c.display_name == "Incident Response")
    got = [(x["kind"], x.get("displayName") or x.get("name"), x["source"]) for x in r.outputs["recipients"]]
    assert got == [("user", "Grace Kim", "prod-admin"), ("channel", "Incident Response", "db-reader"),
                   ("user", "Alice Johnson", "suggested"), ("user", "Hannah Schmidt", "fallback")]
    assert [u["recipient"] for u in r.outputs["unresolved"]] == ["nobody@contoso.example"]
    refs = r.outputs["message_refs"]
    assert len(refs) == 4 and all(refs) and not r.outputs["failed"]
    # four cards: three 1:1 conversations and one channel post, each a pending approval card
    convs = [runtime.store.get_message_ref(ref)["conversationId"] for ref in refs]
    assert convs[1] == ir.id
    for conv in convs:
        [act] = activities_to(emu, conv)
        card = card_of(act)
        assert card["body"][0]["inlines"][0]["text"] == "Access request REQ-42"
        assert {"title": "Status", "value": "Pending"} in _facts(card)
        assert [a["title"] for a in card["actions"]] == ["Approve", "Deny"]
    bot = [p for m, p in calls(emu) if p.startswith("/botframework")]
    assert bot.count("/botframework/v3/conversations") == 3  # one 1:1 conversation per user, none for the channel
    assert len([p for p in bot if p.endswith("/activities")]) == 4
    assert r.context["MicrosoftTeams.Recipients"][-1]["status"] == "unresolved"


@pytest.mark.parametrize("status, reviewer", [("approved", "Grace Kim"), ("denied", "Grace Kim"), ("expired", "")])
def test_access_request_resolve_updates_the_same_cards_in_place(emu, runtime, status, reviewer):
    sent = request(emu, runtime)
    before = {aid: dict(a) for aid, a in emu.state.activities.items()}
    since = len(emu.request_log)
    r = run(ACCESS_RESOLVE, {"message_refs": sent.outputs["message_refs"], "request_id": "REQ-42",
                             "requester": "bob.smith@contoso.example", "roles": ["prod-admin", "db-reader"],
                             "status": status, "reviewer": reviewer, "comment": "ok for 4h"}, runtime)
    assert r.status == "ok", r.lines
    assert r.outputs["status"] == status and len(r.outputs["updated"]) == 4 and not r.outputs["failed"]
    # the same activities, edited once each: nothing new was posted
    assert set(emu.state.activities) == set(before)
    for aid, a in emu.state.activities.items():
        assert a["edits"] == 1 and a["conversationId"] == before[aid]["conversationId"]
        card = card_of(a)
        assert card["body"][0]["text"] == f"Access request REQ-42: {status}"
        assert {"title": "Status", "value": status} in card["body"][1]["facts"]
        assert "actions" not in card
    methods = [(m, p.rsplit("/", 1)[0].endswith("/activities")) for m, p in calls(emu, since)]
    assert methods == [("PUT", True)] * 4
    assert {x["edits"] for x in r.context["MicrosoftTeams.Notification"]} == {1}


def test_access_request_resolve_skips_missing_refs_and_reports_unknown_ones(emu, runtime):
    sent = request(emu, runtime)
    refs = [sent.outputs["message_refs"][0], None, "no-such-ref"]
    r = run(ACCESS_RESOLVE, {"message_refs": refs, "request_id": "REQ-42", "requester": "x", "roles": ["r"],
                             "status": "denied"}, runtime)
    assert r.status == "ok"
    items = r.step("update")["items"]
    assert [i["status"] for i in items] == ["ok", "skipped", "failed"]
    assert r.outputs["failed"] == ["no-such-ref"] and "not found" in items[2]["error"]


def test_access_request_hostile_values_arrive_literally_on_the_card(emu, runtime):
    r = request(emu, runtime, requester=HOSTILE, reason=HOSTILE, request_id="REQ-<b>1</b>",
                role_to_recipients={"*": ["Grace Kim"]}, suggested_reviewers=[], fallback=[])
    [ref] = r.outputs["message_refs"]
    [act] = activities_to(emu, runtime.store.get_message_ref(ref)["conversationId"])
    card = card_of(act)
    assert card["body"][0]["inlines"][0]["text"] == "Access request REQ-<b>1</b>"
    assert _facts(card)[:2] == [{"title": "Requester", "value": HOSTILE}, {"title": "Reason", "value": HOSTILE}]
    assert {k: v for k, v in card["actions"][0]["data"].items() if k != "token"} == {
        "msteamsQuestion": r.waiting_for, "answer": "approved"}


def _facts(card) -> list[dict]:
    """The question card's "Title: value" lines (RichTextBlocks of literal TextRuns)."""
    return [{"title": b["inlines"][0]["text"].removesuffix(": "), "value": b["inlines"][1]["text"]}
            for b in card["body"] if b.get("type") == "RichTextBlock" and len(b.get("inlines") or []) == 2]


def test_access_request_with_nobody_reachable_fails_at_routing(emu, runtime):
    r = run(ACCESS, {"request_id": "R", "requester": "x", "roles": ["r"],
                     "role_to_recipients": {"*": ["nobody@contoso.example"]}}, runtime)
    assert r.status == "failed" and r.failed_step == "route" and r.exit_code == 5
    assert "nobody@contoso.example" in str(r.error) and not emu.state.activities


# ------------------------------------------------------------------ alert-notify

def alert(rt, recipients, fallback=("alice.johnson@contoso.example",), **extra):
    return run(ALERT, {"title": "Impossible travel", "message": "Lisbon then Singapore in 10 minutes",
                       "severity": "high", "recipients": list(recipients), "fallback": list(fallback), **extra}, rt)


def test_alert_all_delivered_no_fallback(emu, runtime):
    r = alert(runtime, ["bob.smith@contoso.example", "Security Operations/Incident Response"])
    assert r.status == "ok", r.lines
    assert r.outputs["delivered"] == ["Bob Smith", "Incident Response"]
    assert [i["status"] for i in r.outputs["report"]] == ["ok", "ok"]
    assert r.outputs["failed"] == [] and r.outputs["unresolved"] == [] and r.outputs["fallback"] == "skipped"
    assert r.step("fallback_route")["status"] == "skipped"
    assert len(emu.state.activities) == 2
    for a in emu.state.activities.values():
        assert card_of(a)["body"][0]["text"] == "Impossible travel"
    assert {x["status"] for x in r.context["MicrosoftTeams.Notification"]} == {"sent"}


def test_alert_unknown_recipient_uses_the_fallback(emu, runtime):
    r = alert(runtime, ["nobody@contoso.example", "bob.smith@contoso.example", "https://evil.example/l/channel/x"])
    assert r.status == "ok", r.lines
    assert r.outputs["delivered"] == ["Bob Smith"]
    reasons = {u["recipient"]: u["reason"] for u in r.outputs["unresolved"]}
    assert reasons["nobody@contoso.example"].startswith("not found")
    assert "not a Teams host" in reasons["https://evil.example/l/channel/x"]
    assert r.outputs["fallback"] == "ok"
    assert r.outputs["fallback_delivered"] == ["Alice Johnson"]
    alice = runtime.store.get_message_ref(r.step("fallback_notify")["outputs"]["ref"][0])
    [act] = activities_to(emu, alice["conversationId"])
    assert "fallback recipient" in act["activity"]["text"] and card_of(act)["body"][0]["text"] == "Impossible travel"
    assert len(emu.state.activities) == 2  # Bob and the fallback; nothing for the unresolved ones


def test_alert_failed_delivery_uses_the_fallback_and_reports_it(emu, runtime):
    emu.faults.add(method="POST", path=r"thread\.tacv2/activities$", status=500, count=1)
    r = alert(runtime, ["Security Operations/Incident Response", "bob.smith@contoso.example"],
              fallback=["Alice Johnson", "Security Operations/General"])
    assert r.status == "ok", r.lines
    report = {i["item"]["recipient"]: (i["status"], i["error"]) for i in r.outputs["report"]}
    assert report["bob.smith@contoso.example"] == ("ok", None)
    status, error = report["Security Operations/Incident Response"]
    assert status == "failed" and "HTTP 500" in error
    assert [f["name"] for f in r.outputs["failed"]] == ["Incident Response"]
    assert r.outputs["fallback_delivered"] == ["Alice Johnson", "General"]
    seq = [p for m, p in calls(emu) if m == "POST" and p.endswith("/activities")]
    assert len(seq) == 4  # IR channel (failed), Bob, then Alice and General


def test_alert_nobody_resolved_still_reaches_the_fallback(emu, runtime):
    r = alert(runtime, ["nobody@contoso.example"])
    assert r.status == "ok", r.lines
    assert r.step("route")["status"] == "failed" and "nobody@contoso.example" in r.outputs["routing_error"]
    assert r.step("notify")["status"] == "skipped" and r.outputs["fallback"] == "ok"


def test_alert_without_fallback_reports_the_failure(emu, runtime):
    r = alert(runtime, ["nobody@contoso.example", "Bob Smith"], fallback=())
    assert r.status == "ok" and r.step("fallback_route")["status"] == "skipped"
    assert [u["recipient"] for u in r.outputs["unresolved"]] == ["nobody@contoso.example"]


def test_alert_hostile_message_arrives_literally(emu, runtime):
    r = alert(runtime, ["Bob Smith"], title=HOSTILE, message=HOSTILE)
    assert r.status == "ok", r.lines
    [act] = emu.state.activities.values()
    body = card_of(act)["body"]
    assert body[0]["text"] == HOSTILE and body[2]["text"] == HOSTILE


# ------------------------------------------------------------------ all of them

def test_war_room_critical_without_an_on_call_user_rings_nobody(emu, signed_in):
    r = run(WAR_ROOM, {"incident_id": "IR-3", "title": "x", "severity": "critical", "responders": RESPONDERS}, signed_in)
    assert r.status == "ok" and r.step("ring")["status"] == "skipped" and not emu.state.calls


SAMPLE_INPUTS = {
    WAR_ROOM: {"incident_id": "IR-1", "title": "t", "responders": RESPONDERS, "severity": "critical", "oncall": "x@y"},
    PAGE: {"oncall": "x@y", "reason": "r"},
    ACCESS: {"request_id": "R", "requester": "x", "roles": ["a"], "role_to_recipients": ROLE_MAP},
    ACCESS_RESOLVE: {"message_refs": ["m"], "request_id": "R", "requester": "x", "roles": ["a"], "status": "expired"},
    ALERT: {"title": "t", "message": "m", "recipients": ["x@y"], "fallback": ["z@y"]},
}


@pytest.mark.parametrize("path", sorted(SAMPLE_INPUTS), ids=lambda p: p.name)
def test_shipped_playbooks_plan_without_a_request(emu, runtime, path):
    before = len(emu.request_log)
    r = run_playbook(path, SAMPLE_INPUTS[path], runtime, dry_run=True, out=lambda s: None)
    assert r.status == "planned", r.error
    assert len(emu.request_log) == before


def test_every_shipped_playbook_is_tested_here():
    assert set(ROOT.glob("*.yml")) == set(SAMPLE_INPUTS)


def test_cli_runs_a_shipped_playbook_with_json_inputs(emu, tmp_path, monkeypatch):
    from integration.frontends.cli import main

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "cli-store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    out, err = [], []
    code = main(["--config", conf, "--output", "json", "playbook", "run", str(ACCESS), "--input", "request_id=REQ-9",
                 "--input", "requester=bob.smith@contoso.example", "--input", "roles=prod-admin,db-reader",
                 "--input", 'role_to_recipients={"*": ["Grace Kim"]}'], out=out.append, err=err.append)
    assert code == 0, err
    doc = json.loads(out[-1])
    assert doc["status"] == "waiting" and doc["waiting_for"] and doc["run_id"]  # for the reviewers' decision
    route = next(st for st in doc["steps"] if st["id"] == "route")
    assert route["outputs"]["recipients"][0]["sources"] == ["prod-admin", "db-reader"]
