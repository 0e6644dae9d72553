"""Listing the messages of a channel (team + channel) or of a chat (id, topic or member),
newest first, paged."""
from __future__ import annotations

from ..errors import ArgumentError
from ..graph import seg
from .chats import find_chat

HANDLERS = ("message_list",)


def message_list(ctx):
    a, r = ctx.args, ctx.resolver
    in_channel = bool(a.get("team") or a.get("channel"))
    if in_channel and a.get("chat"):
        raise ArgumentError("chat", "give either a chat, or a team and a channel, not both")
    if in_channel:
        if not (a.get("team") and a.get("channel")):
            missing = "team" if not a.get("team") else "channel"
            raise ArgumentError(missing, "is required with " + ("channel" if missing == "team" else "team"))
        team = r.team(a["team"])
        chan = r.channel(team["id"], a["channel"])
        ctx.extra.update(team_id=team["id"], channel_id=chan["id"])
        path = f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}/messages"
        where = f"channel '{chan.get('displayName')}'"
    elif a.get("chat"):
        chat = find_chat(ctx, a["chat"])
        path = f"/chats/{seg(chat['id'])}/messages"
        where = f"chat '{chat.get('label') or chat.get('topic') or chat['id']}'"
    else:
        raise ArgumentError("chat", "give a chat, or a team and a channel")
    page = ctx.graph.paged(path, limit=a.get("limit"), page_size=a.get("page_size"), next_link=a.get("next_link"))
    return ctx.result(page.items, page.items, title=f"Messages in {where}", next_link=page.next_link)
