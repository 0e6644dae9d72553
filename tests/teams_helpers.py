"""Helpers for command tests: look up and change the emulator's tenant directly (under its lock),
and re-sign the runtime with exactly a given set of permissions."""
from __future__ import annotations

import uuid

from integration.dispatch import execute
from fake_tenant.state import Chat, Membership, Message, Team
from fake_tenant.core import utcnow_iso
from fake_tenant.graph.common import ms_to_iso, new_message_id


def uid(emu, mail: str) -> str:
    return emu.state.user(mail)["id"]


def team_of(emu, name: str) -> Team:
    return next(t for t in emu.state.teams.values() if t.display_name == name)


def channel_of(emu, team: str, name: str):
    return next(c for c in team_of(emu, team).channels.values() if c.display_name == name)


def make_chat(emu, mails: list[str], topic: str | None = None, chat_type: str = "group") -> str:
    """A chat seeded straight into the tenant (no command, no permission needed)."""
    now = utcnow_iso()
    ids = [uid(emu, m) for m in mails]
    if chat_type == "oneOnOne":
        a, b = sorted(i.lower() for i in ids)
        cid = f"19:{a}_{b}@unq.gbl.spaces"
    else:
        cid = f"19:{uuid.uuid4().hex}@thread.v2"
    chat = Chat(cid, chat_type, topic, now, now)
    chat.members = [Membership(f"m-{uuid.uuid4().hex}", i, ["owner"], "0001-01-01T00:00:00Z") for i in ids]
    with emu.state.lock:
        emu.state.chats[cid] = chat
    return cid


def add_message(emu, chat_id: str, sender_mail: str, text: str, created: str | None = None) -> str:
    user = emu.state.user(sender_mail)
    ms = new_message_id()  # ids increase with time, as Graph's do
    mid, when = str(ms), created or ms_to_iso(ms)
    m = Message(mid, when, {"contentType": "text", "content": text},
                {"user": {"id": user["id"], "displayName": user["displayName"]}}, chat_id=chat_id, last_modified=when)
    with emu.state.lock:
        emu.state.chats[chat_id].messages.append(m)
    return mid


def make_owner(emu, team: str, mail: str) -> None:
    """Make a user an owner of a team (Graph lets only owners change a team's membership)."""
    t, u = team_of(emu, team), uid(emu, mail)
    with emu.state.lock:
        m = next((m for m in t.members if m.user_id == u), None)
        if m is None:
            t.members.append(Membership(f"m-{uuid.uuid4().hex}", u, ["owner"]))
        else:
            m.roles = ["owner"]


def duplicate_team(emu, name: str) -> str:
    """A second team with the same display name as ``name``."""
    src = team_of(emu, name)
    tid = str(uuid.uuid4())
    with emu.state.lock:
        emu.state.teams[tid] = Team(tid, name, "a same-named team", "private", list(src.members), {})
    return tid


def grant_exactly(emu, runtime, flow: str, permissions: list[str]) -> None:
    """Grant the app exactly ``permissions`` for ``flow``, drop every token, and sign in again
    (delegated), so the next command runs with a token carrying only those."""
    app = emu.config()["client_id"]
    if flow == "app":
        emu.set_permissions(app, application=list(permissions))
    else:
        emu.set_permissions(app, delegated=list(permissions))
    runtime.store.clear(include_tokens=True)
    runtime._auth = None
    runtime._clients.clear()
    if flow == "delegated":
        execute("auth-login", {}, runtime)


def graph_calls(emu, method: str | None = None) -> list[dict]:
    return [e for e in emu.request_log if e["path"].startswith("/v1.0") and (method is None or e["method"] == method)]


def add_channel_message(emu, team: str, channel: str, sender_mail: str, text: str) -> str:
    ch = channel_of(emu, team, channel)
    user = emu.state.user(sender_mail)
    ms = new_message_id()
    mid, when = str(ms), ms_to_iso(ms)
    m = Message(mid, when, {"contentType": "text", "content": text},
                {"user": {"id": user["id"], "displayName": user["displayName"]}}, team_id=ch.team_id,
                channel_id=ch.id, last_modified=when)
    with emu.state.lock:
        ch.messages.append(m)
    return mid
