"""JSON batching over real HTTP: limits, per-item answers, dependsOn and 424, per-item 429."""
from __future__ import annotations

import pytest

from graph_helpers import BOB, SVC, H, err, member


def batch(http, emu, token, requests):
    return http.post(emu.graph_url + "/$batch", headers=H(token), json={"requests": requests})


def by_id(r) -> dict:
    assert r.status_code == 200, r.text
    return {x["id"]: x for x in r.json()["responses"]}


def test_batch_of_21_is_refused(emu, http, app_token):
    reqs = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    e = err(batch(http, emu, app_token, reqs), 400)
    assert e["code"] == "BadRequest" and "20" in e["message"]
    assert not [x for x in emu.request_log if x.get("batch_item")]


def test_batch_of_20_answers_per_item(emu, http, app_token, delegated_token):
    reqs = []
    for i in range(14):
        reqs.append({"id": f"u{i}", "method": "GET", "url": "/users?$top=1&$select=id"})
    reqs += [
        {"id": "bob", "method": "GET", "url": f"users/{BOB}"},
        {"id": "ghost", "method": "GET", "url": "/users/ghost@contoso.example"},
        {"id": "nope", "method": "GET", "url": "/no/such/thing"},
        {"id": "chat", "method": "POST", "url": "/chats", "headers": {"Content-Type": "application/json"},
         "body": {"chatType": "oneOnOne", "members": [member(SVC), member(BOB)]}},
        {"id": "nobody-header", "method": "POST", "url": "/chats", "body": {"chatType": "group"}},
        {"id": "me", "method": "GET", "url": "/me"},
    ]
    assert len(reqs) == 20
    res = by_id(batch(http, emu, delegated_token, reqs))
    assert len(res) == 20
    assert all(res[f"u{i}"]["status"] == 200 for i in range(14))
    assert res["u0"]["body"]["value"][0].keys() == {"id"}
    assert res["bob"]["status"] == 200 and res["bob"]["body"]["mail"] == BOB
    assert res["ghost"]["status"] == 404 and res["ghost"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert res["nope"]["status"] == 400  # Graph: "Resource not found for the segment"
    assert res["chat"]["status"] == 201 and res["chat"]["body"]["chatType"] == "oneOnOne"
    assert res["nobody-header"]["status"] == 400
    assert res["me"]["status"] == 200 and res["me"]["body"]["userPrincipalName"] == SVC
    assert res["bob"]["headers"]["Content-Type"].startswith("application/json")
    # the same batch with an app token: /me is refused for that item only
    res = by_id(batch(http, emu, app_token, reqs))
    assert res["me"]["status"] == 400 and res["bob"]["status"] == 200


def test_depends_on_and_failed_dependency(emu, http, app_token):
    reqs = [
        {"id": "1", "method": "GET", "url": "/users/ghost@contoso.example"},
        {"id": "2", "method": "GET", "url": f"/users/{BOB}", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": f"/users/{BOB}", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": f"/users/{SVC}"},
        {"id": "5", "method": "GET", "url": f"/users/{BOB}", "dependsOn": ["4"]},
    ]
    r = batch(http, emu, app_token, reqs)
    order = [x["id"] for x in r.json()["responses"]]
    res = by_id(r)
    assert res["1"]["status"] == 404
    assert res["2"]["status"] == 424 and res["2"]["body"]["error"]["code"] == "FailedDependency"
    assert res["3"]["status"] == 424
    assert res["4"]["status"] == 200 and res["5"]["status"] == 200
    assert order.index("4") < order.index("5")


def test_depends_on_runs_dependencies_first(emu, http, app_token):
    reqs = [{"id": "b", "method": "GET", "url": "/users", "dependsOn": ["a"]},
            {"id": "a", "method": "GET", "url": "/users"}]
    order = [x["id"] for x in batch(http, emu, app_token, reqs).json()["responses"]]
    assert order == ["a", "b"]


@pytest.mark.parametrize("reqs", [
    [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/me"}],
    [{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users"}],
    [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}],
    [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["2"]},
     {"id": "2", "method": "GET", "url": "/users", "dependsOn": ["1"]}],
    [{"id": "1", "method": "BREW", "url": "/users"}],
    [{"id": "1", "method": "GET"}],
    [{"method": "GET", "url": "/users"}],
    [],
    "not a list",
])
def test_invalid_batches_are_400(emu, http, app_token, reqs):
    err(batch(http, emu, app_token, reqs), 400)


def test_each_item_is_throttled_on_its_own(emu, http, app_token):
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    emu.set_throttling(True)
    emu.throttle.clock = lambda: 1000.0  # frozen: no refill while the batch runs
    reqs = [{"id": str(i), "method": "GET", "url": f"/teams/{team.id}/channels"} for i in range(10)]
    res = by_id(batch(http, emu, app_token, reqs))
    statuses = [res[str(i)]["status"] for i in range(10)]
    assert statuses[:4] == [200] * 4  # at most 4 rps on one team
    assert set(statuses[4:]) == {429}
    item = res["9"]
    assert int(item["headers"]["Retry-After"]) >= 1
    assert item["body"]["error"]["code"] == "TooManyRequests"


def test_injected_fault_hits_one_item(emu, http, app_token):
    emu.faults.add(method="GET", path=r"/users/bob", status=503, count=1)
    reqs = [{"id": "1", "method": "GET", "url": f"/users/{BOB}"}, {"id": "2", "method": "GET", "url": f"/users/{SVC}"}]
    res = by_id(batch(http, emu, app_token, reqs))
    assert res["1"]["status"] == 503 and res["2"]["status"] == 200
