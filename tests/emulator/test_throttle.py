"""Throttling: bucket classification, Teams rps limits, the 4 rps per team/channel limit,
identity resource units, the speed factor and the 429 shape (with and without Retry-After).
A fake clock keeps everything deterministic: no test waits for a bucket to refill."""
from __future__ import annotations

import pytest

from fake_tenant.core import GraphError, Response
from fake_tenant.throttle import Throttler, classify, identity_units_per_10s
from msal_helpers import bearer, stub_route


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def _cats(method, key, path, n_users=13):
    return [s.key.split(":")[0] for s in classify(method, key, path, n_users)]


def test_classification():
    assert _cats("POST", "/chats/{id}/messages", "/chats/19:a@thread.v2/messages") == ["chat_message_post"]
    assert _cats("POST", "/teams/{id}/channels/{id}/messages", "/teams/t/channels/c/messages") == [
        "channel_message_post", "channel"]
    assert _cats("POST", "/teams/{id}/channels/{id}/messages/{id}/replies", "/teams/t/channels/c/messages/1/replies") == [
        "channel_message_post", "channel"]
    assert _cats("GET", "/chats/{id}/messages", "/chats/x/messages") == ["message_get"]
    assert _cats("GET", "/chats/{id}/messages/{id}", "/chats/x/messages/1") == ["message_get"]
    assert _cats("GET", "/teams/{id}/members", "/teams/t/members") == ["team_list_get", "team"]
    assert _cats("GET", "/teams/{id}/channels", "/teams/t/channels") == ["team_list_get", "team"]
    assert _cats("GET", "/teams/{id}/channels/{id}/members", "/teams/t/channels/c/members") == ["team_list_get", "channel"]
    assert _cats("GET", "/teams/{id}", "/teams/t") == ["team_get", "team"]
    assert _cats("GET", "/teams/{id}/channels/{id}", "/teams/t/channels/c") == ["team_get", "channel"]
    assert _cats("POST", "/teams/{id}/channels", "/teams/t/channels") == ["teams_write", "team"]
    assert _cats("DELETE", "/teams/{id}/channels/{id}", "/teams/t/channels/c") == ["teams_delete", "channel"]
    assert _cats("POST", "/teams", "/teams") == ["team_create"]
    assert _cats("POST", "/chats", "/chats") == ["teams_other"]
    assert _cats("POST", "/chats/{id}/members", "/chats/x/members") == ["teams_other"]
    assert _cats("GET", "/me/chats", "/me/chats") == ["teams_other"]
    assert _cats("GET", "/users", "/users") == ["identity"]
    assert _cats("GET", "/me", "/me") == ["identity"]
    assert _cats("GET", "/groups", "/groups") == ["identity"]
    assert _cats("POST", "/communications/calls", "/communications/calls") == []
    assert _cats("POST", "/me/onlinemeetings", "/me/onlineMeetings") == []
    assert _cats("POST", "none", "/$batch") == []
    costs = {s.key: s.cost for s in classify("GET", "/users", "/users")}
    assert costs == {"identity": 2.0}
    assert classify("GET", "/users/{id}", "/users/x")[0].cost == 1.0
    assert identity_units_per_10s(13) == 3500 and identity_units_per_10s(200) == 5000
    assert identity_units_per_10s(10_000) == 8000


def _burst(th: Throttler, n: int, method="POST", key="/chats/{id}/messages", path="/chats/x/messages", app="a"):
    results = []
    for _ in range(n):
        try:
            th.check(app, method, key, path)
            results.append(None)
        except GraphError as e:
            results.append(e)
    return results


def test_chat_message_burst_over_20_rps_gets_429():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    res = _burst(th, 21)
    assert res[:20] == [None] * 20
    err = res[20]
    assert err.status == 429 and err.code == "TooManyRequests"
    assert err.headers["Retry-After"] == "1"
    clock.advance(0.05)  # one token back (20 per second)
    assert [r is None for r in _burst(th, 2)] == [True, False]
    clock.advance(1.0)
    assert _burst(th, 20) == [None] * 20
    # Another app has its own buckets.
    assert _burst(th, 1, app="b") == [None]


def test_channel_message_limits_and_per_channel_4_rps():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    key = "/teams/{id}/channels/{id}/messages"
    res = _burst(th, 5, key=key, path="/teams/t/channels/c1/messages")
    assert res[:4] == [None] * 4 and res[4].status == 429
    assert "channel" in res[4].message
    # Other channels are not affected until the per-app 50 rps limit.
    for i in range(2, 13):
        assert _burst(th, 4, key=key, path=f"/teams/t/channels/c{i}/messages") == [None] * 4
    assert _burst(th, 2, key=key, path="/teams/t/channels/c99/messages")[0] is None
    res = _burst(th, 1, key=key, path="/teams/t/channels/c100/messages")
    assert res[0].status == 429 and "POST channel message" in res[0].message


def test_retry_after_reflects_the_wait_and_can_be_switched_off():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    key, path = "/teams/{id}", "/teams/t"
    _burst(th, 4, "GET", key, path)
    err = _burst(th, 1, "GET", key, path)[0]
    assert err.headers == {"Retry-After": "1"}
    th.configure(retry_after=False)
    err = _burst(th, 1, "GET", key, path)[0]
    assert err.status == 429 and "Retry-After" not in err.headers
    # Identity: 3,500 units per 10 s; an exhausted bucket needs more than a second to refill a list.
    th = Throttler(enabled=True, clock=clock, n_users=13)
    res = _burst(th, 1751, "GET", "/users", "/users")
    assert res[1749] is None and res[1750].status == 429
    assert int(res[1750].headers["Retry-After"]) >= 1


def test_speed_multiplies_every_limit():
    clock = FakeClock()
    th = Throttler(enabled=True, speed=10, clock=clock)
    res = _burst(th, 201)
    assert res[:200] == [None] * 200 and res[200].status == 429
    th.configure(speed=1)
    assert [r is None for r in _burst(th, 21)] == [True] * 20 + [False]


def test_disabled_never_throttles():
    th = Throttler(enabled=False, clock=FakeClock())
    assert _burst(th, 500) == [None] * 500


def test_over_http_21_chat_posts_get_429_with_retry_after(emu, http, delegated_token):
    clock = FakeClock()
    emu.throttle.clock = clock
    emu.set_throttling(True)
    with stub_route("POST", "/chats/{chat_id}/messages", lambda ctx, req: Response(201, {"id": "1"})):
        statuses = []
        last = None
        for i in range(21):
            last = http.post(emu.graph_url + "/chats/19:x@thread.v2/messages", headers=bearer(delegated_token),
                             json={"body": {"content": str(i)}})
            statuses.append(last.status_code)
        assert statuses == [201] * 20 + [429]
        assert last.headers["Retry-After"] == "1"
        err = last.json()["error"]
        assert err["code"] == "TooManyRequests" and {"date", "request-id"} <= set(err["innerError"])
        emu.set_throttling(True, retry_after=False)
        r = http.post(emu.graph_url + "/chats/19:x@thread.v2/messages", headers=bearer(delegated_token), json={})
        assert r.status_code == 429 and "Retry-After" not in r.headers
        clock.advance(1)
        r = http.post(emu.graph_url + "/chats/19:x@thread.v2/messages", headers=bearer(delegated_token), json={})
        assert r.status_code == 201
    assert [e["status"] for e in emu.request_log if e["path"].endswith("/messages")][-3:] == [429, 429, 201]


def test_over_http_per_team_limit_and_batch_items(emu, http, app_token):
    clock = FakeClock()
    emu.throttle.clock = clock
    emu.set_throttling(True)
    team = next(iter(emu.state.teams))
    codes = [http.get(f"{emu.graph_url}/teams/{team}", headers=bearer(app_token)).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    clock.advance(1)
    reqs = [{"id": str(i), "method": "GET", "url": f"/teams/{team}"} for i in range(6)]
    r = http.post(emu.graph_url + "/$batch", headers=bearer(app_token), json={"requests": reqs})
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert sorted(x["status"] for x in by_id.values()) == [200] * 4 + [429] * 2
    throttled = [x for x in by_id.values() if x["status"] == 429]
    assert all(x["headers"].get("Retry-After") == "1" for x in throttled)


def test_throttling_off_by_default_in_tests(emu, http, app_token):
    team = next(iter(emu.state.teams))
    assert emu.throttling is False
    assert {http.get(f"{emu.graph_url}/teams/{team}", headers=bearer(app_token)).status_code for _ in range(8)} == {200}


def test_bad_speed_is_refused():
    with pytest.raises(ValueError):
        Throttler().configure(speed=0)


# ---- Bot Connector: sliding windows from limits.BOT_LIMITS ----

def _bot(th: Throttler, n: int, conv: str | None = "a:1conv", app: str = "bot-a"):
    out = []
    for _ in range(n):
        try:
            th.check_bot(app, conv)
            out.append(None)
        except GraphError as e:
            out.append(e)
    return out


def test_bot_limit_table_is_plain_data_with_the_published_numbers():
    from fake_tenant import limits
    assert limits.BOT_LIMITS == {
        "app": ((50, 1.0),),
        "conversation": ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0)),
        "conversation_all_bots": ((14, 1.0), (16, 2.0)),
    }
    assert limits.BOT_RETRY_STATUSES == {412, 429, 502, 504}
    # The Graph numbers moved there unchanged; throttle.py reads them from it.
    from fake_tenant import throttle
    assert throttle.TEAMS_LIMITS is limits.TEAMS_LIMITS and limits.TEAMS_LIMITS["chat_message_post"][0] == 20.0
    assert (limits.PER_RESOURCE_RPS, limits.GLOBAL_PER_10S) == (4.0, 130_000)
    assert [limits.identity_units_per_10s(n) for n in (0, 49, 50, 500, 501)] == [3500, 3500, 5000, 5000, 8000]


def test_bot_eighth_send_in_one_conversation_within_a_second_gets_429():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    res = _bot(th, 8)
    assert res[:7] == [None] * 7
    err = res[7]
    assert (err.status, err.code) == (429, "Throttled")
    assert err.headers == {"Retry-After": "1"}
    assert "7 requests per bot per conversation per second" in err.message
    # Another conversation has its own windows.
    assert _bot(th, 7, conv="a:1other") == [None] * 7
    # A second later the 1 s window is free, but 8 per 2 s allows only one more (the refused
    # request was not counted, or this one would be refused too).
    clock.advance(1.0)
    res = _bot(th, 2)
    assert res[0] is None and res[1].status == 429
    assert "8 requests per bot per conversation per 2 seconds" in res[1].message
    assert res[1].headers["Retry-After"] == "1"
    clock.advance(1.0)
    assert _bot(th, 7) == [None] * 7


def test_bot_61st_send_in_30_seconds_gets_429_until_the_first_leaves_the_window():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    for _ in range(60):  # 2.5 per second: never over 7 per 1 s or 8 per 2 s
        assert _bot(th, 1) == [None]
        clock.advance(0.4)
    # Now 24 s after the first; it leaves the 30 s window in 6 s.
    err = _bot(th, 1)[0]
    assert err.status == 429 and "60 requests per bot per conversation per 30 seconds" in err.message
    assert err.headers["Retry-After"] == "6"
    clock.advance(5.9)
    assert _bot(th, 1)[0].status == 429
    clock.advance(0.1)
    assert _bot(th, 1) == [None]


def test_bot_1800_per_hour_in_one_conversation():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    for _ in range(1800):  # 60 per 36 s: just under 60 per 30 s
        assert th.check_bot("bot-a", "a:1conv") is None
        clock.advance(0.6)
    err = _bot(th, 1)[0]
    assert "1800 requests per bot per conversation per 3600 seconds" in err.message
    assert err.headers["Retry-After"] == str(3600 - 1080)
    clock.advance(3600 - 1080)
    assert _bot(th, 1) == [None]


def test_bot_51_requests_in_a_second_across_conversations_get_429_per_app():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    assert all(_bot(th, 1, conv=f"a:1c{i}") == [None] for i in range(50))
    err = _bot(th, 1, conv="a:1c50")[0]
    assert err.status == 429 and "50 requests per app per tenant per second" in err.message
    assert err.headers["Retry-After"] == "1"
    # Creating a conversation (no conversation yet) counts against the app too.
    assert _bot(th, 1, conv=None)[0].status == 429
    # Another bot app has its own budget (the emulator hosts one tenant: per app per tenant).
    assert _bot(th, 1, conv="a:1c50", app="bot-b") == [None]
    clock.advance(1.0)
    assert _bot(th, 1, conv="a:1c50") == [None]


def test_bot_conversation_creation_without_a_conversation_counts_per_app_only():
    th = Throttler(enabled=True, clock=FakeClock())
    res = _bot(th, 51, conv=None)
    assert res[:50] == [None] * 50 and "per app" in res[50].message


def test_all_bots_together_share_14_per_second_in_one_conversation():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    assert _bot(th, 7, conv="19:ch@thread.tacv2", app="bot-a") == [None] * 7
    assert _bot(th, 7, conv="19:ch@thread.tacv2", app="bot-b") == [None] * 7
    err = _bot(th, 1, conv="19:ch@thread.tacv2", app="bot-c")[0]
    assert err.status == 429 and "14 requests per conversation for all bots per second" in err.message
    clock.advance(1.0)
    assert _bot(th, 2, conv="19:ch@thread.tacv2", app="bot-c") == [None, None]
    err = _bot(th, 1, conv="19:ch@thread.tacv2", app="bot-c")[0]
    assert "16 requests per conversation for all bots per 2 seconds" in err.message


def test_bot_429_without_retry_after_when_switched_off():
    th = Throttler(enabled=True, clock=FakeClock())
    th.configure(retry_after=False)
    err = _bot(th, 8)[7]
    assert err.status == 429 and err.code == "Throttled" and err.headers == {}


def test_bot_speed_scales_the_windows():
    clock = FakeClock()
    th = Throttler(enabled=True, speed=10, clock=clock)
    res = _bot(th, 8)
    assert res[:7] == [None] * 7 and res[7].status == 429
    assert res[7].headers["Retry-After"] == "1"  # 0.1 s, but Retry-After is whole seconds
    clock.advance(0.1)  # a tenth of the published 1 s window
    assert _bot(th, 1) == [None]
    # Sustained: 60 per 3 s instead of 60 per 30 s.
    th.configure(speed=10)
    th.reset()
    for _ in range(60):
        assert _bot(th, 1) == [None]
        clock.advance(0.04)
    assert _bot(th, 1)[0].status == 429
    clock.advance(3.0)
    assert _bot(th, 1) == [None]
    # Changing the speed starts the windows afresh.
    th.configure(speed=1)
    assert [r is None for r in _bot(th, 8)] == [True] * 7 + [False]


def test_bot_throttling_off_never_429():
    th = Throttler(enabled=False, clock=FakeClock())
    assert _bot(th, 500) == [None] * 500
    assert _bot(th, 500, conv=None) == [None] * 500


def test_bot_windows_of_idle_conversations_are_dropped():
    clock = FakeClock()
    th = Throttler(enabled=True, clock=clock)
    for i in range(4096):
        th.check_bot("bot-a", f"a:1c{i}")
        clock.advance(0.05)  # 20 per second: under the app's 50
    before = len(th._bot_logs)
    clock.advance(3601)
    for _ in range(4096):  # app-only requests; a sweep runs every 4096 checks
        th.check_bot("bot-a", None)
        clock.advance(0.05)
    assert before > 4096 and list(th._bot_logs) == [("app", "bot-a")]

