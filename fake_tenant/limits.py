"""The published limits the fake tenant enforces: the product's own table
(``integration/delivery/limits.py``), so that what the pacer sends by and what the fake tenant refuses
are one set of numbers. This is the fake tenant's only import from the product, and it is data.
"""
from integration.delivery.limits import (
    BOT_LIMITS,
    BOT_PER_APP,
    BOT_PER_CONVERSATION,
    BOT_PER_CONVERSATION_ALL_BOTS,
    BOT_RETRY_STATUSES,
    GLOBAL_PER_10S,
    IDENTITY_ROOTS,
    IDENTITY_UNITS_PER_10S,
    IDENTITY_UNITS_PER_10S_SMALLEST,
    PER_RESOURCE_RPS,
    TEAMS_LIMITS,
    TEAMS_SEGMENTS,
    identity_units_per_10s,
    teams_category,
)

__all__ = ["BOT_LIMITS", "BOT_PER_APP", "BOT_PER_CONVERSATION", "BOT_PER_CONVERSATION_ALL_BOTS", "BOT_RETRY_STATUSES",
           "GLOBAL_PER_10S", "IDENTITY_ROOTS", "IDENTITY_UNITS_PER_10S", "IDENTITY_UNITS_PER_10S_SMALLEST",
           "PER_RESOURCE_RPS", "TEAMS_LIMITS", "TEAMS_SEGMENTS", "identity_units_per_10s", "teams_category"]
