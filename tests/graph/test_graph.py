"""The Graph client against the emulator: retries (which statuses, which methods), Retry-After,
backoff without it, the retry budget, a refreshed token after 401, paging with limit and resume,
$batch packing, and the refusal to send a token to another host."""
import pytest

from integration.engine.errors import GraphError, NotFound, RequestRejected, ThrottledError
from integration.graph.client import odata_literal, seg


@pytest.fixture
def app_client(runtime):
    return runtime.client("app")


def test_503_on_post_is_retried_504_is_not(emu, signed_in, sleeps):
    client = signed_in.client("delegated")
    me = client.get("/me")
    chat = client.post("/chats", {"chatType": "group", "topic": "t", "members": [
        {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
         "user@odata.bind": f"{emu.graph_url}/users('{u}')"} for u in (me["id"], "bob.smith@contoso.example")]})
    path = f"/chats/{seg(chat['id'])}/messages"
    emu.faults.add(method="POST", path=r"/chats/.*/messages", status=503, count=1)
    assert client.post(path, {"body": {"content": "x"}})["body"]["content"] == "x"
    assert len(sleeps) == 1
    emu.faults.add(method="POST", path=r"/chats/.*/messages", status=504, count=1)
    with pytest.raises(GraphError) as e:
        client.post(path, {"body": {"content": "y"}})
    assert e.value.status == 504 and "may still have been applied" in str(e.value)


def test_429_without_retry_after_backs_off_exponentially(emu, app_client, sleeps):
    emu.faults.add(method="GET", path=r"/users", status=429, count=3)
    assert app_client.get("/users", params={"$top": 1})["value"]
    assert [int(s) for s in sleeps] == [1, 2, 4]


def test_retry_budget_exhausted_is_throttled_error(emu, runtime, sleeps):
    runtime.cfg.retry_budget_seconds = 5
    emu.faults.add(method="GET", path=r"/users", status=429, count=10, retry_after=3)
    with pytest.raises(ThrottledError) as e:
        runtime.client("app").get("/users")
    assert e.value.status == 429 and len(sleeps) == 1


def test_dropped_connection_retried_for_get(emu, app_client, sleeps):
    emu.faults.add(method="GET", path=r"/users/.*", drop=True, count=1)
    assert app_client.get("/users/bob.smith@contoso.example")["displayName"] == "Bob Smith"
    assert len(sleeps) == 1


def test_expired_token_refreshed_once(emu, app_client):
    app_client.get("/users", params={"$top": 1})
    emu.expire_tokens()
    assert app_client.get("/users", params={"$top": 1})["value"]
    statuses = [e["status"] for e in emu.request_log if e["path"].startswith("/v1.0/users")]
    assert statuses[-2:] == [401, 200]


def test_paging_limit_and_resume(emu, app_client):
    everyone = app_client.paged("/users", page_size=999).items
    first = app_client.paged("/users", page_size=4, limit=4)
    assert len(first.items) == 4 and first.next_link
    rest = app_client.paged("/users", next_link=first.next_link)
    ids = [u["id"] for u in first.items + rest.items]
    assert len(ids) == len(set(ids)) == len(everyone)


def test_next_link_to_another_host_is_refused(app_client):
    with pytest.raises(GraphError, match="refusing to send credentials"):
        app_client.paged("/users", next_link="https://evil.example/v1.0/users?$skiptoken=x")


def test_odata_literal_apostrophe_finds_user(app_client):
    flt = f"displayName eq {odata_literal(chr(67) + 'onor O' + chr(39) + 'Brien')}"
    assert flt.endswith("'Conor O''Brien'")
    assert [u["displayName"] for u in app_client.get("/users", params={"$filter": flt})["value"]] == ["Conor O'Brien"]


def test_errors_map_to_types(app_client):
    with pytest.raises(NotFound):
        app_client.get(f"/users/{seg('nobody@contoso.example')}")
    with pytest.raises(RequestRejected) as e:
        app_client.get("/users", params={"$filter": "displayName eq 'unbalanced"})
    assert e.value.exit_code == 2 and e.value.request_id


def test_batch_packs_by_twenty_and_keeps_order(emu, app_client):
    users = app_client.paged("/users", page_size=999).items
    reqs = [{"id": str(i), "method": "GET", "url": f"/users/{u['id']}"} for i, u in enumerate(users * 2)]
    assert len(reqs) > 20
    out = app_client.batch(reqs)
    assert [r["id"] for r in out] == [r["id"] for r in reqs]
    assert all(r["status"] == 200 for r in out)
    assert sum(1 for e in emu.request_log if e["path"] == "/v1.0/$batch") == 2


def test_client_never_trusts_environment_ca(monkeypatch, emu, runtime):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    assert runtime.client("app").get("/users", params={"$top": 1})["value"]
