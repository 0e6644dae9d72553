"""The Bot Connector service (``{serviceUrl}/v3/...``) for the emulator: how a bot notifies
proactively. A bot signs in with client credentials for scope
``https://api.botframework.com/.default``; every call needs that token (audience
``https://api.botframework.com``, ``appid`` of an app registered with ``kind: bot``), else 401.

- ``POST /v3/conversations`` opens (get-or-create) a 1:1 conversation with a user, or names a
  channel (``channelData.channel.id``) and, with an ``activity``, starts a thread there.
- ``POST /v3/conversations/{id}/activities`` sends a message (text and/or Adaptive Card
  attachments); in a channel conversation (the id *is* the channel id) it creates a channel
  thread that Graph then lists as a channel message; ``{channel};messageid={id}`` replies. In
  a 1:1 conversation, Graph lists the message in the user's chat with the app
  (``teams_apps.py``), as it lists a group chat's in that chat: an html body (the text
  escaped) and the cards as attachments, ``from.application`` the bot.
- ``PUT /v3/conversations/{id}/activities/{activityId}`` updates a sent message in place.
- ``GET /v3/conversations/{id}/members`` lists who is in it.
Errors use the Bot Framework shape ``{"error": {"code": ..., "message": ...}}``. With throttling
on, every request counts against the published bot limits (``throttle.py``, ``limits.py``) and
is refused with 429 ``Throttled`` (and ``Retry-After``) beyond them; :meth:`conversation_of`
says which conversation a request counts in.

Emulator choice: Teams user ids are given as ``29:<AAD object id>`` so they round-trip.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import threading
import time
import urllib.parse

from . import teams_apps
from .core import Claims, GraphError, Response, utcnow_iso
from .state import Membership, Message
from .tokens import BOT_AUDIENCE, TokenError

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
MAX_ACTIVITY_BYTES = 28 * 1024  # Teams refuses messages above about 28 KB
_id_lock = threading.Lock()
_last_ms = [0]


def _activity_id() -> str:
    """Teams message ids are epoch milliseconds; keep them unique and increasing."""
    with _id_lock:
        ms = max(int(time.time() * 1000), _last_ms[0] + 1)
        _last_ms[0] = ms
        return str(ms)


class _BotError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def user_mri(user_id: str) -> str:
    return f"29:{user_id}"


class BotConnector:
    def __init__(self, state, tokens):
        self.state = state
        self.tokens = tokens

    # ---- auth / errors ----
    @staticmethod
    def error(status: int, code: str, message: str) -> Response:
        return Response(status, {"error": {"code": code, "message": message}})

    def authenticate(self, headers: dict, tokens=None) -> Claims:
        """The bot behind the bearer token; GraphError(401) for anything else. ``tokens``: the
        token service that issued it when that is not this tenant's (several hosted tenants:
        another tenant's authority or botframework.com's), the app checked against this tenant."""
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "Unauthorized", "Authorization has been denied for this request.")
        try:
            claims = (tokens or self.tokens).verify(token.strip(), BOT_AUDIENCE)
        except TokenError as e:
            raise GraphError(401, "Unauthorized", f"Authorization has been denied for this request. {e}") from None
        app = self.state.app(claims.app_id)
        if app is None or app.kind != "bot":
            raise GraphError(401, "Unauthorized",
                             "Authorization has been denied for this request. The app is not a registered bot.")
        return claims

    # ---- dispatch ----
    def handle(self, method: str, path: str, headers: dict, body: bytes, claims: Claims) -> Response:
        segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
        try:
            if len(segs) < 2 or segs[0] != "v3" or segs[1] != "conversations":
                raise _BotError(404, "NotFound", "Unknown Bot Connector operation.")
            data = None
            if body:
                try:
                    data = json.loads(body)
                except ValueError:
                    raise _BotError(400, "BadSyntax", "The request body is not valid JSON.") from None
            rest = segs[2:]
            if not rest and method == "POST":
                return self.create_conversation(data or {}, claims)
            if len(rest) == 2 and rest[1] == "activities" and method == "POST":
                return self.send(rest[0], data, claims, reply_to=None)
            if len(rest) == 3 and rest[1] == "activities":
                if method == "POST":
                    return self.send(rest[0], data, claims, reply_to=rest[2])
                if method == "PUT":
                    return self.update(rest[0], rest[2], data, claims)
                if method == "DELETE":
                    return self.delete(rest[0], rest[2], claims)
            if len(rest) == 2 and rest[1] == "members" and method == "GET":
                return Response(200, self.members(rest[0]))
            raise _BotError(405 if rest else 404, "BadArgument", f"{method} is not supported here.")
        except _BotError as e:
            return self.error(e.status, e.code, e.message)

    # ---- throttling ----
    def conversation_of(self, method: str, path: str, body: bytes, claims: Claims) -> str | None:
        """The conversation a request acts in, for the per-conversation limits: the one in the
        path (a channel thread ``{channel};messageid={root}`` counts as its channel), or the one
        a conversation-creating request posts its first message to; None for a request that
        acts in none (creating a conversation without a message) or that will be refused."""
        segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
        if len(segs) < 2 or segs[:2] != ["v3", "conversations"]:
            return None
        if len(segs) > 2:
            return segs[2].partition(";messageid=")[0]
        if method != "POST" or not body:
            return None
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not data.get("activity"):
                return None
            channel = ((data.get("channelData") or {}).get("channel") or {}).get("id")
            if channel:
                return str(channel)
            members = data.get("members") or []
            if len(members) != 1:
                return None
            with self.state.lock:
                user = self._resolve_user(members[0])
            return self._personal_conversation_id(claims.app_id, user["id"])
        except (ValueError, TypeError, AttributeError, RecursionError, _BotError):
            return None  # the handler answers the error; the request counts against the app only

    @staticmethod
    def _personal_conversation_id(app_id: str, user_id: str) -> str:
        """One 1:1 conversation per bot and user, so get-or-create finds it again."""
        digest = base64.urlsafe_b64encode(hashlib.sha256(f"{app_id}/{user_id}".encode()).digest()).decode()
        return f"a:1{digest.rstrip('=')[:40]}"

    # ---- helpers ----
    def _resolve_user(self, member: dict) -> dict:
        if not isinstance(member, dict):
            raise _BotError(400, "BadArgument", "Each member must be an object with an id.")
        candidates = [member.get("aadObjectId"), member.get("id")]
        for c in candidates:
            if not c:
                continue
            key = str(c)
            for prefix in ("29:", "8:orgid:", "orgid:"):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            u = self.state.user(key)
            if u is not None:
                return u
        raise _BotError(404, "NotFound", f"User {member.get('id') or member.get('aadObjectId')!r} was not found in "
                                         f"the tenant.")

    def _channel(self, channel_id: str):
        for t in self.state.teams.values():
            ch = t.channels.get(channel_id)
            if ch is not None:
                return t, ch
        return None, None

    def _conversation(self, conv_id: str) -> tuple[dict, str | None]:
        """(conversation record, thread root message id for channel replies)."""
        base, _, tail = conv_id.partition(";messageid=")
        conv = self.state.bot_conversations.get(base)
        if conv is None and base in self.state.chats and self.state.chats[base].chat_type != "oneOnOne":
            # A group chat the bot was added to (a user wrote to it there): a conversation too.
            conv = {"id": base, "type": "groupChat", "isGroup": True, "tenantId": self.state.tenant_id,
                    "chatId": base, "members": [m.user_id for m in self.state.chats[base].members], "botId": None,
                    "created": utcnow_iso()}
            self.state.bot_conversations[base] = conv
        if conv is None:
            team, ch = self._channel(base)
            if ch is None:
                raise _BotError(404, "ConversationNotFound", "Conversation not found.")
            # A channel is a conversation as soon as the bot's team has it; register on first use.
            conv = {"id": base, "type": "channel", "isGroup": True, "tenantId": self.state.tenant_id,
                    "teamId": team.id, "channelId": ch.id, "members": [], "botId": None, "created": utcnow_iso()}
            self.state.bot_conversations[base] = conv
        return conv, (tail or None)

    @staticmethod
    def _validate_activity(data) -> dict:
        if not isinstance(data, dict):
            raise _BotError(400, "BadArgument", "The activity must be a JSON object.")
        kind = data.get("type")
        if kind not in ("message", "typing"):
            raise _BotError(400, "BadArgument", f"Unsupported activity type {kind!r}; use 'message'.")
        if kind == "message":
            atts = data.get("attachments") or []
            if not isinstance(atts, list):
                raise _BotError(400, "BadArgument", "attachments must be a list.")
            if not (data.get("text") or atts):
                raise _BotError(400, "BadArgument", "A message needs text or at least one attachment.")
            for a in atts:
                if not isinstance(a, dict) or not a.get("contentType"):
                    raise _BotError(400, "BadArgument", "Each attachment needs a contentType.")
                if a["contentType"] == ADAPTIVE:
                    c = a.get("content")
                    if not isinstance(c, dict) or c.get("type") != "AdaptiveCard":
                        raise _BotError(400, "BadArgument",
                                        "Adaptive Card content must be an object with \"type\": \"AdaptiveCard\".")
            tf = data.get("textFormat")
            if tf is not None and tf not in ("plain", "markdown", "xml"):
                raise _BotError(400, "BadArgument", f"Unknown textFormat {tf!r}.")
        if len(json.dumps(data).encode()) > MAX_ACTIVITY_BYTES:
            raise _BotError(413, "MessageSizeTooBig", "Message size too large.")
        return data

    def _bot_account(self, claims: Claims) -> dict:
        app = self.state.app(claims.app_id)
        return {"id": f"28:{claims.app_id}", "name": app.name if app else claims.app_id}

    def _graph_message(self, aid: str, activity: dict, claims: Claims, team_id: str, channel_id: str,
                       reply_to: str | None) -> Message:
        atts = []
        html_parts = []
        if activity.get("text"):
            text = activity["text"]
            # Teams renders plain and markdown text as text: as a Graph html body it is escaped
            # (mention tags excepted, which Teams turns into mentions). Only "xml" is markup.
            if (activity.get("textFormat") or "markdown").lower() != "xml":
                text = re.sub(r"&lt;(/?)at&gt;", r"<\1at>", html.escape(text, quote=False))
            html_parts.append(text)
        for i, a in enumerate(activity.get("attachments") or []):
            att_id = hashlib.sha1(f"{aid}/{i}".encode()).hexdigest()[:32]
            content = a.get("content")
            atts.append({"id": att_id, "contentType": a["contentType"],
                         "content": json.dumps(content) if isinstance(content, (dict, list)) else content,
                         "contentUrl": a.get("contentUrl"), "name": a.get("name"), "thumbnailUrl": None})
            html_parts.append(f'<attachment id="{att_id}"></attachment>')
        app = self.state.app(claims.app_id)
        return Message(id=aid, created=utcnow_iso(), body={"contentType": "html", "content": "".join(html_parts)},
                       sender={"application": {"id": claims.app_id, "displayName": app.name if app else None,
                                               "applicationIdentityType": "bot"}, "user": None, "device": None},
                       team_id=team_id, channel_id=channel_id, reply_to_id=reply_to, attachments=atts)

    # ---- operations ----
    def create_conversation(self, data: dict, claims: Claims) -> Response:
        bot = data.get("bot") or {}
        bot_id = str(bot.get("id") or claims.app_id)
        if bot_id.startswith("28:"):
            bot_id = bot_id[3:]
        if bot_id != claims.app_id:
            raise _BotError(403, "BotNotRegistered", "The bot id in the request does not match the token's app id.")
        cd = data.get("channelData") or {}
        tenant = data.get("tenantId") or (cd.get("tenant") or {}).get("id")
        if not tenant:
            raise _BotError(400, "BadArgument", "A tenant id is required (tenantId or channelData.tenant.id).")
        if tenant != self.state.tenant_id:
            raise _BotError(403, "Forbidden", f"The bot is not installed in tenant {tenant}.")
        channel_id = (cd.get("channel") or {}).get("id")
        with self.state.lock:
            if channel_id:
                conv, _ = self._conversation(channel_id)
                if data.get("activity"):
                    resp = self._send_locked(conv, None, data["activity"], claims)
                    aid = resp["id"]
                    return Response(201, {"id": f"{channel_id};messageid={aid}", "activityId": aid})
                return Response(201, {"id": channel_id})
            members = data.get("members") or []
            if data.get("isGroup") or len(members) != 1:
                raise _BotError(400, "BadArgument",
                                "Teams bots can only create one-on-one conversations (exactly one member, isGroup false) "
                                "or post to a channel (channelData.channel.id).")
            user = self._resolve_user(members[0])
            if user["id"] in self.state.bot_uninstalled_users:
                # As Teams answers a bot whose app the user uninstalled (or never had).
                raise _BotError(403, "BotNotInConversationRoster",
                                "The bot is not part of the conversation roster (the app is not installed for the "
                                "user).")
            conv_id = self._personal_conversation_id(claims.app_id, user["id"])
            created = conv_id not in self.state.bot_conversations
            if created:
                self.state.bot_conversations[conv_id] = {
                    "id": conv_id, "type": "personal", "isGroup": False, "tenantId": tenant,
                    "botId": claims.app_id, "members": [user["id"]], "created": utcnow_iso()}
            conv = self.state.bot_conversations[conv_id]
            out = {"id": conv_id}
            if data.get("activity"):
                out["activityId"] = self._send_locked(conv, None, data["activity"], claims)["id"]
        return Response(201, out)

    def send(self, conv_id: str, data, claims: Claims, reply_to: str | None) -> Response:
        with self.state.lock:
            conv, thread = self._conversation(conv_id)
            return Response(201, self._send_locked(conv, reply_to or thread, data, claims))

    def _send_locked(self, conv: dict, reply_to: str | None, data, claims: Claims) -> dict:
        activity = self._validate_activity(data)
        if conv.get("botId") not in (None, claims.app_id):
            raise _BotError(403, "Forbidden", "The conversation belongs to another bot.")
        if (conv["type"] == "personal" and set(conv.get("members") or ()) & self.state.bot_uninstalled_users) or (
                conv["type"] == "channel" and conv.get("teamId") in self.state.bot_removed_teams):
            raise _BotError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
        if activity["type"] == "typing":
            return {"id": ""}
        aid = _activity_id()
        stored = dict(activity, id=aid, timestamp=utcnow_iso(), conversation={"id": conv["id"]},
                      **{"from": self._bot_account(claims)})
        if conv["type"] == "channel":
            team = self.state.teams[conv["teamId"]]
            ch = team.channels.get(conv["channelId"])
            if ch is None:
                raise _BotError(404, "ConversationNotFound", "The channel no longer exists.")
            msg = self._graph_message(aid, activity, claims, team.id, ch.id, reply_to)
            if reply_to:
                root = next((m for m in ch.messages if m.id == reply_to), None)
                if root is None:
                    raise _BotError(404, "NotFound", f"Thread {reply_to} was not found in the channel.")
                root.replies.append(msg)
                stored["replyToId"] = reply_to
            else:
                ch.messages.append(msg)
        elif conv["type"] == "groupChat" and conv.get("chatId") in self.state.chats:
            msg = self._graph_message(aid, activity, claims, None, None, None)
            msg.chat_id, msg.team_id, msg.channel_id = conv["chatId"], None, None
            self.state.chats[conv["chatId"]].messages.append(msg)
            if reply_to:
                stored["replyToId"] = reply_to
        else:
            chat = self._graph_chat(conv)
            if chat is not None:  # a 1:1 conversation: Graph lists it in the user's chat with the app
                msg = self._graph_message(aid, activity, claims, None, None, None)
                msg.chat_id = chat.id
                chat.messages.append(msg)
                chat.updated = msg.created
            if reply_to:
                stored["replyToId"] = reply_to
        self.state.activities[aid] = {"conversationId": conv["id"], "activity": stored, "edits": 0,
                                      "botId": claims.app_id}
        return {"id": aid}

    def _graph_chat(self, conv: dict):
        """The Graph chat a personal or group conversation is (None for a channel, or a personal
        conversation whose user is gone): the user's chat with the app for a 1:1 conversation."""
        if conv["type"] == "groupChat":
            return self.state.chats.get(conv.get("chatId"))
        if conv["type"] != "personal" or not conv.get("botId"):
            return None
        user_id = next(iter(conv.get("members") or ()), None)
        if user_id not in self.state.users:
            return None
        return teams_apps.personal_chat(self.state, conv["botId"], user_id)

    def _mirrored(self, conv: dict, activity_id: str) -> list:
        """The Graph messages that show this activity (in a channel, or a chat)."""
        if conv["type"] == "channel":
            ch = self.state.teams[conv["teamId"]].channels.get(conv["channelId"])
            return [m for m in self._all_messages(ch) if m.id == activity_id]
        chat = self._graph_chat(conv)
        return [m for m in chat.messages if m.id == activity_id] if chat is not None else []

    def _own_activity(self, conv_id: str, activity_id: str, claims: Claims, verb: str) -> tuple[dict, dict]:
        """The conversation and the activity record, which only the bot that sent it may change."""
        conv, _ = self._conversation(conv_id)
        rec = self.state.activities.get(activity_id)
        if rec is None or rec["conversationId"] != conv["id"]:
            raise _BotError(404, "NotFound", "The activity was not found in this conversation.")
        if rec.get("botId") != claims.app_id:
            raise _BotError(403, "Forbidden", f"Only the bot that sent an activity can {verb} it.")
        return conv, rec

    def update(self, conv_id: str, activity_id: str, data, claims: Claims) -> Response:
        with self.state.lock:
            conv, rec = self._own_activity(conv_id, activity_id, claims, "update")
            activity = self._validate_activity(data)
            old = rec["activity"]
            stored = dict(activity, id=activity_id, timestamp=old.get("timestamp"), conversation=old["conversation"],
                          **{"from": old["from"]})
            if old.get("replyToId"):
                stored["replyToId"] = old["replyToId"]
            rec["activity"] = stored
            rec["edits"] += 1
            for m in self._mirrored(conv, activity_id):
                fresh = self._graph_message(activity_id, activity, claims, m.team_id, m.channel_id, m.reply_to_id)
                m.body, m.attachments, m.last_modified = fresh.body, fresh.attachments, utcnow_iso()
        return Response(200, {"id": activity_id})

    @staticmethod
    def _all_messages(ch):
        if ch is None:
            return []
        return [m for root in ch.messages for m in [root, *root.replies]]

    def delete(self, conv_id: str, activity_id: str, claims: Claims) -> Response:
        with self.state.lock:
            conv, rec = self._own_activity(conv_id, activity_id, claims, "delete")
            rec["deleted"] = True
            for m in self._mirrored(conv, activity_id):
                m.body = {"contentType": "html", "content": ""}
                m.last_modified = utcnow_iso()
        return Response(200, {})

    def members(self, conv_id: str) -> list:
        with self.state.lock:
            conv, _ = self._conversation(conv_id)
            if conv["type"] == "channel":
                team = self.state.teams[conv["teamId"]]
                ch = team.channels.get(conv["channelId"])
                ms: list[Membership] = ch.members if ch is not None and ch.membership_type != "standard" else team.members
                ids = [m.user_id for m in ms]
            else:
                ids = list(conv.get("members", []))
            out = []
            for uid in ids:
                u = self.state.users.get(uid)
                if u is None:
                    continue
                out.append({"id": user_mri(uid), "name": u["displayName"], "aadObjectId": uid,
                            "email": u.get("mail"), "userPrincipalName": u.get("userPrincipalName"),
                            "tenantId": self.state.tenant_id, "userRole": "user",
                            "givenName": u.get("givenName"), "surname": u.get("surname")})
            return out
