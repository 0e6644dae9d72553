"""Mirroring an incident's war room in Teams (XSOAR's ``mirror-investigation``), both ways: see
integration/teams/mirror.py for the link, the journal and the webhook sink.

- ``mirror-investigation``: creates or reuses the incident's channel (or links a group chat),
  records the link, posts a welcome card as the bot (once per conversation). Running it again
  updates the link; the channel is created at most once (an outbox key per team and name).
- ``mirror-entry``: posts an incident entry to the mirrored conversation as the bot (outbox key).
- ``mirror-entries``: the incident's journal (messages written in Teams).
- ``mirror-close``: stops mirroring; with autoclose the channel is deleted.
- ``mirror-flush``: delivers journal entries the webhook has not taken yet.
"""
from __future__ import annotations

import html
import time
from datetime import datetime, timezone

from integration.teams import mirror as M
from integration.teams import conversations
from integration.engine.errors import ArgumentError, IntegrationError, NotFound
from integration.graph.client import seg
from integration.delivery.outbox import Outbox, delivery_key, delivery_scope
from integration.graph.resolve import is_thread_id
from integration.graph.tokenlock import StoreLock
from . import notify

# The longest a run waits for another creating the same channel (a create with its retries).
CREATE_LOCK_SECONDS = 120.0

HANDLERS = ("mirror_investigation", "mirror_entry", "mirror_entries", "mirror_close", "mirror_flush")


def _incident(ctx) -> str:
    a = ctx.args
    if not a.get("incident_id"):
        name = str(a.get("channel_name") or "").strip()
        if name.lower().startswith("incident-") and name[9:].strip():
            return name[9:].strip()
        raise ArgumentError("incident_id", "say which incident to mirror (or name the channel incident-<id>)")
    inc = str(a["incident_id"]).strip()
    if not inc:
        raise ArgumentError("incident_id", "is empty")
    return inc


def _view(m: dict) -> dict:
    keys = ("incidentId", "kind", "status", "conversationId", "teamId", "teamName", "channelId", "channelName",
            "chatId", "mirrorType", "direction", "autoclose", "welcomeActivityId")
    row = {k: m.get(k) for k in keys}
    row["entries"] = m.get("entries")
    return row


def _post(ctx, m: dict, activity: dict, key: str, label: str):
    conv_id = m["conversationId"]
    service_url = m.get("serviceUrl") or ctx.cfg.bot_service_url

    def send():
        client = conversations.bot_client_for(ctx.runtime, service_url)
        sent = client.post(conversations.activities_url(service_url, conv_id), activity) or {}
        return sent.get("id"), sent

    d = Outbox(ctx.store).deliver(key, send, target=label, resend_unknown=ctx.args.get("resend_unknown", False)).settled(label)
    return d


def _welcome_card(inc: str, m: dict) -> dict:
    where = "channel" if m["kind"] == "channel" else "chat"
    ways = {"both": "both ways: messages here go to the incident, and its entries appear here",
            "ToSOAR": "into the incident: messages here go to the incident",
            "FromSOAR": "from the incident: its entries appear here"}[m["direction"]]
    return {"type": "AdaptiveCard", "version": "1.4", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "body": [{"type": "TextBlock", "text": f"Incident {inc} is mirrored in this {where}", "weight": "Bolder",
                      "size": "Medium", "wrap": True},
                     {"type": "TextBlock", "text": f"Mirrored {ways}.", "wrap": True},
                     {"type": "FactSet", "facts": [{"title": "Incident", "value": inc},
                                                   {"title": "Mirror", "value": m["mirrorType"]},
                                                   {"title": "Direction", "value": m["direction"]},
                                                   {"title": "Close with the incident",
                                                    "value": "yes" if m["autoclose"] else "no"}]}]}


def _channel(ctx, lookups, team: str, name: str) -> tuple[dict, dict]:
    """(team, channel): the channel named ``name`` in the team, created once when it is not there."""
    r = lookups.need("team", f"team '{team}'")
    t = r.team(team)
    if is_thread_id(name):
        return t, r.channel(t["id"], name)
    key = delivery_key("mirror-channel", t["id"], name.strip().casefold())
    # One run at a time per channel, on any host (a lock in the store, lapsing by itself): a
    # second run waits for the first and finds its channel instead of creating it again.
    with StoreLock(ctx.store, f"mirror-channel:{key}", lease=CREATE_LOCK_SECONDS, timeout=CREATE_LOCK_SECONDS,
                   what=f"the creation of channel '{name}'"):
        return t, _find_or_create(ctx, lookups, r, t, name, key)


def _find_or_create(ctx, lookups, r, t: dict, name: str, key: str) -> dict:
    box = Outbox(ctx.store)
    made = box.state(key)
    if made and made.get("state") == "sent" and made.get("message_id"):
        try:
            return r.channel(t["id"], made["message_id"])
        except NotFound:
            box.forget(key)  # deleted since: make it again
    try:
        return r.channel(t["id"], name)
    except NotFound:
        pass
    graph = ctx.runtime.client(lookups.flow)

    def create():
        ch = graph.create(f"/teams/{seg(t['id'])}/channels",
                          {"displayName": name, "membershipType": "standard",
                           "description": f"Mirror of incident {_incident(ctx)}"[:1024]})
        return ch["id"], ch

    d = box.deliver(key, create, target=f"channel {name}")
    if d.state == "pending":
        raise IntegrationError(f"another run is creating the channel '{name}' now", hint="run it again in a minute")
    if not d.ok:
        raise IntegrationError(f"the channel '{name}' could not be created: {d.reason}")
    ch = d.value or {"id": d.message_id, "displayName": name}
    view = {"id": ch["id"], "displayName": ch.get("displayName") or name, "membershipType": "standard"}
    ctx.store.put("channel", f"{t['id']}/{name.strip()}", view)
    return view


def mirror_investigation(ctx):
    inc = _incident(ctx)
    # One mirror-investigation per incident at a time, on any host: a second run waits, then
    # finds the first's channel and welcome (its delivery key is sent) instead of meeting the
    # welcome while the first still holds it.
    with StoreLock(ctx.store, f"mirror-incident:{inc}", lease=CREATE_LOCK_SECONDS, timeout=CREATE_LOCK_SECONDS,
                   what=f"the mirroring of incident {inc}"):
        return _mirror_investigation(ctx, inc)


def _mirror_investigation(ctx, inc: str):
    a = ctx.args
    notify._tenant(ctx)
    lookups = notify._Lookups(ctx)
    prev = ctx.store.mirror_get(inc) or {}
    value = {"mirrorType": a["mirror_type"], "direction": a["direction"], "autoclose": a["autoclose"]}
    if a.get("chat_id"):
        chat = a["chat_id"].strip()
        kind, conv_id = "chat", chat
        value.update(chatId=chat, label=f"chat {chat}")
        learned = ctx.store.conversation_get(f"chat/{ctx.cfg.bot_id}/{chat}") or {}
    else:
        team = a.get("team") or prev.get("teamId")
        if not team:
            raise ArgumentError("team", "say which team holds the incident's channel (or give chat_id)")
        name = (a.get("channel_name") or "").strip() or prev.get("channelName") or f"incident-{inc}"
        t, ch = _channel(ctx, lookups, team, name)
        kind, conv_id = "channel", ch["id"]
        value.update(teamId=t["id"], teamName=t.get("displayName"), channelId=ch["id"],
                     channelName=ch.get("displayName") or name,
                     label=f"{t.get('displayName') or t['id']} / {ch.get('displayName') or name}")
        learned = conversations.channel(ctx.store, ctx.cfg.bot_id, ch["id"], ctx.cfg.tenant_id) or {}
    value["serviceUrl"] = learned.get("serviceUrl") or prev.get("serviceUrl")
    if prev.get("conversationId") == conv_id:
        value["welcomeActivityId"] = prev.get("welcomeActivityId")
    status = "open" if a["mirror_type"] != "none" else "paused"
    m = ctx.store.mirror_put(inc, conv_id, kind, status, value)
    if a["mirror_type"] != "none":
        d = _post(ctx, m, {"type": "message", "attachments": [notify.adaptive_attachment(_welcome_card(inc, m))]},
                  delivery_key("mirror-welcome", inc, conv_id), m["label"])
        if d.message_id and m.get("welcomeActivityId") != d.message_id:
            value["welcomeActivityId"] = d.message_id
            m = ctx.store.mirror_put(inc, conv_id, kind, status, value)
    again = prev.get("conversationId") == conv_id
    m["entries"] = len(ctx.store.mirror_entries(inc))
    row = _view(m)
    verb = "updated" if again else "mirrored"
    return ctx.result(row, row, message=f"Incident {inc} {verb} in {m['label']} ({m['mirrorType']}, {m['direction']}).")


def _open_mirror(ctx, inc: str) -> dict:
    m = ctx.store.mirror_get(inc)
    if m is None:
        raise NotFound(f"incident {inc[:100]} is not mirrored", hint="run mirror-investigation first")
    return m


def mirror_entry(ctx):
    a = ctx.args
    inc = _incident(ctx)
    m = _open_mirror(ctx, inc)
    if m["status"] != "open":
        raise IntegrationError(f"the mirror of incident {inc} is {m['status']}: nothing is posted")
    if m.get("direction") == "ToSOAR":
        raise IntegrationError(f"incident {inc} is mirrored ToSOAR only: its entries are not posted to Teams")
    text = a["text"]
    if a["format"] == "text":
        activity = {"type": "message", "text": text, "textFormat": "plain"}
    else:
        activity = {"type": "message", "text": html.escape(text, quote=False), "textFormat": "markdown"}
    key = delivery_key(delivery_scope(ctx), "mirror-entry", inc, m["conversationId"])
    d = _post(ctx, m, activity, key, m["label"])
    row = {"incidentId": inc, "conversationId": m["conversationId"], "activityId": d.message_id,
           "status": "already sent" if d.reused else "sent", "deliveryKey": key}
    return ctx.result(row, row, message=f"Entry posted to {m['label']}." if not d.reused
                      else f"Entry already posted to {m['label']} (same delivery key): not sent again.")


def _since(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentError("since", "expected an ISO 8601 time (2026-01-31T12:00:00Z) or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def mirror_entries(ctx):
    inc = _incident(ctx)
    rows = ctx.store.mirror_entries(inc, since=_since(ctx.args.get("since")), limit=ctx.args["limit"])
    for r in rows:
        r["journaledAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["journaledAt"]))
    return ctx.result(rows, rows, message=None if rows else f"No entries for incident {inc}.")


def mirror_close(ctx):
    a = ctx.args
    inc = _incident(ctx)
    m = _open_mirror(ctx, inc)
    autoclose = m.get("autoclose") if a.get("autoclose") is None else a["autoclose"]
    note = f"Mirroring of incident {inc} stopped."
    if autoclose and m["kind"] == "channel" and m.get("status") != "deleted":
        lookups = notify._Lookups(ctx)
        lookups.need("team", "deleting the channel")
        graph = ctx.runtime.client(lookups.flow)
        try:
            graph.delete(f"/teams/{seg(m['teamId'])}/channels/{seg(m['channelId'])}")
        except NotFound:
            pass
        ctx.store.delete("channel", f"{m['teamId']}/{m.get('channelName') or ''}".strip())
        Outbox(ctx.store).forget(delivery_key("mirror-channel", m["teamId"], (m.get("channelName") or "").casefold()))
        status = "deleted"
        note += f" The channel {m['label']} was deleted."
    else:
        status = "closed"
    m = M.set_status(ctx.store, m, status)
    m["entries"] = len(ctx.store.mirror_entries(inc))
    row = _view(m)
    return ctx.result(row, row, message=note)


def mirror_flush(ctx):
    out = M.flush(ctx.runtime, force=True)
    if not out["configured"]:
        raise IntegrationError("no webhook receives mirror.entry",
                               hint="`msteams webhook add URL --event mirror.entry`, or set mirror_webhook_url "
                                    "in the config")
    row = {"sent": out["sent"], "pending": out["pending"], "error": out["error"]}
    note = f"{out['sent']} entr{'y' if out['sent'] == 1 else 'ies'} delivered to the webhook; {out['pending']} waiting."
    if out["error"]:
        note += f" Stopped: {out['error']}"
    return ctx.result(row, row, message=note)
