"""message-list end to end against the emulator: a channel's messages (standard and private
channels) or a chat's (id, topic, member), newest first, paged; the argument rules."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import ArgumentError, NotFound, PermissionDenied
from teams_helpers import add_channel_message, add_message, channel_of, graph_calls, make_chat

SECOPS = "Security Operations"
SVC, BOB, ALICE = "soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example"


def test_channel_messages_newest_first_with_paging(emu, signed_in):
    for text in ("one", "two", "three"):
        add_channel_message(emu, SECOPS, "Incident Response", BOB, text)
    r = execute("message-list", {"team": SECOPS, "channel": "Incident Response"}, signed_in)
    assert [m["messages"]["content"] for m in r.outputs] == ["three", "two", "one"]
    ch = channel_of(emu, SECOPS, "Incident Response")
    assert r.prefix == "MicrosoftTeams.MessagesList" and r.outputs[0]["channelId"] == ch.id
    assert r.outputs[0]["messages"]["fromName"] == "Bob Smith" and r.outputs[0]["chatId"] == ch.id
    assert [m["body"]["content"] for m in r.context()["MicrosoftTeams.MessagesList"][0]["messages"]] == ["three", "two", "one"]
    first = execute("message-list", {"team": SECOPS, "channel": "Incident Response", "limit": 2, "page_size": 2}, signed_in)
    assert len(first.outputs) == 2 and first.next_link
    rest = execute("message-list", {"team": SECOPS, "channel": "Incident Response", "next_link": first.next_link},
                   signed_in)
    assert [m["messages"]["content"] for m in rest.outputs] == ["one"]


def test_private_channel_messages_sent_by_the_integration(emu, signed_in):
    execute("channel-message-send", {"team": SECOPS, "channel": "Threat Intel", "content": "IOC list"}, signed_in)
    r = execute("message-list", {"team": SECOPS, "channel": "Threat Intel"}, signed_in)
    assert r.outputs[0]["messages"]["content"] == "IOC list" and r.outputs[0]["messages"]["fromName"] == "SOAR Service Account"


def test_private_channel_the_account_is_not_in(emu, signed_in):
    with pytest.raises(PermissionDenied):
        execute("message-list", {"team": "Executive", "channel": "Board Briefings"}, signed_in, flow="delegated")
    r = execute("message-list", {"team": "Executive", "channel": "Board Briefings"}, signed_in, flow="app")
    assert r.flow == "app" and r.outputs == []


def test_chat_messages_by_topic_member_and_id(emu, signed_in):
    group = make_chat(emu, [SVC, BOB, ALICE], "IR 42")
    one = make_chat(emu, [SVC, BOB], chat_type="oneOnOne")
    add_message(emu, group, ALICE, "in the group")
    add_message(emu, one, BOB, "just us")
    assert [m["messages"]["content"] for m in execute("message-list", {"chat": "IR 42"}, signed_in).outputs] == ["in the group"]
    r = execute("message-list", {"chat": BOB}, signed_in)
    assert [(m["messages"]["content"], m["chatId"]) for m in r.outputs] == [("just us", one)]
    assert execute("message-list", {"chat": group}, signed_in, flow="app").outputs[0]["chatId"] == group


@pytest.mark.parametrize("args,argument", [
    ({}, "chat"),
    ({"team": SECOPS}, "channel"),
    ({"channel": "General"}, "team"),
    ({"team": SECOPS, "channel": "General", "chat": "IR 42"}, "chat"),
])
def test_argument_rules(emu, signed_in, args, argument):
    with pytest.raises(ArgumentError) as e:
        execute("message-list", args, signed_in)
    assert e.value.argument == argument and e.value.exit_code == 2
    assert not [c for c in graph_calls(emu) if "messages" in c["path"]]


def test_unknown_channel(signed_in):
    with pytest.raises(NotFound) as e:
        execute("message-list", {"team": SECOPS, "channel": "Nope"}, signed_in)
    assert e.value.exit_code == 5


def test_shared_channel_post_and_list(emu, signed_in):
    execute("channel-create", {"team": SECOPS, "channel_name": "Partners", "membership_type": "shared"}, signed_in,
            flow="delegated")
    execute("channel-message-send", {"team": SECOPS, "channel": "Partners", "content": "hello partners"}, signed_in)
    r = execute("message-list", {"team": SECOPS, "channel": "Partners"}, signed_in)
    assert [m["messages"]["content"] for m in r.outputs] == ["hello partners"]
    assert channel_of(emu, SECOPS, "Partners").membership_type == "shared"
