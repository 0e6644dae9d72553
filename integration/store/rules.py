"""The rules both store backends apply alike, and the kinds of data a store holds: plain
constants and functions, imported on every command's path (the backends need them), so nothing
here imports anything. The `Store` protocol that names them is base.py (for type checkers and the
contract suite; a command never needs to import it).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# How long a directory entry is trusted when its writer names no TTL.
DEFAULT_TTL = 24 * 3600.0
# Display names: the value of each key is the list of every object with that name, so a name
# two people share is answered as ambiguous from the store instead of being left for Graph.
NAME_KINDS = ("user_name", "team_name", "channel_name")
# The directory cache's kinds: `counts()` lists each of them, at 0 when empty.
DIRECTORY_KINDS = ("user", "team", "channel", "chat", "chat_topic", "member") + NAME_KINDS
# What `clear` (cache-reset) may remove: what can be fetched again (the directory, names found
# missing, the health check's probe). Every other kind of the key/value store is state that
# cannot be fetched again (a mirror webhook's delivered mark, a sign-in in progress, the bot's
# opened conversations of a store written before they had their own table) and survives it.
CACHE_KINDS = DIRECTORY_KINDS + ("user_miss", "health_probe")
# What `purge_history` deletes, in the order of its answer: the last two, references to sent
# messages (what message-update edits) and entries of the key/value store past their expiry
# (finished HTTP jobs, Idempotency-Key answers, webhook deliveries, cache entries: a read no
# longer returns them), but for the kinds in KEPT_EXPIRED.
HISTORY_KINDS = ("outbox", "runs", "questions", "bot_audit", "call_events", "message_refs", "expired_entries")
# Kinds whose entries stay past their expiry: API keys, which `api-key list` shows as expired
# (what keys there were is the deployment's record).
KEPT_EXPIRED = ("api_key",)
# A bot audit entry's fields, as `audit_list` answers them.
AUDIT_COLS = ("id", "time", "activity_id", "tenant_id", "sender_id", "sender_name", "conversation_type",
              "conversation_id", "place", "command", "text", "decision", "outcome", "detail", "duration_ms")


def name_key(name) -> str:
    """A name as the store keys it (`Store.norm`); "" for anything that is not a string."""
    return name.strip().casefold() if isinstance(name, str) else ""


def entry_keys(value: dict, aliases: Iterable[str] = ()) -> list[str]:
    """The keys `Store.put_entries` writes a value under: its id, then each alias field's
    value, normalized and each once ([] when the value has no id)."""
    keys = [name_key(value.get("id"))]
    if not keys[0]:
        return []
    for field in aliases:
        k = name_key(value.get(field))
        if k and k not in keys:
            keys.append(k)
    return keys


def claim_decision(row: dict | None, now: float, holder_alive) -> tuple[str | None, bool]:
    """What an outbox key was (``prior``: None, sent, pending, stale, claimed, failed or unknown)
    and whether the claimer takes it: the one rule of both backends' ``outbox_claim``.

    A claim marks the key ``claimed`` (held, nothing written yet); the sender marks it
    ``pending`` only when it is about to write the request. So a holder that died while
    ``claimed`` sent nothing (``prior`` "claimed": send), and only one that died ``pending``
    may have (``prior`` "stale": look before sending again)."""
    if row is None:
        return None, True
    if row["state"] == "sent":
        return "sent", False
    if row["state"] in HELD and (row["lease_until"] or 0) > now and holder_alive(row["owner"]):
        return "pending", False
    return ("stale" if row["state"] == "pending" else row["state"]), True


# Outbox states in which a sender holds the key's lease.
HELD = ("claimed", "pending")


def assume_alive(owner: str) -> bool:
    """``outbox_claim``'s default ``holder_alive``: a holder whose lease runs is taken as alive."""
    return True


class Busy(Exception):
    """Another writer holds the store, and the caller asked not to wait (``begin_now``)."""
