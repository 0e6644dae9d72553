"""Exact paging (issue 14, part 4): `limit` sets `$top` within each endpoint's maximum; a limit
that ends inside a page returns a cursor resuming right after the last item returned; a
`next_link` with `page_size` fetches exactly one page. Against the emulator, and against
recorded-style replies (requests-mock) for what the emulator does not do."""
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock

from integration.dispatch import execute
from integration.engine.errors import GraphError
from integration.graph.client import Client, TokenProvider, make_cursor, page_max, page_top, parse_cursor
from teams_helpers import make_chat

SVC, BOB, ALICE = "soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example"


def record(runtime, flow):
    """The query of every Graph request the runtime's client for ``flow`` sends, in order."""
    seen = []
    runtime.client(flow).session.hooks["response"].append(
        lambda r, *a, **k: seen.append((urlsplit(r.request.url).path, parse_qs(urlsplit(r.request.url).query))))
    return seen


@pytest.fixture
def many_chats(emu):
    return [make_chat(emu, [SVC, BOB, ALICE], f"Chat {i}") for i in range(8)]


def all_chat_ids(runtime):
    return [c["chatId"] for c in execute("chat-list", {"limit": 100}, runtime).outputs]


def test_limit_sets_top_and_the_link_resumes_at_the_next_item(emu, signed_in, many_chats):
    everything = all_chat_ids(signed_in)
    assert len(everything) == 8
    seen = record(signed_in, "delegated")
    first = execute("chat-list", {"limit": 3}, signed_in)
    assert [q.get("$top") for _, q in seen] == [["3"]]  # one request, for 3
    assert [c["chatId"] for c in first.outputs] == everything[:3] and first.next_link
    seen.clear()
    rest = execute("chat-list", {"next_link": first.next_link, "limit": 2, "page_size": 2}, signed_in)
    assert len(seen) == 1
    assert [c["chatId"] for c in rest.outputs] == everything[3:5]  # items 4 and 5: nothing skipped
    more = execute("chat-list", {"next_link": rest.next_link}, signed_in)
    assert [c["chatId"] for c in more.outputs] == everything[5:6]  # the page the link was for: $top=3, one left


def test_next_link_with_page_size_is_one_request(emu, signed_in, many_chats):
    everything = all_chat_ids(signed_in)
    first = execute("chat-list", {"limit": 2, "page_size": 2}, signed_in)
    seen = record(signed_in, "delegated")
    nxt = execute("chat-list", {"next_link": first.next_link, "page_size": 2}, signed_in)
    assert len(seen) == 1 and len(nxt.outputs) == 2
    assert [c["chatId"] for c in first.outputs + nxt.outputs] == everything[:4]


def test_a_limit_inside_a_page_returns_a_cursor_that_loses_nothing(emu, signed_in, many_chats):
    everything = all_chat_ids(signed_in)
    seen = record(signed_in, "delegated")
    first = execute("chat-list", {"limit": 5, "page_size": 3}, signed_in)  # pages of 3: 3 + 2 of the second
    assert [q.get("$top") for _, q in seen] == [["3"], ["3"]]
    assert [c["chatId"] for c in first.outputs] == everything[:5]
    url, skip, after = parse_cursor(first.next_link)
    assert skip == 2 and after == everything[4] and "$skiptoken" in url
    got, link, requests = [], first.next_link, 0
    while link:
        seen.clear()
        page = execute("chat-list", {"next_link": link, "page_size": 2}, signed_in)
        requests += len(seen)
        assert len(seen) == 1 and len(page.outputs) <= 2
        got += [c["chatId"] for c in page.outputs]
        link = page.next_link
    assert got == everything[5:]


def test_limit_beyond_the_maximum_pages_at_the_maximum(emu, signed_in, many_chats):
    seen = record(signed_in, "delegated")
    r = execute("chat-list", {"limit": 120}, signed_in)
    assert len(r.outputs) == 8 and r.next_link is None
    assert [q.get("$top") for _, q in seen] == [["50"]]


def test_team_members_top_and_resume(emu, runtime):
    full = [m["id"] for m in execute("team-member-list", {"team": "Security Operations", "page_size": 999},
                                     runtime).outputs]
    assert len(full) >= 3
    seen = record(runtime, "app")
    first = execute("team-member-list", {"team": "Security Operations", "limit": 2}, runtime)
    assert [q.get("$top") for p, q in seen if p.endswith("/members")] == [["2"]]
    got, link = [m["id"] for m in first.outputs], first.next_link
    while link:
        page = execute("team-member-list", {"team": "Security Operations", "next_link": link, "page_size": 1},
                       runtime)
        assert len(page.outputs) == 1
        got.append(page.outputs[0]["id"])
        link = page.next_link
    assert got == full


def test_message_lists_resume_exactly(emu, signed_in):
    from teams_helpers import add_message

    chat = make_chat(emu, [SVC, BOB], "Paging room")
    for i in range(7):
        add_message(emu, chat, BOB, f"m{i}")
    everything = [m["messages"]["id"] for m in execute("chat-message-list", {"chat": chat}, signed_in).outputs]
    assert len(everything) == 7
    first = execute("chat-message-list", {"chat": chat, "limit": 4, "page_size": 3}, signed_in)
    got, link = [m["messages"]["id"] for m in first.outputs], first.next_link
    while link:
        page = execute("chat-message-list", {"chat": chat, "next_link": link, "page_size": 2}, signed_in)
        got += [m["messages"]["id"] for m in page.outputs]
        link = page.next_link
    assert got == everything


# ------------------------------------------------------------------ the client, on recorded replies

BASE = "https://graph.example/v1.0"


class _Tokens(TokenProvider):
    def token(self, force_refresh=False):
        return "t"


def client():
    return Client(BASE, _Tokens(), sleep=lambda s: None)


def test_page_max_table():
    assert page_max("/me/chats") == 50 and page_max("/users/abc/chats") == 50
    assert page_max("/chats/19:x@thread.v2/messages") == 50
    assert page_max("/teams/t/channels/c/messages") == 50 and page_max("/teams/t/channels/c/messages/1/replies") == 50
    assert page_max("/users") == 999 and page_max("/teams") == 999 and page_max("/teams/t/members") == 999
    assert page_max("/teams/t/channels") is None and page_max("/chats/x/members") is None
    assert page_top("/me/chats", 3, 50) == 3 and page_top("/me/chats", 500, None) == 50
    assert page_top("/teams/t/channels", 3, 50) is None and page_top("/users", None, None) is None


def test_cursor_round_trip_and_plain_links():
    c = make_cursor(BASE + "/teams/t/channels?$filter=x", 2, "19:a@thread.tacv2")
    assert parse_cursor(c) == (BASE + "/teams/t/channels?$filter=x", 2, "19:a@thread.tacv2")
    assert parse_cursor(BASE + "/me/chats?$skiptoken=abc") == (BASE + "/me/chats?$skiptoken=abc", 0, None)


def test_cursor_resumes_after_the_last_item_even_when_the_page_moved():
    """Re-reading a page that gained items in front resumes after the item returned last."""
    with requests_mock.Mocker() as m:
        m.get(BASE + "/teams/t/channels", [
            {"json": {"value": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]}},
            {"json": {"value": [{"id": "new"}, {"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}]}},
        ])
        c = client()
        first = c.paged("/teams/t/channels", limit=2)
        assert [x["id"] for x in first.items] == ["a", "b"]
        rest = c.paged("/teams/t/channels", next_link=first.next_link)
        assert [x["id"] for x in rest.items] == ["c", "d"] and rest.next_link is None
        # the fragment never reaches Graph
        assert all("#" not in r.url and "msteams" not in r.url for r in m.request_history)


def test_null_value_and_unusable_replies():
    with requests_mock.Mocker() as m:
        m.get(BASE + "/me/chats", json={"@odata.context": "x", "value": None})
        assert client().paged("/me/chats", limit=3).items == []
        m.get(BASE + "/teams/t/members", json={"value": [None, {"id": "m1"}], "@odata.nextLink": None})
        assert client().paged("/teams/t/members").items == [{"id": "m1"}]
        m.get(BASE + "/users", text="")
        with pytest.raises(GraphError, match="without a collection"):
            client().paged("/users")
        m.get(BASE + "/teams", json={"value": {"id": "x"}})
        with pytest.raises(GraphError, match="not a list"):
            client().paged("/teams")
        m.get(BASE + "/groups", json={"value": None})
        assert list(client().pages("/groups", page_size=5)) == [[]]
