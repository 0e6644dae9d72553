"""Chats: create (oneOnOne get-or-create, group), list (``/me/chats``, ``/chats``,
``/users/{id}/chats``), get, PATCH topic, and chat members."""
from __future__ import annotations

from urllib.parse import quote

from ..core import Claims, Context, Request, Response, graph_route, utcnow_iso
from ..state import Chat, Membership, TenantState
from .common import (ALL_HISTORY, bad, caller_user_id, chat_membership, chat_or_error, conflict, forbidden, is_app,
                     iso, json_object, member_collection, member_entity, member_id, member_resource, membership_or_404,
                     opt_list, opt_str, parse_iso, parse_member, parse_members, require_chat_member, require_delegated,
                     require_self_unless_app, thread_hex, user_or_404)
from .messages import preview
from .odata import Schema, compile_filter, parse_expand, parse_orderby, parse_top, qopt
from .paging import base_of, collection, paginate

MAX_TOP = 50
DEFAULT_TOP = 20
MAX_EXPANDED_MEMBERS = 25
MAX_GROUP_MEMBERS = 250
MAX_TOPIC = 250

MEMBER_ELEM = Schema(
    "microsoft.graph.conversationMember",
    props={"userid": lambda m: m["userId"], "email": lambda m: m["email"], "displayname": lambda m: m["displayName"],
           "microsoft.graph.aaduserconversationmember/userid": lambda m: m["userId"]},
    collections={"roles": (lambda m: m["roles"], None)},
)

CHAT_SCHEMA = Schema(
    "microsoft.graph.chat",
    props={"id": lambda c: c["id"], "chattype": lambda c: c["chatType"], "topic": lambda c: c["topic"],
           "createddatetime": lambda c: c["createdDateTime"],
           "lastupdateddatetime": lambda c: c["lastUpdatedDateTime"],
           "lastmessagepreview/createddatetime": lambda c: c["_preview_created"]},
    collections={"members": (lambda c: c["_members"], MEMBER_ELEM)},
    functions=frozenset({"startswith"}),
    operators=frozenset({"eq", "ne", "in", "not", "gt", "ge", "lt", "le"}),
)


# ------------------------------------------------------------------------------------ helpers

def chat_web_url(state: TenantState, chat: Chat) -> str:
    return f"https://teams.microsoft.com/l/chat/{quote(chat.id, safe='')}/0?tenantId={state.tenant_id}"


def meeting_info(state: TenantState, chat: Chat) -> dict | None:
    if chat.chat_type != "meeting":
        return None
    for mt in state.meetings.values():
        if (mt.get("chatInfo") or {}).get("threadId") == chat.id:
            org = ((mt.get("participants") or {}).get("organizer") or {}).get("identity", {}).get("user") or {}
            return {"calendarEventId": None, "joinWebUrl": mt.get("joinWebUrl"),
                    "organizer": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": org.get("id"),
                                  "displayName": None, "userIdentityType": "aadUser", "tenantId": state.tenant_id}}
    return None


def chat_resource(state: TenantState, chat: Chat, claims: Claims | None = None, expand: list[str] = ()) -> dict:
    out = {
        "id": chat.id,
        "topic": chat.topic,
        "createdDateTime": chat.created,
        "lastUpdatedDateTime": chat.updated,
        "chatType": chat.chat_type,
        "webUrl": chat_web_url(state, chat),
        "tenantId": state.tenant_id,
        "isHiddenForAllMembers": False,
        "onlineMeetingInfo": meeting_info(state, chat),
    }
    uid = caller_user_id(claims)
    if uid:
        last = chat.messages[-1].created if chat.messages else None
        out["viewpoint"] = {"isHidden": False, "lastMessageReadDateTime": last or chat.created}
    if "members" in expand:
        out["members"] = [member_resource(state, m) for m in chat.members[:MAX_EXPANDED_MEMBERS]]
    if "lastMessagePreview" in expand:
        out["lastMessagePreview"] = preview(state, chat.messages[-1]) if chat.messages else None
    return out


def check_chat_roles(user: dict, roles: list) -> None:
    """A guest of the tenant joins a chat only in the 'guest' role (400 otherwise), as Graph asks."""
    if (user.get("userType") or "Member").lower() == "guest" and roles != ["guest"]:
        raise bad(f"The user '{user.get('userPrincipalName')}' is a guest: guests can be chat members only with "
                  "the role 'guest'.")


def one_on_one_id(a: str, b: str) -> str:
    x, y = sorted([a.lower(), b.lower()])
    return f"19:{x}_{y}@unq.gbl.spaces"


def _entity_ctx(req: Request, ctx: Context) -> str:
    return f"{base_of(req, ctx)}/$metadata#chats/$entity"


# ------------------------------------------------------------------------------------ create

@graph_route("POST", "/chats")
def create_chat(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    ctype_raw = opt_str(body, "chatType")
    if ctype_raw is None:
        raise bad("The property 'chatType' is required: oneOnOne or group.")
    ctype = {"oneonone": "oneOnOne", "group": "group"}.get(ctype_raw.lower())
    if ctype is None:
        raise bad(f"Invalid value '{ctype_raw}' for property 'chatType': expected oneOnOne or group.")
    topic = opt_str(body, "topic", max_len=MAX_TOPIC)
    members_raw = opt_list(body, "members")
    if not members_raw:
        raise bad("Chat members cannot be null. (Parameter 'Members')")
    if ctype == "oneOnOne" and topic:
        raise bad("A topic can be set only on group chats.")
    base = base_of(req, ctx)
    with ctx.state.lock:
        state = ctx.state
        members = parse_members(state, members_raw, base)
        for user, roles in members:
            check_chat_roles(user, roles)
        if ctype == "oneOnOne" and len(members) != 2:
            raise bad("A oneOnOne chat must have exactly 2 members.")
        if ctype == "group" and len(members) < 2:
            raise bad("A group chat must have at least 2 members.")
        if len(members) > MAX_GROUP_MEMBERS:
            raise bad(f"A group chat can have at most {MAX_GROUP_MEMBERS} members.")
        uid = caller_user_id(req.token)
        if uid and uid not in {user["id"] for user, _ in members}:
            raise forbidden("The signed-in user must be one of the members of the chat being created.")
        now = utcnow_iso()
        if ctype == "oneOnOne":  # get-or-create: two users share one oneOnOne chat
            cid = one_on_one_id(members[0][0]["id"], members[1][0]["id"])
            chat = state.chats.get(cid)
        else:
            cid = f"19:{thread_hex()}@thread.v2"
            chat = None
        if chat is None:
            chat = Chat(cid, ctype, topic if ctype == "group" else None, now, now)
            for user, roles in members:
                chat.members.append(Membership(member_id(cid, user["id"]), user["id"], roles or ["owner"],
                                               ALL_HISTORY))
            state.chats[cid] = chat
        out = {"@odata.context": _entity_ctx(req, ctx)}
        out.update(chat_resource(state, chat, req.token))
    return Response(201, out, {"Location": f"{base}/chats/{cid}"})


# ------------------------------------------------------------------------------------ list / get

def _list_chats(ctx: Context, req: Request, user_key: str) -> Response:
    top = parse_top(qopt(req.query, "$top"), DEFAULT_TOP, MAX_TOP)
    pred = compile_filter(qopt(req.query, "$filter"), CHAT_SCHEMA)
    expand = parse_expand(qopt(req.query, "$expand"), ["members", "lastMessagePreview"], "microsoft.graph.chat")
    order = parse_orderby(qopt(req.query, "$orderby"), {"lastmessagepreview/createddatetime": ("desc",)},
                          "microsoft.graph.chat")
    with ctx.state.lock:
        state = ctx.state
        uid = user_or_404(state, user_key)["id"]
        rows = []
        for chat in state.chats.values():
            if chat_membership(chat, uid) is None:
                continue
            res = chat_resource(state, chat, req.token, expand)
            res["_members"] = [member_resource(state, m) for m in chat.members]
            res["_preview_created"] = chat.messages[-1].created if chat.messages else None
            rows.append(res)
    if pred is not None:
        rows = [r for r in rows if pred(r)]
    if order is not None:
        key = lambda r: (r["_preview_created"] or "", r["createdDateTime"], r["id"])
    else:
        key = lambda r: (r["createdDateTime"], r["id"])
    rows.sort(key=key, reverse=True)
    page, link = paginate(req, ctx, rows, key, top, descending=True)
    for r in page:
        r.pop("_members", None)
        r.pop("_preview_created", None)
    return Response(200, collection(page, f"{base_of(req, ctx)}/$metadata#chats", link,
                                    **{"@odata.count": len(page)}))


@graph_route("GET", "/me/chats")
def me_chats(ctx: Context, req: Request) -> Response:
    return _list_chats(ctx, req, require_delegated(req.token))


@graph_route("GET", "/chats")
def list_chats(ctx: Context, req: Request) -> Response:
    # GET /chats lists the signed-in user's chats; there is no tenant-wide listing
    if not caller_user_id(req.token):
        raise bad("Requested API is not supported in application-only context. Use /users/{id}/chats.")
    return _list_chats(ctx, req, caller_user_id(req.token))


@graph_route("GET", "/users/{user_id}/chats")
def user_chats(ctx: Context, req: Request) -> Response:
    key = req.params["user_id"]
    require_self_unless_app(ctx.state, req.token, key, "A delegated caller can list only their own chats.")
    return _list_chats(ctx, req, key)


@graph_route("GET", "/chats/{chat_id}")
def get_chat(ctx: Context, req: Request) -> Response:
    expand = parse_expand(qopt(req.query, "$expand"), ["members", "lastMessagePreview"], "microsoft.graph.chat")
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        out = {"@odata.context": _entity_ctx(req, ctx)}
        out.update(chat_resource(ctx.state, chat, req.token, expand))
    return Response(200, out)


@graph_route("PATCH", "/chats/{chat_id}")
def patch_chat(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    topic_given = "topic" in body
    topic = opt_str(body, "topic", max_len=MAX_TOPIC)
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        if topic_given:
            if chat.chat_type == "oneOnOne":
                raise bad("The topic of a oneOnOne chat cannot be set: only group chats have a topic.")
            chat.topic = topic
            chat.updated = utcnow_iso()
    return Response(204)


# ------------------------------------------------------------------------------------ members

def _members_ctx(req: Request, ctx: Context, chat: Chat, entity: bool = False) -> str:
    return (f"{base_of(req, ctx)}/$metadata#chats('{quote(chat.id, safe=':@')}')/members"
            + ("/$entity" if entity else ""))


def _chat_member(chat: Chat, membership_id: str) -> Membership:
    return membership_or_404(chat.members, membership_id,
                             f"Member '{membership_id[:100]}' was not found in the chat.")


@graph_route("GET", "/chats/{chat_id}/members")
def list_chat_members(ctx: Context, req: Request) -> Response:
    from .teams import MEMBER_SCHEMA

    pred = compile_filter(qopt(req.query, "$filter"), MEMBER_SCHEMA)
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        return Response(200, member_collection(ctx.state, chat.members, pred, _members_ctx(req, ctx, chat)))


@graph_route("GET", "/chats/{chat_id}/members/{membership_id}")
def get_chat_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        m = _chat_member(chat, req.params["membership_id"])
        return Response(200, member_entity(ctx.state, m, _members_ctx(req, ctx, chat, True)))


@graph_route("POST", "/chats/{chat_id}/members")
def add_chat_member(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    since = ALL_HISTORY
    if body.get("visibleHistoryStartDateTime") is not None:
        raw = body["visibleHistoryStartDateTime"]
        if raw != ALL_HISTORY:
            since = iso(parse_iso(raw, "visibleHistoryStartDateTime"))
    else:
        since = None  # no history shared: from now
    base = base_of(req, ctx)
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        if chat.chat_type == "oneOnOne":
            raise bad("Members cannot be added to a oneOnOne chat: create a group chat instead.")
        user, roles = parse_member(ctx.state, body, base)
        check_chat_roles(user, roles)
        if chat_membership(chat, user["id"]) is not None:
            raise conflict(f"The user '{user['userPrincipalName']}' is already a member of the chat.")
        if len(chat.members) >= MAX_GROUP_MEMBERS:
            raise bad(f"A group chat can have at most {MAX_GROUP_MEMBERS} members.")
        now = utcnow_iso()
        m = Membership(member_id(chat.id, user["id"]), user["id"], roles or ["owner"], since or now)
        chat.members.append(m)
        chat.updated = now
    return Response(201, None, {"Location": f"/chats/{chat.id}/members/{m.id}"})


@graph_route("DELETE", "/chats/{chat_id}/members/{membership_id}")
def remove_chat_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        chat = chat_or_error(ctx.state, req.params["chat_id"])
        require_chat_member(chat, req.token)
        if chat.chat_type == "oneOnOne":
            raise bad("Members cannot be removed from a oneOnOne chat.")
        m = _chat_member(chat, req.params["membership_id"])
        chat.members.remove(m)
        chat.updated = utcnow_iso()
    return Response(204)


__all__ = ["chat_or_error", "require_chat_member", "chat_resource", "one_on_one_id", "is_app"]
