"""Microsoft's cap of 3,000 messages per app per day to one channel, on the product's side: the
pacer (in process, and in Redis shared by every worker) counts each sender's messages per
channel over a UTC day and refuses the one past the cap by name (errors.ChannelDailyCap: the
channel, the cap, when it resets) before any request; a 429 gives a count back or, reaching the
next midnight, sets it to the cap. Then over real HTTP against the fake tenant, through a
runtime (the shared store's Redis with MSTEAMS_TEST_STORE=redis): a fan-out whose channel is
at its cap fails that item by name and sends the others, and a channel that the service says
is full is refused by name from then on."""
from __future__ import annotations

import time

import pytest
import redis

from engine_fixtures import make_config
from integration.delivery import limits
from integration.delivery.pacer import DAY, DayCap, Pacer, bot_windows, day_cap, graph_windows
from integration.delivery.redis_pacer import RedisPacer, identity
from integration.engine.errors import ChannelDailyCap, ThrottledError

CAP = limits.CHANNEL_MESSAGES_PER_DAY
CH = "19:abc@thread.tacv2"
EVENING = 20_429 * DAY + 21 * 3600  # 2025-12-07 21:00 UTC: three hours before the reset


class Clocks:
    """A fake monotonic clock and a fake wall clock (epoch seconds) that move together."""

    def __init__(self, wall: float = EVENING):
        self.t = wall

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def caps(windows) -> list:
    return [w for w in windows if isinstance(w, DayCap)]


def test_which_requests_carry_the_cap():
    assert caps(graph_windows("POST", f"/teams/t1/channels/{CH}/messages")) == [day_cap("graph", CH)]
    assert caps(graph_windows("POST", f"/teams/t1/channels/{CH}/messages/17/replies")) == [day_cap("graph", CH)]
    assert caps(bot_windows("POST", "/v3/conversations/19%3Aabc%40thread.tacv2/activities")) == [day_cap("bot", CH)]
    assert caps(bot_windows("POST", f"/v3/conversations/{CH};messageid=17/activities")) == [day_cap("bot", CH)]
    # not posting, or not into a channel
    assert not caps(graph_windows("GET", f"/teams/t1/channels/{CH}/messages"))
    assert not caps(graph_windows("POST", "/chats/19:x@thread.v2/messages"))
    assert not caps(bot_windows("PUT", f"/v3/conversations/{CH}/activities/17"))
    assert not caps(bot_windows("POST", "/v3/conversations/19:grp@thread.v2/activities"))
    assert not caps(bot_windows("POST", "/v3/conversations/a:1xyz/activities"))
    assert day_cap("bot", CH).capacity == CAP == 3000


def _pacer(kind, make_redis, clocks: Clocks):
    if kind == "memory":
        return Pacer(clock=clocks.clock, sleep=clocks.sleep, wall=clocks.clock)
    return make_redis(clock=clocks.clock, sleep=clocks.sleep)


@pytest.fixture(params=["memory", "redis"])
def kind(request):
    return request.param


@pytest.fixture
def make_redis(request, redis_namespace):
    made = []

    def make(app="app@tenant", namespace=redis_namespace, **kw):
        server = request.getfixturevalue("redis_server")
        c = redis.Redis.from_url(server.url)
        made.append(c)
        return RedisPacer(c, namespace=namespace, app=app, bot="bot@tenant", **kw)

    yield make
    for c in made:
        c.close()


def fill(pacer, cap: DayCap, n: int) -> None:
    for _ in range(n):
        pacer.done(pacer.acquire([cap]))


def test_the_message_past_the_cap_is_refused_by_name_until_utc_midnight(kind, make_redis):
    clocks = Clocks()
    p = _pacer(kind, make_redis, clocks)
    wins = bot_windows("POST", f"/v3/conversations/{CH}/activities")
    fill(p, caps(wins)[0], CAP - 1)
    p.done(p.acquire(wins))  # the 3,000th
    with pytest.raises(ChannelDailyCap) as e:
        p.acquire(wins)
    err = e.value
    assert isinstance(err, ThrottledError) and err.kind == "throttled" and err.exit_code == 1
    assert (err.channel, err.cap, err.retry_after) == (CH, 3000, 3 * 3600)
    assert err.resets_on() == "2025-12-08T00:00:00Z"
    assert CH in err.message and "3,000" in err.message and "2025-12-08T00:00:00Z" in err.message
    assert err.to_dict()["resets_at"] == "2025-12-08T00:00:00Z" and err.to_dict()["retry_after"] == 10800
    assert p.busiest_channels() == [{"channel": CH, "sender": "bot", "count": CAP, "cap": CAP,
                                     "resetsAt": 20_430 * DAY}]
    # The same channel through Graph is another app's count; another channel has its own.
    p.done(p.acquire(graph_windows("POST", f"/teams/t1/channels/{CH}/messages")))
    p.done(p.acquire(bot_windows("POST", "/v3/conversations/19:other@thread.tacv2/activities")))
    # Updating a message there is not posting one.
    p.done(p.acquire(bot_windows("PUT", f"/v3/conversations/{CH}/activities/1")))
    assert [(r["sender"], r["count"]) for r in p.busiest_channels()] == [("bot", CAP), ("graph", 1), ("bot", 1)]
    clocks.t = 20_430 * DAY + 1  # the next UTC day
    p.done(p.acquire(wins))
    assert [(r["channel"], r["count"]) for r in p.busiest_channels() if r["sender"] == "bot"] == [(CH, 1)]


def test_a_429_gives_the_count_back_and_one_to_midnight_fills_it(kind, make_redis):
    clocks = Clocks()
    p = _pacer(kind, make_redis, clocks)
    wins = graph_windows("POST", f"/teams/t1/channels/{CH}/messages")
    fill(p, caps(wins)[0], 10)
    p.done(p.acquire(wins))
    p.pause(wins, 2.0)  # a rate limit's 429: the service did not count it
    assert p.busiest_channels()[0]["count"] == 10
    clocks.t += 2
    p.done(p.acquire(wins))
    # A Retry-After to the next UTC midnight is the service's own cap: ours is at it now, and
    # the rate classes are not paused for the day.
    p.pause(wins, 3 * 3600 - 2)
    assert p.busiest_channels()[0]["count"] == CAP
    with pytest.raises(ChannelDailyCap):
        p.acquire(wins)
    chat = graph_windows("POST", f"/teams/t1/channels/19:other@thread.tacv2/messages")
    t0 = clocks.t
    p.done(p.acquire(chat))
    assert clocks.t - t0 < 1.0


def test_tenants_never_share_a_count_and_workers_always_do(make_redis, redis_namespace):
    clocks = Clocks()
    wins = bot_windows("POST", f"/v3/conversations/{CH}/activities")
    # In process: one Pacer per runtime (per tenant), the counts are its own.
    a, b = (Pacer(clock=clocks.clock, sleep=clocks.sleep, wall=clocks.clock) for _ in range(2))
    fill(a, caps(wins)[0], CAP)
    with pytest.raises(ChannelDailyCap):
        a.acquire(wins)
    b.done(b.acquire(wins))
    # In Redis: every worker of one app and tenant shares the count...
    w1, w2 = make_redis(clock=clocks.clock), make_redis(clock=clocks.clock)
    fill(w1, caps(wins)[0], CAP - 1)
    w2.done(w2.acquire(wins))
    for w in (w1, w2):
        with pytest.raises(ChannelDailyCap):
            w.acquire(wins)
    assert w2.busiest_channels()[0]["count"] == CAP
    # ...another tenant's (another identity, another namespace) does not.
    other = RedisPacer(w1.client, namespace=redis_namespace, app="app@tenant2", bot=identity("bot", "tenant2"),
                       clock=clocks.clock)
    other.done(other.acquire(wins))
    elsewhere = make_redis(namespace=redis_namespace + "x", clock=clocks.clock)
    elsewhere.done(elsewhere.acquire(wins))
    keys = {k.decode() for k in w1.client.keys(f"{redis_namespace}:pacer:*:days:*")}
    assert keys == {f"{redis_namespace}:pacer:{{bot@tenant}}:days:20429",
                    f"{redis_namespace}:pacer:{{bot@tenant2}}:days:20429"}
    assert 0 < w1.client.pttl(f"{redis_namespace}:pacer:{{bot@tenant}}:days:20429") <= 3 * 3600 * 1000 + 5000


# ---------------------------------------------------------------- over HTTP, through a runtime

@pytest.fixture
def rt(emu, tmp_path):
    from integration.dispatch import Runtime

    runtime = Runtime(make_config(emu, tmp_path))
    runtime.echo = lambda s: None
    yield runtime
    runtime.close()


def _channel(emu):
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    return team, next(c for c in team.channels.values() if c.display_name == "Incident Response")


def _posts_to(emu, channel_id: str) -> list:
    return [e for e in emu.request_log if e["method"] == "POST" and channel_id in e["path"]]


def test_a_fan_out_fails_the_capped_channel_by_name_and_sends_the_rest(emu, rt):
    from integration.dispatch import execute

    _, ch = _channel(emu)
    fill(rt.pacer, day_cap("bot", ch.id), CAP)
    before = len(emu.request_log)
    r = execute("send-notification", {"user": ["conor.obrien@contoso.example", "bob.smith@contoso.example"],
                                       "channel": ch.id, "message": "incident update", "fail_on": "none"}, rt)
    rows = {row["recipientType"]: row for row in r.outputs if row["recipientType"] == "channel"}
    users = [row for row in r.outputs if row["recipientType"] == "user"]
    assert [u["status"] for u in users] == ["sent", "sent"]
    assert rows["channel"]["status"] == "failed"
    assert ch.id in rows["channel"]["error"] and "3,000" in rows["channel"]["error"]
    assert "resets at" in rows["channel"]["error"]
    assert not [e for e in emu.request_log[before:] if e["method"] == "POST" and ch.id in e["path"]]  # not sent


def test_a_channel_message_past_the_cap_is_refused_before_any_request(emu, rt):
    from integration.dispatch import execute

    team, ch = _channel(emu)
    execute("auth-login", {}, rt)  # the fake tenant's service account, delegated
    args = {"team": team.id, "channel": ch.id, "content": "status"}
    execute("channel-message-send", args, rt)
    fill(rt.pacer, day_cap("graph", ch.id), CAP - 1)
    before = len(_posts_to(emu, ch.id))
    with pytest.raises(ChannelDailyCap) as e:
        execute("channel-message-send", args, rt)
    assert len(_posts_to(emu, ch.id)) == before
    tomorrow = (int(time.time() // DAY) + 1) * DAY
    assert e.value.resets_at == tomorrow and e.value.channel == ch.id


def test_when_the_service_says_the_channel_is_full_it_is_refused_by_name_from_then_on(emu, rt):
    from integration.dispatch import execute

    team, ch = _channel(emu)
    execute("auth-login", {}, rt)
    emu.set_throttling(True)
    emu.throttle.set_channel_messages(emu.config()["client_id"], ch.id, CAP)  # other senders of the app
    args = {"team": team.id, "channel": ch.id, "content": "status"}
    with pytest.raises(ThrottledError) as e:
        execute("channel-message-send", args, rt)
    assert not isinstance(e.value, ChannelDailyCap) and e.value.status == 429
    before = len(_posts_to(emu, ch.id))
    with pytest.raises(ChannelDailyCap):
        execute("channel-message-send", args, rt)
    assert len(_posts_to(emu, ch.id)) == before
    assert rt.pacer.busiest_channels()[0]["count"] == CAP


def test_integration_health_and_metrics_show_the_busy_channels(emu, rt):
    from prometheus_client.parser import text_string_to_metric_families

    from integration.dispatch import execute
    from integration.engine import metrics

    _, ch = _channel(emu)
    rows = {r["check"]: r for r in execute("integration-health", {}, rt).outputs}
    assert "channel daily cap" not in rows  # no channel is busy
    was = metrics.enabled
    metrics.enable()
    try:
        fill(rt.pacer, day_cap("bot", ch.id), 2_500)
        fill(rt.pacer, day_cap("graph", "19:quiet@thread.tacv2"), 3)
        r = execute("integration-health", {}, rt)
        line = {x["check"]: x for x in r.outputs}["channel daily cap"]
        assert line["status"] == "near cap" and f"{ch.id} (bot): 2,500 of 3,000 messages today" in line["detail"]
        assert [c["channel"] for c in line["channels"]] == [ch.id]  # the quiet one is not listed
        assert r.exit_code == 0 and "Microsoft's daily cap" in r.message
        fill(rt.pacer, day_cap("bot", ch.id), 500)
        line = {x["check"]: x for x in execute("integration-health", {}, rt).outputs}["channel daily cap"]
        assert line["status"] == "at cap" and "refused until then" in line["detail"]
        body, _ = metrics.render()
        samples = {(s.labels["channel"], s.labels["sender"]): s.value
                   for fam in text_string_to_metric_families(body.decode())
                   if fam.name == "msteams_channel_messages_today" for s in fam.samples}
        assert samples[(ch.id, "bot")] == 3000 and samples[("19:quiet@thread.tacv2", "graph")] == 3
    finally:
        metrics.enabled = was


def test_the_service_answers_429_with_retry_after_to_the_reset():
    from integration.engine.errors import exit_code_for
    from integration.frontends.service.problems import from_error

    err = ChannelDailyCap(CH, CAP, 20_430 * DAY, now=EVENING)
    p = from_error(err)
    assert (p.status, p.code, p.headers) == (429, "throttled", {"Retry-After": "10800"})
    assert p.details["channel"] == CH and p.details["cap"] == CAP and p.details["resets_at"] == "2025-12-08T00:00:00Z"
    assert exit_code_for(err) == 1
