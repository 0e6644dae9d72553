"""Chat commands end to end against the emulator: chat-list, chat-member-list, chat-add-user,
chat-message-list, chat-update (each with its failure paths)."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import AmbiguousError, ArgumentError, NotFound, PermissionDenied, RequestRejected
from teams_helpers import add_message, grant_exactly, graph_calls, make_chat, uid

SVC, BOB, ALICE, GRACE = ("soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example",
                          "grace.kim@contoso.example")


@pytest.fixture
def chats(emu):
    """Two group chats and a 1:1 chat of the service account, plus one chat it is not in."""
    ir = make_chat(emu, [SVC, BOB, ALICE], "IR 42")
    other = make_chat(emu, [SVC, ALICE], "Phishing triage")
    one = make_chat(emu, [SVC, BOB], chat_type="oneOnOne")
    foreign = make_chat(emu, [BOB, ALICE], "Not ours")
    return {"ir": ir, "other": other, "one": one, "foreign": foreign}


# ------------------------------------------------------------------------------ chat-list

def test_chat_list_delegated_lists_only_own_chats(emu, signed_in, chats):
    r = execute("microsoft-teams-chat-list", {}, signed_in)
    assert r.flow == "delegated"
    got = {c["chatId"] for c in r.outputs}
    assert got == {chats["ir"], chats["other"], chats["one"]}
    assert r.prefix == "MicrosoftTeams.ChatList" and r.key == "chatId"


def test_chat_list_filter_expand_and_one_chat(emu, signed_in, chats):
    r = execute("chat-list", {"filter": "topic eq 'IR 42'", "expand": "members"}, signed_in)
    assert [c["topic"] for c in r.outputs] == ["IR 42"]
    assert {m["displayName"] for m in r.outputs[0]["members"]} == {"SOAR Service Account", "Bob Smith", "Alice Johnson"}
    add_message(emu, chats["one"], BOB, "ping")
    one = execute("chat-list", {"chat": BOB, "expand": "lastMessagePreview"}, signed_in)
    assert one.outputs[0]["chatId"] == chats["one"] and one.outputs[0]["lastMessagePreview"]["body"]["content"] == "ping"


def test_chat_list_pages_and_resumes(emu, signed_in, chats):
    first = execute("chat-list", {"limit": 2, "page_size": 2}, signed_in)
    assert len(first.outputs) == 2 and first.next_link
    assert first.context()["MicrosoftTeams.ChatListNextLink"] == first.next_link
    rest = execute("chat-list", {"next_link": first.next_link}, signed_in)
    ids = [c["chatId"] for c in first.outputs + rest.outputs]
    assert len(ids) == len(set(ids)) == 3 and rest.next_link is None


def test_chat_list_bad_filter_is_rejected_as_input(signed_in, chats):
    with pytest.raises(RequestRejected) as e:
        execute("chat-list", {"filter": "topic eq 'unterminated"}, signed_in)
    assert e.value.exit_code == 2


def test_chat_list_app_flow_needs_a_user(emu, runtime, chats):
    with pytest.raises(ArgumentError) as e:
        execute("chat-list", {}, runtime)
    assert e.value.argument == "user" and e.value.exit_code == 2
    r = execute("chat-list", {"user": "Bob Smith"}, runtime)
    assert r.flow == "app" and {c["chatId"] for c in r.outputs} == {chats["ir"], chats["one"], chats["foreign"]}


def test_chat_list_missing_permission(emu, runtime, chats):
    grant_exactly(emu, runtime, "delegated", ["User.Read.All"])
    with pytest.raises(PermissionDenied) as e:
        execute("chat-list", {}, runtime, flow="delegated")
    assert e.value.exit_code == 4 and "Chat.ReadBasic" in e.value.permissions


# ------------------------------------------------------------------------ chat-member-list

def test_chat_member_list_by_topic_member_and_id(emu, signed_in, chats):
    r = execute("chat-member-list", {"chat": "IR 42"}, signed_in)
    assert {m["members"]["displayName"] for m in r.outputs} == {"SOAR Service Account", "Bob Smith", "Alice Johnson"}
    assert all(m["chatId"] == chats["ir"] for m in r.outputs)
    r = execute("microsoft-teams-chat-member-list", {"chat": "bob.smith@contoso.example"}, signed_in)
    assert {m["members"]["userId"] for m in r.outputs} == {uid(emu, SVC), uid(emu, BOB)}
    assert r.outputs[0]["chatId"] == chats["one"]
    r = execute("chat-member-list", {"chat": chats["other"]}, signed_in)
    assert len(r.outputs) == 2


def test_chat_member_list_finds_a_1to1_chat_without_creating_one(emu, signed_in, chats):
    with pytest.raises(NotFound) as e:
        execute("chat-member-list", {"chat": GRACE}, signed_in)
    assert "no 1:1 chat with Grace Kim" in str(e.value) and e.value.exit_code == 5
    assert not graph_calls(emu, "POST")


def test_chat_member_list_unknown_chat(signed_in, chats):
    with pytest.raises(NotFound) as e:
        execute("chat-member-list", {"chat": "No such chat"}, signed_in)
    assert e.value.exit_code == 5 and "neither" in str(e.value)


def test_chat_member_list_app_flow_needs_an_id(emu, runtime, chats):
    with pytest.raises(ArgumentError) as e:
        execute("chat-member-list", {"chat": "IR 42"}, runtime)
    assert "chat id" in str(e.value) and not graph_calls(emu)
    r = execute("chat-member-list", {"chat": chats["foreign"]}, runtime)
    assert r.flow == "app" and len(r.outputs) == 2


def test_same_topic_twice_is_ambiguous(emu, signed_in, chats):
    make_chat(emu, [SVC, GRACE], "IR 42")
    with pytest.raises(AmbiguousError) as e:
        execute("chat-member-list", {"chat": "IR 42"}, signed_in)
    assert len(e.value.candidates) == 2 and e.value.exit_code == 2


# --------------------------------------------------------------------------- chat-add-user

def test_chat_add_user_with_and_without_history(emu, signed_in, chats):
    r = execute("chat-add-user", {"chat": "IR 42", "member": GRACE}, signed_in)
    assert r.outputs[0]["members"]["status"] == "added" and "Added Grace Kim" in r.message
    r = execute("microsoft-teams-chat-add-user", {"chat": "IR 42", "member": "Hannah Schmidt", "share_history": "false"},
                signed_in)
    members = {m.user_id: m for m in emu.state.chats[chats["ir"]].members}
    assert members[uid(emu, GRACE)].visible_history_start == "0001-01-01T00:00:00Z"
    assert members[uid(emu, "hannah.schmidt@contoso.example")].visible_history_start != "0001-01-01T00:00:00Z"


def test_chat_add_user_reports_existing_members(emu, signed_in, chats):
    r = execute("chat-add-user", {"chat": "IR 42", "member": [BOB, GRACE]}, signed_in)
    assert {m["members"]["displayName"]: m["members"]["status"] for m in r.outputs} == {
        "Bob Smith": "already a member", "Grace Kim": "added"}


def test_chat_add_user_refuses_one_on_one_before_any_request(emu, signed_in, chats):
    before = len(graph_calls(emu))
    with pytest.raises(ArgumentError) as e:
        execute("chat-add-user", {"chat": chats["one"], "member": GRACE}, signed_in)
    assert "group chats" in str(e.value) and e.value.exit_code == 2
    assert len(graph_calls(emu)) == before


def test_chat_add_user_unknown_user(signed_in, chats):
    with pytest.raises(NotFound) as e:
        execute("chat-add-user", {"chat": "IR 42", "member": "nobody@contoso.example"}, signed_in)
    assert e.value.exit_code == 5


# ----------------------------------------------------------------------- chat-message-list

def test_chat_message_list_orders_and_pages(emu, signed_in, chats):
    add_message(emu, chats["ir"], BOB, "first", "2024-01-01T10:00:00.000Z")
    add_message(emu, chats["ir"], ALICE, "second", "2024-01-01T11:00:00.000Z")
    add_message(emu, chats["ir"], BOB, "third", "2024-01-01T12:00:00.000Z")
    r = execute("chat-message-list", {"chat": "IR 42", "order_by": "createdDateTime"}, signed_in)
    assert [m["messages"]["content"] for m in r.outputs] == ["third", "second", "first"]
    assert r.outputs[0]["chatId"] == chats["ir"] and r.outputs[0]["messages"]["fromName"] == "Bob Smith"
    page = execute("microsoft-teams-chat-message-list", {"chat": "IR 42", "limit": 2, "page_size": 2}, signed_in)
    assert len(page.outputs) == 2 and page.next_link
    rest = execute("chat-message-list", {"chat": "IR 42", "next_link": page.next_link}, signed_in)
    assert [m["messages"]["content"] for m in rest.outputs] == ["first"]


def test_chat_message_list_of_a_chat_we_are_not_in(emu, signed_in, chats):
    with pytest.raises(PermissionDenied) as e:
        execute("chat-message-list", {"chat": chats["foreign"]}, signed_in)
    assert e.value.exit_code == 4


def test_chat_message_list_bad_order_by(signed_in, chats):
    with pytest.raises(ArgumentError) as e:
        execute("chat-message-list", {"chat": "IR 42", "order_by": "subject"}, signed_in)
    assert e.value.argument == "order_by"


# --------------------------------------------------------------------------- chat-update

def test_chat_update_renames_and_refreshes_the_cached_topic(emu, signed_in, chats):
    r = execute("chat-update", {"chat": "IR 42", "chat_name": "IR 42 (closed)"}, signed_in)
    assert emu.state.chats[chats["ir"]].topic == "IR 42 (closed)" and "now named" in r.message
    # the new name resolves from the cache; the old one no longer does
    before = len(graph_calls(emu))
    execute("chat-member-list", {"chat": "IR 42 (closed)"}, signed_in)
    assert [c["path"] for c in graph_calls(emu)[before:]] == [f"/v1.0/chats/{chats['ir']}/members"]
    with pytest.raises(NotFound):
        execute("chat-member-list", {"chat": "IR 42"}, signed_in)


@pytest.mark.parametrize("name,why", [("IR: 42", "':'"), ("x" * 251, "at most 250"), ("   ", "blank")])
def test_chat_update_validates_the_name_before_any_request(emu, signed_in, chats, name, why):
    before = len(graph_calls(emu))
    with pytest.raises(ArgumentError) as e:
        execute("microsoft-teams-chat-update", {"chat": "IR 42", "chat_name": name}, signed_in)
    assert why in str(e.value) and e.value.argument == "chat_name" and e.value.exit_code == 2
    assert len(graph_calls(emu)) == before


def test_chat_update_refuses_one_on_one(emu, signed_in, chats):
    with pytest.raises(ArgumentError) as e:
        execute("chat-update", {"chat": chats["one"], "chat_name": "Bob"}, signed_in)
    assert "oneOnOne" in str(e.value) and e.value.exit_code == 2


def test_chat_update_app_flow_by_id(emu, runtime, chats):
    r = execute("chat-update", {"chat": chats["foreign"], "chat_name": "Renamed by the app"}, runtime)
    assert r.flow == "app" and emu.state.chats[chats["foreign"]].topic == "Renamed by the app"


def test_stale_cached_topic_is_refreshed_once(emu, signed_in, chats):
    execute("chat-member-list", {"chat": "IR 42"}, signed_in)  # caches the topic's chat id
    with emu.state.lock:
        del emu.state.chats[chats["ir"]]
    fresh = make_chat(emu, [SVC, GRACE], "IR 42")
    r = execute("chat-member-list", {"chat": "IR 42"}, signed_in)
    assert r.outputs[0]["chatId"] == fresh and len(r.outputs) == 2
    with emu.state.lock:
        del emu.state.chats[fresh]
    with pytest.raises(NotFound):  # refreshed once, then reported as not found
        execute("chat-member-list", {"chat": "IR 42"}, signed_in)
