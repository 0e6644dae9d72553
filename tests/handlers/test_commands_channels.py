"""Channel commands end to end against the emulator: channel-create, channel-delete (and XSOAR's
close-channel), channel-user-add/-remove/-list, channel-message-send (with thread replies)."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import (
    AmbiguousError,
    ArgumentError,
    AuthError,
    NotFound,
    PermissionDenied,
    RequestRejected,
)
from teams_helpers import add_channel_message, channel_of, duplicate_team, graph_calls, make_owner, team_of, uid

SECOPS = "Security Operations"
SVC, BOB, ALICE, CONOR = ("soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example",
                          "conor.obrien@contoso.example")


def members_of(emu, team, channel):
    return {m.user_id: m.roles for m in channel_of(emu, team, channel).members}


# ---------------------------------------------------------------------------- channel-create

def test_create_standard_channel_app(emu, runtime):
    r = execute("channel-create", {"team": SECOPS, "channel_name": "IR-42", "description": "war room"}, runtime)
    assert r.flow == "app" and r.prefix == "MicrosoftTeams.ChannelList"
    out = r.outputs[0]
    assert out["channelName"] == "IR-42" and out["membershipType"] == "standard" and out["teamId"] == team_of(emu, SECOPS).id
    assert channel_of(emu, SECOPS, "IR-42").description == "war room"
    # the new channel is cached: listing its members resolves no name through Graph
    before = len(graph_calls(emu))
    execute("channel-user-list", {"team": SECOPS, "channel": "IR-42"}, runtime)
    assert [c["path"].rsplit("/", 1)[-1] for c in graph_calls(emu)[before:]] == ["members"]


def test_create_private_channel_app_needs_an_owner(emu, runtime):
    with pytest.raises(ArgumentError) as e:
        execute("channel-create", {"team": SECOPS, "channel_name": "Forensics", "membership_type": "private"}, runtime)
    assert e.value.argument == "owner" and e.value.exit_code == 2 and not graph_calls(emu)
    r = execute("microsoft-teams-create-channel", {"team": SECOPS, "channel_name": "Forensics",
                                                   "membership_type": "private", "owner": "Alice Johnson"}, runtime)
    assert r.outputs[0]["membershipType"] == "private"
    assert members_of(emu, SECOPS, "Forensics") == {uid(emu, ALICE): ["owner"]}


def test_create_shared_channel_delegated_owned_by_the_signed_in_account(emu, signed_in):
    r = execute("channel-create", {"team": SECOPS, "channel_name": "Partners", "membership_type": "shared"},
                signed_in, flow="delegated")
    assert r.outputs[0]["membershipType"] == "shared"
    assert members_of(emu, SECOPS, "Partners") == {uid(emu, SVC): ["owner"]}


def test_create_duplicate_channel_is_rejected(emu, runtime):
    with pytest.raises(RequestRejected) as e:
        execute("channel-create", {"team": SECOPS, "channel_name": "incident response"}, runtime)
    assert e.value.exit_code == 2 and e.value.status == 400 and "channel-list" in str(e.value)


def test_create_private_with_an_owner_outside_the_team(emu, runtime):
    with pytest.raises(RequestRejected) as e:
        execute("channel-create", {"team": SECOPS, "channel_name": "X", "membership_type": "private",
                                   "owner": "grace.kim@contoso.example"}, runtime)
    assert "not a member of the team" in str(e.value)


def test_create_standard_channel_with_owner_is_refused(emu, runtime):
    with pytest.raises(ArgumentError) as e:
        execute("channel-create", {"team": SECOPS, "channel_name": "X", "owner": ALICE}, runtime)
    assert e.value.argument == "owner" and not graph_calls(emu)


def test_create_in_an_ambiguous_team(emu, runtime):
    duplicate_team(emu, SECOPS)
    with pytest.raises(AmbiguousError) as e:
        execute("channel-create", {"team": SECOPS, "channel_name": "X"}, runtime)
    assert len(e.value.candidates) == 2 and all("Security Operations" in c for c in e.value.candidates)


# ---------------------------------------------------------------------------- channel-delete

def test_delete_channel_and_close_channel_alias(emu, runtime):
    r = execute("channel-delete", {"team": SECOPS, "channel": "Incident Response"}, runtime)
    assert r.message == "The channel 'Incident Response' was deleted from team 'Security Operations'."
    assert "Incident Response" not in {c.display_name for c in team_of(emu, SECOPS).channels.values()}
    execute("channel-create", {"team": SECOPS, "channel_name": "Temp"}, runtime)
    execute("close-channel", {"team": SECOPS, "channel": "Temp"}, runtime)
    assert "Temp" not in {c.display_name for c in team_of(emu, SECOPS).channels.values()}


def test_delete_general_is_rejected(runtime):
    with pytest.raises(RequestRejected) as e:
        execute("channel-delete", {"team": SECOPS, "channel": "General"}, runtime)
    assert e.value.exit_code == 2


def test_delete_unknown_channel(runtime):
    with pytest.raises(NotFound) as e:
        execute("channel-delete", {"team": SECOPS, "channel": "Nope"}, runtime)
    assert e.value.exit_code == 5


def test_delete_without_permission(emu, runtime):
    app = emu.config()["client_id"]
    # Group.ReadWrite.All also allows deleting a channel (Microsoft's permission metadata)
    granted = set(emu.state.apps[app].application_permissions) - {"Channel.Delete.All", "Group.ReadWrite.All"}
    emu.set_permissions(app, application=sorted(granted))
    with pytest.raises(PermissionDenied) as e:
        execute("channel-delete", {"team": SECOPS, "channel": "Incident Response"}, runtime)
    assert "Channel.Delete.All" in e.value.permissions and e.value.exit_code == 4


# --------------------------------------------------------------------- channel membership

def test_add_list_remove_in_a_private_channel(emu, runtime):
    r = execute("microsoft-teams-add-user-to-channel", {"team": SECOPS, "channel": "Threat Intel",
                                                        "member": "Bob Smith", "owner": "true"}, runtime)
    row = r.outputs[0]
    assert row["members"]["status"] == "added" and row["members"]["roles"] == ["owner"] and row["channelName"] == "Threat Intel"
    assert members_of(emu, SECOPS, "Threat Intel")[uid(emu, BOB)] == ["owner"]
    again = execute("channel-user-add", {"team": SECOPS, "channel": "Threat Intel", "member": BOB}, runtime)
    assert again.outputs[0]["members"]["status"] == "already a member"

    listed = execute("microsoft-teams-channel-user-list", {"team": SECOPS, "channel": "Threat Intel"}, runtime)
    assert uid(emu, BOB) in {m["members"]["userId"] for m in listed.outputs}
    assert listed.outputs[0]["channelId"] == channel_of(emu, SECOPS, "Threat Intel").id

    gone = execute("microsoft-teams-user-remove-from-channel", {"team": SECOPS, "channel": "Threat Intel",
                                                                "member": BOB}, runtime)
    assert "Removed Bob Smith" in gone.message and uid(emu, BOB) not in members_of(emu, SECOPS, "Threat Intel")
    with pytest.raises(NotFound) as e:
        execute("channel-user-remove", {"team": SECOPS, "channel": "Threat Intel", "member": BOB}, runtime)
    assert "not a member" in str(e.value) and e.value.exit_code == 5


def test_add_to_a_standard_channel_is_refused_before_any_write(emu, runtime):
    with pytest.raises(ArgumentError) as e:
        execute("channel-user-add", {"team": SECOPS, "channel": "Incident Response", "member": BOB}, runtime)
    assert "standard channel" in str(e.value) and "team-member-add" in str(e.value) and e.value.exit_code == 2
    assert not graph_calls(emu, "POST")
    with pytest.raises(ArgumentError):
        execute("channel-user-remove", {"team": SECOPS, "channel": "Incident Response", "member": BOB}, runtime)


def test_add_unknown_user(runtime):
    with pytest.raises(NotFound) as e:
        execute("channel-user-add", {"team": SECOPS, "channel": "Threat Intel", "member": "ghost@contoso.example"}, runtime)
    assert e.value.exit_code == 5


def test_add_to_private_channel_needs_team_membership(runtime):
    with pytest.raises(RequestRejected) as e:
        execute("channel-user-add", {"team": SECOPS, "channel": "Threat Intel", "member": "grace.kim@contoso.example"},
                runtime)
    assert "add them to the team first" in str(e.value)


def test_shared_channel_membership_delegated(emu, signed_in):
    execute("channel-create", {"team": SECOPS, "channel_name": "Vendors", "membership_type": "shared"}, signed_in,
            flow="delegated")
    execute("channel-user-add", {"team": SECOPS, "channel": "Vendors", "member": "Grace Kim"}, signed_in, flow="delegated")
    assert uid(emu, "grace.kim@contoso.example") in members_of(emu, SECOPS, "Vendors")  # shared: outsiders allowed


def test_delegated_membership_change_needs_an_owner(emu, signed_in):
    with pytest.raises(PermissionDenied) as e:
        execute("channel-user-add", {"team": SECOPS, "channel": "Threat Intel", "member": BOB}, signed_in, flow="delegated")
    assert e.value.exit_code == 4
    make_owner(emu, SECOPS, SVC)
    execute("channel-user-add", {"team": SECOPS, "channel": "Threat Intel", "member": BOB}, signed_in, flow="delegated")


def test_channel_user_list_of_a_standard_channel_is_the_team(emu, runtime):
    r = execute("channel-user-list", {"team": "IT Helpdesk", "channel": "Escalations"}, runtime)
    assert len(r.outputs) == len(team_of(emu, "IT Helpdesk").members)


def test_stale_cached_channel_is_refreshed_once(emu, runtime):
    execute("channel-user-list", {"team": SECOPS, "channel": "Threat Intel"}, runtime)
    # the channel is deleted and recreated under the same name: the cached id is stale
    team = team_of(emu, SECOPS)
    old = channel_of(emu, SECOPS, "Threat Intel")
    with emu.state.lock:
        del team.channels[old.id]
    execute("channel-create", {"team": SECOPS, "channel_name": "Threat Intel", "membership_type": "private",
                               "owner": ALICE}, runtime)
    runtime.store.put("channel", f"{team.id}/Threat Intel", {"id": old.id, "displayName": "Threat Intel",
                                                             "membershipType": "private"})
    r = execute("channel-user-list", {"team": SECOPS, "channel": "Threat Intel"}, runtime)
    assert r.outputs[0]["channelId"] == channel_of(emu, SECOPS, "Threat Intel").id != old.id


# ---------------------------------------------------------------------- channel-message-send

def test_send_to_standard_and_private_channels_and_reply(emu, signed_in):
    r = execute("channel-message-send", {"team": SECOPS, "channel": "Incident Response",
                                         "content": "<b>x</b> & 'y'"}, signed_in)
    assert r.flow == "delegated" and r.prefix == "MicrosoftTeams.Message"
    root = channel_of(emu, SECOPS, "Incident Response").messages[-1]
    assert root.body == {"contentType": "text", "content": "<b>x</b> & 'y'"}
    reply = execute("channel-message-send", {"team": SECOPS, "channel": "Incident Response", "content": "ack",
                                             "reply_to": r.outputs[0]["id"]}, signed_in)
    assert reply.outputs[0]["replyToId"] == root.id and root.replies[-1].body["content"] == "ack"
    assert "Reply sent" in reply.message
    execute("channel-message-send", {"team": SECOPS, "channel": "Threat Intel", "content": "<p>IOC</p>",
                                     "content_type": "html"}, signed_in)
    assert channel_of(emu, SECOPS, "Threat Intel").messages[-1].body == {"contentType": "html", "content": "<p>IOC</p>"}


def test_send_to_a_private_channel_the_account_is_not_in(emu, signed_in):
    execute("channel-create", {"team": SECOPS, "channel_name": "Closed", "membership_type": "private", "owner": ALICE},
            signed_in, flow="app")
    with pytest.raises(PermissionDenied) as e:
        execute("channel-message-send", {"team": SECOPS, "channel": "Closed", "content": "hi"}, signed_in)
    assert "channel-user-add" in str(e.value) and e.value.exit_code == 4


def test_reply_to_unknown_message(emu, signed_in):
    with pytest.raises(NotFound):
        execute("channel-message-send", {"team": SECOPS, "channel": "Incident Response", "content": "x",
                                         "reply_to": "1234"}, signed_in)


def test_send_needs_a_delegated_sign_in(emu, runtime):
    with pytest.raises(AuthError) as e:
        execute("channel-message-send", {"team": SECOPS, "channel": "General", "content": "x"}, runtime)
    assert "ChannelMessage.Send" in str(e.value) and not graph_calls(emu)


def test_send_into_existing_thread_seeded(emu, signed_in):
    root = add_channel_message(emu, SECOPS, "General", BOB, "root")
    execute("channel-message-send", {"team": SECOPS, "channel": "General", "content": "r", "reply_to": root}, signed_in)
    assert channel_of(emu, SECOPS, "General").messages[-1].replies[-1].body["content"] == "r"


def test_same_named_channels_are_ambiguous(emu, runtime):
    from fake_tenant.state import Channel

    team = team_of(emu, SECOPS)
    twin = Channel("19:0123456789abcdef0123456789abcdef@thread.tacv2", team.id, "incident response", "", "standard")
    with emu.state.lock:
        team.channels[twin.id] = twin
    with pytest.raises(AmbiguousError) as e:
        execute("channel-user-list", {"team": SECOPS, "channel": "Incident Response"}, runtime)
    assert len(e.value.candidates) == 2 and e.value.exit_code == 2
    r = execute("channel-user-list", {"team": SECOPS, "channel": twin.id}, runtime)  # the id always works
    assert r.outputs[0]["channelId"] == twin.id
