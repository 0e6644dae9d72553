"""The four headline commands end to end: real HTTP to the emulator, real MSAL, real SQLite."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import AuthError, NotFound, PermissionDenied


def names(emu):
    return {u["displayName"]: u for u in emu.state.users.values()}


def test_chat_create_delegated_includes_caller_and_resolves_apostrophe(emu, signed_in):
    r = execute("chat-create", {"member": "Conor O'Brien,zoe.muller@contoso.example", "chat_name": "IR 42"}, signed_in)
    assert r.flow == "delegated"
    chat_id = r.outputs[0]["chatId"]
    chat = emu.state.chats[chat_id]
    members = {emu.state.users[m.user_id]["displayName"] for m in chat.members}
    assert members == {"Conor O'Brien", "Zoë Müller", "SOAR Service Account"}
    assert chat.topic == "IR 42" and r.context()["MicrosoftTeams.ChatList"][0]["chatType"] == "group"


def test_chat_create_app_flow(emu, runtime):
    r = execute("chat-create", {"member": "bob.smith@contoso.example,alice.johnson@contoso.example",
                                "chat_type": "oneOnOne"}, runtime)
    assert r.flow == "app"
    again = execute("chat-create", {"member": "bob.smith@contoso.example,alice.johnson@contoso.example",
                                    "chat_type": "oneOnOne"}, runtime)
    assert again.outputs[0]["chatId"] == r.outputs[0]["chatId"]  # get-or-create
    assert len(emu.state.chats) == 1


def test_one_on_one_counts_the_caller(signed_in):
    with pytest.raises(Exception) as e:
        execute("chat-create", {"member": "bob.smith@contoso.example,alice.johnson@contoso.example",
                                "chat_type": "oneOnOne"}, signed_in)
    assert "exactly 2 members" in str(e.value) and e.value.exit_code == 2


def test_message_send_to_chat_by_topic_and_by_member(emu, signed_in):
    execute("chat-create", {"member": "Conor O'Brien,Bob Smith", "chat_name": "War room"}, signed_in)
    hostile = "<script>alert('x')</script> ${HOME} {{7*7}} \"quoted\""
    r = execute("message-send-to-chat", {"chat": "War room", "content": hostile}, signed_in)
    chat = emu.state.chats[r.outputs[0]["chatId"]]
    assert chat.messages[-1].body == {"contentType": "text", "content": hostile}
    r2 = execute("message-send-to-chat", {"chat": "grace.kim@contoso.example", "content": "hi"}, signed_in)
    one = emu.state.chats[r2.outputs[0]["chatId"]]
    assert one.chat_type == "oneOnOne" and one.messages[-1].body["content"] == "hi"
    # the 1:1 chat is now in the store: a second send makes no POST /chats
    before = [e for e in emu.request_log if e["method"] == "POST" and e["path"].endswith("/chats")]
    execute("message-send-to-chat", {"chat": "grace.kim@contoso.example", "content": "again"}, signed_in)
    after = [e for e in emu.request_log if e["method"] == "POST" and e["path"].endswith("/chats")]
    assert len(after) == len(before)


def test_message_send_needs_delegated_and_says_so_before_any_request(emu, runtime):
    with pytest.raises(AuthError) as e:
        execute("message-send-to-chat", {"chat": "x", "content": "y"}, runtime)
    msg = str(e.value)
    assert "delegated" in msg and "msteams auth login" in msg and "ChatMessage.Send" in msg
    assert not [x for x in emu.request_log if x["path"].startswith("/v1.0")]


def test_channel_list_both_flows(emu, runtime):
    r = execute("channel-list", {"team": "Security Operations"}, runtime)
    assert r.flow == "app"
    got = {c["channelName"]: c["membershipType"] for c in r.outputs}
    assert got == {"General": "standard", "Incident Response": "standard", "Threat Intel": "private"}
    assert all(c["teamId"] for c in r.outputs)
    execute("auth-login", {}, runtime)
    r2 = execute("channel-list", {"team": "Security Operations"}, runtime, flow="delegated")
    assert r2.flow == "delegated" and {c["channelName"] for c in r2.outputs} >= {"General", "Incident Response"}


def test_channel_list_unknown_team(runtime):
    with pytest.raises(NotFound, match="team 'No Such Team' not found"):
        execute("channel-list", {"team": "No Such Team"}, runtime)


def test_ring_user_app_only(emu, runtime):
    r = execute("ring-user", {"username": "Priya Patel"}, runtime)
    assert r.outputs[0]["state"] == "establishing"
    assert emu.state.calls and list(emu.state.calls.values())[0]["targets"][0]["identity"]["user"]["displayName"] == "Priya Patel"


def test_ring_user_without_app_flow_is_clear(emu, tmp_path, signed_in):
    signed_in.cfg.client_secret = None  # delegated still works; the app flow is gone
    signed_in._auth = None
    with pytest.raises(AuthError) as e:
        execute("ring-user", {"username": "Priya Patel"}, signed_in)
    assert "needs the app flow" in str(e.value) and "Calls.Initiate.All" in str(e.value.hint)


def test_withdrawn_permission_reported_by_name(emu, runtime):
    app = emu.config()["client_id"]
    # Group.Read(Write).All also allow listing channels (Microsoft's permission metadata): withdraw them all
    granted = set(emu.state.apps[app].application_permissions) - {"Channel.ReadBasic.All", "Group.Read.All",
                                                                   "Group.ReadWrite.All"}
    emu.set_permissions(app, application=sorted(granted))
    with pytest.raises(PermissionDenied) as e:
        execute("channel-list", {"team": "Security Operations"}, runtime)
    assert "Channel.ReadBasic.All" in e.value.permissions and e.value.exit_code == 4
    assert "Channel.ReadBasic.All" in str(e.value)


def test_429_absorbed_by_retry_loop(emu, runtime, sleeps):
    emu.faults.add(method="GET", path=r"/teams/.*/channels", status=429, count=2, retry_after=3)
    r = execute("channel-list", {"team": "Security Operations"}, runtime)
    assert len(r.outputs) == 3
    assert len(sleeps) == 2 and all(s >= 3 for s in sleeps)


def test_stale_cached_team_is_refreshed_once(emu, runtime):
    execute("channel-list", {"team": "Security Operations"}, runtime)
    runtime.store.put("team", "Security Operations", {"id": "00000000-0000-0000-0000-000000000000", "displayName": "x"})
    r = execute("channel-list", {"team": "Security Operations"}, runtime)
    assert len(r.outputs) == 3


def test_permissions_in_registry_suffice(emu, runtime):
    """Each app-flow command works with exactly the permissions commands.yml declares."""
    app = emu.config()["client_id"]
    for name, args in [("channel-list", {"team": "IT Helpdesk"}), ("ring-user", {"username": "Wei Chen"}),
                       ("chat-create", {"member": "wei.chen@contoso.example,liam.murphy@contoso.example"})]:
        perms = list(runtime.registry.get(name).permissions("app"))
        emu.set_permissions(app, application=perms)
        runtime._auth = None  # a fresh token carrying only these roles
        runtime._clients.clear()
        runtime.store.clear(include_tokens=True)
        assert execute(name, args, runtime).outputs, name
