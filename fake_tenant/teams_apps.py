"""The fake tenant's Teams apps as Graph shows them: each registered bot (``kind: bot``) is an app
of the tenant's catalog, installed in the personal scope of every user until an admin
uninstalls it for them (``state.bot_uninstalled_users``, the admin API ``uninstall-bot``);
and the 1:1 chat between a user and the app, a ``oneOnOne`` Graph chat whose messages are the
bot's activities in its personal conversation with that user (``bot.py`` mirrors them).

Ids follow Graph's forms: a catalog app id is a GUID; an installation id is base64 of
``{user id}##{catalog app id}``; the user's chat with the app is
``19:{user id}_{bot app id}@unq.gbl.spaces``.

Emulator choices: the catalog lists only the tenant's bots (no Microsoft apps); an app's
manifest id (``teamsApp.externalId``) is its bot id, as many bots' manifests have it; the chat
with the app exists from the first time the bot writes there or Graph is asked for it, and
outlives an uninstall (Teams keeps the history).
"""
from __future__ import annotations

import base64
import binascii

from .core import utcnow_iso
from .state import App, Chat, Membership, TenantState, _membership_id, _stable_guid

APP_VERSION = "1.0.0"


def bots(state: TenantState) -> list[App]:
    return [a for a in state.apps.values() if a.kind == "bot"]


def catalog_id(state: TenantState, app: App) -> str:
    """The app's id in the tenant's app catalog (not its bot id, not its manifest id)."""
    return _stable_guid(state.tenant_id, "teamsApp", app.app_id.lower())


def installation_id(state: TenantState, user_id: str, app: App) -> str:
    return base64.b64encode(f"{user_id}##{catalog_id(state, app)}".encode()).decode()


def installed_for(state: TenantState, user_id: str) -> list[App]:
    """The apps installed in the user's personal scope (call with the state lock held)."""
    if user_id in state.bot_uninstalled_users:
        return []
    return bots(state)


def installation(state: TenantState, user_id: str, inst_id: str) -> App | None:
    """The app of one of the user's installations, by installation id; None when there is none."""
    try:
        raw = base64.b64decode(inst_id.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    uid, sep, app_key = raw.partition("##")
    if not sep or uid.lower() != user_id.lower():
        return None
    return next((a for a in installed_for(state, user_id) if catalog_id(state, a) == app_key.lower()), None)


def teams_app(state: TenantState, app: App) -> dict:
    return {"id": catalog_id(state, app), "externalId": app.app_id, "displayName": app.name,
            "distributionMethod": "organization"}


def app_definition(state: TenantState, app: App, *, with_bot: bool = False) -> dict:
    cid = catalog_id(state, app)
    out = {"id": base64.b64encode(f"{cid}##{APP_VERSION}".encode()).decode(), "teamsAppId": cid,
           "displayName": app.name, "version": APP_VERSION, "publishingState": "published",
           "shortDescription": app.name, "description": app.name, "lastModifiedDateTime": None,
           "createdBy": None}
    if with_bot:
        out["bot"] = {"id": app.app_id}
    return out


def personal_chat_id(app_id: str, user_id: str) -> str:
    return f"19:{user_id.lower()}_{app_id.lower()}@unq.gbl.spaces"


def personal_chat(state: TenantState, app_id: str, user_id: str) -> Chat:
    """The 1:1 chat between the user and the app, made on first use (call with the lock held)."""
    cid = personal_chat_id(app_id, user_id)
    chat = state.chats.get(cid)
    if chat is None:
        now = utcnow_iso()
        chat = Chat(cid, "oneOnOne", None, now, now)
        # The user is the chat's one member: an app is not a conversationMember.
        chat.members.append(Membership(_membership_id(cid, user_id), user_id, ["owner"]))
        state.chats[cid] = chat
    return chat
