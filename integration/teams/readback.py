"""Reading a bot's message back through Graph, to settle a send whose outcome is ambiguous.

The Bot Connector cannot list a conversation, and the bot's token cannot call Graph; the app
flow can. A bot's 1:1 conversation with a user is, in Graph, the chat between the user and the
app: found through the app's installation for the user
(``GET /users/{id}/teamwork/installedApps?$expand=teamsApp,teamsAppDefinition($expand=bot)``,
the installation whose bot is ours; then ``.../installedApps/{installation id}/chat``), its id
kept in the store (kind ``bot_chat``), and its newest messages read
(``GET /chats/{id}/messages``). A channel post is read from the channel
(``GET /teams/{team id}/channels/{channel id}/messages``, or a thread's ``.../replies``).

Our message is one the bot's app sent (``from.application.id``), created after the attempt
began (within a clock skew), with the same content as the activity: Teams shows the text as
an html body and each Adaptive Card as an attachment whose content is the card's JSON, so the
text is compared as words (markup, entities and markdown marks set aside) and a card-only
message by its card. Permissions (application): ``TeamsAppInstallation.ReadForUser.All`` and
``Chat.Read.All`` for a user, ``ChannelMessage.Read.All`` for a channel. Without the app flow,
or without them, reading back raises an IntegrationError: the outbox then calls the outcome
unknown, as it did before anything could be read back. Microsoft counts reading Teams messages
with an application permission among its protected APIs (an app is approved through the
request form of "Protected APIs in Microsoft Teams"): until then those reads are refused, and
the send stays unknown the same way.

What it cannot tell apart: an identical message another delivery sent to the same place
within the clock skew before this one began (the newest match is taken, which is ours when ours
arrived), and a write the service applies after the read (a request still in flight when its
answer timed out: the read waits for Graph only ``SETTLE_SECONDS``).
"""
from __future__ import annotations

import html
import json
import re
import time
from typing import Any

from integration.delivery.posting import created_after
from integration.engine.errors import ConfigError, NotFound
from integration.graph.client import items_of, need_id, seg

KIND = "bot_chat"  # store kind: the Graph chat id of the bot's 1:1 chat with a user, by bot and user
READ_BACK_TOP = 20  # the conversation's newest messages: ours, if it arrived, is among them
# Graph may list a message a moment after the Bot Connector took it: a read that finds nothing
# within this many seconds of the attempt is made once more at its end, before "absent" is believed.
SETTLE_SECONDS = 1.5
MAX_INSTALLATION_PAGES = 10
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
USER_PERMISSIONS = ("TeamsAppInstallation.ReadForUser.All", "Chat.Read.All")
CHANNEL_PERMISSIONS = ("ChannelMessage.Read.All",)


# ---- where to read ----
def app_client(runtime):
    """The app flow's Graph client; a ConfigError when the app flow is not configured."""
    if not runtime.auth.ready("app"):
        raise ConfigError("reading a bot message back needs the app flow, which is not configured")
    return runtime.client("app")


def _chat_key(bot_id: str, user_id: str) -> str:
    return f"{bot_id.lower()}/{user_id.lower()}"


def _is_ours(installation: dict, bot_id: str) -> bool:
    """Whether an installation is of the app whose bot is ``bot_id`` (its definition's bot, or a
    manifest id that is the bot id, as many manifests have it)."""
    definition = installation.get("teamsAppDefinition")
    bot = definition.get("bot") if isinstance(definition, dict) else None
    app = installation.get("teamsApp")
    ids = [bot.get("id") if isinstance(bot, dict) else None, app.get("externalId") if isinstance(app, dict) else None]
    return any(isinstance(i, str) and i.lower() == bot_id.lower() for i in ids)


def personal_chat_id(runtime, store, bot_id: str, user_id: str, *, fresh: bool = False) -> str:
    """The Graph id of the chat between the user and the bot's app (from the store unless
    ``fresh``). NotFound when the app is not installed for the user."""
    key = _chat_key(bot_id, user_id)
    if not fresh:
        known = store.get(KIND, key)
        if isinstance(known, dict) and known.get("chatId"):
            return known["chatId"]
    client = app_client(runtime)
    base = f"/users/{seg(user_id)}/teamwork/installedApps"
    found = None
    # Matched here, not by $filter: the filter Graph documents is on the manifest id, which the
    # configuration does not hold; the bot id is in the installation's app definition.
    for n, items in enumerate(client.pages(base, params={"$expand": "teamsApp,teamsAppDefinition($expand=bot)"})):
        found = next((i for i in items if isinstance(i, dict) and _is_ours(i, bot_id)), None)
        if found is not None or n + 1 >= MAX_INSTALLATION_PAGES:
            break
    if found is None:
        raise NotFound(f"the bot's app is not installed for user {user_id}: its chat cannot be read")
    inst_id = need_id(found, f"Graph GET {base}")
    chat = client.get(f"{base}/{seg(inst_id)}/chat")
    chat_id = need_id(chat, f"Graph GET {base}/{{installation}}/chat")
    # Teams keeps one chat per user and app, whatever happens to the installation: kept until refused.
    store.put(KIND, key, {"chatId": chat_id, "installationId": inst_id}, ttl=None)
    return chat_id


def _newest(client, path: str) -> list:
    return items_of(client.get(path, params={"$top": READ_BACK_TOP}), f"Graph GET {path}")


# ---- what to look for ----
_TAG_RE = re.compile(r"<[^>]*>")
_ANCHOR_RE = re.compile(r"<a\b[^>]*\bhref\s*=\s*[\"']([^\"']*)[\"'][^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_MD_LINK_RE = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
_WORD_RE = re.compile(r"\w+")


def _anchor(m: re.Match) -> str:
    href, text = html.unescape(m.group(1)), m.group(2)
    return f" {text} " if _TAG_RE.sub("", text).strip() == href.strip() else f" {text} {href} "


def words(text: str | None) -> list[str]:
    """The words of a message, however it was marked up: an html body as Graph gives it (tags
    dropped, a link as its text and address, entities decoded, even twice-escaped ones) or the
    activity's text (markdown marks dropped, a link as its text and address), lowercased."""
    s = _ANCHOR_RE.sub(_anchor, text or "")
    s = _TAG_RE.sub(" ", s)
    for _ in range(3):  # text escaped as markdown, then escaped again as html
        unescaped = html.unescape(s)
        if unescaped == s:
            break
        s = unescaped
    s = _MD_LINK_RE.sub(r" \1 \2 ", s)
    return [w.lower() for w in _WORD_RE.findall(s)]


def _cards(activity: dict) -> list:
    return [a.get("content") for a in activity.get("attachments") or []
            if isinstance(a, dict) and a.get("contentType") == ADAPTIVE]


def _card_of(attachment: dict) -> Any:
    content = attachment.get("content")
    if isinstance(content, str):
        try:
            return json.loads(content)
        except ValueError:
            return content
    return content


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return words(value)
    if isinstance(value, dict):
        return [w for k in sorted(value) for w in _strings(value[k])]
    if isinstance(value, list):
        return [w for v in value for w in _strings(v)]
    return []


def _same_card(sent: Any, shown: Any) -> bool:
    return sent == shown or (bool(_strings(sent)) and _strings(sent) == _strings(shown))


def matches(message: dict, activity: dict, bot_id: str, since: float | None) -> bool:
    """Whether a Graph chatMessage is the activity the bot sent: from the bot's app, created
    after ``since`` (within the clock skew), the same text; for a card-only message, the same
    card (with text, the text decides and a card need only be there)."""
    sender = ((message.get("from") or {}).get("application") or {}).get("id")
    if not isinstance(sender, str) or sender.lower() != bot_id.lower() or message.get("deletedDateTime"):
        return False
    if not created_after(message.get("createdDateTime"), since):
        return False
    shown = [_card_of(a) for a in message.get("attachments") or []
             if isinstance(a, dict) and a.get("contentType") == ADAPTIVE]
    cards = _cards(activity)
    if activity.get("text"):
        body = (message.get("body") or {}).get("content")
        if words(body) != words(activity["text"]) or not words(activity["text"]) and \
                _squash(body) != _squash(activity["text"]):
            return False
        return len(shown) >= len(cards)
    return bool(cards) and len(shown) == len(cards) and all(_same_card(c, s) for c, s in zip(cards, shown))


def _squash(text: str | None) -> str:
    """A text of no words (punctuation, emoji) compared as its characters, markup set aside."""
    return "".join(html.unescape(_TAG_RE.sub("", text or "")).split())


# ---- reading back ----
def _settled_read(runtime, since: float | None, read) -> str | None:
    """``read()``, and once more after the settling time when it found nothing soon after the attempt."""
    found = read()
    if found is None and since is not None:
        wait = SETTLE_SECONDS - (time.time() - since)
        if wait > 0:
            runtime.sleep(wait)
            found = read()
    return found


def find_user_message(runtime, store, *, user_id: str, bot_id: str, activity: dict,
                      since: float | None) -> str | None:
    """The id of the message this delivery sent to the user (the bot's 1:1 chat), or None when
    it is not among the chat's newest. IntegrationError when the chat cannot be read (no app
    flow, a permission missing, the app not installed for the user)."""
    client = app_client(runtime)
    state = {"chat": personal_chat_id(runtime, store, bot_id, user_id), "fresh": False}

    def read() -> str | None:
        try:
            items = _newest(client, f"/chats/{seg(state['chat'])}/messages")
        except NotFound:
            if state["fresh"]:
                raise
            # A chat id kept from before that Graph no longer knows: look it up again, once.
            store.delete(KIND, _chat_key(bot_id, user_id))
            state.update(chat=personal_chat_id(runtime, store, bot_id, user_id, fresh=True), fresh=True)
            items = _newest(client, f"/chats/{seg(state['chat'])}/messages")
        return _newest_match(items, activity, bot_id, since)

    return _settled_read(runtime, since, read)


def find_channel_message(runtime, *, team_id: str, channel_id: str, thread: str | None, bot_id: str,
                         activity: dict, since: float | None) -> str | None:
    """The id of the post (or, in ``thread``, the reply) this delivery sent to the channel, or
    None when it is not among the newest. IntegrationError when the channel cannot be read."""
    client = app_client(runtime)
    path = f"/teams/{seg(team_id)}/channels/{seg(channel_id)}/messages"
    if thread:
        path += f"/{seg(thread)}/replies"
    return _settled_read(runtime, since, lambda: _newest_match(_newest(client, path), activity, bot_id, since))


def _newest_match(items: list, activity: dict, bot_id: str, since: float | None) -> str | None:
    # The newest of the matches: an identical message another delivery sent to the same place
    # within the clock skew before ours would match too, and is the older one.
    found = [m for m in items if isinstance(m, dict) and m.get("id") and matches(m, activity, bot_id, since)]
    found.sort(key=lambda m: (str(m.get("createdDateTime") or ""), str(m["id"])))
    return found[-1]["id"] if found else None


__all__ = ["KIND", "USER_PERMISSIONS", "CHANNEL_PERMISSIONS", "find_user_message", "find_channel_message",
           "personal_chat_id", "matches", "words"]
