"""Graph throttling for the emulator: token buckets with Microsoft's published Teams and
identity limits (see graph-facts.md), answering 429 ``TooManyRequests`` with ``Retry-After``.

Buckets, per app (the emulator hosts a single tenant, so "per app per tenant" is per app):
- one per Teams category (POST chat message 20 rps, POST channel message 50, GET chat/channel
  message 20, GET team members/channels/channel members 60, GET team/channel 30, POST /teams 10,
  other POST/PUT/PATCH on teams 30, DELETE 15, other Teams calls such as creating chats and
  chat members 30); each holds one second's worth of requests, so a burst above the limit
  within a second is refused;
- one per team or channel touched (4 rps, burst 4);
- identity (``/users``, ``/me``, ``/groups``): resource units per 10 s (3,500 / 5,000 / 8,000
  for tenants under 50 / 50-500 / over 500 users); a list GET costs 2, a single GET 1, a
  write 3 (the last is the emulator's approximation);
- global: 130,000 requests per 10 s.
Online meetings and calls have no rps bucket beyond the global one.

``speed`` multiplies every limit (rate and burst alike): ``speed=10`` lets ten times as many
requests through per second, so a benchmark finishes ten times sooner while every ratio between
limits holds. ``Retry-After`` is the whole number of seconds (at least 1) until the emptiest
bucket has room again; ``retry_after=False`` drops the header, as some Teams endpoints do.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .core import GraphError

# category -> (requests per second, burst in seconds of rate, label)
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
PER_RESOURCE_RPS = 4.0
GLOBAL_PER_10S = 130_000
_TEAMS_SEGMENTS = {"chats", "teams", "channels", "joinedteams", "teamwork", "installedapps", "tabs",
                   "allchannels", "primarychannel", "team"}
_IDENTITY_ROOTS = {"users", "me", "groups"}


def identity_units_per_10s(n_users: int) -> int:
    if n_users < 50:
        return 3500
    if n_users <= 500:
        return 5000
    return 8000


@dataclass
class _Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    last: float

    def refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now


@dataclass(frozen=True)
class BucketSpec:
    key: str
    rate: float  # per second at speed 1
    capacity: float
    cost: float
    label: str


def classify(method: str, permission_key: str, path: str, n_users: int = 0) -> list[BucketSpec]:
    """The buckets one Graph call draws from (without the global one)."""
    method = method.upper()
    ksegs = permission_key.strip("/").split("/") if permission_key not in ("", "none") else []
    psegs = [s for s in path.split("?", 1)[0].strip("/").split("/") if s]
    low = [s.lower() for s in ksegs]
    specs: list[BucketSpec] = []
    if not low:
        return specs
    teamsy = bool(_TEAMS_SEGMENTS.intersection(low))
    if low[0] in _IDENTITY_ROOTS and not teamsy and "onlinemeetings" not in low:
        cap = identity_units_per_10s(n_users)
        if method == "GET":
            cost = 2.0 if low[-1] != "{id}" else 1.0
        else:
            cost = 3.0
        specs.append(BucketSpec("identity", cap / 10.0, float(cap), cost, "identity resource units"))
        return specs
    if not teamsy:
        return specs  # meetings, calls: global limit only
    last = low[-1]
    in_channel = "channels" in low
    if method == "POST" and last in ("messages", "replies"):
        cat = "channel_message_post" if in_channel else "chat_message_post"
    elif method == "GET" and ("messages" in low[-2:] or "replies" in low[-2:]):
        cat = "message_get"
    elif method == "GET" and low[0] == "teams" and last in ("members", "channels"):
        cat = "team_list_get"
    elif method == "GET" and low[0] == "teams":
        cat = "team_get"  # team, channel, tab, installed app
    elif method == "POST" and low == ["teams"]:
        cat = "team_create"
    elif method == "DELETE":
        cat = "teams_delete"
    elif method in ("POST", "PUT", "PATCH") and low[0] == "teams":
        cat = "teams_write"
    else:
        cat = "teams_other"
    rate, label = TEAMS_LIMITS[cat]
    specs.append(BucketSpec(cat, rate, rate, 1.0, label))
    # At most 4 rps per app on any one team or channel.
    if psegs and psegs[0].lower() == "teams" and len(psegs) >= 2:
        if len(psegs) >= 4 and psegs[2].lower() == "channels":
            specs.append(BucketSpec("channel:" + psegs[3], PER_RESOURCE_RPS, PER_RESOURCE_RPS, 1.0,
                                    "4 requests per second per channel"))
        else:
            specs.append(BucketSpec("team:" + psegs[1].lower(), PER_RESOURCE_RPS, PER_RESOURCE_RPS, 1.0,
                                    "4 requests per second per team"))
    return specs


class Throttler:
    def __init__(self, enabled: bool = False, speed: float = 1.0, retry_after: bool = True,
                 clock: Callable[[], float] = time.monotonic, n_users: int = 0):
        self.enabled = enabled
        self.speed = float(speed)
        self.retry_after = retry_after
        self.clock = clock
        self.n_users = n_users
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def configure(self, enabled: bool | None = None, speed: float | None = None,
                  retry_after: bool | None = None) -> None:
        with self._lock:
            if enabled is not None:
                self.enabled = bool(enabled)
            if speed is not None:
                if speed <= 0:
                    raise ValueError("speed must be positive")
                if float(speed) != self.speed:
                    self._buckets.clear()  # capacities change with speed
                self.speed = float(speed)
            if retry_after is not None:
                self.retry_after = bool(retry_after)

    def settings(self) -> dict:
        return {"enabled": self.enabled, "speed": self.speed, "retry_after": self.retry_after}

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def check(self, app_id: str, method: str, permission_key: str, path: str) -> None:
        """Take tokens for one call or raise the 429 (nothing is taken from any bucket then)."""
        if not self.enabled:
            return
        specs = classify(method, permission_key, path, self.n_users)
        specs.append(BucketSpec("global", GLOBAL_PER_10S / 10.0, float(GLOBAL_PER_10S), 1.0, "global"))
        with self._lock:
            now = self.clock()
            waits = []
            buckets = []
            for s in specs:
                rate, cap = s.rate * self.speed, s.capacity * self.speed
                b = self._buckets.get((app_id, s.key))
                if b is None:
                    b = self._buckets[(app_id, s.key)] = _Bucket(cap, rate, cap, now)
                b.refill(now)
                buckets.append((b, s))
                if b.tokens + 1e-9 < s.cost:  # float refill arithmetic must not lose a whole token
                    waits.append(((s.cost - b.tokens) / rate, s))
            if not waits:
                for b, s in buckets:
                    b.tokens -= s.cost
                return
        wait, spec = max(waits, key=lambda w: w[0])
        seconds = max(1, math.ceil(wait))
        headers = {"Retry-After": str(seconds)} if self.retry_after else {}
        raise GraphError(429, "TooManyRequests",
                         f"Too many requests: the application exceeded the limit for {spec.label}. "
                         f"Please retry after {seconds} seconds.", headers)
