"""Conversations heal (issue 24, part 1): a send whose stored conversation Teams no longer takes
(404 ConversationNotFound after a chat was deleted or the tenant forgot it; 403
BotNotInConversationRoster once the bot was taken away) drops that reference, opens the user's
conversation again once and sends; a user without the app, or a team without the bot, fails by
name with a hint, never as "outcome unknown"; a learned service URL that does not answer falls
back to the configured one. Against the fake tenant's Bot Connector, over real HTTP."""
from __future__ import annotations

import socket

import pytest

from integration.dispatch import execute
from integration.engine.errors import PermissionDenied
from integration.teams import conversations

BOB = "bob.smith@contoso.example"


def sent_to(emu, user_mail: str) -> list[str]:
    uid = emu.state.user(user_mail)["id"]
    return [a["activity"].get("text") for a in emu.state.activities.values()
            if uid in (emu.state.bot_conversations.get(a["conversationId"], {}).get("members") or [])]


def test_a_conversation_teams_forgot_is_opened_again_and_the_message_sent(emu, runtime):
    first = execute("send-notification", {"user": BOB, "message": "one"}, runtime)
    assert first.outputs[0]["status"] == "sent"
    emu.teams.forget_conversations(user=BOB)  # as after the tenant restarted or the chat was deleted
    again = execute("send-notification", {"user": BOB, "message": "two"}, runtime)
    assert again.outputs[0]["status"] == "sent" and again.exit_code == 0
    assert sent_to(emu, BOB) == ["one", "two"]  # Teams gives the same 1:1 conversation id again
    creates = [e for e in emu.request_log if e["method"] == "POST" and e["path"].endswith("/v3/conversations")]
    assert len(creates) == 2  # opened once at first, once more to heal
    third = execute("send-notification", {"user": BOB, "message": "three"}, runtime)
    assert third.outputs[0]["status"] == "sent" and sent_to(emu, BOB) == ["one", "two", "three"]


def test_a_learned_conversation_refused_is_marked_gone_not_reused(emu, runtime):
    execute("send-notification", {"user": BOB, "message": "one"}, runtime)
    uid = emu.state.user(BOB)["id"]
    conv_id = next(iter(emu.state.bot_conversations))
    conversations.learn(runtime.store, runtime.cfg.bot_id, {
        "type": "message", "serviceUrl": runtime.cfg.bot_service_url, "conversation": {"id": conv_id,
        "conversationType": "personal"}, "from": {"id": f"29:{uid}", "aadObjectId": uid},
        "channelData": {"tenant": {"id": emu.state.tenant_id}}})
    assert conversations.personal(runtime.store, runtime.cfg.bot_id, uid)
    emu.teams.forget_conversations(user=BOB)
    assert execute("send-notification", {"user": BOB, "message": "two"}, runtime).outputs[0]["status"] == "sent"
    assert conversations.personal(runtime.store, runtime.cfg.bot_id, uid) is None  # no longer used
    assert runtime.store.conversation_get(f"user/{runtime.cfg.bot_id}/{uid.lower()}")["gone"]  # but kept


def test_a_user_who_uninstalled_the_app_fails_by_name_and_heals_once_reinstalled(emu, runtime):
    execute("send-notification", {"user": BOB, "message": "before"}, runtime)
    emu.teams.uninstall_bot(user=BOB)
    with pytest.raises(PermissionDenied) as e:
        execute("send-notification", {"user": BOB, "message": "while away"}, runtime)
    assert "the app is not installed for this user" in str(e.value) and "install the app" in e.value.hint
    assert "unknown" not in str(e.value)
    rows = execute("send-notification", {"user": [BOB, "priya.patel@contoso.example"], "message": "both"},
                   runtime)
    assert rows.exit_code == 6 and [r["status"] for r in rows.outputs] == ["failed", "sent"]
    assert "not installed" in rows.outputs[0]["error"]
    emu.teams.install_bot(user=BOB) if emu.teams.messaging_endpoint else emu.state.bot_uninstalled_users.clear()
    assert execute("send-notification", {"user": BOB, "message": "back"}, runtime).outputs[0]["status"] == "sent"


def test_a_team_without_the_bot_fails_by_name(emu, runtime):
    r = execute("send-notification", {"team": "Security Operations", "channel": "General", "message": "hi"}, runtime)
    assert r.outputs[0]["status"] == "sent"
    emu.teams.uninstall_bot(team="Security Operations")
    with pytest.raises(PermissionDenied) as e:
        execute("send-notification", {"team": "Security Operations", "channel": "General", "message": "again"},
                runtime)
    assert "the bot is no longer in this team" in str(e.value) and "add the app to the team" in e.value.hint


def test_a_dead_learned_service_url_falls_back_to_the_configured_one(emu, runtime):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/botframework"  # closed at once: refused
    uid = emu.state.user(BOB)["id"]
    # What a verified activity from a tenant moved elsewhere would have taught the store.
    conversations.learn(runtime.store, runtime.cfg.bot_id, {
        "type": "message", "serviceUrl": dead, "conversation": {"id": "a:old", "conversationType": "personal"},
        "from": {"id": f"29:{uid}", "aadObjectId": uid}, "channelData": {"tenant": {"id": emu.state.tenant_id}}})
    r = execute("send-notification", {"user": BOB, "message": "through the configured URL"}, runtime)
    assert r.outputs[0]["status"] == "sent" and sent_to(emu, BOB)[-1] == "through the configured URL"
    ref = runtime.store.get_message_ref(r.outputs[0]["messageRef"])
    assert ref["serviceUrl"] == runtime.cfg.bot_service_url


def test_the_tenant_service_url_teams_last_gave_replaces_the_stored_ones(emu, runtime):
    uid = emu.state.user(BOB)["id"]
    tenant = emu.state.tenant_id
    base = runtime.cfg.bot_service_url
    conversations.learn(runtime.store, runtime.cfg.bot_id, {
        "type": "message", "serviceUrl": base + "/", "conversation": {"id": "a:x", "conversationType": "personal"},
        "from": {"id": f"29:{uid}", "aadObjectId": uid}, "channelData": {"tenant": {"id": tenant}}})
    assert conversations.tenant_service_url(runtime.store, runtime.cfg.bot_id, tenant).rstrip("/") == base.rstrip("/")
