"""The XSOAR migration table (issue 14, parts 2, 3 and the table): docs/xsoar-migration.md is
generated from the registry and XSOAR's definitions (integration/frontends/xsoar_commands.json) and is
current; every XSOAR command of both integrations has a row; every row runs against the fake
tenant under XSOAR's command name with XSOAR's argument names, and its context holds every path
XSOAR documents for the command. Also: playbooks merging results by key never drop entries of
a nested list (a chat's members)."""
from __future__ import annotations

import json
import re
import textwrap
import uuid
from pathlib import Path

import pytest

from integration.engine import arguments, registry
from integration.frontends import docs
from integration.frontends.cli import main
from integration.dispatch import execute
from integration.engine.errors import ArgumentError, InputError
from integration.playbooks import run_playbook
from integration.playbooks.runner import merge_context
from teams_helpers import add_channel_message, add_message, channel_of, make_chat, team_of, uid

REG = registry.load()
ROOT = Path(__file__).resolve().parents[2]
XSOAR = docs.xsoar_commands()
ROWS = docs.xsoar_rows(REG)
SECOPS, HELPDESK = "Security Operations", "IT Helpdesk"
SVC, BOB, ALICE, GRACE, CONOR = ("soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example",
                                 "grace.kim@contoso.example", "conor.obrien@contoso.example")


# ------------------------------------------------------------------ the table


def test_the_table_is_current():
    text = (ROOT / "docs" / "xsoar-migration.md").read_text(encoding="utf-8")
    assert text == docs.xsoar_markdown(REG), "docs/xsoar-migration.md is stale: run `msteams docs --xsoar --write`"


def test_msteams_docs_xsoar_prints_and_writes_it(tmp_path, capsys):
    assert main(["docs", "--xsoar"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == docs.xsoar_markdown(REG).rstrip("\n")
    target = tmp_path / "x.md"
    assert main(["docs", "--xsoar", "--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == docs.xsoar_markdown(REG)


def test_every_xsoar_command_of_both_integrations_has_a_row():
    counts = {i: len(c) for i, c in XSOAR["integrations"].items()}
    assert counts == {"MicrosoftTeams": 27, "MicrosoftTeamsManagement": 19}  # XSOAR's 46 commands
    table = (ROOT / "docs" / "xsoar-migration.md").read_text(encoding="utf-8")
    for r in ROWS:
        assert f"| `{r['xsoar']['name']}`" in table
        # each resolves to a command of ours by name, or says what to run instead and why
        assert r["spec"] is not None or r["note"], r["xsoar"]["name"]
        assert r["alias"] or r["note"], f"{r['xsoar']['name']}: not an alias, and no note says what to run"


def test_every_xsoar_argument_is_taken_under_its_name():
    refused = [f"{r['xsoar']['name']}: {a}" for r in ROWS if r["spec"] is not None and not r["fixed"]
               for a, ours in r["arguments"].items() if ours is None]
    assert refused == []
    # XSOAR's required arguments are arguments of ours (required, or with a sensible default)
    for r in ROWS:
        if r["spec"] is None:
            continue
        for a in r["xsoar"]["required"]:
            assert arguments.canonical_name(r["spec"], a), f"{r['xsoar']['name']}: {a}"


def test_an_unmapped_command_is_refused_before_any_request(emu, runtime):
    with pytest.raises(InputError) as e:
        execute("mirror-investigation", {"team": SECOPS}, runtime)
    assert e.value.exit_code == 2 and not emu.request_log


# ------------------------------------------------------------------ every row, run


def _split(path: str) -> list[str]:
    return [p.replace("\0", ".") for p in path.replace("@odata.type", "@odata\0type").split(".")]


def _holds(value, parts: list[str]) -> bool:
    """Whether ``parts`` can be followed in ``value`` as XSOAR follows a context path: through
    every item of a list, into objects (the key must be there); a null on the way is Graph's
    null for an absent object (eventDetail of a plain message) and holds."""
    if not parts:
        return True
    if value is None:
        return True
    if isinstance(value, list):
        return all(_holds(v, parts) for v in value)
    if isinstance(value, dict):
        return parts[0] in value and _holds(value[parts[0]], parts[1:])
    return False


def documented_paths_missing(ctx: dict, paths: list[str]) -> list[str]:
    missing = []
    for path in paths:
        key = max((k for k in ctx if path == k or path.startswith(k + ".")), key=len, default=None)
        if key is None:
            missing.append(path + " (nothing under its prefix)")
            continue
        value, rest = ctx[key], _split(path[len(key) + 1:]) if path != key else []
        if isinstance(value, list) and not value:
            missing.append(path + " (no entries)")
        elif not _holds(value, rest):
            missing.append(path)
    return missing


def _send(rt, **args):
    return execute("send-notification", args, rt)


def _membership(emu, team: str, mail: str) -> str:
    u = uid(emu, mail)
    return next(m.id for m in team_of(emu, team).members if m.user_id == u)


def _new_team(emu, rt) -> str:
    r = execute("microsoft-teams-team-create", {"display_name": f"IR {uuid.uuid4().hex[:6]}", "owner": ALICE}, rt)
    return r.outputs[0]["id"]


def _group(emu) -> str:
    gid = str(uuid.uuid4())
    with emu.state.lock:
        emu.state.groups[gid] = {"id": gid, "displayName": "Legal Hold", "description": "counsel", "visibility": "private",
                                 "owners": [uid(emu, GRACE)], "members": [uid(emu, SVC)]}
    return gid


# Each XSOAR command: (what to prepare -> XSOAR's arguments, then what must hold in the tenant).
# The command is always run by XSOAR's name (or, for the rows that are no alias, the row's command
# with its fixed arguments) and its context checked against what XSOAR documents.
def scenario(name: str, emu, rt):
    ch = channel_of(emu, SECOPS, "Incident Response")
    if name in ("send-notification",):
        return {"team": SECOPS, "channel": "Incident Response", "message": "IR-42: isolate WS-17"}, \
            lambda r: ch.messages[-1].body["content"] == "IR-42: isolate WS-17"
    if name == "teams-send-notification-quick-action":
        return {"channel": ch.id, "message": "quick"}, lambda r: ch.messages[-1].body["content"] == "quick"
    if name == "mirror-investigation":
        return {"team": SECOPS, "channel_name": "incident-77", "mirror_type": "all",
                "direction": "both", "autoclose": "true"}, \
            lambda r: r.outputs[0]["incidentId"] == "77" and "incident-77" in {
                c.display_name for c in team_of(emu, SECOPS).channels.values()}
    if name == "close-channel":
        return {"team": HELPDESK, "channel": "Escalations"}, \
            lambda r: "Escalations" not in {c.display_name for c in team_of(emu, HELPDESK).channels.values()}
    if name in ("microsoft-teams-integration-health",):
        return {}, lambda r: r.exit_code == 0 and {x["check"] for x in r.outputs} >= {"app", "delegated", "bot"}
    if name == "microsoft-teams-auth-test":
        return {}, lambda r: [x["status"] for x in r.outputs] == ["ok", "ok"] and r.outputs[1]["flow"] == "bot"
    if name in ("create-channel", "microsoft-teams-create-channel"):
        extra = {"membership_type": "private", "owner_user": ALICE} if name.startswith("microsoft") else {}
        cname = f"IR {name[:6]}"
        return {"team": SECOPS, "channel_name": cname, "description": "war room", **extra}, \
            lambda r: cname in {c.display_name for c in team_of(emu, SECOPS).channels.values()}
    if name in ("add-user-to-channel", "microsoft-teams-add-user-to-channel"):
        extra = {"owner": "true"} if name.startswith("microsoft") else {}
        ti = channel_of(emu, SECOPS, "Threat Intel")
        return {"team": SECOPS, "channel": "Threat Intel", "member": BOB, **extra}, \
            lambda r: uid(emu, BOB) in {m.user_id for m in ti.members}
    if name == "microsoft-teams-ring-user":
        return {"username": "priya.patel@contoso.example"}, lambda r: len(emu.state.calls) == 1
    if name == "microsoft-teams-create-meeting":
        return {"subject": "IR-42 bridge", "member": SVC, "start_time": "2030-05-01T14:30:00Z",
                "end_time": "2030-05-01T15:00:00Z"}, lambda r: len(emu.state.meetings) == 1
    if name == "microsoft-teams-user-remove-from-channel":
        ti = channel_of(emu, SECOPS, "Threat Intel")
        return {"team": SECOPS, "channel_name": "Threat Intel", "member": CONOR}, \
            lambda r: uid(emu, CONOR) not in {m.user_id for m in ti.members}
    if name == "microsoft-teams-channel-user-list":
        return {"team": SECOPS, "channel_name": "Threat Intel"}, lambda r: len(r.outputs) >= 3
    if name == "microsoft-teams-chat-create":
        return {"chat_type": "group", "member": f"{BOB},{ALICE}", "chat_name": "IR 7"}, \
            lambda r: any(c.topic == "IR 7" for c in emu.state.chats.values())
    chat = make_chat(emu, [SVC, BOB, ALICE], "IR 42")
    for text in ("one", "two", "three"):
        add_message(emu, chat, BOB, text)
    if name == "microsoft-teams-message-send-to-chat":
        return {"chat": "IR 42", "content": "containment started", "content_type": "text"}, \
            lambda r: emu.state.chats[chat].messages[-1].body["content"] == "containment started"
    if name == "microsoft-teams-chat-add-user":
        return {"chat": chat, "member": GRACE, "share_history": "false"}, \
            lambda r: uid(emu, GRACE) in {m.user_id for m in emu.state.chats[chat].members}
    if name == "microsoft-teams-chat-member-list":
        return {"chat": "IR 42"}, lambda r: len(r.context()["MicrosoftTeams.ChatList"][0]["members"]) == 3
    if name == "microsoft-teams-message-update":
        sent = _send(rt, team=SECOPS, channel="Incident Response", message="pending")
        mid = sent.context()["MicrosoftTeams.Message"][0]["ID"]
        return {"message_id": mid, "team": SECOPS, "channel": "Incident Response", "message": "approved"}, \
            lambda r: r.context()["MicrosoftTeams.Message"][0]["ID"] == mid and emu.state.activities[mid]["edits"] == 1
    if name == "microsoft-teams-chat-message-list":
        return {"chat": "IR 42", "limit": "2", "order_by": "createdDateTime", "page_size": "2"}, \
            lambda r: [m["body"]["content"] for m in r.context()["MicrosoftTeams.ChatList"][0]["messages"]] \
            == ["three", "two"]
    if name == "microsoft-teams-list-messages":
        for text in ("a", "b"):
            add_channel_message(emu, SECOPS, "Incident Response", BOB, text)
        return {"conversation_id": "Incident Response", "team_name": SECOPS, "limit": "1"}, \
            lambda r: r.context()["MicrosoftTeams.MessagesList"][0]["chatId"] == ch.id \
            and r.context()["MicrosoftTeams.MessagesListMetadata"]["returned_count"] == 1
    if name == "microsoft-teams-chat-list":
        make_chat(emu, [SVC, GRACE], "IR 43")
        return {"limit": "1"}, lambda r: len(r.context()["MicrosoftTeams.ChatList"]) == 1
    if name == "microsoft-teams-chat-update":
        return {"chat": "IR 42", "chat_name": "IR 42 closed"}, lambda r: emu.state.chats[chat].topic == "IR 42 closed"
    if name == "microsoft-teams-generate-login-url":
        return {}, lambda r: "https://" in r.message and "code_challenge" in r.message
    if name == "microsoft-teams-auth-reset":
        return {}, lambda r: not rt.auth.ready("delegated")
    if name == "microsoft-teams-token-permissions-list":
        return {}, lambda r: {x["flow"] for x in r.outputs} >= {"app", "delegated"}
    if name == "microsoft-teams-create-messaging-endpoint":
        return {"engine_url": "https://bot.contoso.example:8443"}, \
            lambda r: r.context()["MicrosoftTeams.MessagingEndpoint"][0]["url"] == "https://bot.contoso.example:8443/api/messages"
    if name == "microsoft-teams-auth-start":  # returns at once: the URL and code, the sign-in pending
        execute("auth-reset", {}, rt)
        return {}, lambda r: not rt.auth.ready("delegated") and rt.auth.device_pending() is not None \
            and r.outputs[0]["userCode"] in r.message
    if name == "microsoft-teams-auth-complete":  # the fake tenant approves the code after the first poll
        execute("auth-reset", {}, rt)
        execute("microsoft-teams-auth-start", {}, rt)
        return {}, lambda r: rt.auth.ready("delegated") and rt.auth.device_pending() is None
    # ---- the Management integration
    if name == "microsoft-teams-team-create":
        return {"display_name": "IR 99", "owner": ALICE, "visibility": "private", "allow_team_mentions": "true",
                "description": "war room"}, \
            lambda r: (lambda t: t.visibility == "private" and t.settings["messagingSettings"]["allowTeamMentions"]
                       and not t.settings["memberSettings"]["allowCreateUpdateChannels"])(emu.state.teams[r.outputs[0]["id"]])
    if name == "microsoft-teams-team-create-from-group":
        gid = _group(emu)
        return {"group_id": gid, "allow_channel_mentions": "true"}, \
            lambda r: gid in emu.state.teams and gid not in emu.state.groups and r.outputs[0]["id"] == gid
    if name == "microsoft-teams-teams-list":
        return {}, lambda r: {x["displayName"] for x in r.outputs} >= {SECOPS, HELPDESK} \
            and all(x["resourceProvisioningOptions"] == ["Team"] for x in r.outputs)
    tid = _new_team(emu, rt)
    if name == "microsoft-teams-team-update":
        return {"team_id": tid, "display_name": "IR renamed", "allow_members_delete_channels": "true"}, \
            lambda r: emu.state.teams[tid].display_name == "IR renamed" \
            and emu.state.teams[tid].settings["memberSettings"]["allowDeleteChannels"] is True
    if name == "microsoft-teams-team-delete":
        return {"team_id": tid}, lambda r: tid not in emu.state.teams
    if name == "microsoft-teams-team-get":
        return {"team_id": tid}, lambda r: r.outputs[0]["id"] == tid
    if name == "microsoft-teams-team-archive":
        return {"team_id": tid}, lambda r: emu.state.teams[tid].archived
    if name == "microsoft-teams-team-unarchive":
        emu.state.teams[tid].archived = True
        return {"team_id": tid}, lambda r: not emu.state.teams[tid].archived
    if name == "microsoft-teams-team-clone":
        src = team_of(emu, SECOPS)
        return {"team_id": src.id, "display_name": "SecOps copy", "clone_apps": "false", "visibility": "private"}, \
            lambda r: {c.display_name for c in emu.state.teams[r.outputs[0]["id"]].channels.values()} \
            == {c.display_name for c in src.channels.values()} and r.outputs[0]["partsToClone"] == "tabs,settings,channels"
    if name == "microsoft-teams-teams-list-joined":
        return {"user_id": uid(emu, BOB)}, lambda r: {x["displayName"] for x in r.outputs} == {SECOPS}
    if name == "microsoft-teams-members-list":
        return {"team_id": HELPDESK}, lambda r: len(r.outputs) == len(team_of(emu, HELPDESK).members)
    mid = _membership(emu, HELPDESK, "liam.murphy@contoso.example")
    if name == "microsoft-teams-member-get":
        return {"team_id": HELPDESK, "membership_id": mid}, lambda r: r.outputs[0]["email"] == "liam.murphy@contoso.example"
    if name == "microsoft-teams-member-add":
        return {"team_id": HELPDESK, "user_id": GRACE, "is_owner": "true"}, \
            lambda r: next(m for m in team_of(emu, HELPDESK).members if m.user_id == uid(emu, GRACE)).roles == ["owner"]
    if name == "microsoft-teams-member-remove":
        return {"team_id": HELPDESK, "membership_id": mid}, lambda r: mid not in {m.id for m in team_of(emu, HELPDESK).members}
    if name == "microsoft-teams-member-update":
        return {"team_id": HELPDESK, "membership_id": mid, "is_owner": "true"}, \
            lambda r: next(m for m in team_of(emu, HELPDESK).members if m.id == mid).roles == ["owner"] \
            and r.outputs[0]["roles"] == ["owner"]
    raise AssertionError(f"no scenario for {name}")


RUNNABLE = [r for r in ROWS if r["spec"] is not None]


@pytest.mark.parametrize("row", RUNNABLE, ids=[f"{r['integration']}:{r['xsoar']['name']}" for r in RUNNABLE])
def test_each_row_runs_under_xsoars_names_and_writes_what_xsoar_documents(emu, signed_in, row):
    x = row["xsoar"]
    args, holds = scenario(x["name"], emu, signed_in)
    assert set(args) <= set(x["arguments"]), "scenarios use XSOAR's argument names only"
    name = x["name"] if row["alias"] else row["spec"].name
    r = execute(name, {**args, **row["fixed"]}, signed_in)
    assert r.command == row["spec"].name
    ctx = r.context()
    assert documented_paths_missing(ctx, x["outputs"]) == []
    for path in (row["spec"].outputs.get("more") or ()):  # what the registry says a handler adds
        assert path in ctx
    assert holds(r), f"{x['name']}: the tenant does not show the effect"
    for fmt in ("table", "json", "context"):
        assert isinstance(r.render(fmt), str)


def test_the_next_links_are_where_xsoar_puts_them(emu, signed_in):
    chat = make_chat(emu, [SVC, BOB], "IR 42")
    for text in ("one", "two"):
        add_message(emu, chat, BOB, text)
    r = execute("microsoft-teams-chat-message-list", {"chat": chat, "limit": 1}, signed_in)
    assert set(r.context()) == {"MicrosoftTeams.ChatList", "MicrosoftTeams.MessageListNextLink"}
    rest = execute("microsoft-teams-chat-message-list", {"chat": chat, "next_link": r.next_link}, signed_in)
    assert [m["body"]["content"] for m in rest.context()["MicrosoftTeams.ChatList"][0]["messages"]] == ["one"]
    make_chat(emu, [SVC, GRACE], "IR 43")
    r = execute("microsoft-teams-chat-list", {"limit": 1}, signed_in)
    assert "MicrosoftTeams.ChatListNextLink" in r.context()


# ------------------------------------------------------------------ the shapes


def test_messages_are_graphs_whole_with_the_sender_as_its_identity_set(emu, signed_in):
    chat = make_chat(emu, [SVC, BOB], "IR 42")
    add_message(emu, chat, BOB, "from a person")
    r = execute("microsoft-teams-chat-message-list", {"chat": chat}, signed_in)
    m = r.context()["MicrosoftTeams.ChatList"][0]["messages"][0]
    assert m["from"]["user"]["displayName"] == "Bob Smith" and m["body"] == {"contentType": "text",
                                                                          "content": "from a person"}
    assert m["fromName"] == "Bob Smith" and m["fromId"] == uid(emu, BOB) and m["fromIdentityType"] in (None, "aadUser")
    assert {"mentions", "attachments", "reactions", "eventDetail", "etag", "locale", "webUrl"} <= set(m)
    # a bot's post: the sender is Graph's application identity
    ch = channel_of(emu, SECOPS, "Incident Response")
    execute("send-notification", {"channel": ch.id, "message": "from the bot"}, signed_in)
    r = execute("microsoft-teams-list-messages", {"conversation_id": "Incident Response", "team_name": SECOPS},
                signed_in)
    bot = r.context()["MicrosoftTeams.MessagesList"][0]["messages"][0]
    assert bot["from"]["application"]["applicationIdentityType"] == "bot" and bot["from"]["user"] is None
    assert bot["fromName"] == "SOAR Bot" and bot["fromIdentityType"] == "bot"


def test_replies_to_a_channel_message(emu, signed_in):
    root = execute("channel-message-send", {"team": SECOPS, "channel": "Incident Response", "content": "root"},
                   signed_in).outputs[0]["ID"]
    for text in ("r1", "r2"):
        execute("channel-message-send", {"team": SECOPS, "channel": "Incident Response", "content": text,
                                         "reply_to": root}, signed_in)
    r = execute("microsoft-teams-list-messages", {"conversation_id": "Incident Response", "team_name": SECOPS,
                                                  "message_id": root}, signed_in)
    assert [m["body"]["content"] for m in r.context()["MicrosoftTeams.MessagesList"][0]["messages"]] == ["r2", "r1"]
    with pytest.raises(ArgumentError) as e:
        execute("microsoft-teams-list-messages", {"conversation_id": "IR 42", "message_id": root}, signed_in)
    assert e.value.argument in ("message_id", "chat")


def test_a_bot_reply_in_a_thread_and_to(emu, signed_in):
    ch = channel_of(emu, SECOPS, "Incident Response")
    root = execute("send-notification", {"team": SECOPS, "channel": "Incident Response", "message": "root"},
                   signed_in).context()["MicrosoftTeams.Message"][0]["ID"]
    r = execute("send-notification", {"team": SECOPS, "channel": "Incident Response", "message": "reply",
                                      "message_id": root}, signed_in)
    assert [m.body["content"] for m in next(m for m in ch.messages if m.id == root).replies] == ["reply"]
    assert r.context()["MicrosoftTeams.Message"][0]["ID"] != root
    r = execute("send-notification", {"to": BOB, "message": "hi"}, signed_in)
    assert r.outputs[0]["recipient"].startswith("Bob Smith")
    with pytest.raises(ArgumentError) as e:
        execute("send-notification", {"to": BOB, "message": "hi", "message_id": root}, signed_in)
    assert e.value.argument == "channel"  # what a reply in a thread lacks (commands.yml's rule)
    assert "is required with message_id (it replies in a channel's thread" in e.value.message


def test_external_form_links_take_the_header(emu, signed_in):
    ch = channel_of(emu, SECOPS, "Incident Response")
    url = "https://xsoar.contoso.example/#/external/form/abc123"
    execute("send-notification", {"channel": ch.id, "message": f"Please fill {url} or see https://docs.example",
                                  "external_form_url_header": "Approval form"}, signed_in)
    body = ch.messages[-1].body["content"]
    assert f"[Approval form]({url})" in body and "[https://docs.example](https://docs.example)" in body


def test_message_update_to_a_team_member_as_a_card(emu, signed_in):
    sent = execute("send-notification", {"team_member": BOB, "message": "pending"}, signed_in)
    aid = sent.context()["MicrosoftTeams.Message"][0]["ID"]
    card = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "approved"}]}
    execute("microsoft-teams-message-update", {"message_id": aid, "team_member": BOB, "message": json.dumps(card),
                                               "format_as_card": "true"}, signed_in)
    act = emu.state.activities[aid]["activity"]
    assert act["attachments"][0]["content"]["body"][0]["text"] == "approved" and not act.get("text")
    with pytest.raises(ArgumentError):
        execute("microsoft-teams-message-update", {"message_id": aid, "message": "x"}, signed_in)


def test_create_messaging_endpoint_from_the_setting(emu, runtime):
    runtime.cfg.bot_public_url = "https://bot.contoso.example/"
    r = execute("microsoft-teams-create-messaging-endpoint", {}, runtime)
    assert r.outputs[0]["url"] == "https://bot.contoso.example/api/messages"
    runtime.cfg.bot_public_url = None
    with pytest.raises(Exception) as e:
        execute("microsoft-teams-create-messaging-endpoint", {}, runtime)
    assert e.value.exit_code == 3 and "bot_public_url" in (e.value.hint or "")
    with pytest.raises(ArgumentError):
        execute("microsoft-teams-create-messaging-endpoint", {"engine_url": "http://1.2.3.4:443"}, runtime)


# ------------------------------------------------------------------ team lifecycle details


def test_team_create_needs_an_owner_app_only_and_is_owned_by_the_caller_delegated(emu, signed_in):
    with pytest.raises(ArgumentError) as e:
        execute("team-create", {"display_name": "No owner"}, signed_in, flow="app")
    assert e.value.argument == "owner" and not [x for x in emu.request_log if x["path"] == "/v1.0/teams"
                                                and x["method"] == "POST"]
    r = execute("team-create", {"display_name": "Mine"}, signed_in, flow="delegated")
    team = emu.state.teams[r.outputs[0]["id"]]
    assert [(m.user_id, m.roles) for m in team.members] == [(uid(emu, SVC), ["owner"])]


def test_archived_teams_refuse_changes_and_the_last_owner_stays(emu, runtime):
    from integration.engine.errors import PermissionDenied, RequestRejected

    tid = execute("team-create", {"display_name": "IR", "owner": ALICE}, runtime).outputs[0]["id"]
    execute("team-archive", {"team": tid, "set_sharepoint_read_only": True}, runtime)
    with pytest.raises((PermissionDenied, RequestRejected)):
        execute("team-update", {"team": tid, "description": "x"}, runtime)
    execute("team-unarchive", {"team": tid}, runtime)
    assert execute("team-update", {"team": tid, "description": "x"}, runtime).outputs[0]["description"] == "x"
    with pytest.raises(RequestRejected):
        execute("team-member-update", {"team": tid, "member": ALICE, "owner": False}, runtime)
    with pytest.raises(ArgumentError):
        execute("team-update", {"team": tid}, runtime)  # nothing to change: no request


def test_the_fake_tenant_refuses_what_graph_refuses(emu, app_token, http):
    base = emu.graph_url
    h = {"Authorization": f"Bearer {app_token}"}
    tid = team_of(emu, SECOPS).id
    assert http.post(f"{base}/teams", json={"displayName": "x"}, headers=h).status_code == 400  # no template
    assert http.post(f"{base}/teams", headers=h, json={
        "template@odata.bind": "https://graph.microsoft.com/v1.0/teamsTemplates('standard')",
        "displayName": "x"}).status_code == 400  # app-only without an owner
    assert http.patch(f"{base}/teams/{tid}", json={"bogus": 1}, headers=h).status_code == 400
    assert http.patch(f"{base}/teams/{tid}", json={"memberSettings": {"allowEverything": True}},
                      headers=h).status_code == 400
    assert http.post(f"{base}/teams/{tid}/clone", json={"displayName": "c"}, headers=h).status_code == 400
    assert http.post(f"{base}/teams/{tid}/clone", json={"visibility": "public", "partsToClone": "messages"},
                     headers=h).status_code == 400
    assert http.delete(f"{base}/groups/{uuid.uuid4()}", headers=h).status_code == 404


def test_team_admin_needs_its_permissions(emu, runtime):
    from integration.engine.errors import PermissionDenied

    app = emu.config()["client_id"]
    granted = set(emu.state.apps[app].application_permissions) - {"Group.ReadWrite.All"}
    emu.set_permissions(app, application=sorted(granted))
    runtime.store.clear(include_tokens=True)
    with pytest.raises(PermissionDenied) as e:
        execute("microsoft-teams-team-archive", {"team_id": SECOPS}, runtime)
    assert "Group.ReadWrite.All" in e.value.permissions and e.value.exit_code == 4


# ------------------------------------------------------------------ merging in playbooks


def test_a_chat_with_three_members_merged_into_playbook_context_keeps_all_three(emu, signed_in, tmp_path):
    chat = make_chat(emu, [SVC, BOB, ALICE], "IR 42")
    pb = tmp_path / "members.yml"
    pb.write_text(textwrap.dedent(f"""\
        name: members
        steps:
          - id: members
            command: microsoft-teams-chat-member-list
            args: {{chat: "{chat}"}}
          - id: add
            command: microsoft-teams-chat-add-user
            args: {{chat: "{chat}", member: "{GRACE}"}}
          - id: again
            command: microsoft-teams-chat-member-list
            args: {{chat: "{chat}"}}
        """))
    r = run_playbook(str(pb), {}, signed_in, out=lambda s: None)
    assert r.status == "ok"
    entries = [e for e in r.context["MicrosoftTeams.ChatList"] if e["chatId"] == chat]
    assert len(entries) == 1
    members = entries[0]["members"]
    assert sorted(m["email"] for m in members) == sorted([SVC, BOB, ALICE, GRACE])
    assert len({m["userId"] for m in members}) == 4  # merged by id, each once


def test_merge_context_merges_nested_lists_by_id_and_replaces_scalar_lists():
    ctx: dict = {}
    merge_context(ctx, {"P": [{"chatId": "c", "members": [{"id": "1", "roles": ["owner"]}, {"id": "2"}]}]}, "chatId")
    merge_context(ctx, {"P": [{"chatId": "c", "members": [{"id": "3"}, {"id": "1", "roles": []}]}]}, "chatId")
    assert ctx == {"P": [{"chatId": "c", "members": [{"id": "1", "roles": []}, {"id": "2"}, {"id": "3"}]}]}


def test_playbooks_may_use_every_context_path_a_command_writes(tmp_path):
    from integration.engine.errors import FileError
    from integration.playbooks import load

    def check(ref: str, command: str, args: str):
        p = tmp_path / "pb.yml"
        p.write_text(textwrap.dedent(f"""\
            name: refs
            steps:
              - id: a
                command: {command}
                args: {args}
              - id: b
                command: ring-user
                args: {{username: "${{steps.a.context.{ref}}}"}}
            """))
        return load(p)

    check("MicrosoftTeams.Message.0.ID", "send-notification", "{user: [x], message: m}")
    check("MicrosoftTeams.MessageListNextLink", "chat-message-list", "{chat: c}")
    check("MicrosoftTeams.MessagesListMetadata.returned_count", "message-list", "{chat: c}")
    with pytest.raises(FileError) as e:
        check("MicrosoftTeams.Call.0.userId", "send-notification", "{user: [x], message: m}")
    assert "'MicrosoftTeams.Message'" in str(e.value)
