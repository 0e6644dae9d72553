"""Chat and channel messages: post, list, get, edit, and channel replies.

Posting needs a signed-in user (an app-only token may post only in migration mode, which the
emulator does not offer: 403). Contents are stored verbatim. A request body over
:data:`MAX_MESSAGE_BYTES` is refused with 413 ``RequestEntityTooLarge`` (Graph's limit is
"about 28 KB" for the message with its mentions and cards).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..core import Context, GraphError, Request, Response, graph_route
from ..state import Channel, Chat, Message, Team, TenantState
from .common import (ALL_HISTORY, bad, caller_user_id, chat_or_error, forbidden, is_app, json_object, ms_to_iso,
                     new_message_id, not_found, opt_list, opt_obj, opt_str, require_chat_member, user_identity)
from .odata import Schema, compile_filter, parse_expand, parse_orderby, parse_top, qopt
from .paging import base_of, collection, paginate

MAX_MESSAGE_BYTES = 28 * 1024
MAX_TOP = 50
DEFAULT_TOP = 20
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
APP_POST_REFUSED = ("Message POST is allowed in application-only context only for import purposes. Refer to "
                    "https://docs.microsoft.com/microsoftteams/platform/graph-api/import-messages/import-external-messages-to-teams "
                    "for more details.")


@dataclass
class GraphMessage(Message):
    """A :class:`~fake_tenant.state.Message` with the chatMessage fields the base lacks."""

    subject: str | None = None
    importance: str = "normal"
    last_edited: str | None = None
    etag: str | None = None
    policy_violation: dict | None = None


MESSAGE_SCHEMA = Schema(
    "microsoft.graph.chatMessage",
    props={"lastmodifieddatetime": lambda m: m["lastModifiedDateTime"],
           "createddatetime": lambda m: m["createdDateTime"],
           "id": lambda m: m["id"], "messagetype": lambda m: m["messageType"],
           "from/user/id": lambda m: ((m.get("from") or {}).get("user") or {}).get("id")},
    functions=frozenset(),
    operators=frozenset({"eq", "gt", "lt", "ge", "le"}),
    case_insensitive=False,
)

ORDERBY = {"lastmodifieddatetime": ("desc",), "createddatetime": ("desc",)}


# ------------------------------------------------------------------------------------ shapes

def message_web_url(state: TenantState, m: Message) -> str:
    if m.chat_id:
        return (f"https://teams.microsoft.com/l/message/{quote(m.chat_id, safe='')}/{m.id}"
                "?context=%7B%22contextType%22%3A%22chat%22%7D")
    parent = m.reply_to_id or m.id
    return (f"https://teams.microsoft.com/l/message/{quote(m.channel_id or '', safe='')}/{m.id}"
            f"?groupId={m.team_id}&tenantId={state.tenant_id}&createdTime={m.id}&parentMessageId={parent}")


def _attachment_out(a: dict) -> dict:
    return {"id": a.get("id"), "contentType": a.get("contentType"), "contentUrl": a.get("contentUrl"),
            "content": a.get("content"), "name": a.get("name"), "thumbnailUrl": a.get("thumbnailUrl"),
            "teamsAppId": a.get("teamsAppId")}


def message_resource(state: TenantState, m: Message, *, expand_replies: bool = False) -> dict:
    out = {
        "id": m.id,
        "replyToId": m.reply_to_id,
        "etag": getattr(m, "etag", None) or m.id,
        "messageType": "message",
        "createdDateTime": m.created,
        "lastModifiedDateTime": m.last_modified or m.created,
        "lastEditedDateTime": getattr(m, "last_edited", None),
        "deletedDateTime": None,
        "subject": getattr(m, "subject", None),
        "summary": None,
        "chatId": m.chat_id,
        "importance": getattr(m, "importance", "normal"),
        "locale": "en-us",
        "webUrl": message_web_url(state, m),
        "channelIdentity": ({"teamId": m.team_id, "channelId": m.channel_id} if m.channel_id else None),
        "policyViolation": getattr(m, "policy_violation", None),
        "eventDetail": None,
        "from": m.sender,
        "body": dict(m.body),
        "attachments": [_attachment_out(a) for a in m.attachments],
        "mentions": list(m.mentions),
        "reactions": [],
        "messageHistory": [],
    }
    if expand_replies:
        out["replies"] = [message_resource(state, r) for r in sorted(m.replies, key=lambda r: int(r.id), reverse=True)]
    return out


def preview(state: TenantState, m: Message) -> dict:
    return {"id": m.id, "createdDateTime": m.created, "isDeleted": False, "messageType": "message",
            "eventDetail": None, "body": dict(m.body), "from": m.sender}


# ------------------------------------------------------------------------------------ validation

_AT_RE = re.compile(r"<at\s+id\s*=\s*(?:\"|')?(\d+)(?:\"|')?\s*>", re.IGNORECASE)
_ATTACH_RE = re.compile(r"<attachment\s+id\s*=\s*(?:\"([^\"]*)\"|'([^']*)')\s*>\s*</attachment>", re.IGNORECASE)


def parse_message(req: Request, *, patch: bool = False) -> dict:
    """Validate a chatMessage body; the fields to store. Raises a Graph 400/413."""
    if len(req.body or b"") > MAX_MESSAGE_BYTES:
        raise GraphError(413, "RequestEntityTooLarge",
                         f"Message size exceeded the limit: the request body is {len(req.body)} bytes; "
                         f"a message with its mentions and attachments can be at most about {MAX_MESSAGE_BYTES} bytes.")
    data = json_object(req)
    out: dict[str, Any] = {}
    body = opt_obj(data, "body")
    if body is None:
        if not patch:
            raise bad("Missing required property 'body': a message needs body.content.")
    else:
        content = body.get("content")
        if content is None:
            raise bad("Missing required property 'body.content'.")
        if not isinstance(content, str):
            raise bad("Invalid value for property 'body.content': a string is expected.")
        if not content.strip():
            raise bad("Message body cannot be empty.")
        ctype = body.get("contentType", "text")
        if ctype is None:
            ctype = "text"
        if not isinstance(ctype, str) or ctype.lower() not in ("text", "html"):
            raise bad(f"Invalid value '{ctype}' for property 'body.contentType': expected text or html.")
        out["body"] = {"contentType": ctype.lower(), "content": content}
    if "subject" in data:
        out["subject"] = opt_str(data, "subject", max_len=255)
    if "importance" in data:
        imp = opt_str(data, "importance") or "normal"
        if imp.lower() not in ("normal", "high", "urgent"):
            raise bad(f"Invalid value '{imp}' for property 'importance': expected normal, high or urgent.")
        out["importance"] = imp.lower()
    content = (out.get("body") or {}).get("content", "")
    mentions = opt_list(data, "mentions")
    if mentions is not None:
        at_ids = {int(x) for x in _AT_RE.findall(content)}
        seen = set()
        for i, mn in enumerate(mentions):
            if not isinstance(mn, dict):
                raise bad(f"Invalid mention at index {i}: an object is expected.")
            mid = mn.get("id")
            if not isinstance(mid, int) or isinstance(mid, bool) or mid < 0:
                raise bad(f"Invalid value for property 'mentions[{i}].id': a non-negative integer is expected.")
            if mid in seen:
                raise bad(f"Duplicate mention id {mid}.")
            seen.add(mid)
            if not isinstance(mn.get("mentionText"), str):
                raise bad(f"Invalid value for property 'mentions[{i}].mentionText': a string is expected.")
            mentioned = mn.get("mentioned")
            if not isinstance(mentioned, dict) or not any(isinstance(mentioned.get(k), dict) for k in
                                                           ("user", "application", "conversation", "tag")):
                raise bad(f"Invalid value for property 'mentions[{i}].mentioned': an identity set is expected.")
            if out.get("body", {}).get("contentType") != "html":
                raise bad("Mentions require a message body with contentType html.")
            if mid not in at_ids:
                raise bad(f"The mention with id {mid} is not referenced in the message body "
                          f"(expected <at id=\"{mid}\">...</at>).")
        out["mentions"] = mentions
    attachments = opt_list(data, "attachments")
    if attachments is not None:
        referenced = {a or b for a, b in _ATTACH_RE.findall(content)}
        ids = set()
        stored = []
        for i, a in enumerate(attachments):
            if not isinstance(a, dict):
                raise bad(f"Invalid attachment at index {i}: an object is expected.")
            aid = a.get("id")
            if not isinstance(aid, str) or not aid:
                raise bad(f"Invalid value for property 'attachments[{i}].id': a string is expected.")
            if aid in ids:
                raise bad(f"Duplicate attachment id '{aid}'.")
            ids.add(aid)
            ctype = a.get("contentType")
            if not isinstance(ctype, str) or not ctype:
                raise bad(f"Invalid value for property 'attachments[{i}].contentType': a string is expected.")
            for k in ("content", "contentUrl", "name", "thumbnailUrl", "teamsAppId"):
                if a.get(k) is not None and not isinstance(a.get(k), str):
                    raise bad(f"Invalid value for property 'attachments[{i}].{k}': a string is expected.")
            if ctype.lower() == ADAPTIVE_CARD:
                raw = a.get("content")
                if not isinstance(raw, str):
                    raise bad(f"Invalid value for property 'attachments[{i}].content': an adaptive card is sent "
                              "as a JSON string.")
                try:
                    card = json.loads(raw)
                except ValueError:
                    raise bad(f"Invalid adaptive card in 'attachments[{i}].content': not valid JSON.") from None
                if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
                    raise bad(f"Invalid adaptive card in 'attachments[{i}].content': \"type\" must be \"AdaptiveCard\".")
            elif ctype.lower() == "reference" and not a.get("contentUrl"):
                raise bad(f"Attachment '{aid}' of type reference needs a contentUrl.")
            if aid not in referenced:
                raise bad(f"Attachment with id '{aid}' is not referenced in the message body "
                          f"(expected <attachment id=\"{aid}\"></attachment>).")
            stored.append(dict(a))
        out["attachments"] = stored
    return out


def new_message(state: TenantState, claims, fields: dict, **where: Any) -> GraphMessage:
    ms = new_message_id()
    created = ms_to_iso(ms)
    uid = caller_user_id(claims)
    sender = {"application": None, "device": None, "user": user_identity(state, uid)}
    return GraphMessage(id=str(ms), created=created, body=fields["body"], sender=sender,
                        mentions=fields.get("mentions", []), attachments=fields.get("attachments", []),
                        last_modified=created, subject=fields.get("subject"),
                        importance=fields.get("importance", "normal"), etag=str(ms), **where)


def apply_edit(m: Message, fields: dict) -> None:
    from ..core import utcnow_iso

    now = utcnow_iso()
    if "body" in fields:
        m.body = fields["body"]
    if "mentions" in fields:
        m.mentions = fields["mentions"]
    if "attachments" in fields:
        m.attachments = fields["attachments"]
    for k in ("subject", "importance"):
        if k in fields and hasattr(m, k):
            setattr(m, k, fields[k])
    m.last_modified = now
    if hasattr(m, "last_edited"):
        m.last_edited = now
    if hasattr(m, "etag"):
        m.etag = str(new_message_id())


def parse_new_message(req: Request) -> dict:
    """The fields of a message to post: 403 first unless a signed-in user posts, then as
    :func:`parse_message`."""
    if is_app(req.token) or not caller_user_id(req.token):
        raise forbidden(APP_POST_REFUSED)
    return parse_message(req)


def check_edit(claims, m: Message, body: dict) -> dict | None:
    """Who may PATCH: the sender (delegated); an app only to set policyViolation. Returns the
    policyViolation to set for an app caller, None for a user edit."""
    if is_app(claims):
        extra = set(body) - {"policyViolation", "@odata.type"}
        if extra or not isinstance(body.get("policyViolation"), dict):
            raise forbidden("In application context a message update may only set policyViolation.")
        return body["policyViolation"]
    uid = caller_user_id(claims)
    sender = ((m.sender or {}).get("user") or {}).get("id")
    if not uid or uid != sender:
        raise forbidden("Only the sender of a message can edit it.")
    return None


def list_messages(ctx: Context, req: Request, msgs: list[Message], context_url: str, *,
                  allow_expand_replies: bool = False) -> Response:
    """Newest first, $top <= 50, $orderby (desc only), $filter on the date properties, nextLink."""
    top = parse_top(qopt(req.query, "$top"), DEFAULT_TOP, MAX_TOP)
    order = parse_orderby(qopt(req.query, "$orderby"), ORDERBY, "microsoft.graph.chatMessage")
    pred = compile_filter(qopt(req.query, "$filter"), MESSAGE_SCHEMA)
    expand = parse_expand(qopt(req.query, "$expand"), ["replies"] if allow_expand_replies else [],
                          "microsoft.graph.chatMessage")
    with ctx.state.lock:
        res = [message_resource(ctx.state, m, expand_replies="replies" in expand) for m in msgs]
    if order is not None and order[0].lower() == "lastmodifieddatetime":
        key = lambda r: (r["lastModifiedDateTime"], int(r["id"]))
    else:
        key = lambda r: (r["createdDateTime"], int(r["id"]))
    if pred is not None:
        res = [r for r in res if pred(r)]
    res.sort(key=key, reverse=True)
    page, link = paginate(req, ctx, res, key, top, descending=True)
    return Response(200, collection(page, context_url, link, **{"@odata.count": len(page)}))


def _append_new(ctx: Context, req: Request, fields: dict, msgs: list[Message], **where: Any) -> tuple[Message, dict]:
    """A new message from the caller, appended to ``msgs`` (under the state lock), and its resource."""
    m = new_message(ctx.state, req.token, fields, **where)
    msgs.append(m)
    return m, message_resource(ctx.state, m)


def _entity(status: int, context: str, res: dict) -> Response:
    """One chatMessage answered with its ``@odata.context`` first, as Graph orders it."""
    return Response(status, {"@odata.context": context, **res})


def _patch(ctx: Context, req: Request, m: Message, body: dict, chat: Chat | None = None) -> Response:
    """PATCH ``m`` with the parsed request ``body``: an app may only set policyViolation; a user
    edit by the sender also makes ``chat`` (for a chat message) last updated."""
    with ctx.state.lock:
        pv = check_edit(req.token, m, body)
        if pv is not None:
            m.policy_violation = pv  # type: ignore[attr-defined]
            return Response(204)
    fields = parse_message(req, patch=True)
    with ctx.state.lock:
        apply_edit(m, fields)
        if chat is not None:
            chat.updated = m.last_modified or chat.updated
    return Response(204)


# ------------------------------------------------------------------------------------ chat messages

def _chat_visible(m: Message, since: str | None) -> bool:
    return not since or since == ALL_HISTORY or m.created >= since


def _chat_for(ctx: Context, req: Request) -> tuple[Chat, str | None]:
    chat = chat_or_error(ctx.state, req.params["chat_id"])
    mem = require_chat_member(chat, req.token)
    return chat, (mem.visible_history_start if mem is not None else None)


def _chat_ctx(req: Request, ctx: Context, chat: Chat) -> str:
    return f"{base_of(req, ctx)}/$metadata#chats('{quote(chat.id, safe=':@')}')/messages"


def _find(msgs: list[Message], mid: str, what: str = "Message") -> Message:
    m = next((x for x in msgs if x.id == mid), None)
    if m is None:
        raise not_found(f"{what} '{mid[:64]}' was not found.", "NotFound")
    return m


@graph_route("GET", "/chats/{chat_id}/messages")
def list_chat_messages(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        chat, since = _chat_for(ctx, req)
        msgs = [m for m in chat.messages if _chat_visible(m, since)]
    return list_messages(ctx, req, msgs, _chat_ctx(req, ctx, chat))


@graph_route("POST", "/chats/{chat_id}/messages")
def post_chat_message(ctx: Context, req: Request) -> Response:
    fields = parse_new_message(req)
    with ctx.state.lock:
        chat, _ = _chat_for(ctx, req)
        m, res = _append_new(ctx, req, fields, chat.messages, chat_id=chat.id)
        chat.updated = m.created
    return _entity(201, _chat_ctx(req, ctx, chat) + "/$entity", res)


@graph_route("GET", "/chats/{chat_id}/messages/{message_id}")
def get_chat_message(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        chat, since = _chat_for(ctx, req)
        m = _find(chat.messages, req.params["message_id"])
        if not _chat_visible(m, since):
            raise not_found(f"Message '{m.id}' was not found.")
        res = message_resource(ctx.state, m)
    return _entity(200, _chat_ctx(req, ctx, chat) + "/$entity", res)


@graph_route("PATCH", "/chats/{chat_id}/messages/{message_id}")
def patch_chat_message(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    with ctx.state.lock:
        chat, _ = _chat_for(ctx, req)
        m = _find(chat.messages, req.params["message_id"])
    return _patch(ctx, req, m, body, chat)


# ------------------------------------------------------------------------------------ channel messages

def _channel_for(ctx: Context, req: Request) -> tuple[Team, Channel]:
    from .channels import lookup, require_channel_access

    team, ch = lookup(ctx, req)
    require_channel_access(team, ch, req.token)
    return team, ch


def _message_for(ctx: Context, req: Request) -> tuple[Team, Channel, Message]:
    """The channel message named in the path, once the caller's access to the channel is checked."""
    team, ch = _channel_for(ctx, req)
    return team, ch, _find(ch.messages, req.params["message_id"])


def _reply_for(ctx: Context, req: Request) -> tuple[Team, Channel, Message, Message]:
    """The reply named in the path, with its channel and root message."""
    team, ch, root = _message_for(ctx, req)
    return team, ch, root, _find(root.replies, req.params["reply_id"], "Reply")


def _channel_ctx(req: Request, ctx: Context, team: Team, ch: Channel) -> str:
    return f"{base_of(req, ctx)}/$metadata#teams('{team.id}')/channels('{quote(ch.id, safe=':@')}')/messages"


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/messages")
def list_channel_messages(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch = _channel_for(ctx, req)
        msgs = list(ch.messages)
    return list_messages(ctx, req, msgs, _channel_ctx(req, ctx, team, ch), allow_expand_replies=True)


@graph_route("POST", "/teams/{team_id}/channels/{channel_id}/messages")
def post_channel_message(ctx: Context, req: Request) -> Response:
    fields = parse_new_message(req)
    with ctx.state.lock:
        team, ch = _channel_for(ctx, req)
        _, res = _append_new(ctx, req, fields, ch.messages, team_id=team.id, channel_id=ch.id)
    return _entity(201, _channel_ctx(req, ctx, team, ch) + "/$entity", res)


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}")
def get_channel_message(ctx: Context, req: Request) -> Response:
    expand = parse_expand(qopt(req.query, "$expand"), ["replies"], "microsoft.graph.chatMessage")
    with ctx.state.lock:
        team, ch, m = _message_for(ctx, req)
        res = message_resource(ctx.state, m, expand_replies="replies" in expand)
    return _entity(200, _channel_ctx(req, ctx, team, ch) + "/$entity", res)


# The permission map spells the PATCH paths with a literal "(team-id)" segment.
@graph_route("PATCH", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}",
             permission_key="/teams/(team-id)/channels/{id}/messages/{id}")
def patch_channel_message(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        _, _, m = _message_for(ctx, req)
    return _patch(ctx, req, m, json_object(req))


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}/replies")
def list_replies(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch, m = _message_for(ctx, req)
        replies = list(m.replies)
    return list_messages(ctx, req, replies, _channel_ctx(req, ctx, team, ch) + f"('{m.id}')/replies")


@graph_route("POST", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}/replies")
def post_reply(ctx: Context, req: Request) -> Response:
    fields = parse_new_message(req)
    if fields.get("subject"):
        raise bad("A reply cannot have a subject.")
    with ctx.state.lock:
        team, ch, root = _message_for(ctx, req)
        _, res = _append_new(ctx, req, fields, root.replies, team_id=team.id, channel_id=ch.id,
                             reply_to_id=root.id)
    return _entity(201, _channel_ctx(req, ctx, team, ch) + f"('{root.id}')/replies/$entity", res)


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}/replies/{reply_id}")
def get_reply(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch, root, r = _reply_for(ctx, req)
        res = message_resource(ctx.state, r)
    return _entity(200, _channel_ctx(req, ctx, team, ch) + f"('{root.id}')/replies/$entity", res)


@graph_route("PATCH", "/teams/{team_id}/channels/{channel_id}/messages/{message_id}/replies/{reply_id}",
             permission_key="/teams/(team-id)/channels/{id}/messages/{id}/replies/{id}")
def patch_reply(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        *_, r = _reply_for(ctx, req)
    return _patch(ctx, req, r, json_object(req))
