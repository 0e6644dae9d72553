"""The fake tenant's cap of 3,000 messages per app per day to one channel (fake_tenant/limits.py,
CHANNEL_MESSAGES_PER_DAY): Graph channel messages and replies and Bot Connector posts into a
channel count together, per app and channel, over a UTC day on the throttle's ``day_clock``;
the 3,001st is refused with 429 and a Retry-After up to the next UTC midnight, and is not
counted. Fake clocks throughout: nothing waits for a day to pass."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from fake_tenant.core import GraphError
from fake_tenant.limits import CHANNEL_MESSAGES_PER_DAY
from fake_tenant.throttle import Throttler, is_channel
from msal_helpers import bearer

CAP = CHANNEL_MESSAGES_PER_DAY
CH = "19:abc@thread.tacv2"
# 2026-12-07 21:00:00 UTC: three hours before the day's cap resets.
EVENING = datetime(2026, 12, 7, 21, 0, tzinfo=timezone.utc).timestamp()


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def graph_post(th: Throttler, channel: str = CH, app: str = "app", reply: bool = False):
    key = "/teams/{id}/channels/{id}/messages" + ("/{id}/replies" if reply else "")
    path = f"/teams/t1/channels/{channel}/messages" + ("/1/replies" if reply else "")
    th.check(app, "POST", key, path)


def test_the_number_is_microsofts():
    assert CAP == 3000


def test_channel_ids_are_told_from_chats():
    assert is_channel("19:abc@thread.tacv2") and is_channel("19:abc@thread.tacv2;messageid=17")
    assert is_channel("19:old@thread.skype")
    assert not is_channel("19:grp@thread.v2") and not is_channel("a:1xyz") and not is_channel(None)


def test_the_3001st_message_of_the_day_is_refused_until_utc_midnight():
    clock, day = FakeClock(1000.0), FakeClock(EVENING)
    th = Throttler(enabled=True, clock=clock, day_clock=day)
    for i in range(CAP):
        clock.t += 0.25  # 4 per second per channel: the rate limits never bind here
        graph_post(th, reply=bool(i % 2))
    assert th.channel_messages("app", CH) == CAP
    clock.t += 10
    with pytest.raises(GraphError) as e:
        graph_post(th)
    assert (e.value.status, e.value.code) == (429, "TooManyRequests")
    assert e.value.headers == {"Retry-After": str(3 * 3600)}
    assert "3000 messages per day to channel 19:abc@thread.tacv2" in e.value.message
    assert th.channel_messages("app", CH) == CAP  # the refused one did not count
    # The Bot Connector's posts into that channel count against the same app's cap...
    with pytest.raises(GraphError) as e:
        th.check_bot("app", CH + ";messageid=5", posts=True)
    assert (e.value.status, e.value.code) == (429, "Throttled") and e.value.headers["Retry-After"] == "10800"
    # ...but reading or updating there is not posting, another app or channel has its own count,
    # and a chat is not a channel.
    th.check_bot("app", CH, posts=False)
    graph_post(th, app="other-app")
    graph_post(th, channel="19:def@thread.tacv2")
    th.check("app", "POST", "/chats/{id}/messages", "/chats/19:x@thread.v2/messages")
    # Without Retry-After when the tenant is told to leave it out.
    th.configure(retry_after=False)
    with pytest.raises(GraphError) as e:
        graph_post(th)
    assert e.value.headers == {}
    # At UTC midnight the count starts again.
    day.t = EVENING + 3 * 3600
    clock.t += 10
    graph_post(th)
    assert th.channel_messages("app", CH) == 1


def test_bot_posts_count_and_speed_does_not_shorten_the_day():
    clock, day = FakeClock(1000.0), FakeClock(EVENING)
    th = Throttler(enabled=True, speed=1000, clock=clock, day_clock=day)
    th.set_channel_messages("bot", CH, CAP - 2)
    th.check_bot("bot", CH, posts=True)
    th.check_bot("bot", CH + ";messageid=9", posts=True)  # a reply in one of its threads
    with pytest.raises(GraphError) as e:
        th.check_bot("bot", CH, posts=True)
    assert e.value.headers["Retry-After"] == "10800"
    th.check_bot("bot", "a:1personal", posts=True)  # a 1:1 chat: no cap


def test_off_when_throttling_is_off():
    th = Throttler(enabled=False, day_clock=FakeClock(EVENING))
    th.set_channel_messages("app", CH, CAP)
    graph_post(th)


@pytest.fixture
def capped_emu(emu):
    day = FakeClock(EVENING)
    emu.throttle.clock = FakeClock(5000.0)
    emu.throttle.day_clock = day
    emu.set_throttling(True)
    try:
        yield emu, day
    finally:
        emu.throttle.day_clock = time.time


def test_over_http_graph_and_bot_posts_share_the_cap(capped_emu, http, delegated_token, bot_token):
    emu, day = capped_emu
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    ch = next(c for c in team.channels.values() if c.display_name == "Incident Response")
    cfg = emu.config()
    graph_app = cfg["client_id"]
    emu.throttle.set_channel_messages(graph_app, ch.id, CAP - 1)
    url = f"{emu.graph_url}/teams/{team.id}/channels/{ch.id}/messages"
    ok = http.post(url, headers=bearer(delegated_token), json={"body": {"content": "last"}})
    refused = http.post(url, headers=bearer(delegated_token), json={"body": {"content": "one too many"}})
    assert ok.status_code == 201, ok.text
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10800"
    assert refused.json()["error"]["code"] == "TooManyRequests"
    # The bot is its own app: its posts into the channel have their own count, and meet the cap too.
    emu.throttle.set_channel_messages(cfg["bot_id"], ch.id, CAP)
    r = http.post(f"{emu.bot_service_url}v3/conversations/{ch.id}/activities", headers=bearer(bot_token),
                  json={"type": "message", "text": "one too many"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "10800"
    assert r.json()["error"]["code"] == "Throttled"
    # Opening a thread with a first message is a post into the channel too.
    r = http.post(f"{emu.bot_service_url}v3/conversations", headers=bearer(bot_token),
                  json={"isGroup": True, "bot": {"id": cfg["bot_id"]}, "tenantId": cfg["tenant_id"],
                        "channelData": {"channel": {"id": ch.id}},
                        "activity": {"type": "message", "text": "new thread"}})
    assert r.status_code == 429
    day.t += 3 * 3600  # the next UTC day
    r = http.post(f"{emu.bot_service_url}v3/conversations/{ch.id}/activities", headers=bearer(bot_token),
                  json={"type": "message", "text": "a new day"})
    assert r.status_code == 201, r.text
