"""Bot notifications over the Bot Connector (the `bot` flow): proactive 1:1 messages to users
and posts to channels, as plain text, markdown with @mentions (`@Name;`), or an Adaptive Card;
and editing a sent message in place through the reference stored when it was sent.

The bot token cannot call Graph. Names (users, teams, channels, mentioned people) are looked up
with the flows the command lists under `lookups` (the app flow) when one is ready; without one,
recipients must be given as ids (a user's Entra object id, a channel id `19:...`).
"""
from __future__ import annotations

import html
import json
import logging
import re
import time
import uuid

from integration.engine import redact
from integration.engine.errors import ArgumentError, ConfigError, IntegrationError, NotFound, NotSent, PermissionDenied
from integration.delivery.fanout import fan_out
from integration.graph.client import need_id, seg
from integration.delivery.outbox import Outbox, delivery_key, delivery_scope, failure_of
from integration.teams import conversations, readback
from integration.graph.resolve import Prefetch, Resolver, is_guid, is_thread_id

log = logging.getLogger("msteams.notify")
# A row's statuses that mean the recipient has the message.
SENT = ("sent", "already sent", "sent-unrecorded")

HANDLERS = ("send_notification", "message_update")

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
MAX_ACTIVITY_BYTES = 28 * 1024  # Teams refuses messages above about 28 KB
# `@Name;` as XSOAR writes mentions: at the start or after a non-word character, up to the ';'.
MENTION_RE = re.compile(r"(?<![\w@])@([^@;<>\n]{1,128}?);")
# A URL not already the target or the text of a markdown link (XSOAR's urlify_hyperlinks).
URL_RE = re.compile(r"(?<!\]\()(?<!\[)https?://[^\s\[\]()<>]+")
EXTERNAL_FORM = "external/form"  # the address of an XSOAR data-collection form


def urlify(message: str, form_header: str) -> str:
    """URLs as markdown links, as XSOAR sends them: a form's link (…/external/form/…) shown as
    ``form_header``, any other as itself."""
    return URL_RE.sub(lambda m: f"[{form_header if EXTERNAL_FORM in m.group() else m.group()}]({m.group()})", message)


# ---- content ----
def adaptive_attachment(value, argument: str = "adaptive_card") -> dict:
    """A Bot Framework attachment from a raw card (`{"type": "AdaptiveCard", ...}`) or one already
    wrapped (`{"contentType": "application/vnd.microsoft.card.adaptive", "content": {...}}`)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ArgumentError(argument, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(value, dict) and value.get("type") == "AdaptiveCard":
        return {"contentType": ADAPTIVE, "content": value}
    if (isinstance(value, dict) and value.get("contentType") == ADAPTIVE and isinstance(value.get("content"), dict)
            and value["content"].get("type") == "AdaptiveCard"):
        return {"contentType": ADAPTIVE, "content": value["content"]}
    raise ArgumentError(argument, 'expected an Adaptive Card ({"type": "AdaptiveCard", ...}) or an attachment '
                                  f'{{"contentType": "{ADAPTIVE}", "content": {{...}}}}')


def render_mentions(message: str, lookup) -> tuple[str, list[dict]]:
    """Markdown text with `@Name;` turned into Teams mentions; everything else HTML-escaped so
    it shows literally. ``lookup(name)`` returns the user (``id``)."""
    parts, entities, pos = [], [], 0
    for m in MENTION_RE.finditer(message):
        name = m.group(1).strip()
        if not name:
            continue
        user = lookup(name)
        at = f"<at>{html.escape(name, quote=False)}</at>"
        parts += [html.escape(message[pos:m.start()], quote=False), at]
        entities.append({"type": "mention", "text": at, "mentioned": {"id": user["id"], "name": name}})
        pos = m.end()
    parts.append(html.escape(message[pos:], quote=False))
    return "".join(parts), entities


class _Lookups:
    """Graph name lookups for a bot command, through the first ready flow under `lookups`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.flow = next((f for f, _ in ctx.spec.lookups if ctx.runtime.auth.ready(f)), None)
        self.resolver = Resolver(ctx.runtime.client(self.flow), ctx.store) if self.flow else None
        self.prefetch = None  # a resolve.Prefetch running ahead of a fan-out

    def need(self, argument: str, what: str) -> Resolver:
        if self.resolver is None:
            raise ArgumentError(argument, f"{what} is a name, and looking names up needs the app flow, which is not "
                                          "configured", hint="configure the app flow, or pass ids (a user's object "
                                                             "id, a channel id 19:...)")
        return self.resolver

    def user(self, name: str, argument: str = "user") -> dict:
        if is_guid(name):
            return {"id": name.strip(), "displayName": None}
        resolver = self.need(argument, f"user '{name}'")
        if self.prefetch is not None:
            self.prefetch.wait(name)
        return resolver.user(name)


def build_activity(ctx, lookups: _Lookups) -> dict:
    args = ctx.args
    message, card = args.get("message"), args.get("adaptive_card")
    if args.get("format_as_card") and message:  # XSOAR's message-update: the message is the card
        if card is not None:
            raise ArgumentError("adaptive_card", "with format_as_card the message is the card: give one of them")
        message, card = None, adaptive_attachment(message, "message")
    activity: dict = {"type": "message"}  # a message, a card or both (commands.yml's rule)
    if message:
        if args["message_format"] == "text":
            activity.update(text=message, textFormat="plain")
        else:
            if args.get("external_form_url_header"):
                message = urlify(message, args["external_form_url_header"])
            text, entities = render_mentions(message, lambda n: lookups.user(n, "message"))
            activity.update(text=text, textFormat="markdown")
            if entities:
                activity["entities"] = entities
    if card is not None:
        activity["attachments"] = [adaptive_attachment(card)]
    size = len(json.dumps(activity).encode())
    if size > MAX_ACTIVITY_BYTES:
        raise ArgumentError("adaptive_card" if card is not None else "message",
                            f"the message is {size} bytes; Teams accepts about {MAX_ACTIVITY_BYTES}")
    return activity


# ---- send-notification ----
def _tenant(ctx) -> str:
    tenant = ctx.cfg.tenant_id or ctx.cfg.bot_tenant_id
    if not tenant:
        raise ConfigError("send-notification needs tenant_id in the config (proactive messages name the tenant)")
    return tenant


def _targets(ctx) -> list[tuple[str, str]]:
    args = ctx.args
    users = (args.get("user") or []) + (args.get("team_member") or [])
    targets = [("user", u) for u in dict.fromkeys(u.strip() for u in users)]
    if args.get("channel"):  # a team or a message_id comes with one (commands.yml's rules)
        targets.append(("channel", args["channel"]))
    if not targets:  # the rule saw a user list, but an empty one
        raise ArgumentError("user", "give one or more users, or a channel (with its team, unless it is a channel id)")
    return targets


def _label(user: dict) -> str:
    """How a recipient is named in results: "Name <mail>", or the id when no name is known."""
    return f"{user['displayName']} <{user.get('mail') or user.get('userPrincipalName') or user['id']}>" \
        if user.get("displayName") else user["id"]


def _open_user_conversation(ctx, lookups: _Lookups, name: str, tenant: str) -> tuple[str, str, str, str | None]:
    """(conversation id, recipient id, label, learned service URL or None) of the bot's 1:1
    conversation with a user: the one Teams told the bot endpoint about (bot/conversations.py),
    else one opened through the Bot Connector, cached per bot and user (Teams gives the same one
    each time); a user answered from the cache whose id the Bot Connector no longer knows is
    looked up again once."""
    for attempt in (0, 1):
        r = lookups.resolver
        cached_before = len(r.from_cache) if r else 0
        user = lookups.user(name)
        label = _label(user)
        learned = conversations.personal(ctx.store, ctx.cfg.bot_id, user["id"], ctx.cfg.tenant_id)
        if learned and learned.get("conversationId"):
            return learned["conversationId"], user["id"], label, learned.get("serviceUrl")
        known = conversations.opened(ctx.store, ctx.cfg.bot_id, user["id"], ctx.cfg.tenant_id)
        if known:
            return known["conversationId"], user["id"], label, None
        try:
            return _create_user_conversation(ctx, user["id"], tenant, label), user["id"], label, None
        except NotFound:
            if attempt == 0 and r and len(r.from_cache) > cached_before and r.forget_cached():
                continue
            raise
    raise AssertionError("unreachable")


def _create_user_conversation(ctx, user_id: str, tenant: str, label: str) -> str:
    """The bot's 1:1 conversation with a user through the Bot Connector (get-or-create: Teams
    gives the same one each time), cached; a user whose app is not installed is named so."""
    body = {"bot": {"id": ctx.cfg.bot_id}, "members": [{"id": user_id}], "isGroup": False,
            "tenantId": tenant, "channelData": {"tenant": {"id": tenant}}}
    try:
        conv = ctx.bot.post("/v3/conversations", body)
    except PermissionDenied as exc:
        if conversations.gone(exc):
            raise PermissionDenied(f"{label}: the app is not installed for this user (Teams: {exc.code})",
                                   flow="bot", hint=NOT_INSTALLED_HINT) from None
        raise
    conv_id = need_id(conv, f"Bot Connector POST /v3/conversations for {label}")
    conversations.remember_opened(ctx.store, ctx.cfg.bot_id, user_id, conv_id, tenant)
    return conv_id


NOT_INSTALLED_HINT = ("install the app for them (Teams admin center > Manage apps, or an app setup policy; "
                      "`msteams app-package` builds it), or ask them to open the bot once; then send again")


def _channel_conversation(ctx, lookups: _Lookups) -> tuple[str, str, str, str | None]:
    """(conversation id, channel id, label, learned service URL or None): a channel's
    conversation id is the channel id."""
    channel, team = ctx.args["channel"].strip(), ctx.args.get("team")
    if is_thread_id(channel):
        learned = conversations.channel(ctx.store, ctx.cfg.bot_id, channel, ctx.cfg.tenant_id) or {}
        return channel, channel, f"channel {channel}", learned.get("serviceUrl")
    if not team:
        raise ArgumentError("team", "is required when channel is a name (or pass the channel id 19:...)")
    r = lookups.need("channel", f"channel '{channel}'")
    t = r.team(team)
    ch = r.channel(t["id"], channel)
    learned = conversations.channel(ctx.store, ctx.cfg.bot_id, ch["id"], ctx.cfg.tenant_id) or {}
    return (ch["id"], ch["id"], f"{t.get('displayName') or t['id']} / {ch.get('displayName') or ch['id']}",
            learned.get("serviceUrl"))


def _thread(conv_id: str, message_id: str | None) -> str:
    """The conversation of a reply in a channel thread: the channel's, ';messageid=' the root's."""
    return f"{conv_id};messageid={message_id.strip()}" if message_id else conv_id


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _key(scope: tuple, kind: str, rid: str, thread: str | None) -> str:
    """The delivery key of one recipient's notification: the queued path must find the same one."""
    return delivery_key(scope, kind, rid, thread.strip()) if thread else delivery_key(scope, kind, rid)


def _prepare(ctx, lookups: _Lookups, tenant: str, scope: tuple | None, target: tuple[str, str], *,
             key: str | None = None, label: str | None = None) -> dict:
    """Where one recipient's notification goes (its conversation opened if need be) and its key."""
    kind, name = target
    if kind == "user":
        conv_id, rid, found_label, service_url = _open_user_conversation(ctx, lookups, name, tenant)
    else:
        conv_id, rid, found_label, service_url = _channel_conversation(ctx, lookups)
        if ctx.args.get("message_id"):  # a reply in the thread of that message
            conv_id = _thread(conv_id, ctx.args["message_id"])
            found_label += f" (thread {ctx.args['message_id'].strip()})"
    # Where Teams last said this tenant lives, else where it said the conversation lives (both
    # learned from verified activities), else the configured URL.
    service_url = (conversations.tenant_service_url(ctx.store, ctx.cfg.bot_id, tenant) or service_url
                   or ctx.cfg.bot_service_url)
    thread = ctx.args.get("message_id") if kind == "channel" else None
    key = key or _key(scope, kind, rid, thread)
    return {"kind": kind, "rid": rid, "label": label or found_label, "conv_id": conv_id, "service_url": service_url,
            "key": key, "ref": str(uuid.UUID(key)), "tenant": tenant}  # the same delivery: the same messageRef


class HeldElsewhere(IntegrationError):
    """Another sender holds this delivery's lease right now: try again later, do not drop it."""


def _deliver(ctx, p: dict, activity: dict) -> dict:
    label, ref = p["label"], p["ref"]
    where = {"conv_id": p["conv_id"], "service_url": p["service_url"]}

    def post() -> dict:
        client = conversations.bot_client_for(ctx.runtime, where["service_url"])
        return client.post(conversations.activities_url(where["service_url"], where["conv_id"]), activity) or {}

    def ref_value(activity_id: str | None) -> dict:
        return {"conversationId": where["conv_id"], "activityId": activity_id, "serviceUrl": where["service_url"],
                "recipient": label, "recipientId": p["rid"], "recipientType": p["kind"], "botId": ctx.cfg.bot_id,
                "sentAt": _now(), "card": "attachments" in activity}

    def keep_ref(value: dict) -> None:
        try:
            ctx.store.save_message_ref(ref, value)
        except Exception as exc:  # noqa: BLE001 - the message arrived: keep its reference for the next run
            lost_ref.append(box.unrecorded(exc, {"kind": "message_ref", "ref": ref, "value": value}))

    def send():
        # Each refusal below is certain the message was not written, so sending again cannot
        # duplicate it: the outbox sees one send that either arrived or failed by name.
        started.setdefault("at", time.time())
        healed = fell_back = False
        while True:
            try:
                sent = post()
                break
            except NotSent:
                configured = ctx.cfg.bot_service_url.rstrip("/")
                if fell_back or where["service_url"].rstrip("/") == configured:
                    raise
                fell_back = True  # a learned service URL that does not answer: the configured one
                log.warning("%s: the learned service URL %s does not answer; sending through %s",
                            label, where["service_url"], configured)
                where["service_url"] = ctx.cfg.bot_service_url
            except (NotFound, PermissionDenied) as exc:
                if healed or not conversations.gone(exc):
                    raise
                healed = True
                where["conv_id"] = _heal(ctx, p, exc)
        keep_ref(ref_value(sent.get("id")))
        return sent.get("id"), sent

    def read_back() -> str | None:
        # The attempt began when this process sent, or (a sender that died, an earlier run)
        # after the key was first claimed.
        since = started.get("at") or (ctx.store.outbox_get(p["key"]) or {}).get("created")
        found = _read_back(ctx, p, where["conv_id"], activity, since)
        if found:  # Teams' chatMessage id is the activity id: message-update can edit it
            keep_ref(ref_value(found))
        return found

    started: dict = {}
    lost_ref: list[str] = []
    box = Outbox(ctx.store)
    # The Bot Connector cannot read a conversation back; Graph can, with the app flow: an
    # ambiguous send is settled by reading it back, and stays unknown only when that cannot be done.
    d = box.deliver(p["key"], send, read_back=read_back, target=label, pending_at_write=True,
                    resend_unknown=ctx.args.get("resend_unknown", False))
    if lost_ref and not d.unrecorded:
        d.unrecorded = lost_ref[0]
    if d.state == "pending":
        raise HeldElsewhere(f"{label}: {d.reason}")
    d.settled(label)
    return {"recipient": label, "recipientType": p["kind"], "status": d.status,
            "error": d.unrecorded, "messageRef": ref, "activityId": d.message_id, "conversationId": where["conv_id"],
            "deliveryKey": p["key"]}


def _read_back(ctx, p: dict, conv_id: str, activity: dict, since: float | None) -> str | None:
    """The id of this delivery's message where it went, read through Graph (teams/readback.py),
    or None when it is not there; an IntegrationError when it cannot be read: no app flow, a
    permission missing, or a channel whose team is not known (a channel id given without it)."""
    if p["kind"] == "user":
        return readback.find_user_message(ctx.runtime, ctx.store, user_id=p["rid"], bot_id=ctx.cfg.bot_id,
                                          activity=activity, since=since)
    team = (ctx.args.get("team") or "").strip()
    if not team:
        raise NotFound(f"{p['label']}: the channel's team is not known, so its posts cannot be read back")
    if not is_guid(team):
        team = _Lookups(ctx).need("team", f"team '{team}'").team(team)["id"]
    channel, _, thread = conv_id.partition(";messageid=")
    return readback.find_channel_message(ctx.runtime, team_id=team, channel_id=channel, thread=thread or None,
                                         bot_id=ctx.cfg.bot_id, activity=activity, since=since)


def _heal(ctx, p: dict, exc: IntegrationError) -> str:
    """A stored conversation Teams no longer takes (gone, or the bot not in it): stop using it;
    a user's is opened again (get-or-create) and its id returned; a channel's cannot be, so the
    failure is named."""
    bot_id, label = ctx.cfg.bot_id, p["label"]
    base = p["conv_id"].partition(";messageid=")[0]
    conversations.mark_gone(ctx.store, bot_id, p["kind"], p["rid"], exc.code)
    if p["kind"] == "user":
        log.info("%s: conversation %s refused (%s); opening it again", label, base, exc.code)
        return _create_user_conversation(ctx, p["rid"], p["tenant"], label)
    if exc.code == "BotNotInConversationRoster":
        raise PermissionDenied(f"{label}: the bot is no longer in this team (Teams: {exc.code})", flow="bot",
                               hint="add the app to the team again (Teams > the team > Apps), then send again") from None
    raise NotFound(f"{label}: the channel no longer exists (Teams: {exc.code})",
                   hint="check the channel with `msteams channel-list`") from None


def _notify_one(ctx, lookups: _Lookups, activity: dict, tenant: str, scope: tuple, target: tuple[str, str]) -> dict:
    return _deliver(ctx, _prepare(ctx, lookups, tenant, scope, target), activity)


def send_notification(ctx):
    tenant = _tenant(ctx)
    targets = _targets(ctx)
    if ctx.args.get("queue"):
        _queue_configured(ctx)
    lookups = _Lookups(ctx)
    activity = build_activity(ctx, lookups)  # bad content fails here, before anything is sent
    scope = delivery_scope(ctx)
    if ctx.args.get("queue"):
        return _enqueue(ctx, lookups, activity, tenant, scope, targets)
    names = [t for k, t in targets if k == "user" and not is_guid(t)]
    if lookups.resolver is not None and len(names) > 1:
        # Lookups run ahead of the sends in chunks, instead of all of them before the first send.
        lookups.prefetch = Prefetch(lookups.resolver, names)
    try:
        ctx.bot.tokens.token()  # one sign-in before the workers start, not one per worker
        outcomes = fan_out(targets, lambda t: _notify_one(ctx, lookups, activity, tenant, scope, t),
                           workers=ctx.cfg.fanout_workers,
                           progress=ctx.runtime.progress("notifying", len(targets)) if len(targets) > 1 else None)
    finally:
        if lookups.prefetch is not None:
            lookups.prefetch.close()
    rows, errors = _rows(outcomes)
    sent_n = sum(r["status"] in SENT for r in rows)
    if not sent_n and ctx.args.get("fail_on") != "none":
        first = errors[0]
        if len(errors) > 1:
            detail = "; ".join(f"{r['recipient']}: {r['error']}" for r in rows)
            if len({type(e) for e in errors}) > 1:
                raise IntegrationError(f"no notification was sent ({len(errors)} recipients failed): {detail}")
            first.message = f"no notification was sent ({len(errors)} recipients failed): {detail}"
        raise first
    note = f"Notification sent to {sent_n} of {len(rows)} recipient(s)."
    again = sum(r["status"] == "already sent" for r in rows)
    if again:
        note += f" {again} had it already (same delivery key): not sent again."
    if sent_n < len(rows):
        note += " Not sent: " + "; ".join(f"{r['recipient']}: {r['status']}: {r['error']}" for r in rows
                                        if r["status"] not in SENT)
    return ctx.result(rows, rows, message=note, failed=len(errors))


def _rows(outcomes) -> tuple[list[dict], list[IntegrationError]]:
    """A row per recipient in input order, the failed ones with their error."""
    rows, errors = [], []
    for o in outcomes:
        if o.ok:
            rows.append(o.value)
            continue
        status, exc = failure_of(o.error)
        errors.append(exc)
        rows.append({"recipient": o.item[1], "recipientType": o.item[0], "status": status,
                     "error": redact.redact(exc.message), "messageRef": None, "activityId": None,
                     "conversationId": None, "deliveryKey": None})
    return rows, errors


# ---- queued: the worker pool sends (queue=true; integration/frontends/worker.py) ----
def _queue_configured(ctx) -> None:
    if not ctx.cfg.store_url:
        raise ArgumentError("queue", "queues the sends for `msteams worker`, which needs store_url (the Redis the "
                                     "workers read)", hint="set store_url in the config, or leave queue out to send "
                                                           "from this process")


def _enqueue(ctx, lookups: _Lookups, activity: dict, tenant: str, scope: tuple, targets: list) -> object:
    """Names to ids here (bad names fail here, reported per recipient), then one job per
    recipient with the delivery key the in-process send would use; recipients already sent
    under that key are not queued again. The workers open conversations and send."""
    from integration.delivery.queue import JobQueue

    thread = ctx.args.get("message_id")
    rids: dict[str, str] = {}  # delivery key -> recipient id (a user's object id, a channel id)

    def locate(target: tuple[str, str]) -> dict:
        kind, name = target
        if kind == "user":
            user = lookups.user(name)
            rid, label = user["id"], _label(user)
            conv_id = None
        else:
            conv_id, rid, label, _ = _channel_conversation(ctx, lookups)
            if thread:
                label += f" (thread {thread.strip()})"
        key = _key(scope, kind, rid, thread if kind == "channel" else None)
        rids[key] = rid
        row = {"recipient": label, "recipientType": kind, "status": "queued", "error": None,
               "messageRef": str(uuid.UUID(key)), "activityId": None, "conversationId": conv_id, "deliveryKey": key}
        prior = ctx.store.outbox_get(key)
        if prior and prior.get("state") == "sent":
            row.update(status="already sent", activityId=prior.get("message_id"))
        return row

    names = [t for k, t in targets if k == "user" and not is_guid(t)]
    if lookups.resolver is not None and len(names) > 1:
        lookups.prefetch = Prefetch(lookups.resolver, names)
    try:
        outcomes = fan_out(targets, locate, workers=ctx.cfg.fanout_workers)
    finally:
        if lookups.prefetch is not None:
            lookups.prefetch.close()
    rows, errors = _rows(outcomes)
    todo = [r for r in rows if r["status"] == "queued"]
    resend = bool(ctx.args.get("resend_unknown", False))
    jobs = [("notify", {"key": r["deliveryKey"], "kind": r["recipientType"], "rid": rids[r["deliveryKey"]],
                        "label": r["recipient"], "tenant": tenant,
                        "thread": thread.strip() if thread and r["recipientType"] == "channel" else None,
                        "activity": activity, "resend_unknown": resend}) for r in todo]
    if jobs:
        q = JobQueue.from_config(ctx.cfg)
        try:
            q.enqueue_many(jobs)
        finally:
            q.r.close()
    done = len(rows) - len(errors)
    if not done:
        first = errors[0]
        if len(errors) > 1:
            first.message = "no notification was queued: " + "; ".join(f"{r['recipient']}: {r['error']}" for r in rows)
        raise first
    note = f"Queued {len(todo)} of {len(rows)} notification(s) for the worker pool (msteams worker)."
    if done > len(todo):
        note += f" {done - len(todo)} had it already (same delivery key): not queued again."
    if errors:
        note += " Not queued: " + "; ".join(f"{r['recipient']}: {r['error']}" for r in rows if r["status"] == "failed")
    return ctx.result(rows, rows, message=note)


def deliver_queued(runtime, body: dict, *, before_send=None) -> dict:
    """Run one queued notification in a worker: open the conversation if need be, then send
    through the outbox under the job's delivery key (a key already sent is not sent again).
    ``before_send(url)`` runs after the outbox was checked and before the send is claimed
    (the worker takes its pacing slot there, so no delivery is marked pending while it waits)."""
    args: dict = {"resend_unknown": bool(body.get("resend_unknown"))}
    if body["kind"] == "channel":
        args["channel"] = body["rid"]
        if body.get("thread"):
            args["message_id"] = body["thread"]
    ctx = runtime.context("send-notification", args, flow="bot")
    prior = ctx.store.outbox_get(body["key"])
    if prior and prior.get("state") == "sent":
        return {"recipient": body["label"], "status": "already sent", "deliveryKey": body["key"],
                "activityId": prior.get("message_id")}
    p = _prepare(ctx, _Lookups(ctx), body["tenant"], None, (body["kind"], body["rid"]), key=body["key"],
                 label=body["label"])
    if before_send is not None:
        before_send(conversations.activities_url(p["service_url"], p["conv_id"]))
    return _deliver(ctx, p, body["activity"])


# ---- message-update ----
def _ref_by_id(ctx, lookups: _Lookups) -> tuple[str | None, dict]:
    """XSOAR's way to name a sent message: its activity id (message_id) and where it is (a
    channel with its team, or the team member's 1:1 chat with the bot): (None, a ref-like dict)."""
    a = ctx.args
    activity_id = a["message_id"].strip()
    if a.get("channel"):  # else the team_member (commands.yml's rule)
        conv_id, _, label, service_url = _channel_conversation(ctx, lookups)
    else:
        members = a["team_member"] if isinstance(a["team_member"], list) else [a["team_member"]]
        if len(members) != 1:
            raise ArgumentError("team_member", "name the one user the message was sent to")
        conv_id, _, label, service_url = _open_user_conversation(ctx, lookups, members[0].strip(), _tenant(ctx))
    return None, {"conversationId": conv_id, "activityId": activity_id, "recipient": label,
                  "serviceUrl": service_url or ctx.cfg.bot_service_url}


def message_update(ctx):
    a = ctx.args  # a message_ref or a message_id (commands.yml's rule)
    lookups = _Lookups(ctx)
    activity = build_activity(ctx, lookups)
    if a.get("message_ref"):
        ref_id = a["message_ref"].strip()
        ref = ctx.store.get_message_ref(ref_id)
        if ref is None:
            raise NotFound(f"message reference '{ref_id}' not found in the context store",
                           hint="use a messageRef returned by send-notification with the same store_path")
    else:
        ref_id, ref = _ref_by_id(ctx, lookups)
    # The stored service URL is the configured one or one Teams gave in a verified activity
    # (bot/conversations.py): the bot token goes nowhere else.
    base = (ref.get("serviceUrl") or ctx.cfg.bot_service_url).rstrip("/")
    url = f"{base}/v3/conversations/{seg(ref['conversationId'])}/activities/{seg(ref['activityId'])}"
    conversations.bot_client_for(ctx.runtime, base).put(url, dict(activity, id=ref["activityId"]))
    ref.update(updatedAt=_now(), edits=int(ref.get("edits") or 0) + 1, card="attachments" in activity)
    if ref_id:
        ctx.store.save_message_ref(ref_id, ref)
    row = {"messageRef": ref_id, "recipient": ref.get("recipient"), "status": "updated",
           "activityId": ref["activityId"], "conversationId": ref["conversationId"], "edits": ref["edits"]}
    return ctx.result(row, row, message=f"Message {ref_id or ref['activityId']} to {ref.get('recipient')} updated.")
