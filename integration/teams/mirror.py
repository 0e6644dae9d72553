"""Mirrored incidents (``mirror-investigation``): an incident linked to a Teams channel or group
chat, both ways.

- The link lives in the store's ``mirrors`` table, one row per incident (running
  mirror-investigation again updates it; the channel is created at most once, under an outbox key).
- Inbound (ToSOAR): every message in a mirrored conversation that reaches the bot's endpoint
  (the app package's resource-specific consent lets the bot receive them without a mention) is
  appended to the incident's journal (``mirror_entries``), once per activity id, in arrival
  order: author, time, text reduced to safe text, attachment names, reply thread. The bot's own
  messages are never journaled.
- Each entry is the ``mirror.entry`` webhook event (delivery/webhooks.py: Standard Webhooks,
  through the outbox), for every webhook subscribed to it: ``msteams webhook add URL --event
  mirror.entry``, or the config's ``mirror_webhook_url`` (a subscription of its own, signed with
  ``mirror_webhook_secret``). An entry is handed over once (an event per activity id; the
  store's mark ``mirror_webhook/delivered-through`` says how far), and an entry refused or
  unreachable is sent again later (the next inbound message once due, ``mirror-flush`` at
  once), in order, with the same webhook-id, and never twice once accepted.
"""
from __future__ import annotations

import html
import logging
import re
import threading

from . import conversations
from integration.delivery import webhooks

log = logging.getLogger("msteams.mirror")

MAX_TEXT = 28000
_BLOCK = re.compile(r"<\s*(?:br\s*/?|/p|/div|/li|/tr|/h[1-6])\s*>", re.IGNORECASE)
_AT = re.compile(r"<at\b[^>]*>(.*?)</at\s*>", re.IGNORECASE | re.DOTALL)
_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>?")
_LATE_TAG = re.compile(r"</?[a-zA-Z!][^<>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_flush_lock = threading.Lock()


def safe_text(value) -> str:
    """Teams' HTML (or plain text) as safe plain text: script and style dropped, tags stripped
    (a line break for <br> and block ends, @mentions as @Name), entities unescaped once, then
    control and bidi characters shown escaped (\\u001b), so nothing in it is markup or a
    terminal escape."""
    if not isinstance(value, str):
        return ""
    text = _DROP.sub("", value)
    text = _AT.sub(lambda m: "@" + m.group(1), text)
    text = _BLOCK.sub("\n", text)
    text = _TAG.sub("", text)
    text = html.unescape(text)
    text = _LATE_TAG.sub("", text)  # markup that was escaped in the HTML is not markup either
    text = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.strip()[:MAX_TEXT]


def _attachment_names(activity: dict) -> list[str]:
    out = []
    for att in activity.get("attachments") or []:
        if not isinstance(att, dict):
            continue
        ctype = str(att.get("contentType") or "")
        if ctype == "text/html":  # Teams' copy of the message body
            continue
        name = att.get("name") or (ctype if ctype.startswith("application/vnd.microsoft.card") else None)
        if name:
            out.append(safe_text(str(name))[:300])
    return out


def is_from_bot(activity: dict, bot_id: str | None) -> bool:
    sender = activity.get("from") if isinstance(activity.get("from"), dict) else {}
    sid = str(sender.get("id") or "").lower()
    return bool(bot_id) and sid in (bot_id.lower(), f"28:{bot_id}".lower())


def entry_of(activity: dict, mirror: dict) -> dict:
    where = conversations.describe(activity)
    sender = activity.get("from") if isinstance(activity.get("from"), dict) else {}
    conv_id = where["conversationId"]
    thread = conv_id.partition(";messageid=")[2] or None
    reply_to = activity.get("replyToId") if isinstance(activity.get("replyToId"), str) else None
    return {"incidentId": mirror["incidentId"], "author": safe_text(str(sender.get("name") or ""))[:200],
            "authorId": conversations._user_oid(sender) or str(sender.get("id") or "")[:200],
            "time": str(activity.get("timestamp") or "")[:40], "text": safe_text(activity.get("text")),
            "attachments": _attachment_names(activity), "threadId": thread or reply_to,
            "conversationId": where["baseId"], "kind": mirror["kind"]}


def journal(runtime, activity: dict) -> bool:
    """Journal ``activity`` when it is a message in a mirrored conversation (True: journaled
    now; False: not mirrored, from the bot, or a redelivery)."""
    if activity.get("type") != "message" or not isinstance(activity.get("id"), str):
        return False
    if is_from_bot(activity, runtime.cfg.bot_id):
        return False
    base = conversations.describe(activity)["baseId"]
    if not base:
        return False
    store = runtime.store
    mirror = store.mirror_for_conversation(base)
    if mirror is None or mirror.get("direction") == "FromSOAR" or mirror.get("mirrorType") == "none":
        return False
    tenant = runtime.cfg.tenant_id
    if tenant and conversations.tenant_of(activity) not in (None, tenant):
        return False
    return store.mirror_entry_add(mirror["incidentId"], activity["id"], entry_of(activity, mirror)) is not None


def set_status(store, m: dict, status: str) -> dict:
    """Record a mirror's new status (closed: no longer mirrored; deleted: its channel is gone)."""
    value = {k: v for k, v in m.items() if k not in ("incidentId", "conversationId", "kind", "status", "created",
                                                     "updated", "entries")}
    return store.mirror_put(m["incidentId"], m["conversationId"], m["kind"], status, value)


# ---- the webhook sink: mirror.entry events ----
def event_data(entry: dict) -> dict:
    """A journal entry as the ``mirror.entry`` event's data."""
    return {k: v for k, v in entry.items() if k != "journaledAt"}


def flush(runtime, *, limit: int = 1000, force: bool = False) -> dict:
    """Hand the journal entries not handed over yet to the webhooks subscribed to
    ``mirror.entry`` (oldest first, each once), then deliver what is due (``force``: every
    entry waiting, backoff or not); per webhook, delivery stops at the first refusal (the
    order holds). {"sent", "pending", "error", "configured"}."""
    cfg, store = runtime.cfg, runtime.store
    if not webhooks.subscribed(store, cfg, "mirror.entry"):
        return {"sent": 0, "pending": 0, "error": None, "configured": False}
    with _flush_lock:
        mark = store.get("mirror_webhook", "delivered-through") or 0
        for e in [e for e in store.mirror_entries() if e["seq"] > mark][:limit]:
            webhooks.enqueue(store, cfg, "mirror.entry", event_data(e), key=(e["incidentId"], e["activityId"]))
            store.put("mirror_webhook", "delivered-through", e["seq"], ttl=None)
    out = webhooks.pump(store, cfg, force=force)
    return {"sent": out["events"].get("mirror.entry", 0), "pending": webhooks.waiting(store, "mirror.entry"),
            "error": out["error"], "configured": True}
