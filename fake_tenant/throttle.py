"""Throttling for the emulator, at Microsoft's published limits (the numbers live in
``limits.py``; see graph-facts.md): Graph answers 429 ``TooManyRequests``, the Bot Connector
429 ``Throttled``, both with ``Retry-After``.

Graph: token buckets, per app (the emulator hosts a single tenant, so "per app per tenant" is
per app):
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

Bot Connector: sliding windows (N requests in any W seconds), as Microsoft publishes them
(``limits.BOT_LIMITS``): every request of a bot app draws from the app's window (50 per
second); a request in a conversation also from that bot's windows in the conversation (7 per
1 s, 8 per 2 s, 60 per 30 s, 1,800 per hour) and from the conversation's windows for all bots
(14 per 1 s, 16 per 2 s). Creating a 1:1 conversation draws from the app's window only, unless
it also posts a first message. A channel's reply chains (``{channel};messageid={root}``) are
the channel's conversation (emulator choice: the channel id is what Teams calls the thread).

Channel messages per day (``limits.CHANNEL_MESSAGES_PER_DAY``, 3,000): each app may post that
many messages a day into one channel, Graph's POST of a channel message or reply and the Bot
Connector's posts into a channel's conversation together (a channel is a conversation whose id
ends ``@thread.tacv2``, or ``@thread.skype`` for old ones). Microsoft says neither whose day nor
how it refuses: the fake counts a UTC day on ``day_clock`` (epoch seconds; tests set it as they
set ``clock``) and refuses the 3,001st as it refuses any throttled request, 429 with
``Retry-After`` (``TooManyRequests`` from Graph, ``Throttled`` from the Bot Connector), the
Retry-After being the whole seconds until the next UTC midnight. ``speed`` leaves it alone: a
day cannot be made shorter. A refused message is not counted.

``speed`` scales every limit: Graph's rates and bursts are multiplied by it, the bot windows'
lengths divided by it (the same rate, as the client-side pacer does). ``speed=10`` lets ten
times as many requests through per second, so a benchmark finishes ten times sooner while
every ratio between limits holds. ``Retry-After`` is the whole number of seconds (at least 1)
until every bucket or window the request needs has room again; ``retry_after=False`` drops the
header, as some Teams endpoints do. A refused request takes nothing from any bucket or window.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

from . import limits
from .core import GraphError
from .limits import GLOBAL_PER_10S, PER_RESOURCE_RPS, TEAMS_LIMITS, identity_units_per_10s  # noqa: F401 (re-exported)

_TEAMS_SEGMENTS = limits.TEAMS_SEGMENTS
_IDENTITY_ROOTS = limits.IDENTITY_ROOTS
# Stamps within this much of a window's edge count as outside it: fake clocks advanced by
# window/speed must free the slot despite float rounding.
_EPSILON = 1e-9
# Every this many bot checks, windows of conversations no longer written to are dropped.
_BOT_SWEEP_EVERY = 4096
DAY = 86400
# Past this many (app, channel) counts, those of earlier days are dropped.
_CHANNEL_DAYS_KEPT = 4096
# Conversation ids of channels (group chats end @thread.v2, 1:1 chats otherwise).
_CHANNEL_SUFFIXES = ("@thread.tacv2", "@thread.skype")


def is_channel(conversation: str | None) -> bool:
    """Whether a conversation id (a channel thread's ``;messageid=`` part aside) is a channel's."""
    return bool(conversation) and conversation.partition(";")[0].lower().endswith(_CHANNEL_SUFFIXES)


_BOT_CLASS_LABELS = {
    "app": "requests per app per tenant",
    "conversation": "requests per bot per conversation",
    "conversation_all_bots": "requests per conversation for all bots",
}


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
    cat = limits.teams_category(method, low)
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
                 clock: Callable[[], float] = time.monotonic, n_users: int = 0,
                 day_clock: Callable[[], float] = time.time):
        self.enabled = enabled
        self.speed = float(speed)
        self.retry_after = retry_after
        self.clock = clock
        self.day_clock = day_clock  # epoch seconds: which UTC day a channel message counts in
        # (app id, channel id) -> [UTC day number, messages posted that day]
        self._channel_days: dict[tuple[str, str], list] = {}
        self.n_users = n_users
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        # Bot limit class key -> stamps (clock times) of the requests it let through, oldest first.
        self._bot_logs: dict[tuple, collections.deque] = {}
        self._bot_checks = 0

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
                    self._bot_logs.clear()  # and so do window lengths
                self.speed = float(speed)
            if retry_after is not None:
                self.retry_after = bool(retry_after)

    def settings(self) -> dict:
        return {"enabled": self.enabled, "speed": self.speed, "retry_after": self.retry_after}

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._bot_logs.clear()
            self._channel_days.clear()

    # ---- channel messages per day ----
    def channel_messages(self, app_id: str, channel: str) -> int:
        """Messages ``app_id`` posted into ``channel`` this UTC day (as counted so far)."""
        with self._lock:
            day, n = self._channel_days.get((app_id, channel.partition(";")[0]), (None, 0))
            return n if day == int(self.day_clock() // DAY) else 0

    def set_channel_messages(self, app_id: str, channel: str, n: int) -> None:
        """Set this UTC day's count (tests: reaching the cap without posting 3,000 messages)."""
        with self._lock:
            self._channel_days[(app_id, channel.partition(";")[0])] = [int(self.day_clock() // DAY), int(n)]

    def _channel_cap(self, app_id: str, channel: str):
        """The day's count of (app, channel) when one more message fits, else the seconds until
        it resets (a float > 0). Called with the lock held; counts nothing."""
        now = self.day_clock()
        day = int(now // DAY)
        entry = self._channel_days.get((app_id, channel))
        if entry is None or entry[0] != day:
            entry = self._channel_days[(app_id, channel)] = [day, 0]
            if len(self._channel_days) > _CHANNEL_DAYS_KEPT:  # yesterday's channels go
                for k in [k for k, (d, _) in self._channel_days.items() if d != day]:
                    del self._channel_days[k]
        if entry[1] + 1 > limits.CHANNEL_MESSAGES_PER_DAY:
            return ((day + 1) * DAY - now, entry)
        return (0.0, entry)

    def _capped(self, wait: float, channel: str, code: str) -> GraphError:
        retry = max(1, math.ceil(wait))
        headers = {"Retry-After": str(retry)} if self.retry_after else {}
        return GraphError(429, code,
                          f"Too many requests: the application exceeded the limit of "
                          f"{limits.CHANNEL_MESSAGES_PER_DAY} messages per day to channel {channel}. "
                          f"Please retry after {retry} seconds.", headers)

    def check(self, app_id: str, method: str, permission_key: str, path: str) -> None:
        """Take tokens for one call or raise the 429 (nothing is taken from any bucket then)."""
        if not self.enabled:
            return
        specs = classify(method, permission_key, path, self.n_users)
        specs.append(BucketSpec("global", GLOBAL_PER_10S / 10.0, float(GLOBAL_PER_10S), 1.0, "global"))
        # A channel message or reply counts against the channel's messages of the day.
        channel = next((unquote(s.key.partition(":")[2]) for s in specs if s.key.startswith("channel:")), None) \
            if any(s.key == "channel_message_post" for s in specs) else None
        with self._lock:
            if channel is not None:
                capped, day_entry = self._channel_cap(app_id, channel)
                if capped:
                    raise self._capped(capped, channel, "TooManyRequests")
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
                if channel is not None:
                    day_entry[1] += 1
                return
        wait, spec = max(waits, key=lambda w: w[0])
        seconds = max(1, math.ceil(wait))
        headers = {"Retry-After": str(seconds)} if self.retry_after else {}
        raise GraphError(429, "TooManyRequests",
                         f"Too many requests: the application exceeded the limit for {spec.label}. "
                         f"Please retry after {seconds} seconds.", headers)

    # ---- Bot Connector ----
    def check_bot(self, app_id: str, conversation: str | None = None, posts: bool = False) -> None:
        """Count one Bot Connector request of ``app_id`` (in ``conversation``, when it acts in
        one) or raise the 429 (``GraphError`` with code ``Throttled``; nothing is counted then).
        ``posts``: the request posts a message there (a POST), which in a channel counts against
        the channel's messages of the day."""
        if not self.enabled:
            return
        classes = [(("app", app_id), limits.BOT_LIMITS["app"])]
        if conversation:
            classes.append((("conversation", app_id, conversation), limits.BOT_LIMITS["conversation"]))
            classes.append((("conversation_all_bots", conversation), limits.BOT_LIMITS["conversation_all_bots"]))
        channel = conversation.partition(";")[0] if posts and is_channel(conversation) else None
        with self._lock:
            if channel is not None:
                capped, day_entry = self._channel_cap(app_id, channel)
                if capped:
                    raise self._capped(capped, channel, "Throttled")
            now = self.clock()
            self._bot_checks += 1
            if self._bot_checks % _BOT_SWEEP_EVERY == 0:
                self._sweep_bot_logs(now)
            logs = []
            waits = []  # (seconds until a slot frees, class, requests, published seconds)
            for key, windows in classes:
                log = self._bot_logs.get(key)
                if log is None:
                    log = self._bot_logs[key] = collections.deque()
                longest = max(w for _, w in windows) / self.speed
                while log and log[0] <= now - longest + _EPSILON:
                    log.popleft()
                for n, seconds in windows:
                    # Full when the n-th newest stamp is still inside the window; a slot frees
                    # when that stamp leaves it.
                    if len(log) >= n and log[-n] > now - seconds / self.speed + _EPSILON:
                        waits.append((log[-n] + seconds / self.speed - now, key[0], n, seconds))
                logs.append(log)
            if not waits:
                for log in logs:
                    log.append(now)
                if channel is not None:
                    day_entry[1] += 1
                return
        wait, cls, n, seconds = max(waits, key=lambda w: w[0])  # ties: the app, then the conversation
        retry = max(1, math.ceil(wait - _EPSILON))
        headers = {"Retry-After": str(retry)} if self.retry_after else {}
        per = "second" if seconds == 1 else f"{seconds:g} seconds"
        raise GraphError(429, "Throttled",
                         f"Too many requests: over {n} {_BOT_CLASS_LABELS[cls]} per {per}. "
                         f"Retry after {retry} seconds.", headers)

    def _sweep_bot_logs(self, now: float) -> None:
        """Drop the windows in which nothing happened for longer than the class's longest window
        (a long fan-out would otherwise keep one log per conversation it ever touched)."""
        for key in [k for k, log in self._bot_logs.items()
                    if not log or log[-1] <= now - max(w for _, w in limits.BOT_LIMITS[k[0]]) / self.speed]:
            del self._bot_logs[key]
