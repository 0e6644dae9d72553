"""Who may run which command from Teams, and how often.

A YAML file named by the ``bot_access_file`` setting (deny by default: without it, nobody
runs anything)::

    roles:                        # who is who
      analysts:  {users: [bob.smith@contoso.example], groups: [<group object id>]}
      responders: {users: [conor.obrien@contoso.example, 7c1d...]}   # mail, UPN or object id
      admins:    {users: [alice.johnson@contoso.example]}
    allow:                        # what each role may run
      analysts:   [read]                      # built-in groups: read, write, admin
      responders: [read, write]               # or categories (chats, channels, ...), command names, "*"
      admins:     ["*"]
    rate_limit: {per_minute: 10, burst: 5}    # per sender (token bucket)
    group_cache_seconds: 300                  # how long a group membership answer is kept

Built-in command groups, derived from the registry: ``read`` is every command whose calls are
all reads (GET) outside the admin category; ``write`` every other command outside admin
(posting, creating, removing, ringing); ``admin`` the admin category (cache-reset, sign-in
state, health). ``auth-login`` never runs from Teams (it is interactive).

A sender is matched by the object id Teams gives (``from.aadObjectId``); a mail or UPN in
``users`` is compared with the sender's directory entry (looked up through Graph once, then
cached); ``groups`` (object ids) are checked with ``checkMemberGroups`` (transitive
membership), cached per sender for ``group_cache_seconds``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from integration.engine.errors import ConfigError
from integration.engine.untrusted import quote

log = logging.getLogger("msteams.bot.access")

GROUPS = ("read", "write", "admin")
NEVER_FROM_TEAMS = frozenset({"auth-login"})
DEFAULT_RATE = {"per_minute": 10.0, "burst": 5}
DEFAULT_GROUP_CACHE = 300.0


def command_groups(spec) -> set[str]:
    """The built-in groups a command belongs to."""
    if spec.category == "admin":
        return {"admin"}
    calls = [spec.request["method"]] if spec.request else [c.split(" ", 1)[0] for c in spec.calls]
    return {"read"} if calls and all(c.upper() == "GET" for c in calls) else {"write"}


@dataclass
class Role:
    name: str
    users: frozenset  # object ids (lowercase)
    mails: frozenset  # mails / UPNs (casefolded)
    groups: tuple  # group object ids
    allow: frozenset  # command names, categories, built-in groups, "*"


@dataclass
class Policy:
    roles: list = field(default_factory=list)
    per_minute: float = DEFAULT_RATE["per_minute"]
    burst: int = DEFAULT_RATE["burst"]
    group_cache_seconds: float = DEFAULT_GROUP_CACHE

    @property
    def empty(self) -> bool:
        return not any(r.allow for r in self.roles)


def _is_guid(text: str) -> bool:
    from integration.graph.resolve import is_guid

    return is_guid(text)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"bot_access: {where} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _number(value: Any, where: str, *, minimum: float, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise ConfigError(f"bot_access: {where} must be a {'whole ' if integer else ''}number")
    if value < minimum:
        raise ConfigError(f"bot_access: {where} must be at least {minimum:g}")
    return float(value)


def load_policy(path: str | None, registry=None) -> Policy:
    """The policy in the file ``path`` (None: the empty policy, which allows nothing)."""
    if not path:
        return Policy()
    import os

    from integration.engine import yamlfile
    from integration.engine.errors import FileError

    where = os.path.abspath(os.path.expanduser(path))  # the full path tried, in every error
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"bot_access_file {quote(where)}: cannot read ({getattr(exc, 'strerror', None) or exc})",
                          hint="a relative bot_access_file in a config file is taken from the config file's "
                               "directory (from MSTEAMS_BOT_ACCESS_FILE, from the current directory)") from None
    try:
        data = yamlfile.parse(text, where)[0]
    except FileError as exc:
        raise ConfigError(f"bot_access_file {quote(where)}: {exc}") from None
    try:
        return parse_policy(data, registry)
    except ConfigError as exc:
        exc.message = f"{where}: {exc.message}"
        raise


def parse_policy(data: Any, registry=None) -> Policy:
    """Validate the access policy (a mapping); names in ``allow`` are checked against the
    registry when one is given."""
    if data is None:
        return Policy()
    if not isinstance(data, dict):
        raise ConfigError("bot_access: expected a mapping with roles, allow, rate_limit")
    unknown = set(data) - {"roles", "allow", "rate_limit", "group_cache_seconds"}
    if unknown:
        raise ConfigError(f"bot_access: unknown setting {quote(sorted(unknown)[0])}",
                          hint="bot_access takes roles, allow, rate_limit and group_cache_seconds")
    roles_in = data.get("roles") or {}
    allow_in = data.get("allow") or {}
    if not isinstance(roles_in, dict) or not isinstance(allow_in, dict):
        raise ConfigError("bot_access: roles and allow must be mappings keyed by role name")
    for name in allow_in:
        if name not in roles_in:
            raise ConfigError(f"bot_access: allow names the role {quote(name)}, which roles does not define")
    known: set[str] = set(GROUPS) | {"*"}
    if registry is not None:
        known |= set(registry.all_names()) | {s.category for s in registry}
    roles = []
    for name, spec in roles_in.items():
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ConfigError(f"bot_access: role {quote(name)} must be a mapping with users and/or groups")
        extra = set(spec) - {"users", "groups"}
        if extra:
            raise ConfigError(f"bot_access: role {quote(name)}: unknown key {quote(sorted(extra)[0])}",
                              hint="a role has users (object ids, mails or UPNs) and groups (object ids)")
        users = _strings(spec.get("users"), f"roles.{name}.users")
        groups = _strings(spec.get("groups"), f"roles.{name}.groups")
        for g in groups:
            if not _is_guid(g):
                raise ConfigError(f"bot_access: roles.{name}.groups: {quote(g)} is not a group object id")
        allow = _strings(allow_in.get(name), f"allow.{name}")
        for item in allow:
            if registry is not None and item not in known:
                raise ConfigError(f"bot_access: allow.{name}: unknown command or group {quote(item)}",
                                  hint="use command names, categories, read, write, admin or \"*\"")
        roles.append(Role(name, frozenset(u.lower() for u in users if _is_guid(u)),
                          frozenset(u.casefold() for u in users if not _is_guid(u)), tuple(g.lower() for g in groups),
                          frozenset(allow)))
    rate = data.get("rate_limit") or {}
    if not isinstance(rate, dict) or set(rate) - {"per_minute", "burst"}:
        raise ConfigError("bot_access: rate_limit takes per_minute and burst")
    per_minute = _number(rate.get("per_minute", DEFAULT_RATE["per_minute"]), "rate_limit.per_minute", minimum=0.1)
    burst = int(_number(rate.get("burst", DEFAULT_RATE["burst"]), "rate_limit.burst", minimum=1, integer=True))
    ttl = _number(data.get("group_cache_seconds", DEFAULT_GROUP_CACHE), "group_cache_seconds", minimum=0)
    return Policy(roles, per_minute, burst, ttl)


@dataclass
class Decision:
    allowed: bool
    roles: tuple = ()
    reason: str = ""


class Access:
    """Decides whether a sender may run a command. ``directory`` answers the Graph questions:
    ``user(oid) -> dict`` (mail, userPrincipalName) and ``member_of(oid, group_ids) -> set``."""

    def __init__(self, policy: Policy, directory=None, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy
        self.directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[float, frozenset]] = {}
        self._names: dict[str, tuple[float, frozenset]] = {}

    @staticmethod
    def _grants(role: Role, spec) -> bool:
        if not role.allow:
            return False
        names = {spec.name, *spec.aliases, spec.category, *command_groups(spec)}
        return "*" in role.allow or bool(names & role.allow)

    def decide(self, sender_oid: str | None, spec) -> Decision:
        if spec.name in NEVER_FROM_TEAMS:
            return Decision(False, reason=f"{spec.name} is interactive and never runs from Teams")
        if not sender_oid:
            return Decision(False, reason="the sender has no directory object id")
        oid = sender_oid.lower()
        candidates = [r for r in self.policy.roles if self._grants(r, spec)]
        if not candidates:
            return Decision(False, reason="no role may run this command")
        matched = [r.name for r in candidates if oid in r.users]
        if not matched and any(r.mails for r in candidates):
            names = self._sender_names(oid)
            matched = [r.name for r in candidates if names & r.mails]
        if not matched:
            wanted = sorted({g for r in candidates for g in r.groups})
            if wanted:
                member = self._member_of(oid, wanted)
                matched = [r.name for r in candidates if member & set(r.groups)]
        if matched:
            return Decision(True, tuple(matched))
        return Decision(False, reason="the sender holds no role that may run this command")

    def _cached(self, table: dict, key: str):
        hit = table.get(key)
        if hit and self._clock() - hit[0] < self.policy.group_cache_seconds:
            return hit[1]
        return None

    def _sender_names(self, oid: str) -> frozenset:
        with self._lock:
            hit = self._cached(self._names, oid)
        if hit is not None:
            return hit
        names: frozenset = frozenset()
        if self.directory is not None:
            try:
                user = self.directory.user(oid) or {}
                names = frozenset(v.casefold() for v in (user.get("mail"), user.get("userPrincipalName"))
                                  if isinstance(v, str) and v)
            except Exception as exc:  # noqa: BLE001 - not found, no app flow: the names match nothing
                log.warning("cannot look the sender %s up: %s", oid, exc)
        with self._lock:
            self._names[oid] = (self._clock(), names)
        return names

    def _member_of(self, oid: str, groups: list[str]) -> frozenset:
        key = oid + "|" + ",".join(groups)
        with self._lock:
            hit = self._cached(self._groups, key)
        if hit is not None:
            return hit
        found: frozenset = frozenset()
        if self.directory is not None:
            try:
                found = frozenset(g.lower() for g in self.directory.member_of(oid, groups))
            except Exception as exc:  # noqa: BLE001 - deny when membership cannot be known
                log.warning("cannot check the group membership of %s: %s", oid, exc)
                return found  # not cached: the next command asks again
        with self._lock:
            self._groups[key] = (self._clock(), found)
        return found

    def allowed_commands(self, sender_oid: str | None, registry) -> list[str]:
        return [s.name for s in registry if self.decide(sender_oid, s).allowed]


class GraphDirectory:
    """The Graph questions access control asks, through the app flow (or delegated)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def _client(self):
        for flow in ("app", "delegated"):
            if self.runtime.auth.ready(flow):
                return self.runtime.client(flow)
        raise ConfigError("checking mails and groups in bot_access needs the app flow")

    def user(self, oid: str) -> dict:
        from integration.graph.resolve import Resolver

        return Resolver(self._client(), self.runtime.store).user(oid)

    def member_of(self, oid: str, groups: list[str]) -> set[str]:
        from integration.graph.client import seg

        found: set[str] = set()
        client = self._client()
        for i in range(0, len(groups), 20):  # checkMemberGroups takes at most 20 ids a call
            reply = client.post(f"/users/{seg(oid)}/checkMemberGroups", {"groupIds": groups[i:i + 20]}) or {}
            found |= {g for g in reply.get("value") or [] if isinstance(g, str)}
        return found


class RateLimiter:
    """A token bucket per sender: ``burst`` commands at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_senders: int = 10_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list] = {}  # sender -> [tokens, last, refused in a row]
        self.max_senders = max_senders

    def take(self, sender: str) -> tuple[bool, bool]:
        """(allowed, first refusal of a streak): only the first refusal is answered, so a flood
        gets one notice instead of one per message."""
        now = self._clock()
        with self._lock:
            b = self._buckets.get(sender)
            if b is None:
                if len(self._buckets) >= self.max_senders:  # forget full buckets first
                    for k in [k for k, v in self._buckets.items() if v[0] + (now - v[1]) * self.rate >= self.burst]:
                        del self._buckets[k]
                b = self._buckets[sender] = [self.burst, now, 0]
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
            if b[0] >= 1.0:
                b[0] -= 1.0
                b[2] = 0
                return True, False
            b[2] += 1
            return False, b[2] == 1
