"""Microsoft's published rate limits, as the fake tenant enforces them (``throttle.py``): Graph's
Teams and identity limits and the Bot Connector's limits for bots in Teams, as plain data.

This is the fake tenant's OWN copy, written from Microsoft's documentation and not imported from
the product: a fake that enforced the product's table could never catch a wrong number in it.
The product keeps its copy in ``integration/delivery/limits.py`` (what its pacer sends by);
``tests/emulator/test_limits_agree.py`` compares the two entry by entry, so a number changed
in one must be checked against Microsoft's page and changed in the other.

Sources (summarized in shared/design/graph-facts.md):
- Graph: "Microsoft Graph service-specific throttling limits"
  (https://learn.microsoft.com/graph/throttling-limits), the global limit at its top and the
  sections "Microsoft Teams service limits" and "Identity and access service limits".
- Bots: "Optimize your bot with rate limiting and best practices in Microsoft Teams"
  (https://learn.microsoft.com/microsoftteams/platform/bots/how-to/rate-limit).
Microsoft says the exact values may change; a client must back off on 429 whatever the table.
Nothing here imports anything.
"""
from __future__ import annotations

# ---- Graph: Microsoft Teams service limits, per app per tenant ----
# Teams category -> (requests per second, label). Each number is the "Limit per app per tenant"
# column of the Teams table. The fake hosts a single tenant, so per app per tenant is per app,
# and the "per app across all tenants" column can never bind and is left out.
TEAMS_LIMITS = {
    # "POST 1:1/group chat message": 20 rps.
    "chat_message_post": (20.0, "POST chat message"),
    # "POST channel message": 50 rps.
    "channel_message_post": (50.0, "POST channel message"),
    # "GET channel message" and "GET 1:1/group chat message": 20 rps each.
    "message_get": (20.0, "GET chat or channel message"),
    # "GET /teams/{team-id}/members", ".../channels", ".../channels/{channel-id}/members": 60 rps.
    "team_list_get": (60.0, "GET team members, channels or channel members"),
    # "GET team, channel, tab, installedApps, appCatalogs" and "GET /teams/{team-id}": 30 rps.
    "team_get": (30.0, "GET team or channel"),
    # "POST /teams": 10 rps.
    "team_create": (10.0, "POST /teams"),
    # "POST/PUT channel, tab, installedApps, appCatalogs" and "PATCH team, channel, ...": 30 rps.
    "teams_write": (30.0, "POST/PUT/PATCH team or channel"),
    # "DELETE channel, tab, installedApps, appCatalogs": 15 rps.
    "teams_delete": (15.0, "DELETE"),
    # "Other GET API calls" and "Other API calls for Microsoft Teams" (creating chats, chat
    # members, joinedTeams...): 30 rps each.
    "teams_other": (30.0, "other Teams calls"),
}
# Below the Teams table: "A maximum of 4 requests per second per app can be issued on a given
# team or channel."
PER_RESOURCE_RPS = 4.0
# Below the Teams table too: "A maximum of 3000 messages per app per day can be sent to a given
# channel." Counted per app per channel: Graph's POST of a channel message or reply, and a Bot
# Connector post into a channel's conversation. Microsoft does not say whose day, nor what the
# refusal looks like; the fake tenant (throttle.py) counts a UTC day and refuses the 3,001st
# with its ordinary throttling answer, 429 with Retry-After up to the next UTC midnight.
CHANNEL_MESSAGES_PER_DAY = 3000
# The global limit at the top of the page: "Any" request, per app across all tenants, 130,000
# requests per 10 seconds.
GLOBAL_PER_10S = 130_000
# Path segments that make a call a Teams call (the Teams table's resources: teams, channels,
# chats, tabs, installed apps, teamwork), and the roots of identity calls (users and groups, the
# "Identity and access" service, metered in resource units). These say which table a call falls
# under; they are not numbers of Microsoft's but must classify as the product does.
TEAMS_SEGMENTS = frozenset({"chats", "teams", "channels", "joinedteams", "teamwork", "installedapps", "tabs",
                            "allchannels", "primarychannel", "team"})
IDENTITY_ROOTS = frozenset({"users", "me", "groups"})
# "Identity and access service limits": the application+tenant pair's resource unit quota per
# 10 seconds is S 3,500, M 5,000, L 8,000, where "S - under 50 users, M - between 50 and 500
# users, and L - above 500 users". As (at most this many users, units); larger tenants: the last.
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
    path segments with ids replaced or not (only literal segments are compared). The rows of
    Microsoft's Teams table are tried from the most specific to the catch-all "other" rows."""
    method = method.upper()
    last = low[-1]
    in_channel = "channels" in low
    if method == "POST" and last in ("messages", "replies"):
        return "channel_message_post" if in_channel else "chat_message_post"
    if method == "GET" and ("messages" in low[-2:] or "replies" in low[-2:]):
        return "message_get"  # a list of messages or one message, of a chat or a channel
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


# ---- Bots (Bot Connector): "Optimize your bot with rate limiting ... in Microsoft Teams" ----
# class -> windows, each (requests, per seconds); a request of a class must fit every window.
#   app: "The global limit per app per tenant is 50 Requests Per Second (RPS)", all of one bot
#        app's requests in one tenant;
#   conversation: the "Per bot per thread limit" table, one bot's requests in one conversation
#        (Microsoft's "thread": a 1:1 chat, a group chat or a channel), sending, replying,
#        updating and deleting activities and reading members: 7 per 1 s, 8 per 2 s, 60 per
#        30 s, 1,800 per 3,600 s;
#   conversation_all_bots: the "Per thread limit for all bots" table, every bot's requests in one
#        conversation together: 14 per 1 s, 16 per 2 s.
# Creating a conversation counts against the app only; when the request also posts an activity
# it counts against that conversation too (throttle.py applies this).
# Microsoft's tables give reading members ("Get conversation members", "Get conversations") more
# room: 14 per 1 s, 16 per 2 s, 120 per 30 s, 3,600 per hour per bot, 28 / 32 for all bots. Both
# this table and the product's count such reads at the send limits: stricter than published,
# never looser.
BOT_LIMITS = {
    "app": ((50, 1.0),),
    "conversation": ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0)),
    "conversation_all_bots": ((14, 1.0), (16, 2.0)),
}
BOT_PER_APP = BOT_LIMITS["app"]
BOT_PER_CONVERSATION = BOT_LIMITS["conversation"]
BOT_PER_CONVERSATION_ALL_BOTS = BOT_LIMITS["conversation_all_bots"]
# The same page asks clients to retry 429 with exponential backoff and random jitter, and to
# "also retry error codes 412, 502, and 504".
BOT_RETRY_STATUSES = frozenset({412, 429, 502, 504})

__all__ = ["BOT_LIMITS", "BOT_PER_APP", "BOT_PER_CONVERSATION", "BOT_PER_CONVERSATION_ALL_BOTS", "BOT_RETRY_STATUSES",
           "CHANNEL_MESSAGES_PER_DAY", "GLOBAL_PER_10S", "IDENTITY_ROOTS", "IDENTITY_UNITS_PER_10S", "IDENTITY_UNITS_PER_10S_SMALLEST",
           "PER_RESOURCE_RPS", "TEAMS_LIMITS", "TEAMS_SEGMENTS", "identity_units_per_10s", "teams_category"]
