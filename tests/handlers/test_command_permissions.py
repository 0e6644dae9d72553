"""Every Graph command of issue 4 runs with EXACTLY the permissions commands.yml declares for
each of its flows (a fresh token carrying only those), through every way it names things."""
import pytest

from integration.engine import registry
from integration.dispatch import execute
from teams_helpers import add_channel_message, add_message, grant_exactly, make_chat, make_owner

SVC, BOB, ALICE = "soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example"
SECOPS = "Security Operations"


def _chats(emu):
    group = make_chat(emu, [SVC, BOB, ALICE], "Perm chat")
    one = make_chat(emu, [SVC, BOB], chat_type="oneOnOne")
    add_message(emu, group, BOB, "in the group")
    add_message(emu, one, BOB, "just us")
    add_channel_message(emu, SECOPS, "Threat Intel", ALICE, "indicators")
    return group, one


def _svc_owns(team):
    def setup(emu):
        make_owner(emu, team, SVC)
    return setup


def _with(setup, cases):
    """cases(emu, setup result) -> list of argument sets."""
    return lambda emu: cases(emu, setup(emu) if setup else None)


CASES = {
    ("chat-list", "delegated"): _with(_chats, lambda e, c: [{}, {"chat": "Perm chat", "expand": "members"},
                                                              {"chat": BOB, "expand": "lastMessagePreview"},
                                                              {"filter": "chatType eq 'group'"}]),
    ("chat-list", "app"): _with(_chats, lambda e, c: [{"user": BOB}, {"chat": c[0]}]),
    ("chat-member-list", "delegated"): _with(_chats, lambda e, c: [{"chat": "Perm chat"}, {"chat": BOB}, {"chat": c[1]}]),
    ("chat-member-list", "app"): _with(_chats, lambda e, c: [{"chat": c[0]}]),
    ("chat-add-user", "delegated"): _with(_chats, lambda e, c: [{"chat": "Perm chat", "member": "Grace Kim"}]),
    ("chat-add-user", "app"): _with(_chats, lambda e, c: [{"chat": c[0], "member": "hannah.schmidt@contoso.example"}]),
    ("chat-message-list", "delegated"): _with(_chats, lambda e, c: [{"chat": "Perm chat"}, {"chat": BOB}]),
    ("chat-message-list", "app"): _with(_chats, lambda e, c: [{"chat": c[0]}]),
    ("chat-update", "delegated"): _with(_chats, lambda e, c: [{"chat": "Perm chat", "chat_name": "Renamed"}]),
    ("chat-update", "app"): _with(_chats, lambda e, c: [{"chat": c[0], "chat_name": "Renamed"}]),
    ("channel-create", "app"): _with(None, lambda e, c: [
        {"team": SECOPS, "channel_name": "P1", "membership_type": "private", "owner": ALICE},
        {"team": SECOPS, "channel_name": "S1", "description": "standard"}]),
    ("channel-create", "delegated"): _with(None, lambda e, c: [
        {"team": SECOPS, "channel_name": "P2", "membership_type": "private"},
        {"team": SECOPS, "channel_name": "P3", "membership_type": "shared", "owner": "Conor O'Brien"}]),
    ("channel-delete", "app"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Incident Response"}]),
    ("channel-delete", "delegated"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Incident Response"}]),
    ("channel-user-add", "app"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel", "member": BOB}]),
    ("channel-user-add", "delegated"): _with(_svc_owns(SECOPS), lambda e, c: [
        {"team": SECOPS, "channel": "Threat Intel", "member": BOB, "owner": True}]),
    ("channel-user-remove", "app"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel",
                                                                "member": "conor.obrien@contoso.example"}]),
    ("channel-user-remove", "delegated"): _with(_svc_owns(SECOPS), lambda e, c: [
        {"team": SECOPS, "channel": "Threat Intel", "member": "Conor O'Brien"}]),
    ("channel-user-list", "app"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel"}]),
    ("channel-user-list", "delegated"): _with(None, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel"}]),
    ("channel-message-send", "delegated"): _with(
        lambda e: add_channel_message(e, SECOPS, "Incident Response", BOB, "root"),
        lambda e, root: [{"team": SECOPS, "channel": "Incident Response", "content": "hi"},
                         {"team": SECOPS, "channel": "Incident Response", "content": "re", "reply_to": root},
                         {"team": SECOPS, "channel": "Threat Intel", "content": "<b>private</b>", "content_type": "html"}]),
    ("team-list", "app"): _with(None, lambda e, c: [{}, {"limit": 1, "page_size": 1}]),
    ("team-list", "delegated"): _with(None, lambda e, c: [{}]),
    ("team-get", "app"): _with(None, lambda e, c: [{"team": "IT Helpdesk"}]),
    ("team-get", "delegated"): _with(None, lambda e, c: [{"team": "IT Helpdesk"}]),
    ("team-member-list", "app"): _with(None, lambda e, c: [{"team": SECOPS}]),
    ("team-member-list", "delegated"): _with(None, lambda e, c: [{"team": SECOPS}]),
    ("team-member-add", "app"): _with(None, lambda e, c: [{"team": "IT Helpdesk", "member": BOB}]),
    ("team-member-add", "delegated"): _with(_svc_owns("IT Helpdesk"), lambda e, c: [
        {"team": "IT Helpdesk", "member": BOB, "owner": True}]),
    ("team-member-remove", "app"): _with(None, lambda e, c: [{"team": "IT Helpdesk", "member": "Liam Murphy"}]),
    ("team-member-remove", "delegated"): _with(_svc_owns("IT Helpdesk"), lambda e, c: [
        {"team": "IT Helpdesk", "member": "liam.murphy@contoso.example"}]),
    ("user-get", "app"): _with(None, lambda e, c: [{"user": "Conor O'Brien"}, {"user": BOB}]),
    ("user-get", "delegated"): _with(None, lambda e, c: [{"user": "Conor O'Brien"}, {"user": BOB}]),
    ("user-list", "app"): _with(None, lambda e, c: [{"name": "Zo"}, {"mail": "conor", "limit": 5}]),
    ("user-list", "delegated"): _with(None, lambda e, c: [{"name": "Zo"}]),
    ("meeting-create", "delegated"): _with(None, lambda e, c: [{"subject": "Bridge", "attendees": [BOB, "Zoë Müller"]}]),
    ("meeting-create", "app"): _with(None, lambda e, c: [{"subject": "Bridge", "organizer": ALICE, "attendees": BOB}]),
    ("message-list", "delegated"): _with(_chats, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel"},
                                                                 {"chat": "Perm chat"}, {"chat": BOB}]),
    ("message-list", "app"): _with(_chats, lambda e, c: [{"team": SECOPS, "channel": "Threat Intel"}, {"chat": c[0]}]),
}

MINE = sorted({c for c, _ in CASES})


def test_every_flow_of_these_commands_is_covered():
    reg = registry.default_registry()
    declared = {(c, f) for c in MINE for f in reg.get(c).flow_names}
    assert declared == set(CASES)


@pytest.mark.parametrize("command,flow", sorted(CASES), ids=[f"{c}-{f}" for c, f in sorted(CASES)])
def test_declared_permissions_suffice(emu, runtime, command, flow):
    arg_sets = CASES[(command, flow)](emu)
    perms = list(runtime.registry.get(command).permissions(flow))
    grant_exactly(emu, runtime, flow, perms)
    for args in arg_sets:
        r = execute(command, args, runtime, flow=flow)
        assert r.flow == flow
        assert r.outputs or r.message, (command, args)
