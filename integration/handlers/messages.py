"""Listing the messages of a chat (id, topic or member) or of a channel (team + channel), or
the replies to a channel message, newest first, paged; XSOAR's list-messages names either with
conversation_id (a channel when a team is given)."""
from __future__ import annotations

from integration.engine.errors import ArgumentError
from integration.graph.client import seg
from .chats import find_chat

HANDLERS = ("message_list",)


def message_list(ctx):
    # commands.yml's rules hold here: a chat, a team and a channel, or a conversation; not a chat
    # with a team, a channel or a message_id; not a conversation with a chat or a channel; a team
    # with a channel or a conversation (naming the channel).
    a, r = ctx.args, ctx.resolver
    if a.get("conversation"):
        key = "channel" if a.get("team") else "chat"
        a = dict(a, **{key: a["conversation"]})
    params: dict = {}
    if a.get("team"):
        team = r.team(a["team"])
        chan = r.channel(team["id"], a["channel"])
        ctx.extra.update(team_id=team["id"], channel_id=chan["id"], conversation_id=chan["id"])
        path = f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}/messages"
        where = f"channel '{chan.get('displayName') or chan['id']}'"
        if a.get("message_id"):
            path += f"/{seg(a['message_id'].strip())}/replies"
            where = f"the thread {a['message_id'].strip()} of {where}"
    else:
        if a.get("message_id"):  # a conversation naming a chat (no team): the rule saw no chat
            raise ArgumentError("message_id", "give no message_id with a chat: it lists a channel message's "
                                                "replies, and chat messages have no threads")
        chat = find_chat(ctx, a["chat"])
        ctx.extra["conversation_id"] = chat["id"]
        path = f"/chats/{seg(chat['id'])}/messages"
        where = f"chat '{chat.get('label') or chat.get('topic') or chat['id']}'"
        # Graph sorts a chat's messages by either time, newest first; channel messages it sorts itself.
        params["$orderby"] = f"{a['order_by']} desc"
    page = ctx.graph.paged(path, params=params, limit=a.get("limit"), page_size=a.get("page_size"),
                           next_link=a.get("next_link"))
    counts = {"returned_count": len(page.items),
              # Graph does not count a listing: the total is known only when nothing is left
              "filtered_count": None if page.next_link or a.get("next_link") else len(page.items)}
    return ctx.result(page.items, page.items, title=f"Messages in {where}", next_link=page.next_link,
                      context={"MicrosoftTeams.MessagesListMetadata": counts})
