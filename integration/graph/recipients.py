"""Recipient routing: who to notify for a set of keys (roles, severities, teams).

A route map sends each key to a list of recipients; a ``"*"`` entry serves every key the map
does not list (Teleport's ``role_to_recipients``). Suggested reviewers are added. When a
primary recipient cannot be reached (unknown user, ambiguous name, deleted channel, Graph
error), the fallback recipients are used (OX's fallback recipients); they are also used when
the keys route to nobody. Recipients are de-duplicated (users by object id, channels by team
and channel id); the first route that reached one is its ``source``.

A recipient is written as:

- a user's mail or UPN (``priya.patel@contoso.example``), object id, or display name;
- a channel link as Teams copies it: ``https://teams.microsoft.com/l/channel/<url-encoded
  channel id>/<name>?groupId=<team id>&tenantId=<tenant id>``, parsed strictly (https, a Teams
  host, a ``19:...@thread...`` channel id, GUIDs for the team and tenant);
- ``Team Name/Channel Name``: split at the last ``/`` (Teams forbids ``/`` in channel names,
  not in team names).

Users resolve through :class:`integration.graph.resolve.Resolver` (the context store first, Graph
second); channels are checked to exist the same way. Untrusted text reaches Graph only as
escaped OData literals or encoded path segments (the resolver's job).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from integration.engine.errors import (
    AuthError,
    ConfigError,
    InputError,
    IntegrationError,
    NotFound,
    PermissionDenied,
)
from .resolve import is_guid

WILDCARD = "*"
TEAMS_HOSTS = frozenset({"teams.microsoft.com", "teams.cloud.microsoft"})
FALLBACK = "fallback"
SUGGESTED = "suggested"
MAX_RECIPIENT_LEN = 2048

# Errors that say the integration itself cannot work (no token, no permission, no config):
# every other recipient would fail the same way, so they are raised, not worked around.
SYSTEMIC = (AuthError, ConfigError, PermissionDenied)


class RecipientError(InputError):
    """A recipient that is malformed as written (a bad channel link, an empty entry)."""


@dataclass(frozen=True)
class ChannelRef:
    team_id: str
    channel_id: str
    name: str | None = None
    tenant_id: str | None = None


def parse_channel_url(url: str, *, tenant_id: str | None = None) -> ChannelRef:
    """A Teams channel link, checked strictly. Raises RecipientError saying what is wrong."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RecipientError(f"not a valid URL ({exc})") from None
    if parts.scheme != "https":
        raise RecipientError("a channel link must use https")
    if parts.username is not None or parts.password is not None or port not in (None, 443):
        raise RecipientError("a channel link must not carry a user, password or port")
    host = (parts.hostname or "").lower()
    if host not in TEAMS_HOSTS:
        raise RecipientError(f"host '{host or '(none)'}' is not a Teams host (expected {' or '.join(sorted(TEAMS_HOSTS))})")
    segments = parts.path.split("/")
    # '', 'l', 'channel', '<id>', '<name>' (a trailing slash or a missing name tolerated)
    if len(segments) < 4 or segments[1] != "l" or segments[2] != "channel" or not segments[3]:
        raise RecipientError("not a channel link: expected https://teams.microsoft.com/l/channel/<channel id>/<name>"
                             "?groupId=<team id>&tenantId=<tenant id>")
    if len(segments) > 5 and any(segments[5:]):
        raise RecipientError("not a channel link: unexpected path after the channel name")
    channel_id = unquote(segments[3], errors="strict") if _decodable(segments[3]) else None
    if not channel_id or not channel_id.startswith("19:") or "@thread." not in channel_id \
            or any(c.isspace() or ord(c) < 32 or c in "/?#\\" for c in channel_id):
        raise RecipientError("the link's channel id is not a Teams channel id (19:...@thread...)")
    name = unquote(segments[4]) if len(segments) > 4 and segments[4] else None
    try:
        query = parse_qs(parts.query, strict_parsing=bool(parts.query), max_num_fields=10)
    except ValueError:
        raise RecipientError("the link's query string is malformed") from None
    team = query.get("groupId") or query.get("groupid")
    if not team or len(team) != 1 or not is_guid(team[0]):
        raise RecipientError("the link needs exactly one groupId, the team's id (a GUID)")
    tenant = query.get("tenantId") or query.get("tenantid")
    if tenant is not None and (len(tenant) != 1 or not is_guid(tenant[0])):
        raise RecipientError("the link's tenantId is not a GUID")
    tenant_value = tenant[0].lower() if tenant else None
    if tenant_value and tenant_id and tenant_value != tenant_id.lower():
        raise RecipientError(f"the link is for another tenant ({tenant_value}), not the configured one")
    return ChannelRef(team[0].lower(), channel_id, name, tenant_value)


def _decodable(segment: str) -> bool:
    try:
        unquote(segment, errors="strict")
        return True
    except UnicodeDecodeError:
        return False


def classify(recipient: str) -> str:
    """'url', 'channel' (Team/Channel) or 'user' for one written recipient."""
    text = recipient.strip()
    low = text.lower()
    if low.startswith(("https://", "http://")) or "://" in low:
        return "url"
    if "/" in text and "@" not in text:
        return "channel"
    return "user"


@dataclass
class Routing:
    """What routing found: recipients in first-reached order, and the entries it could not use."""

    resolved: list[dict] = field(default_factory=list)
    unresolved: list[dict] = field(default_factory=list)
    fallback_used: bool = False

    @property
    def users(self) -> list[str]:
        return [r["id"] for r in self.resolved if r["kind"] == "user"]

    @property
    def channels(self) -> list[dict]:
        return [r for r in self.resolved if r["kind"] == "channel"]

    def to_dict(self) -> dict:
        return {"recipients": self.resolved, "unresolved": self.unresolved, "users": self.users,
                "channels": [{"teamId": c["teamId"], "channelId": c["id"], "name": c.get("name")} for c in self.channels],
                "fallbackUsed": self.fallback_used}


def _entries(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InputError(f"{where}: expected a list of recipients, got {type(value).__name__}")
    out = []
    for v in value:
        if not isinstance(v, str):
            raise InputError(f"{where}: each recipient is a string, got {type(v).__name__}")
        if v.strip():
            out.append(v.strip())
    return out


def route_entries(routes: dict, keys: Iterable[str] | None) -> list[tuple[str, str, str]]:
    """(recipient, source, via) for the keys, in order: ``source`` is the key, ``via`` the map
    entry that served it (the key itself or "*" for a key the map lacks). With no keys, the
    "*" entry is the route."""
    if not isinstance(routes, dict):
        raise InputError(f"routes: expected a mapping of key -> recipients, got {type(routes).__name__}")
    keys = [str(k).strip() for k in (keys or []) if str(k).strip()]
    if not keys:
        return [(r, WILDCARD, WILDCARD) for r in _entries(routes.get(WILDCARD), f"routes['{WILDCARD}']")]
    triples: list[tuple[str, str, str]] = []
    for key in dict.fromkeys(keys):
        via = key if key in routes else WILDCARD if WILDCARD in routes else None
        if via is not None:
            triples += [(r, key, via) for r in _entries(routes[via], f"routes['{via}']")]
    return triples


class RecipientResolver:
    """Resolves written recipients to users and channels through a Resolver (store, then Graph)."""

    def __init__(self, resolver, *, tenant_id: str | None = None):
        self.resolver = resolver
        self.tenant_id = tenant_id

    def one(self, recipient: str) -> dict:
        """{kind, id, name, displayName and mail (users) | teamId (channels)}, plus the id again
        as userId or channelId, so that a playbook step can pass `user: ${item.userId}` and
        `channel: ${item.channelId}` (the other one is absent, and dropped) to send-notification.
        Raises RecipientError (malformed), NotFound, AmbiguousError or another IntegrationError."""
        if len(recipient) > MAX_RECIPIENT_LEN:
            raise RecipientError(f"longer than {MAX_RECIPIENT_LEN} characters")
        kind = classify(recipient)
        if kind == "url":
            ref = parse_channel_url(recipient, tenant_id=self.tenant_id)
            chan = self.resolver.channel(ref.team_id, ref.channel_id)
            return {"kind": "channel", "id": chan["id"], "name": chan.get("displayName") or ref.name,
                    "teamId": ref.team_id, "channelId": chan["id"]}
        if kind == "channel":
            team_name, _, channel_name = recipient.rpartition("/")
            if not team_name.strip() or not channel_name.strip():
                raise RecipientError("expected 'Team Name/Channel Name'")
            team = self.resolver.team(team_name)
            chan = self.resolver.channel(team["id"], channel_name)
            return {"kind": "channel", "id": chan["id"], "name": chan.get("displayName") or channel_name.strip(),
                    "teamId": team["id"], "channelId": chan["id"], "teamName": team.get("displayName")}
        user = self.resolver.user(recipient)
        return {"kind": "user", "id": user["id"], "displayName": user.get("displayName"),
                "name": user.get("displayName") or user["id"], "mail": user.get("mail") or user.get("userPrincipalName"),
                "userId": user["id"]}

    def route(self, routes: dict | None, keys: Iterable[str] | None = None, *, suggested: Iterable[str] | None = None,
              fallback: Iterable[str] | None = None) -> Routing:
        """Route the keys through the map, add suggested reviewers, and fall back for failures."""
        primary = route_entries(routes or {}, keys)
        primary += [(r, SUGGESTED, SUGGESTED) for r in _entries(suggested, "suggested reviewers")]
        backups = _entries(fallback, "fallback recipients")
        out = Routing()
        reached: dict[tuple, dict] = {}
        missed: dict[str, dict] = {}
        answers: dict[str, dict | IntegrationError] = {}  # one lookup per written recipient

        def attempt(recipient: str, source: str, via: str) -> dict | None:
            if recipient not in answers:
                try:
                    answers[recipient] = self.one(recipient)
                except SYSTEMIC:
                    raise
                except IntegrationError as exc:
                    answers[recipient] = exc
            got = answers[recipient]
            if isinstance(got, IntegrationError):
                if recipient in missed:
                    _add(missed[recipient]["sources"], source)
                else:
                    missed[recipient] = {"recipient": recipient, "source": source, "sources": [source],
                                         "reason": _reason(got), "error": got.kind}
                    out.unresolved.append(missed[recipient])
                return None
            key = (got["kind"], got.get("teamId"), got["id"].lower())
            if key in reached:
                _add(reached[key]["sources"], source)
                return reached[key]
            entry = dict(got, recipient=recipient, source=source, sources=[source])
            if via not in (source, FALLBACK, SUGGESTED):
                entry["via"] = via
            reached[key] = entry
            out.resolved.append(entry)
            return entry

        failures = [r for r, source, via in primary if attempt(r, source, via) is None]
        if backups and (failures or not out.resolved):
            out.fallback_used = True
            for recipient in backups:
                entry = attempt(recipient, FALLBACK, FALLBACK)
                if entry is not None and entry["source"] == FALLBACK:
                    entry["fallbackFor"] = list(dict.fromkeys(failures))
        return out


def _add(items: list, value: str) -> None:
    if value not in items:
        items.append(value)


def _reason(exc: IntegrationError) -> str:
    if isinstance(exc, RecipientError):
        return f"malformed: {exc.message}"
    if isinstance(exc, NotFound):
        return f"not found: {exc.message}"
    return exc.message
