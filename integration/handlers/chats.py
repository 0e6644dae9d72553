"""Chat commands that combine calls: creating a chat from member names, and sending to a chat
chosen by id, topic or member."""
from __future__ import annotations

from ..errors import ArgumentError, NotFound
from ..graph import seg
from ..resolve import chat_body, is_thread_id

HANDLERS = ("chat_create", "message_send_to_chat")


def chat_create(ctx):
    args, r = ctx.args, ctx.resolver
    chat_type = args["chat_type"]
    if chat_type == "oneOnOne" and args.get("chat_name"):
        raise ArgumentError("chat_name", "only group chats have a name")
    users = [r.user(m) for m in args["member"]]
    ids = list(dict.fromkeys(u["id"] for u in users))
    if ctx.flow == "delegated":
        me = r.me()
        ids = list(dict.fromkeys([me["id"]] + ids))  # the caller is always a member
    if chat_type == "oneOnOne" and len(ids) != 2:
        raise ArgumentError("member", f"a oneOnOne chat has exactly 2 members, got {len(ids)}"
                            + (" (you are included automatically)" if ctx.flow == "delegated" else ""))
    if chat_type == "group" and len(ids) < 2:
        raise ArgumentError("member", "a group chat needs at least 2 members")
    chat = ctx.graph.post("/chats", chat_body(chat_type, ids, ctx.cfg.graph_url, args.get("chat_name")))
    other = next((i for i in ids if ctx.flow == "delegated" and i != me["id"]), None) if chat_type == "oneOnOne" else None
    r.remember_chat(chat, one_on_one_with=other)
    label = chat.get("topic") or ", ".join(u["displayName"] for u in users)
    return ctx.result(chat, chat, message=f"The chat '{label}' is ready.")


def _target_chat(ctx, name: str) -> dict:
    r = ctx.resolver
    if is_thread_id(name):
        return {"id": name}
    chat = r.chat_by_topic(name)
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


def message_send_to_chat(ctx):
    args = ctx.args
    chat = _target_chat(ctx, args["chat"])
    # Text is sent as text (Teams shows it literally); html is the caller's own markup.
    body = {"body": {"contentType": args["content_type"], "content": args["content"]}}
    msg = ctx.graph.post(f"/chats/{seg(chat['id'])}/messages", body)
    msg.setdefault("chatId", chat["id"])
    where = chat.get("topic") or chat.get("label") or chat["id"]
    return ctx.result(msg, msg, message=f"Message sent to '{where}'.")
