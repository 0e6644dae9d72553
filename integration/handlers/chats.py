"""Chat commands that combine calls or resolve names beyond ``resolve:``: creating a chat from
member names, sending to a chat chosen by id, topic or member, listing chats (the signed-in
account's, or a user's with the app flow), members and messages, adding members, renaming.

A chat is named by its id, a group chat's topic, or (where a 1:1 chat makes sense) a member.
Topics and members are looked up among the signed-in account's chats, so with the app flow
(no account) a chat is named by its id."""
from __future__ import annotations

from integration.engine import redact
from integration.engine.errors import ArgumentError, IntegrationError, NotFound, RequestRejected
from integration.delivery.fanout import fan_out
from integration.graph.client import seg
from integration.delivery.outbox import delivery_key, delivery_scope, failure_of
from integration.delivery.posting import post_once
from integration.graph.resolve import chat_body, is_guest, is_guid, is_thread_id, member_body

HANDLERS = ("chat_create", "message_send_to_chat", "chat_list", "chat_member_list", "chat_add_user",
            "chat_message_list", "chat_update")

ALL_HISTORY = "0001-01-01T00:00:00Z"


def chat_create(ctx):
    args, r = ctx.args, ctx.resolver
    chat_type = args["chat_type"]
    if chat_type == "oneOnOne" and args.get("chat_name"):
        raise ArgumentError("chat_name", "only group chats have a name")
    users = [r.user(m) for m in args["member"]]
    ids = list(dict.fromkeys(u["id"] for u in users))
    guests = {u["id"] for u in users if is_guest(u)}  # Graph takes a guest only in the guest role
    if ctx.flow == "delegated":
        me = r.me()
        ids = list(dict.fromkeys([me["id"]] + ids))  # the caller is always a member
        if is_guest(me):
            guests.add(me["id"])
    if chat_type == "oneOnOne" and len(ids) != 2:
        raise ArgumentError("member", f"a oneOnOne chat has exactly 2 members, got {len(ids)}"
                            + (" (you are included automatically)" if ctx.flow == "delegated" else ""))
    if chat_type == "group" and len(ids) < 2:
        raise ArgumentError("member", "a group chat needs at least 2 members")
    chat = ctx.graph.create("/chats", chat_body(chat_type, ids, ctx.cfg.graph_url, args.get("chat_name"), guests=guests))
    other = next((i for i in ids if ctx.flow == "delegated" and i != me["id"]), None) if chat_type == "oneOnOne" else None
    r.remember_chat(chat, one_on_one_with=other)
    label = chat.get("topic") or ", ".join(u.get("displayName") or u["id"] for u in users)
    return ctx.result(chat, chat, message=f"The chat '{label}' is ready.")


def _target_chat(ctx, name: str) -> dict:
    r = ctx.resolver
    if is_thread_id(name):
        return {"id": name}
    # A mail address or an object id is a person, never a topic: no topic lookup for it.
    chat = None if ("@" in name or is_guid(name)) else r.chat_by_topic(name)
    if chat:
        return chat
    try:
        user = r.user(name)
    except NotFound:
        raise NotFound(f"chat '{name}' not found: it is neither a chat id, a chat topic, nor a user",
                       hint="pass the chat id, the group chat's topic, or a member's mail") from None
    chat = dict(r.one_on_one_chat(r.me(), user, ctx.cfg.graph_url))
    chat["label"] = f"1:1 chat with {user['displayName']}"
    return chat


def _send_to_chat(ctx, name: str, body: dict, scope: tuple) -> dict:
    chat = _target_chat(ctx, name)
    label = chat.get("topic") or chat.get("label") or chat["id"]
    msg, d = post_once(ctx, f"/chats/{seg(chat['id'])}/messages", body, delivery_key(scope, chat["id"]), label)
    msg.setdefault("chatId", chat["id"])
    msg.update(deliveryStatus=d.status, recipient=label)
    if d.unrecorded:
        msg["error"] = d.unrecorded
    return msg


def message_send_to_chat(ctx):
    args = ctx.args
    names = ([args["chat"]] if args.get("chat") else []) + list(args.get("chats") or [])
    if not names:
        raise ArgumentError("chat", "give a chat (or several with chats)")
    names = list(dict.fromkeys(n.strip() for n in names))
    # Text is sent as text (Teams shows it literally); html is the caller's own markup.
    body = {"body": {"contentType": args["content_type"], "content": args["content"]}}
    scope = delivery_scope(ctx)
    if len(names) > 1:
        ctx.resolver.prefetch_users([n for n in names if "@" in n])
        ctx.resolver.me()
    outcomes = fan_out(names, lambda n: _send_to_chat(ctx, n, body, scope), workers=ctx.cfg.fanout_workers,
                       progress=ctx.runtime.progress("sending", len(names)) if len(names) > 1 else None)
    sent = [o.value for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    if not sent and args.get("fail_on") != "none":
        raise failure_of(failed[0].error)[1]
    again = sum(m["deliveryStatus"] == "already sent" for m in sent)
    if len(names) == 1 and not sent:
        note = "Message not sent."
    elif len(names) == 1:
        note = (f"Message sent to '{sent[0]['recipient']}'." if not again else
                f"Message already sent to '{sent[0]['recipient']}' under this delivery key: not sent again.")
    else:
        note = f"Message sent to {len(sent)} of {len(names)} chat(s)."
        if again:
            note += f" {again} had it already (same delivery key): not sent again."
    if failed:
        note += " Not sent: " + "; ".join(f"{o.item}: {redact.redact(failure_of(o.error)[1].message)}" for o in failed)
    result = ctx.result(sent, None, message=note, failed=len(failed))
    # Every chat in input order, in every output: the failed ones with their status and error.
    projected = iter(result.outputs)
    rows = {id(o): _failed_row(o) for o in failed}
    result.outputs = [next(projected) if o.ok else rows[id(o)] for o in outcomes]
    result.raw = [o.value if o.ok else rows[id(o)] for o in outcomes]
    if failed and result.columns and "error" not in result.columns:
        result.columns = [*result.columns, "recipient", "error"]
    return result


def _failed_row(outcome) -> dict:
    status, err = failure_of(outcome.error)
    return {"chatId": None, "recipient": outcome.item, "deliveryStatus": status, "error": redact.redact(err.message)}


# ---------------------------------------------------------------------------- naming a chat

def chat_type_of_id(chat_id: str) -> str | None:
    """What a chat id alone tells: 1:1 chats end in @unq.gbl.spaces, meeting chats start 19:meeting_."""
    cid = chat_id.strip().lower()
    if cid.endswith("@unq.gbl.spaces"):
        return "oneOnOne"
    if cid.startswith("19:meeting_"):
        return "meeting"
    return None


def find_chat(ctx, name: str, *, argument: str = "chat", by_member: bool = True) -> dict:
    """A chat named by id, group chat topic or (``by_member``) a member's 1:1 chat with the
    signed-in account, without creating anything. Sets ``ctx.extra['chat_id']``."""
    name = name.strip()
    if is_thread_id(name):
        chat = {"id": name, "chatType": chat_type_of_id(name)}
    elif ctx.flow != "delegated":
        raise ArgumentError(argument, f"'{name}' is not a chat id: with the {ctx.flow} flow there is no signed-in "
                                      "account whose chats a topic or member could be looked up in",
                            hint="pass the chat id (19:...), e.g. from `msteams chat-list --user ...`, "
                                 "or sign in the delegated flow")
    else:
        r = ctx.resolver
        chat = r.chat_by_topic(name)
        if chat is None and by_member:
            try:
                user = r.user(name)
            except NotFound:
                user = None
            if user is not None:
                chat = r.find_one_on_one_chat(user)
                if chat is None:
                    raise NotFound(f"there is no 1:1 chat with {user['displayName']} yet",
                                   hint="`msteams message-send-to-chat` or `chat-create` starts one")
                chat = dict(chat, label=f"1:1 chat with {user['displayName']}")
        if chat is None:
            what = "a chat id, a topic of your chats, nor a user" if by_member else "a chat id nor a topic of your group chats"
            raise NotFound(f"chat '{name}' not found: it is neither {what}",
                           hint="list the chats with `msteams chat-list`")
    ctx.extra["chat_id"] = chat["id"]
    return chat


def _label(chat: dict) -> str:
    return chat.get("label") or chat.get("topic") or chat["id"]


def _group_only(chat: dict, what: str) -> None:
    kind = chat.get("chatType")
    if kind in ("oneOnOne", "meeting"):
        raise ArgumentError("chat", f"{what} only in group chats; '{_label(chat)}' is a {kind} chat",
                            hint="create a group chat with `msteams chat-create --chat-type group`")


# ---------------------------------------------------------------------------- commands

def chat_list(ctx):
    """The signed-in account's chats (delegated) or a user's chats (app), or one chat."""
    args, r = ctx.args, ctx.resolver
    if ctx.flow == "delegated" and args.get("user"):
        raise ArgumentError("user", "is for the app flow: the delegated flow lists the signed-in account's chats")
    params = {}
    if args.get("expand"):
        params["$expand"] = args["expand"]
    if args.get("chat"):
        chat = find_chat(ctx, args["chat"])
        item = ctx.graph.get(f"/chats/{seg(chat['id'])}", params=params or None)
        return ctx.result(item, item, title=f"Chat {_label(chat)}")
    if ctx.flow == "delegated":
        base = "/me/chats"
    elif args.get("user"):
        base = f"/users/{seg(r.user(args['user'])['id'])}/chats"
    else:
        raise ArgumentError("user", f"is required with the {ctx.flow} flow: whose chats to list",
                            hint="or sign in the delegated flow to list the service account's chats")
    if args.get("filter"):
        params["$filter"] = args["filter"]  # the caller's own OData expression, sent as one query value
    page = ctx.graph.paged(base, params=params, limit=args.get("limit"), page_size=args.get("page_size"),
                           next_link=args.get("next_link"))
    return ctx.result(page.items, page.items, title="Chats", next_link=page.next_link)


def chat_member_list(ctx):
    chat = find_chat(ctx, ctx.args["chat"])
    page = ctx.graph.paged(f"/chats/{seg(chat['id'])}/members")
    return ctx.result(page.items, page.items, title=f"Members of {_label(chat)}")


def chat_add_user(ctx):
    args, r = ctx.args, ctx.resolver
    chat = find_chat(ctx, args["chat"], by_member=False)
    _group_only(chat, "members can be added")
    users = [r.user(m) for m in args["member"]]
    rows = []
    for user in {u["id"]: u for u in users}.values():
        body = member_body(user["id"], ctx.cfg.graph_url, ["guest"] if is_guest(user) else ["owner"])
        if args["share_history"]:
            body["visibleHistoryStartDateTime"] = ALL_HISTORY
        try:
            ctx.graph.post(f"/chats/{seg(chat['id'])}/members", body)
            status = "added"
        except RequestRejected as exc:
            if exc.status != 409:  # 409: already a member (not an error for a playbook)
                if exc.status == 400 and not exc.hint:
                    exc.hint = "members can be added only to group chats"
                raise
            status = "already a member"
        rows.append({"chatId": chat["id"], "userId": user["id"], "displayName": user["displayName"],
                     "email": user.get("mail"), "status": status})
    added = [x["displayName"] for x in rows if x["status"] == "added"]
    msg = (f"Added {', '.join(added)} to chat '{_label(chat)}'." if added else
           f"Nobody added to chat '{_label(chat)}': already members.")
    return ctx.result(rows, rows, message=msg)


def chat_message_list(ctx):
    args = ctx.args
    chat = find_chat(ctx, args["chat"])
    page = ctx.graph.paged(f"/chats/{seg(chat['id'])}/messages", params={"$orderby": f"{args['order_by']} desc"},
                           limit=args.get("limit"), page_size=args.get("page_size"), next_link=args.get("next_link"))
    return ctx.result(page.items, page.items, title=f"Messages in {_label(chat)}", next_link=page.next_link)


def chat_update(ctx):
    args = ctx.args
    topic = args["chat_name"]
    if ":" in topic:
        raise ArgumentError("chat_name", "must not contain ':' (Teams refuses colons in chat names)")
    if not topic.strip():
        raise ArgumentError("chat_name", "must not be blank")
    chat = find_chat(ctx, args["chat"], by_member=False)
    _group_only(chat, "a name can be set")
    try:
        ctx.graph.patch(f"/chats/{seg(chat['id'])}", {"topic": topic})
    except RequestRejected as exc:
        if exc.status == 400 and not exc.hint:
            exc.hint = "only group chats have a name"
        raise
    if chat.get("topic"):
        ctx.store.delete("chat_topic", chat["topic"])
    ctx.resolver.remember_chat({"id": chat["id"], "topic": topic, "chatType": "group"})
    row = {"id": chat["id"], "topic": topic, "chatType": "group"}
    return ctx.result(row, row, message=f"The chat '{_label(chat)}' is now named '{topic}'.")
