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
