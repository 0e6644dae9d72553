"""Microsoft's published rate limits for Teams in Graph and for bots, as plain data: the pacer
sends by them and the fake tenant enforces them, so the two can never drift apart.

Sources: Microsoft Graph "throttling limits" (Teams service limits, identity and access
resource units) and Teams "rate limiting for bots"; summarized in shared/design/graph-facts.md.
"""
from __future__ import annotations

# Graph, per app per tenant: category -> (requests per second, label)
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
GLOBAL_PER_10S = 130_000
TEAMS_SEGMENTS = frozenset({"chats", "teams", "channels", "joinedteams", "teamwork", "installedapps", "tabs",
                            "allchannels", "primarychannel", "team"})
IDENTITY_ROOTS = frozenset({"users", "me", "groups"})
IDENTITY_UNITS_PER_10S_SMALLEST = 3500


def identity_units_per_10s(n_users: int) -> int:
    """Resource units per 10 s for a tenant of this size (under 50, 50-500, over 500 users)."""
    if n_users < 50:
        return 3500
    if n_users <= 500:
        return 5000
    return 8000


def teams_category(method: str, low: list[str]) -> str:
    """The Teams limit category of a call, from its lower-cased path segments."""
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


# Bots in Teams: (requests, per seconds). All of an app's operations in a tenant together...
BOT_PER_APP = ((50, 1.0),)
# ...and one bot's operations in one conversation, under every window at once.
BOT_PER_CONVERSATION = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
# Statuses a bot client retries with backoff, as Microsoft asks.
BOT_RETRY_STATUSES = frozenset({412, 429, 502, 504})
