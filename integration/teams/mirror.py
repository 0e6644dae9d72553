"""Mirrored incidents (``mirror-investigation``): an incident linked to a Teams channel or group
chat, both ways.

- The link lives in the store's ``mirrors`` table, one row per incident (running
  mirror-investigation again updates it; the channel is created at most once, under an outbox key).
- Inbound (ToSOAR): every message in a mirrored conversation that reaches the bot's endpoint
  (the app package's resource-specific consent lets the bot receive them without a mention) is
  appended to the incident's journal (``mirror_entries``), once per activity id, in arrival
  order: author, time, text reduced to safe text, attachment names, reply thread. The bot's own
  messages are never journaled.
- Optionally each entry is POSTed to the SOAR platform's webhook (``mirror_webhook_url``), signed
  with HMAC-SHA256 of the body (``X-MSTeams-Signature: sha256=<hex>``), through the outbox: an
  entry refused or unreachable is sent again later (the next inbound message, ``mirror-flush``),
  in order, and never twice once accepted.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import re
import threading

from . import conversations
from integration.engine.errors import IntegrationError
from integration.delivery.outbox import Outbox, delivery_key

log = logging.getLogger("msteams.mirror")

MAX_TEXT = 28000
SIGNATURE_HEADER = "X-MSTeams-Signature"
DELIVERY_HEADER = "X-MSTeams-Delivery"
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


# ---- the webhook sink ----
def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(entry: dict) -> bytes:
    return json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _post(cfg, key: str, entry: dict):
    import requests

    body = webhook_body(entry)
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: key}
    if cfg.mirror_webhook_secret:
        headers[SIGNATURE_HEADER] = signature(cfg.mirror_webhook_secret, body)
    try:
        with requests.Session() as s:
            s.trust_env = False
            resp = s.post(cfg.mirror_webhook_url, data=body, headers=headers, timeout=cfg.timeout,
                          verify=cfg.verify, allow_redirects=False)
    except requests.ConnectionError as exc:
        # Not connected (or the connection broke): the platform did not take it; send again later.
        raise IntegrationError(f"the mirror webhook could not be reached ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise IntegrationError(f"the mirror webhook did not answer ({type(exc).__name__})") from None
    if not 200 <= resp.status_code < 300:
        raise IntegrationError(f"the mirror webhook refused the entry (HTTP {resp.status_code})")
    return key, resp.status_code


def flush(runtime, *, limit: int = 1000) -> dict:
    """Deliver journal entries not yet delivered to the webhook, oldest first; stops at the
    first one refused (the order holds). {"sent", "pending", "error"}."""
    cfg = runtime.cfg
    if not cfg.mirror_webhook_url:
        return {"sent": 0, "pending": 0, "error": None, "configured": False}
    store = runtime.store
    box = Outbox(store)
    sent, error = 0, None
    with _flush_lock:
        mark = store.get("mirror_webhook", "delivered-through") or 0
        entries = [e for e in store.mirror_entries() if e["seq"] > mark][:limit]
        left = len(entries)
        for e in entries:
            key = delivery_key("mirror-webhook", e["activityId"])
            if (box.state(key) or {}).get("state") != "sent":
                try:
                    d = box.deliver(key, lambda e=e, key=key: _post(cfg, key, e), target="mirror webhook",
                                    resend_unknown=True)
                except IntegrationError as exc:
                    error = exc.message
                    break
                if not d.ok:
                    error = d.reason
                    break
                sent += 0 if d.reused else 1
            store.put("mirror_webhook", "delivered-through", e["seq"], ttl=None)
            left -= 1
    return {"sent": sent, "pending": left, "error": error, "configured": True}
