"""Pacing outbound requests to Microsoft's published limits, so that a fan-out runs at the
throttle limit instead of into it.

Each request draws from the limit classes it belongs to (`integration.delivery.limits`): per app per
tenant for its Graph category or for the bot, per team or channel, per bot conversation. Every
class is a sliding window (N requests per W seconds) kept on this side: a window on the client
is never looser than the service's token buckets or windows with the same numbers, so a paced
sender does not see 429s, and it still runs at the sustained rate. A run starts with the whole
of every window the limits allow (burst()), and each window is spent as it frees, so a fan-out
takes the throttle bound's time and not a window more. A request holds its slot
from when it is taken until a window after its answer, since the service counted it somewhere
in between (however slow the way there was). A 429 with Retry-After
pauses the class it hit for every sender in this process, not only for the one that got it.

Microsoft's cap of messages per app per day to one channel (limits.CHANNEL_MESSAGES_PER_DAY)
is not a window to wait in: a message to a channel (Graph's POST of a channel message or reply,
a bot's POST into a channel's conversation) carries a DayCap, counted per sender (graph, bot)
and channel over a UTC day on ``wall``; the one that would cross the cap raises
errors.ChannelDailyCap (the channel, the cap, when it resets) before any request. A 429 on such
a message gives its count back (the service did not count it), or, when its Retry-After reaches
the next UTC midnight, says the service's count is at the cap: the channel is refused from then
on, and the rate classes are not paused for the day. The counts live in the Pacer (one per
runtime, so per tenant), never in this module.

One pacer serves every client and worker thread of a runtime. Its clock and sleep are
injectable (tests run it on a fake clock).
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

from integration.engine.errors import ChannelDailyCap

from . import limits

# Requests count from their answers (Pacer.done), so the service never counted one later than
# this side does; what is left (two clocks, the service's own rounding) is covered by widening
# every window a little.
SAFETY = 1.005
SAFETY_SECONDS = 0.005
# A request keeps its slot while it is in flight: the service counts it when it arrives, at
# any moment until its answer comes. Arriving takes moments (a connection, a TLS handshake, a
# busy interpreter), so one still unanswered this long after it was taken counts as having
# arrived then; this also bounds how long a sender that died holds its slots (a 60 s lease
# cost a 4-worker pool whose worker was killed holding 8 sends 15% of its rate).
IN_FLIGHT_LEASE = 5.0
# Windows this short are sent at an even pace past their burst; in longer ones (30 s, an hour)
# a burst never mattered. With burst() the whole window the even pace no longer sets in (a
# class with room sends at once); it stays for a burst set below the window.
EVEN_PACE_WINDOW = 2.0


@dataclass(frozen=True)
class Window:
    key: str          # the class and, for per-resource classes, the resource ("conversation:a:19:x")
    capacity: float   # what may be spent per window
    seconds: float
    cost: float = 1.0


DAY = 86400.0
# A 429 on a channel message whose Retry-After reaches this close to the next UTC midnight is
# the service's daily cap, not a rate window.
DAY_CAP_SLACK = 120.0
# Conversation ids of channels; group chats end @thread.v2, 1:1 chats are otherwise.
CHANNEL_SUFFIXES = ("@thread.tacv2", "@thread.skype")


@dataclass(frozen=True)
class DayCap(Window):
    """Messages per app per day to one channel: counted per UTC day, not a sliding window, and
    refused past ``capacity`` (ChannelDailyCap) instead of waited for. ``key`` is
    ``<sender>:day:<channel>`` (sender: graph or bot, each its own app)."""
    channel: str = ""

    @property
    def sender(self) -> str:
        return self.key.split(":", 1)[0]


def day_cap(sender: str, channel: str) -> DayCap:
    return DayCap(f"{sender}:day:{channel}", float(limits.CHANNEL_MESSAGES_PER_DAY), DAY, 1.0, channel)


def is_channel(conversation: str | None) -> bool:
    """Whether a conversation id (a channel thread's ``;messageid=`` part aside) is a channel's."""
    return bool(conversation) and conversation.partition(";")[0].lower().endswith(CHANNEL_SUFFIXES)


def split_caps(windows: Iterable[Window]) -> tuple[list[DayCap], list[Window]]:
    """A request's daily caps, and its windows."""
    caps, wins = [], []
    for w in windows:
        (caps if isinstance(w, DayCap) else wins).append(w)
    return caps, wins


def cap_reached(seconds: float, now: float) -> bool:
    """Whether a 429's Retry-After (``seconds``, on a message to a channel) runs to the next UTC
    midnight: the service's daily cap, not a rate window."""
    return seconds >= ((now // DAY) + 1) * DAY - now - DAY_CAP_SLACK


def burst(w: "Window") -> float:
    """What a class may send at once before even pacing sets in: its whole window.

    It was half a window, which cost a fan-out a window's time: a sliding window holds at most
    ``capacity`` in any ``seconds``, so N requests need at least (N - capacity) / rate, and only
    a schedule that fills each window as it opens reaches that; half a window at once and the
    rest at an even pace filled the first window by its middle, waited out its second half, and
    paced evenly from then on (300 recipients of a warm bot: 1.2x the bound; 1,000: 1.07x).
    Whole windows are safe because every entry counts from its answer (Pacer.done): whatever
    the service counted in any of its windows, this side still had in flight or counted at the
    moment it let the last of them go, so its windows' edges cannot fall out of step with the
    service's (the even pace was added before entries counted from their answers)."""
    return w.capacity


def span(w: "Window") -> float:
    """The window as this side keeps it: a little wider than the service's (SAFETY)."""
    return w.seconds * SAFETY + SAFETY_SECONDS


def step(w: "Window") -> float:
    """The even pace's interval for one request of this class."""
    return span(w) * w.cost / w.capacity


def scaled(windows: Iterable["Window"], speed: float) -> list["Window"]:
    """The windows at ``speed`` (the fake tenant's switch): the same capacity in 1/speed the time."""
    if speed == 1.0:
        return list(windows)
    # a day is not made shorter
    return [w if isinstance(w, DayCap) else Window(w.key, w.capacity, w.seconds / speed, w.cost) for w in windows]


@dataclass
class Ticket:
    """What one acquire spent: the seconds it waited, its ledger entries (Entry here, (ledger
    key, hash key, member, TTL) in redis_pacer) and when it was taken on the pacer's clock."""
    waited: float = 0.0
    entries: list = None  # type: ignore[assignment]
    at: float | None = None


class Entry:
    """One request in one class's ledger: its cost, when it was taken and, once answered, its stamp."""

    __slots__ = ("ledger", "cost", "taken", "stamp")

    def __init__(self, ledger: "_Ledger", cost: float, taken: float):
        self.ledger, self.cost, self.taken, self.stamp = ledger, cost, taken, None


class _Ledger:
    """What one class spent in its current window: answered entries oldest first, and the
    entries still in flight."""

    __slots__ = ("spent", "flying", "total", "paused_until", "next_slot")

    def __init__(self):
        self.spent: collections.deque = collections.deque()
        self.flying: set = set()
        self.total = 0.0
        self.paused_until = 0.0
        # The even pace's schedule, kept apart from the stamps: a sender that wakes a little late
        # for its slot does not push every later slot back (oversleeping 0.5 ms in a 10 ms
        # interval would otherwise cost 5% of the rate).
        self.next_slot = 0.0

    def trim(self, now: float, seconds: float, lease: float) -> None:
        while self.spent and self.spent[0].stamp <= now - seconds:
            self.total -= self.spent.popleft().cost
        if self.flying:
            for e in [e for e in self.flying if e.taken + lease <= now - seconds]:
                self.flying.discard(e)
                self.total -= e.cost

    def land(self, entry: "Entry", now: float) -> None:
        """The entry's answer came: it counts from now (answers land in time order)."""
        if entry in self.flying:
            self.flying.discard(entry)
            entry.stamp = max(entry.taken, now)
            self.spent.append(entry)

    def wait(self, now: float, w: Window, lease: float) -> float:
        """Seconds until ``w.cost`` fits in the window (0 when it fits now)."""
        if self.paused_until > now:
            return self.paused_until - now
        seconds = span(w)
        self.trim(now, seconds, lease)
        if self.total + w.cost <= w.capacity + 1e-9:
            # Past a small burst, keep an even pace: bursts that fill a window at once meet the
            # service's window edges out of step (network jitter) and draw 429s.
            if w.seconds <= EVEN_PACE_WINDOW and self.total + w.cost > burst(w) and (self.spent or self.flying):
                return max(0.0, self.next_slot - now)
            return 0.0
        # The oldest answered entries leave the window first; wait until enough of them have.
        need, freed = self.total + w.cost - w.capacity, 0.0
        for e in self.spent:
            freed += e.cost
            if freed + 1e-9 >= need:
                return max(0.0, e.stamp + seconds - now)
        # The rest are in flight and leave a window after their answers: look again shortly.
        return step(w)


class Pacer:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 speed: float = 1.0, enabled: bool = True, wall: Callable[[], float] = time.time):
        self.clock = clock
        self.wall = wall  # epoch seconds: the UTC day a channel message counts in
        # DayCap key -> [UTC day number, messages counted that day], and the caps seen
        self._days: dict[str, list] = {}
        self._caps: dict[str, DayCap] = {}
        self.sleep = sleep
        self.speed = float(speed)  # the same switch as the fake tenant's: limits x speed
        self.enabled = enabled
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}
        self.waited = 0.0  # seconds spent waiting for room, for progress and benchmarks
        self.paused = 0    # 429s that paused a class
        self.lease = IN_FLIGHT_LEASE
        # An injected sleep (tests) may not let the clock move: time the pacer slept through is
        # added here, so its windows still drain.
        self._skew = 0.0

    def now(self) -> float:
        return self.clock() + self._skew

    def sleep_for(self, seconds: float) -> None:
        """Sleep, and make sure the pacer's clock counts it (an injected sleep may not move it)."""
        t0 = self.clock()
        self.sleep(seconds)
        short = seconds - (self.clock() - t0)
        if short > 0:
            with self._lock:
                self._skew += short

    def _ledger(self, key: str) -> _Ledger:
        led = self._ledgers.get(key)
        if led is None:
            led = self._ledgers[key] = _Ledger()
        return led

    def acquire(self, windows: Iterable[Window]) -> "Ticket":
        """Block until every window has room, then spend it there. The ticket says how long it
        waited; hand it to :meth:`done` when the response is in."""
        if not self.enabled:
            return Ticket()
        caps, windows = split_caps(windows)
        if caps:
            self.take_day(caps)
        windows = scaled(windows, self.speed)
        if not windows:
            return Ticket()
        waited = 0.0
        while True:
            with self._lock:
                now = self.now()
                delay = max(self._ledger(w.key).wait(now, w, self.lease) for w in windows)
                if delay <= 0:
                    entries = []
                    for w in windows:
                        led = self._ledger(w.key)
                        entry = Entry(led, w.cost, now)
                        led.flying.add(entry)
                        led.total += w.cost
                        entries.append(entry)
                        every = step(w)
                        # A sender up to half an interval late keeps the schedule; later than
                        # that (an idle class, a full window) starts it again from now, so no
                        # pause is saved up as a burst.
                        late = now - led.next_slot
                        led.next_slot = (led.next_slot if 0 <= late < every / 2 else now) + every
                    self.waited += waited
                    return Ticket(waited, entries, now)
            # Sleep outside the lock: other senders on other classes go on meanwhile.
            self.sleep_for(delay)
            waited += delay

    def done(self, ticket: "Ticket") -> None:
        """The response is in: count the request from now. The service counted it somewhere
        between sending and answering, so a stamp taken at the answer is never early, however
        long the request waited for a connection or a TLS handshake on the way; until then it
        holds its slot (IN_FLIGHT_LEASE bounds a ticket never handed back)."""
        if not ticket.entries:
            return
        with self._lock:
            now = self.now()
            for entry in ticket.entries:
                entry.ledger.land(entry, now)

    # ---- messages per day to a channel ----
    def take_day(self, caps: list[DayCap]) -> None:
        """Count one message against each cap, or raise ChannelDailyCap (counting nothing)."""
        _watch(self)
        with self._lock:
            now = self.wall()
            day = int(now // DAY)
            entries = []
            for c in caps:
                e = self._days.get(c.key)
                if e is None or e[0] != day:
                    e = self._days[c.key] = [day, 0]
                    self._caps[c.key] = c
                if e[1] + c.cost > c.capacity + 1e-9:
                    raise ChannelDailyCap(c.channel, int(c.capacity), (day + 1) * DAY, now=now)
                entries.append((e, c.cost))
            for e, cost in entries:
                e[1] += cost
            if len(self._days) > 4096:  # the channels of earlier days go
                for k in [k for k, (d, _) in self._days.items() if d != day]:
                    del self._days[k], self._caps[k]

    def settle_day(self, caps: list[DayCap], full: bool) -> None:
        """A 429 on a message to these channels: it did not count (its count is given back), or,
        ``full``, the service's count is at the cap (ours becomes the cap)."""
        with self._lock:
            day = int(self.wall() // DAY)
            for c in caps:
                e = self._days.get(c.key)
                if full:
                    self._days[c.key], self._caps[c.key] = [day, c.capacity], c
                elif e is not None and e[0] == day and e[1] >= c.cost:
                    e[1] -= c.cost

    def busiest_channels(self, top: int = 10) -> list[dict]:
        """Today's (UTC) busiest channels: channel, sender (graph or bot), count, cap and
        resetsAt (epoch seconds), busiest first."""
        with self._lock:
            now = self.wall()
            day = int(now // DAY)
            rows = [{"channel": self._caps[k].channel, "sender": self._caps[k].sender, "count": int(n),
                     "cap": int(self._caps[k].capacity), "resetsAt": (day + 1) * DAY}
                    for k, (d, n) in self._days.items() if d == day and n > 0]
        return sorted(rows, key=lambda r: (-r["count"], r["channel"], r["sender"]))[:top]

    def pause(self, windows: Iterable[Window], seconds: float) -> None:
        """A 429 said to wait: nobody in this process spends from these classes until then."""
        if not self.enabled or seconds <= 0:
            return
        caps, windows = split_caps(windows)
        if caps:
            full = cap_reached(seconds, self.wall())
            self.settle_day(caps, full)
            if full:
                return  # the channel is refused by name until the reset; other sends go on
        with self._lock:
            until = self.now() + seconds
            for w in windows:
                led = self._ledger(w.key)
                led.paused_until = max(led.paused_until, until)
            self.paused += 1


def _watch(pacer) -> None:
    """Report this pacer's busiest channels in the service metrics (metrics.py), once, when a
    service turned them on."""
    if getattr(pacer, "_watched", False):
        return
    metrics = sys.modules.get("integration.engine.metrics")
    if metrics is not None and metrics.enabled:
        pacer._watched = True
        metrics.watch_channels(pacer)


# ---- which classes a request belongs to ----
def _segments(path: str) -> list[str]:
    return [unquote(s) for s in urlsplit(path).path.strip("/").split("/") if s]


def graph_windows(method: str, path: str) -> list[Window]:
    """The limit classes of one Graph call (path relative to /v1.0 or a full URL)."""
    segs = _segments(path)
    if segs and segs[0] in ("v1.0", "beta"):
        segs = segs[1:]
    low = [s.lower() for s in segs]
    if not low:
        return []
    method = method.upper()
    if low[0] == "$batch":
        return []  # each item is paced by the caller that packs it
    teamsy = bool(limits.TEAMS_SEGMENTS.intersection(low))
    if low[0] in limits.IDENTITY_ROOTS and not teamsy and "onlinemeetings" not in low:
        units = limits.IDENTITY_UNITS_PER_10S_SMALLEST  # the tenant's size is unknown here: the smallest
        cost = (2.0 if len(low) == 1 or low[-1] in ("members", "memberof") else 1.0) if method == "GET" else 3.0
        return [Window("graph:identity", units, 10.0, cost)]
    if not teamsy:
        return []
    cat = limits.teams_category(method, low)
    out = [Window(f"graph:{cat}", limits.TEAMS_LIMITS[cat][0], 1.0)]
    if low[0] == "teams" and len(segs) >= 2:
        if len(segs) >= 4 and low[2] == "channels":
            out.append(Window(f"graph:channel:{segs[3]}", limits.PER_RESOURCE_RPS, 1.0))
            if cat == "channel_message_post":  # a channel message or reply: the day's cap too
                out.append(day_cap("graph", segs[3]))
        else:
            out.append(Window(f"graph:team:{low[1]}", limits.PER_RESOURCE_RPS, 1.0))
    return out


def bot_windows(method: str, path: str) -> list[Window]:
    """The limit classes of one Bot Connector call: the app's, and the conversation's."""
    segs = _segments(path)
    try:
        i = segs.index("conversations")
    except ValueError:
        i = -1
    per_app = [Window(f"bot:app:{s}", n, s) for n, s in limits.BOT_PER_APP]
    if i < 0 or len(segs) <= i + 1:
        return per_app  # creating a conversation: the app's budget only
    conv = segs[i + 1]
    out = per_app + [Window(f"bot:conversation:{conv}:{s}", n, s) for n, s in limits.BOT_PER_CONVERSATION]
    if method.upper() == "POST" and is_channel(conv):  # posting into a channel: the day's cap too
        out.append(day_cap("bot", conv.partition(";")[0]))
    return out
