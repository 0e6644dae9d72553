"""The pacer's budget shared by every process on every host: the same sliding windows, even
pace and 429 pauses as `integration.delivery.pacer.Pacer`, kept in Redis (the shared store, store_url).

Each acquire is one EVALSHA of a Lua script that, atomically on the server, trims and checks
every window of the request and either records the entry in all of them or answers how long
to wait: no two senders can both take the last slot of a window, whichever host they run on.
The script's clock is the Redis server's TIME, so hosts whose clocks disagree still agree on
every window. An entry holds its slot while its request is in flight (scored at the end of
IN_FLIGHT_LEASE, so a sender that dies frees it then) and `done` restamps it at the answer
(later than the service counted it), so pacer.py's SAFETY margins hold as they are. Per
class, under ``{namespace}:pacer:{app@tenant}:``:
  ``w:<class>``  a sorted set, one member per request (score: its answer's time, or while
                 it is in flight its lease's end; member: id|cost);
  ``m:<class>``  a hash: the window's total cost and the even pace's next slot;
  ``p:<class>``  a 429's pause: the time it ends, expiring (PX) with it.
  ``days:<UTC day>``  a hash: per DayCap (``<sender>:day:<channel>``) the messages sent to
                 that channel that day, expiring a little after the day ends.
Ledgers and hashes expire (PEXPIRE) a little after their window, so idle classes vanish. The
identity in braces is also the Redis Cluster hash tag: one request's keys share a slot.

Messages per day to a channel (pacer.DayCap) are counted there by every worker of every host
together: one script checks and counts them atomically, on the server's clock, and refuses the
one past the cap (ChannelDailyCap) before the request waits for any window; a 429 on such a
message gives its count back, or sets it to the cap (pacer.py's rules).

Graph classes are counted per app registration (client_id) per tenant, bot classes per bot
(bot_id) per tenant, as Microsoft applies them; two apps or tenants never share a budget.

When Redis cannot be reached the pacer says so in a warning and paces in this process alone
(an in-process Pacer) for FALLBACK_SECONDS before it tries Redis again: pacing only spares
429s, which are still waited out, while failing the request there could turn a retry of a
write that may have been applied into a "failed" delivery that someone then sends again.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from typing import Callable, Iterable

from integration.engine.errors import ChannelDailyCap

from .pacer import (DAY, EVEN_PACE_WINDOW, IN_FLIGHT_LEASE, DayCap, Pacer, Ticket, Window, _watch, burst, cap_reached,
                    scaled, span, split_caps, step)

log = logging.getLogger("msteams.pacer")

# Ledgers outlive their window by this much: a sender whose clock runs ahead of the server's
# real time (an injected sleep, a fake clock) still finds them.
TTL_PAD_MS = 5000
# After Redis failed, pace in this process for this long before asking Redis again (each try
# at a dead server costs its connect timeout and retries).
FALLBACK_SECONDS = 30.0

_PRELUDE = """
local function clock()
  local t
  if ARGV[1] ~= '' then
    t = tonumber(ARGV[1])
  else
    local tt = redis.call('TIME')
    t = tonumber(tt[1]) + tonumber(tt[2]) / 1000000
  end
  return t + tonumber(ARGV[2])
end
local function num(x) return string.format('%.6f', x) end
local function cost_of(member) return tonumber(string.match(member, '|([^|]*)$')) end
local now = clock()
"""

# KEYS: per window its ledger, hash and pause key. ARGV: fake time ('' = server TIME), clock
# offset, entry id, TTL pad (ms), in-flight lease (s), then per window: capacity, span, cost,
# burst (0: no even pace), step. Answers {microseconds to wait (0: recorded), now}. An entry
# in flight is scored at its lease's end (after now), an answered one at its answer.
_ACQUIRE = _PRELUDE + """
local id, pad, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local n = #KEYS / 3
local wait, totals = 0, {}
for i = 1, n do
  local led, meta, pause = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 5 + 5 * (i - 1)
  local cap, span = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local cost, burst = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local w = 0
  local paused = tonumber(redis.call('GET', pause) or '0')
  if paused > now then
    w = paused - now
  else
    local edge = num(now - span)
    local stored = redis.call('HGET', meta, 'total')
    local old = redis.call('ZRANGEBYSCORE', led, '-inf', edge)
    if #old > 0 then redis.call('ZREMRANGEBYSCORE', led, '-inf', edge) end
    local count = redis.call('ZCARD', led)
    local total = 0
    if count > 0 and stored then
      total = tonumber(stored)
      for _, m in ipairs(old) do total = total - cost_of(m) end
    elseif count > 0 then
      -- the hash expired or was lost while the ledger was not: count the ledger itself
      for _, m in ipairs(redis.call('ZRANGE', led, 0, -1)) do total = total + cost_of(m) end
    end
    if total < 1e-9 then total = 0 end
    if count > 0 and (#old > 0 or not stored) then
      redis.call('HSET', meta, 'total', num(total))
      redis.call('PEXPIRE', meta, math.ceil((span + tonumber(ARGV[a + 5]) + lease) * 1000) + pad)
    end
    totals[i] = total
    if total + cost <= cap + 1e-9 then
      -- past a small burst, short windows keep an even pace shared by every sender
      if burst > 0 and total + cost > burst and count > 0 then
        local slot = tonumber(redis.call('HGET', meta, 'slot') or '0')
        if slot > now then w = slot - now end
      end
    else
      -- the oldest answered entries leave first: wait until enough of them have; if that
      -- takes entries still in flight, look again a step later
      local need, freed, start = total + cost - cap, 0, 0
      w = span
      local found = false
      while not found do
        local chunk = redis.call('ZRANGE', led, start, start + 63, 'WITHSCORES')
        if #chunk == 0 then break end
        for j = 1, #chunk, 2 do
          local at = tonumber(chunk[j + 1])
          if at > now then
            w = tonumber(ARGV[a + 5])
            found = true
            break
          end
          freed = freed + cost_of(chunk[j])
          if freed + 1e-9 >= need then
            w = math.max(0, at + span - now)
            found = true
            break
          end
        end
        start = start + 64
      end
    end
  end
  if w > wait then wait = w end
end
if wait > 0 then return {math.ceil(wait * 1000000), num(now)} end
for i = 1, n do
  local led, meta = KEYS[3 * i - 2], KEYS[3 * i - 1]
  local a = 5 + 5 * (i - 1)
  local span, cost, step = tonumber(ARGV[a + 2]), ARGV[a + 3], tonumber(ARGV[a + 5])
  redis.call('ZADD', led, num(now + lease), id .. '|' .. cost)
  local slot = tonumber(redis.call('HGET', meta, 'slot') or '0')
  -- a sender up to half an interval late keeps the schedule; later than that starts it again
  -- from now, so no idle time is saved up as a burst
  local late = now - slot
  if not (late >= 0 and late < step / 2) then slot = now end
  redis.call('HSET', meta, 'total', num(totals[i] + tonumber(cost)), 'slot', num(slot + step))
  local ttl = math.ceil((span + step + lease) * 1000) + pad
  redis.call('PEXPIRE', led, ttl)
  redis.call('PEXPIRE', meta, ttl)
end
return {0, num(now)}
"""

# KEYS: per entry its ledger and hash. ARGV: fake time, offset, then per entry: member, TTL
# (ms). The entry, scored at its lease's end while in flight, now counts from its answer.
_DONE = _PRELUDE + """
for i = 1, #KEYS / 2 do
  local led, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local member, ttl = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if redis.call('ZADD', led, 'XX', 'CH', num(now), member) > 0 then
    redis.call('PEXPIRE', led, ttl)
    redis.call('PEXPIRE', meta, ttl)
  end
end
return num(now)
"""

# KEYS: pause keys. ARGV: fake time, offset, seconds, TTL pad (ms). A later pause never
# shortens an earlier, longer one.
_PAUSE = _PRELUDE + """
local till = now + tonumber(ARGV[3])
local px = math.ceil(tonumber(ARGV[3]) * 1000) + tonumber(ARGV[4])
for i = 1, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur < till then redis.call('SET', KEYS[i], num(till), 'PX', px) end
end
return num(till)
"""

# KEYS: per cap the day's hash. ARGV: fake time, offset, the caller's idea of the day (a key
# names it), TTL pad (ms), then per cap: its field, capacity. Answers {1, day, now} counted;
# {0, i, now, count} cap i is reached (nothing counted); {-1, day, now} the server's day differs.
_DAY_TAKE = _PRELUDE + """
local day = math.floor(now / 86400)
if day ~= tonumber(ARGV[3]) then return {-1, day, num(now)} end
local n = #KEYS
local counts = {}
for i = 1, n do
  local c = tonumber(redis.call('HGET', KEYS[i], ARGV[3 + 2 * i]) or '0')
  if c + 1 > tonumber(ARGV[4 + 2 * i]) then return {0, i, num(now), c} end
end
local px = math.ceil(((day + 1) * 86400 - now) * 1000) + tonumber(ARGV[4])
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], ARGV[3 + 2 * i], 1)
  redis.call('PEXPIRE', KEYS[i], px)
end
return {1, day, num(now)}
"""

# KEYS, ARGV as _DAY_TAKE's, then ARGV[5 + 2n]: 'full' (the service's count is at the cap) or
# 'refund' (a 429: the message did not count). Nothing when the day has changed.
_DAY_SETTLE = _PRELUDE + """
local day = math.floor(now / 86400)
if day ~= tonumber(ARGV[3]) then return 0 end
local n = #KEYS
local mode = ARGV[5 + 2 * n]
local px = math.ceil(((day + 1) * 86400 - now) * 1000) + tonumber(ARGV[4])
for i = 1, n do
  local field = ARGV[3 + 2 * i]
  if mode == 'full' then
    redis.call('HSET', KEYS[i], field, ARGV[4 + 2 * i])
    redis.call('PEXPIRE', KEYS[i], px)
  elseif tonumber(redis.call('HGET', KEYS[i], field) or '0') >= 1 then
    redis.call('HINCRBY', KEYS[i], field, -1)
  end
end
return 1
"""


def identity(app_id: str | None, tenant: str | None) -> str:
    """Whose budget: an app (or bot) in a tenant, as Microsoft counts "per app per tenant"."""
    return f"{app_id or '-'}@{tenant or '-'}"


class RedisPacer:
    """Pacer's interface (acquire, done, pause, sleep_for; waited, paused, speed, enabled) over
    budgets in Redis. ``clock`` (seconds) replaces the server's TIME, for tests on a fake
    clock; every process sharing a budget must then share that clock."""

    def __init__(self, client, *, namespace: str = "msteams", app: str = "-@-", bot: str | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] = time.sleep,
                 speed: float = 1.0, enabled: bool = True):
        self.client = client
        self.namespace = namespace
        self.identities = {"graph": app, "bot": bot or app}
        self.clock = clock
        self.sleep = sleep
        self.speed = float(speed)
        self.enabled = enabled
        self.waited = 0.0
        self.paused = 0
        # Time an injected sleep did not really pass, added to the server's clock for this
        # process only (as Pacer's skew): tests that record sleeps still see windows drain.
        self._skew = 0.0
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._origin = f"{os.getpid():x}.{os.urandom(4).hex()}"  # entry ids unique across hosts
        self.fallback_seconds = FALLBACK_SECONDS
        self.lease = IN_FLIGHT_LEASE
        self._local: Pacer | None = None
        self._down_until = 0.0  # time.monotonic() until which Redis is not asked
        self.outages = 0  # times Redis failed and this process paced alone
        self._acquire = client.register_script(_ACQUIRE)
        self._done = client.register_script(_DONE)
        self._pause = client.register_script(_PAUSE)
        self._day_take = client.register_script(_DAY_TAKE)
        self._day_settle = client.register_script(_DAY_SETTLE)
        _watch(self)

    @classmethod
    def from_config(cls, cfg, *, client=None, **kwargs) -> "RedisPacer":
        """The runtime's pacer when store_url is set: budgets per client_id and per bot_id in tenant_id."""
        if client is None:
            from integration.store.redis_conn import redis_client

            client = redis_client(cfg)
        return cls(client, namespace=cfg.store_namespace or "msteams", app=identity(cfg.client_id, cfg.tenant_id),
                   bot=identity(cfg.bot_id, cfg.tenant_id), speed=cfg.pacing_speed, **kwargs)

    def close(self) -> None:
        """Close the Redis connections (they reopen if the pacer is used again)."""
        self.client.close()

    # ---- keys ----
    def key(self, kind: str, w: Window) -> str:
        """``{namespace}:pacer:{app@tenant}:<kind>:<class>``; kind is w (ledger), m (hash) or p (pause)."""
        who = self.identities["bot" if w.key.startswith("bot:") else "graph"]
        return f"{self.namespace}:pacer:{{{who}}}:{kind}:{w.key}"

    def day_key(self, sender: str, day: int) -> str:
        """``{namespace}:pacer:{app@tenant}:days:<day>``: the sender's (graph or bot) messages to
        each channel that UTC day (day number since the epoch)."""
        return f"{self.namespace}:pacer:{{{self.identities['bot' if sender == 'bot' else 'graph']}}}:days:{day}"

    def _now_guess(self) -> float:
        return (self.clock() if self.clock is not None else time.time()) + self._skew

    def _time_args(self) -> list:
        return ["" if self.clock is None else repr(float(self.clock())), repr(self._skew)]

    def _redis_up(self) -> bool:
        return time.monotonic() >= self._down_until

    def _fall_back(self, exc: Exception, doing: str) -> Pacer:
        """Note the outage (one warning per outage) and hand out the in-process pacer."""
        from integration.store.redis_conn import unavailable

        with self._lock:
            if self._redis_up():
                self.outages += 1
                why = unavailable(exc, self.client, doing).message
                log.warning("%s; pacing in this process only for %.0f s", why, self.fallback_seconds)
            self._down_until = time.monotonic() + self.fallback_seconds
        return self._local_pacer()

    def _local_pacer(self) -> Pacer:
        with self._lock:
            if self._local is None:
                self._local = Pacer(clock=self.clock or time.monotonic, sleep=self.sleep, wall=self.clock or time.time)
            self._local.speed, self._local.enabled, self._local.lease = self.speed, self.enabled, self.lease
            return self._local

    # ---- Pacer's interface ----
    def sleep_for(self, seconds: float) -> None:
        """Sleep, and make sure the budget's clock counts it (an injected sleep may not move it)."""
        if not self._redis_up():
            self._local_pacer().sleep_for(seconds)
            return
        measure = self.clock or time.monotonic
        t0 = measure()
        self.sleep(seconds)
        short = seconds - (measure() - t0)
        if short > 0:
            with self._lock:
                self._skew += short

    # ---- messages per day to a channel ----
    def take_day(self, caps: list[DayCap]) -> None:
        """Count one message against each cap in the shared count, or raise ChannelDailyCap."""
        _watch(self)
        day = int(self._now_guess() // DAY)
        for _ in range(3):  # the server's day, when ours differs near midnight
            keys, args = [self.day_key(c.sender, day) for c in caps], []
            for c in caps:
                args += [c.key, str(int(c.capacity))]
            out = self._day_take(keys=keys, args=self._time_args() + [day, TTL_PAD_MS] + args)
            if int(out[0]) == 1:
                return
            if int(out[0]) == 0:
                c = caps[int(out[1]) - 1]
                raise ChannelDailyCap(c.channel, int(c.capacity), (day + 1) * DAY, now=float(out[2]))
            day = int(out[1])
        raise AssertionError("the server's UTC day kept changing")  # pragma: no cover

    def settle_day(self, caps: list[DayCap], full: bool) -> None:
        """A 429 on a message to these channels: its count is given back, or (``full``) set to the cap."""
        day = int(self._now_guess() // DAY)
        keys, args = [self.day_key(c.sender, day) for c in caps], []
        for c in caps:
            args += [c.key, str(int(c.capacity))]
        self._day_settle(keys=keys, args=self._time_args() + [day, TTL_PAD_MS] + args + ["full" if full else "refund"])

    def busiest_channels(self, top: int = 10) -> list[dict]:
        """Today's (UTC, the server's clock) busiest channels across every process sharing the
        count: channel, sender (graph or bot), count, cap and resetsAt, busiest first."""
        from . import limits

        if not self._redis_up():
            return self._local_pacer().busiest_channels(top)
        if self.clock is not None:
            now = self.clock() + self._skew
        else:
            sec, usec = self.client.time()  # the server's day, as the counting script's
            now = sec + usec / 1e6 + self._skew
        day = int(now // DAY)
        rows, seen = [], set()
        for sender in ("graph", "bot"):
            key = self.day_key(sender, day)
            for field, n in (self.client.hgetall(key) or {}).items():
                field = field.decode() if isinstance(field, bytes) else field
                if not field.startswith(sender + ":day:") or (key, field) in seen or int(n) <= 0:
                    continue
                seen.add((key, field))
                rows.append({"channel": field.split(":day:", 1)[1], "sender": sender, "count": int(n),
                             "cap": limits.CHANNEL_MESSAGES_PER_DAY, "resetsAt": (day + 1) * DAY})
        return sorted(rows, key=lambda r: (-r["count"], r["channel"], r["sender"]))[:top]

    def acquire(self, windows: Iterable[Window]) -> Ticket:
        """Block until every window has room in the shared budget, then spend it there."""
        if not self.enabled:
            return Ticket()
        windows = list(windows)
        if not self._redis_up():
            return self._local_acquire(windows, 0.0)
        import redis

        caps, windows = split_caps(windows)
        if caps:
            try:
                self.take_day(caps)
            except redis.RedisError as exc:
                self._fall_back(exc, "counting a channel's messages of the day")
                return self._local_acquire(caps + windows, 0.0)
        scaled_ = scaled(windows, self.speed)
        if not scaled_:
            return Ticket()
        keys, per = [], []
        for w in scaled_:
            keys += [self.key("w", w), self.key("m", w), self.key("p", w)]
            even = w.seconds <= EVEN_PACE_WINDOW
            per += [repr(float(w.capacity)), repr(span(w)), repr(float(w.cost)),
                    repr(burst(w)) if even else "0", repr(step(w))]
        entry = f"{self._origin}.{next(self._ids)}"
        waited = 0.0
        while True:
            try:
                wait_us, now = self._acquire(keys=keys, args=self._time_args() + [entry, TTL_PAD_MS,
                                                                                  repr(self.lease)] + per)
            except redis.RedisError as exc:
                self._fall_back(exc, "taking from the pacing budget")
                return self._local_acquire(windows, waited)
            if int(wait_us) <= 0:
                break
            delay = int(wait_us) / 1e6
            self.sleep_for(delay)
            waited += delay
        with self._lock:
            self.waited += waited
        entries = [(keys[3 * i], keys[3 * i + 1], f"{entry}|{float(w.cost)!r}",
                    math.ceil((span(w) + step(w) + self.lease) * 1000) + TTL_PAD_MS)
                   for i, w in enumerate(scaled_)]
        return Ticket(waited, entries, float(now))

    def _local_acquire(self, windows: list, waited: float) -> Ticket:
        local = self._local_pacer()
        before = local.waited
        ticket = local.acquire(windows)
        with self._lock:
            self.waited += waited + local.waited - before
        ticket.waited += waited
        return ticket

    def done(self, ticket: Ticket) -> None:
        """The response is in: its entries, held while in flight, count from now.
        A failure here is only logged: the request has been sent and answered."""
        if not ticket.entries:
            return
        if not isinstance(ticket.entries[0], tuple):  # a ticket of the in-process fallback
            self._local_pacer().done(ticket)
            return
        import redis

        keys, args = [], []
        for led, meta, member, ttl in ticket.entries:
            keys += [led, meta]
            args += [member, ttl]
        try:
            self._done(keys=keys, args=self._time_args() + args)
        except redis.RedisError as exc:
            self._fall_back(exc, "restamping a paced request")

    def pause(self, windows: Iterable[Window], seconds: float) -> None:
        """A 429 said to wait: nobody, in any process sharing the budget, spends from these classes until then."""
        if not self.enabled or seconds <= 0:
            return
        windows = list(windows)
        caps, rest = split_caps(windows)
        full = bool(caps) and cap_reached(seconds, self._now_guess())
        if caps and self._redis_up():
            import redis

            try:
                self.settle_day(caps, full)
            except redis.RedisError as exc:
                self._fall_back(exc, "settling a channel's messages of the day")
        if full:  # the channel is refused by name until the reset; other sends go on
            self._local_pacer().pause(windows, seconds)
            return
        keys = [self.key("p", w) for w in rest]
        if not keys:
            return
        if self._redis_up():
            import redis

            try:
                self._pause(keys=keys, args=self._time_args() + [repr(float(seconds)), TTL_PAD_MS])
            except redis.RedisError as exc:
                self._fall_back(exc, "pausing a throttled class")
        # Always here too: a sender that falls back meanwhile still honours the pause.
        local = self._local_pacer()
        local.pause(windows, seconds)
        with self._lock:
            self.paused += 1
