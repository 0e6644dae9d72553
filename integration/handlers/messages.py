"""Listing the messages of a chat (id, topic or member) or of a channel (team + channel), or
the replies to a channel message, newest first, paged; XSOAR's list-messages names either with
conversation_id (a channel when a team is given)."""
from __future__ import annotations

from integration.engine.errors import ArgumentError
from integration.graph.client import seg
from .chats import find_chat

HANDLERS = ("message_list",)


def message_list(ctx):
    a, r = ctx.args, ctx.resolver
    if a.get("conversation"):
        if a.get("chat") or a.get("channel"):
            raise ArgumentError("conversation", "give a conversation, or a chat, or a team and a channel: one of them")
        key = "channel" if a.get("team") else "chat"
        a = dict(a, **{key: a["conversation"]})
    in_channel = bool(a.get("team") or a.get("channel"))
    if in_channel and a.get("chat"):
        raise ArgumentError("chat", "give either a chat, or a team and a channel, not both")
    params: dict = {}
    if in_channel:
        if not (a.get("team") and a.get("channel")):
            missing = "team" if not a.get("team") else "channel"
            raise ArgumentError(missing, "is required with " + ("channel" if missing == "team" else "team"))
        team = r.team(a["team"])
        chan = r.channel(team["id"], a["channel"])
        ctx.extra.update(team_id=team["id"], channel_id=chan["id"], conversation_id=chan["id"])
        path = f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}/messages"
        where = f"channel '{chan.get('displayName') or chan['id']}'"
        if a.get("message_id"):
            path += f"/{seg(a['message_id'].strip())}/replies"
            where = f"the thread {a['message_id'].strip()} of {where}"
    elif a.get("chat"):
        if a.get("message_id"):
            raise ArgumentError("message_id", "lists a channel message's replies: chat messages have no threads")
        chat = find_chat(ctx, a["chat"])
        ctx.extra["conversation_id"] = chat["id"]
        path = f"/chats/{seg(chat['id'])}/messages"
        where = f"chat '{chat.get('label') or chat.get('topic') or chat['id']}'"
        # Graph sorts a chat's messages by either time, newest first; channel messages it sorts itself.
        params["$orderby"] = f"{a['order_by']} desc"
    else:
        raise ArgumentError("chat", "give a chat, or a team and a channel (or conversation_id)")
    page = ctx.graph.paged(path, params=params, limit=a.get("limit"), page_size=a.get("page_size"),
                           next_link=a.get("next_link"))
    counts = {"returned_count": len(page.items),
              # Graph does not count a listing: the total is known only when nothing is left
              "filtered_count": None if page.next_link or a.get("next_link") else len(page.items)}
    return ctx.result(page.items, page.items, title=f"Messages in {where}", next_link=page.next_link,
                      context={"MicrosoftTeams.MessagesListMetadata": counts})
