"""Microsoft's published rate limits for Teams in Graph and for bots in Teams, as plain data:
the pacer (pacer.py) sends by them. The fake tenant keeps its own copy (fake_tenant/limits.py),
so a wrong number here meets a fake that disagrees; tests/emulator/test_limits_agree.py
compares the two entry by entry. Nothing here imports anything.

Sources (summarized in shared/design/graph-facts.md):
- Graph: "Microsoft Graph service-specific throttling limits", sections "Microsoft Teams service
  limits" and "Identity and access service limits"
  (https://learn.microsoft.com/graph/throttling-limits).
- Bots: "Optimize your bot with rate limiting and best practices in Microsoft Teams"
  (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit): a global limit
  per app per tenant, a per bot per thread limit, a per thread limit for all bots; clients are
  asked to retry 412, 429, 502 and 504 with exponential backoff and jitter.
Microsoft says the exact values may change: pace by this table and still back off on 429.
"""
from __future__ import annotations

# ---- Graph, per app per tenant ----
# Teams category -> (requests per second, label)
TEAMS_LIMITS = {
    "chat_message_post": (20.0, "POST chat message"),
    "channel_message_post": (50.0, "POST channel message"),
    "message_get": (20.0, "GET chat or channel message"),
    "team_list_get": (60.0, "GET team members, channels or channel members"),
    "team_get": (30.0, "GET team or channel"),
    "team_create": (10.0, "POST /teams"),
    "teams_write": (30.0, "POST/PUT/PATCH team or channel"),
    "teams_delete": (15.0, "DELETE"),
    "teams_other": (30.0, "other Teams calls"),
}
PER_RESOURCE_RPS = 4.0  # any one team or channel, per app
# Messages per app per day sent to any one channel (Graph channel messages and replies, and bot
# posts into a channel's conversation). Microsoft does not say whose day: the pacer counts a UTC
# day, and refuses the message past it before sending (errors.ChannelDailyCap).
CHANNEL_MESSAGES_PER_DAY = 3000
GLOBAL_PER_10S = 130_000  # every Graph call of an app, across tenants
# Path segments that make a call a Teams call (its limits), and the identity roots (resource units).
TEAMS_SEGMENTS = frozenset({"chats", "teams", "channels", "joinedteams", "teamwork", "installedapps", "tabs",
                            "allchannels", "primarychannel", "team"})
IDENTITY_ROOTS = frozenset({"users", "me", "groups"})
# Identity resource units per 10 s, by tenant size: (at most this many users, units); larger: the last.
IDENTITY_UNITS_PER_10S = ((49, 3500), (500, 5000), (None, 8000))
IDENTITY_UNITS_PER_10S_SMALLEST = IDENTITY_UNITS_PER_10S[0][1]


def identity_units_per_10s(n_users: int) -> int:
    """Resource units per 10 s for a tenant of this size (under 50, 50-500, over 500 users)."""
    for most, units in IDENTITY_UNITS_PER_10S:
        if most is None or n_users <= most:
            return units
    raise AssertionError("unreachable: the last class has no upper bound")


def teams_category(method: str, low: list[str]) -> str:
    """The Teams limit category (a key of TEAMS_LIMITS) of a Teams call, from its lower-cased
    path segments with ids replaced or not (only literal segments are compared)."""
    method = method.upper()
    last = low[-1]
    in_channel = "channels" in low
    if method == "POST" and last in ("messages", "replies"):
        return "channel_message_post" if in_channel else "chat_message_post"
    if method == "GET" and ("messages" in low[-2:] or "replies" in low[-2:]):
        return "message_get"
    if method == "GET" and low[0] == "teams" and last in ("members", "channels"):
        return "team_list_get"
    if method == "GET" and low[0] == "teams":
        return "team_get"  # team, channel, tab, installed app
    if method == "POST" and low == ["teams"]:
        return "team_create"
    if method == "DELETE":
        return "teams_delete"
    if method in ("POST", "PUT", "PATCH") and low[0] == "teams":
        return "teams_write"
    return "teams_other"


# ---- Bots (Bot Connector), one table of limit classes ----
# class -> windows, each (requests, per seconds); a request of a class must fit every window.
#   app:          all of one bot app's requests in one tenant ("global limit per app per tenant");
#   conversation: one bot's requests in one conversation (Microsoft's "thread": a 1:1 chat, a
#                 group chat or a channel), sending, replying, updating and deleting activities
#                 and reading members;
#   conversation_all_bots: every bot's requests in one conversation together.
# Creating a conversation counts against the app only; when the request also posts an activity
# it counts against that conversation too.
BOT_LIMITS = {
    "app": ((50, 1.0),),
    "conversation": ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0)),
    "conversation_all_bots": ((14, 1.0), (16, 2.0)),
}
BOT_PER_APP = BOT_LIMITS["app"]
BOT_PER_CONVERSATION = BOT_LIMITS["conversation"]
BOT_PER_CONVERSATION_ALL_BOTS = BOT_LIMITS["conversation_all_bots"]
# Statuses a bot client retries with backoff, as Microsoft asks.
BOT_RETRY_STATUSES = frozenset({412, 429, 502, 504})
