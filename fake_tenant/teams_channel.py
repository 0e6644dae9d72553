"""The Teams side of the fake tenant: simulated users who write to the bot and install it,
delivered to the bot's messaging endpoint as Teams delivers them.

- Bot Framework-style signing: an RSA key of its own (not Entra's), published as OpenID
  metadata (``/botframework-login/v1/.well-known/openidconfiguration``) and a key set whose key
  is endorsed for ``msteams``, over the emulator's HTTPS; every activity goes out with
  ``Authorization: Bearer <JWT>`` (issuer ``https://api.botframework.com``, audience the bot's
  app id, ``serviceurl`` the emulator's Bot Connector, five minutes of life).
- The messaging endpoint is a setting, as an Azure Bot's is: :meth:`register` (the admin API
  ``POST /_emulator/messaging-endpoint``, ``msteams emulator serve --messaging-endpoint URL``,
  or ``msteams bot serve`` itself against the emulator). https, or http on loopback only.
- :meth:`user_says` posts a message as a user in the bot's 1:1 chat, a channel (a new thread,
  the bot @mentioned) or a group chat; :meth:`install_bot` sends ``installationUpdate`` (and,
  for a team, ``conversationUpdate`` with the bot among ``membersAdded``). The user's message
  is also added to the channel or chat, so Graph lists it and the bot's reply threads under it.
- :attr:`deliveries` records what was sent where and the endpoint's status (never the token).
  The bot's answers arrive through the Bot Connector (``bot.py``) as any bot message does.
"""
from __future__ import annotations

import html
import ipaddress
import threading
import time
import urllib.parse
from typing import Callable

import jwt

from .bot import BotConnector, _activity_id, user_mri
from .core import Response, utcnow_iso
from .tokens import signing_key
from .state import Message

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
METADATA_PATH = "/botframework-login/v1/.well-known/openidconfiguration"
KEYS_PATH = "/botframework-login/v1/.well-known/keys"
TOKEN_LIFETIME = 300
DELIVERY_TIMEOUT = 15.0  # Teams gives up on a bot after about 15 seconds


class ChannelError(Exception):
    """A simulated action that cannot happen (unknown user, team, endpoint); ``status`` for the admin API."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _asks(activity: dict, question: str | None) -> bool:
    """Whether a bot message is a card of the question (a button's data names it)."""
    for att in activity.get("attachments") or []:
        for a in (att.get("content") or {}).get("actions") or [] if isinstance(att, dict) else []:
            if isinstance(a, dict) and isinstance(a.get("data"), dict) and a["data"].get("msteamsQuestion") == question:
                return True
    return False


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TeamsChannel:
    """The Teams side of one tenant. With several hosted tenants (``Emulator(tenants=N)``) the
    first tenant's channel is the hub: the others are its peers (``hub=``), which share its
    signing key (Teams signs for every tenant with the Bot Framework's keys), its messaging
    endpoint (the bot's, one for all tenants) and its deliveries. A simulated user's action
    asked of the hub is done by the channel of the tenant the user (or team) is in, so the
    activity carries that tenant (``conversation.tenantId``, ``channelData.tenant.id``)."""

    def __init__(self, state, base_url: str, bot_service_url: str, ca_bundle: str | None = None,
                 clock: Callable[[], float] = time.time, hub: "TeamsChannel | None" = None):
        self.state = state
        self.base_url = base_url
        self.bot_service_url = bot_service_url
        self.ca_bundle = ca_bundle  # what https endpoints are checked against, besides the system's
        self.clock = clock
        self._hub = hub
        self.peers: list[TeamsChannel] = []  # the other hosted tenants' channels (on the hub)
        if hub is None:
            self._key, self.kid, self._jwk = signing_key(endorsements=["msteams"])
        else:
            self._key, self.kid, self._jwk = hub._key, hub.kid, hub._jwk
            hub.peers.append(self)
        self.messaging_endpoint: str | None = None
        self.deliveries: list[dict] = []
        self._lock = threading.Lock()
        self._session = None

    # ---- several hosted tenants ----
    def _where(self, user: str | None = None, team: str | None = None) -> "TeamsChannel":
        """The channel of the tenant ``user`` (else ``team``, by id or name) is in: this one when
        it has them (or nobody has them: this one then says so), else a peer's."""
        if not self.peers:
            return self
        for ch in [self, *self.peers]:
            if user and ch._find_user(user) is not None:
                return ch
            if not user and team and ch._find_team(team) is not None:
                return ch
        return self

    # ---- the Bot Framework's OpenID metadata ----
    @property
    def metadata_url(self) -> str:
        return self.base_url + METADATA_PATH

    def openid_configuration(self) -> dict:
        return {"issuer": BOT_FRAMEWORK_ISSUER, "authorization_endpoint": f"{self.base_url}/botframework-login/v1/auth",
                "jwks_uri": self.base_url + KEYS_PATH, "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"]}

    def jwks(self) -> dict:
        return {"keys": [dict(self._jwk)]}

    def handle(self, method: str, path: str) -> Response | None:
        if path not in (METADATA_PATH, KEYS_PATH):
            return None
        if method != "GET":
            return Response(405, {"error": {"code": "MethodNotAllowed", "message": "GET only"}})
        body = self.openid_configuration() if path == METADATA_PATH else self.jwks()
        return Response(200, body, {"Cache-Control": "max-age=86400"})

    def sign(self, app_id: str, service_url: str | None = None, *, lifetime: int = TOKEN_LIFETIME) -> str:
        """The token Teams sends with an activity for bot ``app_id``."""
        now = int(self.clock())
        claims = {"iss": BOT_FRAMEWORK_ISSUER, "aud": app_id, "iat": now, "nbf": now, "exp": now + lifetime,
                  "serviceurl": service_url or self.bot_service_url}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    # ---- the messaging endpoint ----
    def register(self, url: str | None, ca_bundle: str | None = None) -> str | None:
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ChannelError("the messaging endpoint must be an https:// URL")
            if parts.scheme == "http" and not _loopback(parts.hostname):
                raise ChannelError("the messaging endpoint must be https:// (http:// only on a loopback host)")
        self.messaging_endpoint = url or None
        if ca_bundle is not None:
            self.ca_bundle = ca_bundle or None
        return self.messaging_endpoint

    def reset(self) -> None:
        """Forget deliveries and close kept-alive connections to the endpoint (the endpoint
        stays registered, as an Azure Bot setting does)."""
        with self._lock:
            self.deliveries.clear()
            session, self._session = self._session, None
        if session is not None:
            session.close()

    # ---- who and where ----
    def _bot(self):
        bots = [a for a in self.state.apps.values() if a.kind == "bot"]
        if not bots:
            raise ChannelError("the tenant has no bot app", 404)
        return bots[0]

    def _find_user(self, who: str) -> dict | None:
        u = self.state.user(who)
        if u is None:
            u = next((x for x in self.state.users.values() if (x.get("mail") or "").lower() == who.lower()), None)
        return u

    def _user(self, who: str) -> dict:
        u = self._find_user(who)
        if u is None:
            raise ChannelError(f"no user {who!r} in the tenant", 404)
        return u

    def _find_team(self, name: str):
        return self.state.teams.get(name) or next((t for t in self.state.teams.values()
                                                   if t.display_name.lower() == name.lower()), None)

    def _team(self, name: str):
        t = self._find_team(name)
        if t is None:
            raise ChannelError(f"no team {name!r} in the tenant", 404)
        return t

    def _channel(self, team, name: str | None):
        if not name:
            return next(iter(team.channels.values()))  # General
        ch = team.channels.get(name) or next((c for c in team.channels.values()
                                              if c.display_name.lower() == name.lower()), None)
        if ch is None:
            raise ChannelError(f"no channel {name!r} in team {team.display_name!r}", 404)
        return ch

    def _envelope(self, kind: str, user: dict, bot, conversation: dict, channel_data: dict) -> dict:
        now = utcnow_iso()
        return {"type": kind, "id": _activity_id(),
                "timestamp": now, "localTimestamp": now, "serviceUrl": self.bot_service_url, "channelId": "msteams",
                "from": {"id": user_mri(user["id"]), "name": user["displayName"], "aadObjectId": user["id"]},
                "conversation": dict(conversation, tenantId=self.state.tenant_id),
                "recipient": {"id": f"28:{bot.app_id}", "name": bot.name},
                "locale": user.get("preferredLanguage") or "en-US",
                "channelData": dict(channel_data, tenant={"id": self.state.tenant_id})}

    def _personal(self, user: dict, bot) -> dict:
        conv_id = BotConnector._personal_conversation_id(bot.app_id, user["id"])
        with self.state.lock:
            self.state.bot_conversations.setdefault(conv_id, {
                "id": conv_id, "type": "personal", "isGroup": False, "tenantId": self.state.tenant_id,
                "botId": bot.app_id, "members": [user["id"]], "created": utcnow_iso()})
        return {"conversationType": "personal", "id": conv_id}

    @staticmethod
    def _team_data(team, ch) -> dict:
        # As Teams says it: a team's id is its General channel's thread id; the group is aadGroupId.
        general = next(iter(team.channels.values()))
        return {"teamsTeamId": general.id, "teamsChannelId": ch.id,
                "team": {"id": general.id, "name": team.display_name, "aadGroupId": team.id},
                "channel": {"id": ch.id, "name": ch.display_name}}

    # ---- simulated users ----
    def user_says(self, user: str, text: str, *, team: str | None = None, channel: str | None = None,
                  chat: str | None = None, mention_bot: bool = True, reply_to: str | None = None) -> dict:
        """A user writes ``text``: to the bot 1:1 (no team, no chat), in a team's channel (a new
        thread, starting with an @mention of the bot unless ``mention_bot`` is false; with
        ``reply_to``, a reply in the thread of that message), or in a group chat by id (the
        same). Returns the delivery record."""
        where = self._where(user)
        if where is not self:
            return where.user_says(user, text, team=team, channel=channel, chat=chat, mention_bot=mention_bot,
                                   reply_to=reply_to)
        activity = self.message(user, text, team=team, channel=channel, chat=chat, mention_bot=mention_bot,
                                reply_to=reply_to)
        return self.deliver(activity, self._bot().app_id)

    def message(self, user: str, text: str, *, team: str | None = None, channel: str | None = None,
                chat: str | None = None, mention_bot: bool = True, reply_to: str | None = None) -> dict:
        """The activity :meth:`user_says` delivers (the user's message is posted in the channel
        or chat already), for tests that deliver it their own way."""
        where = self._where(user)
        if where is not self:
            return where.message(user, text, team=team, channel=channel, chat=chat, mention_bot=mention_bot,
                                 reply_to=reply_to)
        if not isinstance(text, str) or not text:
            raise ChannelError("text is required")
        bot = self._bot()
        u = self._user(user)
        mention_text = f"<at>{html.escape(bot.name, quote=False)}</at>"
        entities = [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web"}]
        if team or channel:
            if not team:
                raise ChannelError("a channel needs its team")
            t = self._team(team)
            ch = self._channel(t, channel)
            with self.state.lock:
                if not any(m.user_id == u["id"] for m in (ch.members if ch.membership_type != "standard" else t.members)):
                    raise ChannelError(f"{u['displayName']} is not a member of {t.display_name} / {ch.display_name}",
                                       403)
            body = f"{mention_text} {text}" if mention_bot else text
            activity = self._envelope("message", u, bot, {"conversationType": "channel", "isGroup": True, "id": ""},
                                      self._team_data(t, ch))
            if reply_to:
                with self.state.lock:
                    if not any(m.id == reply_to for m in ch.messages):
                        raise ChannelError(f"no message {reply_to!r} in {t.display_name} / {ch.display_name}", 404)
                activity["conversation"]["id"] = f"{ch.id};messageid={reply_to}"
                activity["replyToId"] = reply_to
            else:
                activity["conversation"]["id"] = f"{ch.id};messageid={activity['id']}"
            self._post_as_user(u, activity["id"], body, team_id=t.id, channel_id=ch.id, reply_to=reply_to)
        elif chat:
            c = self.state.chats.get(chat)
            if c is None:
                raise ChannelError(f"no chat {chat!r}", 404)
            if not any(m.user_id == u["id"] for m in c.members):
                raise ChannelError(f"{u['displayName']} is not a member of chat {chat}", 403)
            body = f"{mention_text} {text}" if mention_bot else text
            ctype = "personal" if c.chat_type == "oneOnOne" else "groupChat"
            activity = self._envelope("message", u, bot, {"conversationType": ctype, "isGroup": ctype != "personal",
                                                          "id": c.id}, {})
            self._post_as_user(u, activity["id"], body, chat_id=c.id)
        else:
            body, mention_bot = text, False
            activity = self._envelope("message", u, bot, self._personal(u, bot), {})
        activity.update(text=body, textFormat="plain")
        if mention_bot:
            entities.append({"type": "mention", "text": mention_text,
                             "mentioned": {"id": f"28:{bot.app_id}", "name": bot.name}})
        activity["entities"] = entities
        return activity

    def user_clicks(self, user: str, choice: str, *, question: str | None = None, activity_id: str | None = None,
                    reason: str | None = None, invoke: bool = False) -> dict:
        """A user presses the button ``choice`` (its title, or the answer it sends) of a bot card
        they can see: the card of question ``question`` (ask) or the bot's message
        ``activity_id``. Delivered as Teams does: a signed ``message`` activity whose ``value``
        is the button's data (with the card's inputs: ``reason``), or with ``invoke`` an
        ``invoke`` adaptiveCard/action. Returns the delivery record."""
        where = self._where(user)
        if where is not self:
            return where.user_clicks(user, choice, question=question, activity_id=activity_id, reason=reason,
                                     invoke=invoke)
        activity = self.click(user, choice, question=question, activity_id=activity_id, reason=reason, invoke=invoke)
        return self.deliver(activity, self._bot().app_id)

    def click(self, user: str, choice: str, *, question: str | None = None, activity_id: str | None = None,
              reason: str | None = None, invoke: bool = False) -> dict:
        """The activity :meth:`user_clicks` delivers (tests deliver it their own way: twice, late)."""
        where = self._where(user)
        if where is not self:
            return where.click(user, choice, question=question, activity_id=activity_id, reason=reason, invoke=invoke)
        if bool(question) == bool(activity_id):
            raise ChannelError("name the card: a question id or the bot message's activity id (one of them)")
        bot = self._bot()
        u = self._user(user)
        with self.state.lock:
            recs = [(aid, r) for aid, r in self.state.activities.items()
                    if (aid == activity_id if activity_id else _asks(r["activity"], question))]
            conv = None
            for aid, r in recs:
                c = self.state.bot_conversations.get(r["conversationId"])
                if c is None:
                    continue
                if c["type"] == "channel":
                    team = self.state.teams.get(c["teamId"])
                    ch = team.channels.get(c["channelId"]) if team else None
                    members = (ch.members if ch and ch.membership_type != "standard" else team.members) if team else []
                    if any(m.user_id == u["id"] for m in members):
                        conv, card_id, team_obj, ch_obj = c, aid, team, ch
                        break
                elif u["id"] in (c.get("members") or []):
                    conv, card_id = c, aid
                    break
            if conv is None:
                raise ChannelError(f"{u['displayName']} sees no such card of the bot", 404)
            card = self.state.activities[card_id]["activity"]
        actions = [a for att in card.get("attachments") or [] for a in (att.get("content") or {}).get("actions") or []
                   if a.get("type") in ("Action.Submit", "Action.Execute")]
        action = next((a for a in actions if str(a.get("title", "")).lower() == choice.lower()), None) or next(
            (a for a in actions if isinstance(a.get("data"), dict) and str(a["data"].get("answer", "")).lower()
             == choice.lower()), None)
        if action is None:
            titles = ", ".join(str(a.get("title")) for a in actions) or "none"
            raise ChannelError(f"the card has no button {choice!r} (its buttons: {titles})", 409)
        data = dict(action.get("data") or {})
        if reason is not None:
            data["reason"] = reason
        if conv["type"] == "channel":
            activity = self._envelope("message", u, bot, {"conversationType": "channel", "isGroup": True,
                                                          "id": f"{ch_obj.id};messageid={card_id}"},
                                      self._team_data(team_obj, ch_obj))
        else:
            activity = self._envelope("message", u, bot, self._personal(u, bot), {})
        activity["replyToId"] = card_id
        if invoke:
            activity.update(type="invoke", name="adaptiveCard/action",
                            value={"action": {"type": "Action.Execute", "title": action.get("title"), "data": data}})
        else:
            activity["value"] = data
        return activity

    def install_bot(self, *, user: str | None = None, team: str | None = None,
                    installer: str | None = None) -> dict:
        """The bot installed for a user (personal scope) or in a team; returns the delivery
        record (for a team, of the conversationUpdate that follows the installationUpdate)."""
        where = self._where(user, team)
        if where is not self:
            return where.install_bot(user=user, team=team, installer=installer)
        if bool(user) == bool(team):
            raise ChannelError("install the bot for a user or in a team (one of them)")
        bot = self._bot()
        if user:
            u = self._user(user)
            self.state.bot_uninstalled_users.discard(u["id"])
            activity = self._envelope("installationUpdate", u, bot, self._personal(u, bot), {})
            activity["action"] = "add"
            return self.deliver(activity, bot.app_id)
        t = self._team(team)
        self.state.bot_removed_teams.discard(t.id)
        general, owner, conv = self._team_place(t)
        u = self._user(installer) if installer else owner
        install = self._envelope("installationUpdate", u, bot, conv, self._team_data(t, general))
        install["action"] = "add"
        self.deliver(install, bot.app_id)
        update = self._envelope("conversationUpdate", u, bot, conv,
                                dict(self._team_data(t, general), eventType="teamMemberAdded"))
        update["membersAdded"] = [{"id": f"28:{bot.app_id}"}] + [
            {"id": user_mri(m.user_id), "aadObjectId": m.user_id} for m in t.members]
        return self.deliver(update, bot.app_id)

    def _team_place(self, t) -> tuple:
        """Where Teams speaks for a team: its General channel, the owner acting, the conversation."""
        general = self._channel(t, None)
        owner = next((m.user_id for m in t.members if "owner" in m.roles), None) or t.members[0].user_id
        return general, self.state.users[owner], {"conversationType": "channel", "isGroup": True, "id": general.id}

    def uninstall_bot(self, *, user: str | None = None, team: str | None = None) -> dict:
        """An admin takes the bot away: the user uninstalls the app (its 1:1 conversation and a new
        one refuse the bot: 403 BotNotInConversationRoster), or the bot is removed from a team (its
        channels refuse it). Teams tells the bot (installationUpdate "remove") when an endpoint is
        registered. ``install_bot`` undoes it."""
        where = self._where(user, team)
        if where is not self:
            return where.uninstall_bot(user=user, team=team)
        if bool(user) == bool(team):
            raise ChannelError("uninstall the bot for a user or from a team (one of them)")
        bot = self._bot()
        if user:
            u = self._user(user)
            self.state.bot_uninstalled_users.add(u["id"])
            activity = self._envelope("installationUpdate", u, bot, self._personal(u, bot), {})
            done = {"user": u["id"]}
        else:
            t = self._team(team)
            self.state.bot_removed_teams.add(t.id)
            general, owner, conv = self._team_place(t)
            activity = self._envelope("installationUpdate", owner, bot, conv, self._team_data(t, general))
            done = {"team": t.id}
        activity["action"] = "remove"
        if (self._hub or self).messaging_endpoint:
            done["delivery"] = self.deliver(activity, bot.app_id)
        return done

    def forget_conversations(self, *, user: str | None = None) -> dict:
        """Teams no longer knows the bot's 1:1 conversations (of one user, or all): as after a chat
        was deleted or a tenant restarted; sending to one answers 404 ConversationNotFound (without
        a user: in every hosted tenant)."""
        if user is None and self.peers:
            gone = [cid for ch in [self, *self.peers] for cid in ch._forget(None)]
            return {"forgotten": gone}
        where = self._where(user)
        if where is not self:
            return where.forget_conversations(user=user)
        return {"forgotten": self._forget(user)}

    def _forget(self, user: str | None) -> list:
        with self.state.lock:
            uid = self._user(user)["id"] if user else None
            gone = [cid for cid, c in self.state.bot_conversations.items()
                    if c.get("type") == "personal" and (uid is None or uid in (c.get("members") or ()))]
            for cid in gone:
                del self.state.bot_conversations[cid]
        return gone

    def _post_as_user(self, user: dict, message_id: str, text: str, *, team_id: str | None = None,
                      channel_id: str | None = None, chat_id: str | None = None, reply_to: str | None = None) -> None:
        msg = Message(id=message_id, created=utcnow_iso(),
                      body={"contentType": "html", "content": html.escape(text, quote=False)
                            .replace("&lt;at&gt;", "<at>").replace("&lt;/at&gt;", "</at>")},
                      sender={"user": {"id": user["id"], "displayName": user["displayName"],
                                       "userIdentityType": "aadUser"}, "application": None, "device": None},
                      chat_id=chat_id, team_id=team_id, channel_id=channel_id)
        with self.state.lock:
            if chat_id:
                self.state.chats[chat_id].messages.append(msg)
            elif reply_to:
                root = next(m for m in self.state.teams[team_id].channels[channel_id].messages if m.id == reply_to)
                msg.reply_to_id = reply_to
                root.replies.append(msg)
            else:
                self.state.teams[team_id].channels[channel_id].messages.append(msg)

    # ---- delivery ----
    def deliver(self, activity: dict, app_id: str, *, token: str | None = None, body: bytes | None = None,
                headers: dict | None = None) -> dict:
        """POST an activity to the messaging endpoint with a signed token (tests may pass their
        own token, raw body or headers: forged deliveries). Returns the delivery record."""
        if self._hub is not None:  # the bot's endpoint and what was sent there are the hub's
            return self._hub.deliver(activity, app_id, token=token, body=body, headers=headers)
        url = self.messaging_endpoint
        if not url:
            raise ChannelError("no messaging endpoint is registered for the bot (msteams bot serve registers it; "
                               "or msteams emulator serve --messaging-endpoint URL)", 409)
        import json

        import requests

        hdrs = {"Content-Type": "application/json"}
        tok = self.sign(app_id) if token is None else token
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        hdrs.update(headers or {})
        payload = json.dumps(activity).encode() if body is None else body
        record = {"time": utcnow_iso(), "type": activity.get("type"), "activityId": activity.get("id"),
                  "conversationId": (activity.get("conversation") or {}).get("id"),
                  "from": (activity.get("from") or {}).get("aadObjectId"), "text": activity.get("text"),
                  "endpoint": url, "status": None, "error": None}
        try:
            with self._lock:
                if self._session is None:
                    self._session = requests.Session()
                    self._session.trust_env = False
                session = self._session
            resp = session.post(url, data=payload, headers=hdrs, timeout=DELIVERY_TIMEOUT,
                                verify=self.ca_bundle or True)
            record["status"] = resp.status_code
        except requests.RequestException as exc:
            record["error"] = f"{type(exc).__name__}: the endpoint could not be reached"
        with self._lock:
            self.deliveries.append(record)
        return record
