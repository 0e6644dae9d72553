"""Conversation references learned from inbound activities (the bot installed in a personal
scope, a team or a group chat; members added; any message), kept in the store's
``conversations`` table so that ``send-notification`` writes into a conversation Teams already
knows, through the service URL Teams gave, instead of opening one through the configured URL.

Keys (per bot, so two bots sharing a store do not mix):

- ``user/{bot}/{aad object id}``: the bot's 1:1 (personal) conversation with that user;
- ``channel/{bot}/{channel id}``: a channel of a team the bot is in (a team's General channel
  has the team's id);
- ``team/{bot}/{group id}``: a team the bot is installed in (by its group's object id; its
  conversation is the General channel, whose thread id Teams calls the team id);
- ``chat/{bot}/{chat id}``: a group chat the bot is in;
- ``service/{bot}/{service url}``: a service URL Teams gave (the bot token may be sent there);
- ``opened/{bot}/{aad object id}``: the 1:1 conversation the bot itself opened with that user
  through the Bot Connector (``send-notification`` to someone who never wrote to the bot);
- ``tenant/{bot}/{tenant id}``: the service URL Teams last gave for that tenant, which replaces
  the one stored with each of the tenant's conversations (Teams moves a tenant between regions).

A reference Teams no longer honours (404 ConversationNotFound, 403 BotNotInConversationRoster:
a chat deleted, the app uninstalled, the bot removed from a team) is marked ``gone`` rather
than deleted (the record of where the bot was stays) and is not used again until Teams tells
the bot about the conversation anew.

Values carry ``conversationId``, ``serviceUrl``, ``tenantId`` and what else the activity said
(names, team, users' object ids). Only activities whose token was verified reach here, so the
service URL is Microsoft's word, not the sender's.
"""
from __future__ import annotations

import re
import time
from typing import Any

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _user_oid(account: dict) -> str | None:
    oid = _id(account.get("aadObjectId"))
    if oid:
        return oid
    raw = _id(account.get("id")) or ""
    return raw[3:] if raw.startswith("29:") and len(raw) == 39 else None


def tenant_of(activity: dict) -> str | None:
    cd = activity.get("channelData") if isinstance(activity.get("channelData"), dict) else {}
    conv = activity.get("conversation") if isinstance(activity.get("conversation"), dict) else {}
    tenant = cd.get("tenant") if isinstance(cd.get("tenant"), dict) else {}
    return _id(tenant.get("id")) or _id(conv.get("tenantId"))


def describe(activity: dict) -> dict:
    """Where an activity happened: conversation type and id (thread part dropped), team and
    channel ids and names, tenant."""
    conv = activity.get("conversation") if isinstance(activity.get("conversation"), dict) else {}
    cd = activity.get("channelData") if isinstance(activity.get("channelData"), dict) else {}
    conv_id = _id(conv.get("id")) or ""
    base = conv_id.partition(";messageid=")[0]
    ctype = _id(conv.get("conversationType")) or ("personal" if not conv.get("isGroup") else "groupChat")
    team = cd.get("team") if isinstance(cd.get("team"), dict) else {}
    channel = cd.get("channel") if isinstance(cd.get("channel"), dict) else {}
    return {"type": ctype, "conversationId": conv_id, "baseId": base, "tenantId": tenant_of(activity),
            "teamId": _id(team.get("id")), "teamName": _id(team.get("name")),
            "teamAadGroupId": _id(team.get("aadGroupId")),
            "channelId": _id(channel.get("id")) or (base if ctype == "channel" else None),
            "channelName": _id(channel.get("name"))}


class KeptReferences:
    """A store as ``learn`` uses it (conversation_get, conversation_put), each reference read
    once: for work that sees one snapshot of the store (a lane group of the bot endpoint, whose
    activities mostly come from the same few conversations). What it writes it keeps too."""

    def __init__(self, store):
        self.store = store
        self._kept: dict = {}

    def conversation_get(self, key: str) -> dict | None:
        if key not in self._kept:
            self._kept[key] = self.store.conversation_get(key)
        value = self._kept[key]
        return dict(value) if value is not None else None  # a caller's changes stay its own

    def conversation_put(self, key: str, kind: str, value: dict) -> None:
        self.store.conversation_put(key, kind, value)
        self._kept[key] = dict(value)


def _put_changed(store, key: str, kind: str, value: dict, prev: dict | None) -> None:
    """Write a reference unless the stored one (``prev``) says the same: every field but
    ``learnedAt`` equal (a reference marked ``gone`` is not, so learning it again clears the
    mark). ``learnedAt`` is thus when the reference was learned as it stands; a message in a
    known conversation costs a read, not a write."""
    if prev is not None and len(prev) == len(value) and all(
            k == "learnedAt" or (k in prev and prev[k] == v) for k, v in value.items()):
        return
    store.conversation_put(key, kind, value)


def learn(store, bot_id: str, activity: dict, *, clock=time.time, where: dict | None = None) -> list[str]:
    """Record what ``activity`` tells about where the bot may write; the keys (re)confirmed.
    A reference already stored as the activity tells it is not written again (_put_changed).
    ``where``: ``describe(activity)``, when the caller has it already."""
    service_url = _id(activity.get("serviceUrl"))
    if not service_url:
        return []
    where = where or describe(activity)
    if not where["baseId"]:
        return []
    now = clock()
    common = {"serviceUrl": service_url, "tenantId": where["tenantId"], "botId": bot_id, "learnedAt": now}
    skey = _service_key(bot_id, service_url)
    if store.conversation_get(skey) is None:
        store.conversation_put(skey, "service", {"serviceUrl": service_url, "botId": bot_id, "learnedAt": now})
    written = [skey]
    if where["tenantId"]:
        tkey = f"tenant/{bot_id}/{where['tenantId'].lower()}"
        if (store.conversation_get(tkey) or {}).get("serviceUrl") != service_url:
            store.conversation_put(tkey, "tenant", {"serviceUrl": service_url, "tenantId": where["tenantId"],
                                                    "botId": bot_id, "learnedAt": now})
        written.append(tkey)
    sender = activity.get("from") if isinstance(activity.get("from"), dict) else {}
    oid = _user_oid(sender)
    members = [m for m in activity.get("membersAdded") or [] if isinstance(m, dict)]
    member_oids = [o for o in (_user_oid(m) for m in members) if o]
    if where["type"] == "personal":
        if oid:
            key = f"user/{bot_id}/{oid.lower()}"
            _put_changed(store, key, "user", dict(common, conversationId=where["baseId"], userId=oid,
                                                  userName=_id(sender.get("name")), type="personal"),
                         store.conversation_get(key))
            written.append(key)
        return written
    if where["type"] == "channel":
        team_id = where["teamId"]  # Teams' team id is its General channel's thread id
        if team_id:
            key = f"team/{bot_id}/{(where['teamAadGroupId'] or team_id).lower()}"
            stored = store.conversation_get(key)
            prev = stored or {}
            users = sorted(set(prev.get("userIds") or []) | set(member_oids))
            _put_changed(store, key, "team", dict(common, conversationId=team_id, teamId=team_id,
                                                  teamName=where["teamName"] or prev.get("teamName"),
                                                  aadGroupId=where["teamAadGroupId"] or prev.get("aadGroupId"),
                                                  userIds=users, type="team"), stored)
            written.append(key)
        channel_id = where["channelId"]
        if channel_id:
            key = f"channel/{bot_id}/{channel_id}"
            stored = store.conversation_get(key)
            prev = stored or {}
            _put_changed(store, key, "channel", dict(common, conversationId=channel_id, channelId=channel_id,
                                                     teamId=team_id or prev.get("teamId"),
                                                     channelName=where["channelName"] or prev.get("channelName"),
                                                     type="channel"), stored)
            written.append(key)
        return written
    # group chat
    key = f"chat/{bot_id}/{where['baseId']}"
    stored = store.conversation_get(key)
    prev = stored or {}
    users = sorted(set(prev.get("userIds") or []) | set(member_oids) | ({oid} if oid else set()))
    _put_changed(store, key, "chat", dict(common, conversationId=where["baseId"], userIds=users, type="groupChat"),
                 stored)
    written.append(key)
    return written


def _usable(ref: dict | None, tenant: str | None = None) -> dict | None:
    if not ref or ref.get("gone"):
        return None
    theirs, ours = (ref.get("tenantId") or "").strip().lower(), (tenant or "").strip().lower()
    if theirs and _GUID.fullmatch(ours) and theirs != ours:  # tenant_id may be a domain name: no check then
        # A reference of another tenant (a store shared before tenant profiles, or copied): the
        # bot must not write into another customer's conversation. Refused before any request.
        from integration.engine.errors import PermissionDenied

        raise PermissionDenied(f"the stored conversation {str(ref.get('conversationId'))[:60]!r} belongs to tenant "
                               f"{theirs[:36]!r}, not {tenant[:36]!r}: not sent", flow="bot",
                               hint="run the command with that tenant's profile (--tenant NAME)")
    return ref


def personal(store, bot_id: str, user_id: str, tenant: str | None = None) -> dict | None:
    """The learned 1:1 conversation of the bot with a user (by object id), or None; with
    ``tenant``, one of another tenant is refused (PermissionDenied), never used."""
    return _usable(store.conversation_get(_personal_key(bot_id, user_id)), tenant)


def channel(store, bot_id: str, channel_id: str, tenant: str | None = None) -> dict | None:
    return _usable(store.conversation_get(_channel_key(bot_id, channel_id)), tenant)


def _personal_key(bot_id: str, user_id: str) -> str:
    return f"user/{bot_id}/{user_id.strip().lower()}"


def _channel_key(bot_id: str, channel_id: str) -> str:
    return f"channel/{bot_id}/{channel_id.strip()}"


def opened(store, bot_id: str, user_id: str, tenant: str | None = None) -> dict | None:
    """The 1:1 conversation the bot opened with a user (conversationId), or None. A store
    written before these had their own key kept them in the directory cache: read there too."""
    ref = _usable(store.conversation_get(_opened_key(bot_id, user_id)), tenant)
    if ref is None and store.conversation_get(_opened_key(bot_id, user_id)) is None:
        legacy = store.get("bot_conversation", f"{bot_id}/{user_id}")
        if legacy and legacy.get("id"):
            ref = remember_opened(store, bot_id, user_id, legacy["id"], None)
    return ref


def remember_opened(store, bot_id: str, user_id: str, conversation_id: str, tenant_id: str | None, *,
                    clock=time.time) -> dict:
    ref = {"conversationId": conversation_id, "userId": user_id, "botId": bot_id, "tenantId": tenant_id,
           "openedAt": clock(), "type": "personal"}
    store.conversation_put(_opened_key(bot_id, user_id), "opened", ref)
    return ref


def _opened_key(bot_id: str, user_id: str) -> str:
    return f"opened/{bot_id}/{user_id.strip().lower()}"


def tenant_service_url(store, bot_id: str, tenant_id: str | None) -> str | None:
    """The service URL Teams last gave for this tenant, if an activity from it was verified."""
    if not tenant_id:
        return None
    return (store.conversation_get(f"tenant/{bot_id}/{tenant_id.strip().lower()}") or {}).get("serviceUrl")


# What the Bot Connector answers when a stored conversation no longer takes the bot's messages.
GONE_CODES = frozenset({"ConversationNotFound", "BotNotInConversationRoster"})


def gone(exc: BaseException) -> bool:
    """True when Teams said the conversation is gone or the bot is not in it (any more)."""
    return getattr(exc, "code", None) in GONE_CODES


def mark_gone(store, bot_id: str, kind: str, target_id: str, why: str, *, clock=time.time) -> None:
    """Stop using a learned reference Teams refused (kind ``user`` or ``channel``); its record
    stays, marked, until Teams tells the bot about that conversation again (:func:`learn`)."""
    keys = ([(_personal_key(bot_id, target_id), "user"), (_opened_key(bot_id, target_id), "opened")]
            if kind == "user" else [(_channel_key(bot_id, target_id), "channel")])
    for key, key_kind in keys:
        ref = store.conversation_get(key)
        if ref and not ref.get("gone"):
            store.conversation_put(key, key_kind, dict(ref, gone=why, goneAt=clock()))
    if kind == "user":  # a store written before opened conversations had their own key
        store.delete("bot_conversation", f"{bot_id}/{target_id}")


def _service_key(bot_id: str, service_url: str) -> str:
    return f"service/{bot_id}/{service_url.rstrip('/')}"


def bot_client_for(runtime, service_url: str | None):
    """The Bot Connector client for a service URL: the runtime's own when the URL is on the
    configured origin or was never learned (that client then refuses to send the bot token
    elsewhere), else one for that URL with the same bot sign-in and pacer. A service URL is
    learned only from a verified activity (:func:`learn`)."""
    base = runtime.client("bot")
    if not service_url or service_url.startswith(base.origin + "/") or service_url.rstrip("/") == base.origin:
        return base
    if runtime.store.conversation_get(_service_key(runtime.cfg.bot_id, service_url)) is None:
        return base
    clients = runtime.__dict__.setdefault("_learned_bot_clients", {})
    key = service_url.rstrip("/")
    if key not in clients:
        from integration.graph.client import Client

        cfg = runtime.cfg
        clients[key] = Client(key, runtime.auth.provider("bot"), verify=cfg.verify, timeout=cfg.timeout,
                              max_retries=cfg.max_retries, retry_budget=cfg.retry_budget_seconds,
                              sleep=runtime.sleep, service="Bot Connector", pacer=runtime.pacer)
    return clients[key]


def activities_url(service_url: str, conversation_id: str) -> str:
    from integration.graph.client import seg

    return f"{service_url.rstrip('/')}/v3/conversations/{seg(conversation_id)}/activities"
