"""Argument aliases (issue 14, part 1): each argument may be given under XSOAR's name for it
(`channel_name`, `team_id`, `user_id`, `is_owner`, `membership_id`, `owner_user`, meeting
`member`) and the message body as `content` or `message` on every command that takes one, in
every front end (CLI flags, war-room form, playbooks, Python execute); both names at once are
an ArgumentError; help and docs show the aliases; the registry refuses colliding aliases."""
import textwrap

import pytest

from integration.engine import arguments, registry
from integration.frontends import docs
from integration.frontends.cli import main
from integration.dispatch import execute
from integration.engine.errors import ArgumentError, FileError
from integration.playbooks import load, run_playbook
from teams_helpers import channel_of, make_owner, team_of, uid

REG = registry.load()
BOB, GRACE, ALICE = "bob.smith@contoso.example", "grace.kim@contoso.example", "alice.johnson@contoso.example"

ALLOW = ["allow_guests_create_channels", "allow_guests_delete_channels", "allow_members_create_private_channels",
         "allow_members_create_channels", "allow_members_delete_channels", "allow_members_add_remove_apps",
         "allow_members_add_remove_tabs", "allow_members_add_remove_connectors", "allow_user_edit_messages",
         "allow_user_delete_messages", "allow_owner_delete_messages", "allow_team_mentions", "allow_channel_mentions"]

# XSOAR's arguments of each of its commands (Packs/MicrosoftTeams/Integrations/{MicrosoftTeams,
# MicrosoftTeamsManagement}/*.yml in demisto/content).
XSOAR_ARGS = {
    "send-notification": ["channel", "message", "team_member", "team", "message_id", "adaptive_card", "to",
                          "external_form_url_header"],
    "teams-send-notification-quick-action": ["channel", "message"],
    "mirror-investigation": ["mirror_type", "autoclose", "direction", "team", "channel_name"],
    "close-channel": ["channel", "team"],
    "microsoft-teams-integration-health": [],
    "create-channel": ["channel_name", "description", "team"],
    "add-user-to-channel": ["channel", "team", "member"],
    "microsoft-teams-ring-user": ["username"],
    "microsoft-teams-add-user-to-channel": ["channel", "team", "member", "owner"],
    "microsoft-teams-create-channel": ["channel_name", "team", "description", "membership_type", "owner_user"],
    "microsoft-teams-create-meeting": ["start_time", "end_time", "subject", "member"],
    "microsoft-teams-user-remove-from-channel": ["channel_name", "team", "member"],
    "microsoft-teams-channel-user-list": ["channel_name", "team"],
    "microsoft-teams-chat-create": ["chat_type", "member", "chat_name"],
    "microsoft-teams-message-send-to-chat": ["chat", "content", "content_type"],
    "microsoft-teams-chat-add-user": ["chat", "member", "share_history"],
    "microsoft-teams-chat-member-list": ["chat"],
    "microsoft-teams-message-update": ["message_id", "team", "channel", "message", "team_member", "format_as_card"],
    "microsoft-teams-chat-message-list": ["chat", "limit", "order_by", "next_link", "page_size"],
    "microsoft-teams-list-messages": ["conversation_id", "team_name", "limit", "order_by", "next_link", "message_id"],
    "microsoft-teams-chat-list": ["chat", "filter", "expand", "limit", "next_link", "page_size"],
    "microsoft-teams-chat-update": ["chat", "chat_name"],
    "microsoft-teams-generate-login-url": [],
    "microsoft-teams-auth-reset": [],
    "microsoft-teams-token-permissions-list": [],
    "microsoft-teams-create-messaging-endpoint": ["engine_url"],
    "microsoft-teams-auth-test": [],
    # MicrosoftTeamsManagement
    "microsoft-teams-auth-start": [],
    "microsoft-teams-auth-complete": [],
    "microsoft-teams-team-create": ["display_name", "description", "visibility"] + ALLOW + ["owner"],
    "microsoft-teams-team-create-from-group": ["group_id", "display_name", "description", "visibility"] + ALLOW,
    "microsoft-teams-team-update": ["team_id", "display_name", "description"] + ALLOW,
    "microsoft-teams-team-clone": ["team_id", "display_name", "description", "visibility", "clone_apps", "clone_tabs",
                                   "clone_settings", "clone_channels"],
    "microsoft-teams-teams-list": [],
    "microsoft-teams-team-get": ["team_id"],
    "microsoft-teams-team-delete": ["team_id"],
    "microsoft-teams-team-archive": ["team_id"],
    "microsoft-teams-team-unarchive": ["team_id"],
    "microsoft-teams-members-list": ["team_id"],
    "microsoft-teams-member-get": ["membership_id", "team_id"],
    "microsoft-teams-member-add": ["team_id", "user_id", "is_owner"],
    "microsoft-teams-member-remove": ["team_id", "membership_id"],
    "microsoft-teams-member-update": ["team_id", "membership_id", "is_owner"],
    "microsoft-teams-teams-list-joined": ["user_id"],
}


# XSOAR's defaults ("true"/"false" as it writes them) and required arguments.
XSOAR_DEFAULTS = {
    "send-notification": {"external_form_url_header": "Microsoft Teams Form"},
    "mirror-investigation": {"mirror_type": "all", "autoclose": "true", "direction": "both"},
    "microsoft-teams-add-user-to-channel": {"owner": "false"},
    "microsoft-teams-create-channel": {"membership_type": "standard"},
    "microsoft-teams-chat-create": {"chat_type": "group"},
    "microsoft-teams-message-send-to-chat": {"content_type": "text"},
    "microsoft-teams-chat-add-user": {"share_history": "true"},
    "microsoft-teams-chat-message-list": {"limit": 50, "order_by": "lastModifiedDateTime", "page_size": 50},
    "microsoft-teams-list-messages": {"limit": 50, "order_by": "lastModifiedDateTime"},
    "microsoft-teams-chat-list": {"limit": 50, "page_size": 50},
    "microsoft-teams-team-create": dict({"visibility": "public"}, **{a: "false" for a in ALLOW}),
    "microsoft-teams-team-create-from-group": dict({"visibility": "public"}, **{a: "false" for a in ALLOW}),
    "microsoft-teams-member-add": {"is_owner": "false"},
    "microsoft-teams-member-update": {"is_owner": "false"},
    "microsoft-teams-team-clone": {"visibility": "public", "clone_apps": "true", "clone_tabs": "true",
                                   "clone_settings": "true", "clone_channels": "true"},
}
XSOAR_REQUIRED = {
    "teams-send-notification-quick-action": ["channel", "message"],
    "create-channel": ["channel_name", "team"], "add-user-to-channel": ["channel", "team", "member"],
    "microsoft-teams-ring-user": ["username"],
    "microsoft-teams-add-user-to-channel": ["channel", "team", "member"],
    "microsoft-teams-create-channel": ["channel_name", "team"],
    "microsoft-teams-create-meeting": ["subject", "member"],
    "microsoft-teams-user-remove-from-channel": ["channel_name", "team", "member"],
    "microsoft-teams-channel-user-list": ["channel_name", "team"],
    "microsoft-teams-chat-create": ["chat_type"],
    "microsoft-teams-message-send-to-chat": ["chat", "content"],
    "microsoft-teams-chat-add-user": ["chat", "member"],
    "microsoft-teams-chat-member-list": ["chat"],
    "microsoft-teams-message-update": ["message_id"],
    "microsoft-teams-chat-message-list": ["chat"],
    "microsoft-teams-list-messages": ["conversation_id"],
    "microsoft-teams-chat-update": ["chat", "chat_name"],
    "microsoft-teams-team-create": ["display_name", "owner"],
    "microsoft-teams-team-create-from-group": ["group_id"],
    "microsoft-teams-team-update": ["team_id"], "microsoft-teams-team-delete": ["team_id"],
    "microsoft-teams-team-get": ["team_id"], "microsoft-teams-members-list": ["team_id"],
    "microsoft-teams-member-get": ["membership_id", "team_id"], "microsoft-teams-member-add": ["team_id", "user_id"],
    "microsoft-teams-member-remove": ["team_id", "membership_id"],
    "microsoft-teams-member-update": ["team_id", "membership_id"],
    "microsoft-teams-team-archive": ["team_id"], "microsoft-teams-team-unarchive": ["team_id"],
    "microsoft-teams-team-clone": ["team_id", "display_name"], "microsoft-teams-teams-list-joined": ["user_id"],
}
# Where ours differ from XSOAR's, and why.
DIFFER = {
    ("microsoft-teams-create-meeting", "member"): "optional: with the delegated flow the signed-in account organizes",
    ("microsoft-teams-chat-create", "member"): "required: Graph creates no chat without members (XSOAR fails later)",
    ("microsoft-teams-message-send-to-chat", "chat"): "optional: chats (several at once) may name them instead",
    ("microsoft-teams-message-update", "message_id"): "optional: message_ref (from send-notification) names it too",
    ("microsoft-teams-list-messages", "conversation_id"): "optional: team and channel, or chat, name it too",
    ("teams-send-notification-quick-action", "channel"): "optional: the users of user/team_member/to are recipients too",
    ("teams-send-notification-quick-action", "message"): "optional: an adaptive_card is a message too",
    ("microsoft-teams-team-create", "owner"): "optional: with the delegated flow the signed-in account owns the team",
    ("microsoft-teams-team-create-from-group", "visibility"): "no default: the team keeps its group's visibility",
}


def test_every_xsoar_argument_of_a_command_we_map_is_accepted():
    """For each XSOAR command that resolves to one of ours, each of its argument names is an
    argument of ours or an alias of one."""
    missing = []
    for xcmd, xargs in XSOAR_ARGS.items():
        spec = REG.get(xcmd)
        if spec is None:
            continue  # not mapped (yet): nothing to compare
        missing += [f"{xcmd} ({spec.name}): {a}" for a in xargs if arguments.canonical_name(spec, a) is None]
    assert not missing, "XSOAR argument names refused:\n" + "\n".join(missing)


def test_xsoar_defaults_and_required_flags_match_or_differ_for_a_reason():
    found = []
    for xcmd, defaults in XSOAR_DEFAULTS.items():
        spec = REG.get(xcmd)
        for arg, want in (defaults.items() if spec else ()):
            name = arguments.canonical_name(spec, arg)
            ours = spec.arguments["properties"][name].get("default", "<none>") if name else "<no argument>"
            if str(ours).lower() != str(want).lower() and (xcmd, arg) not in DIFFER:
                found.append(f"{xcmd} {arg}: default {ours!r}, XSOAR's {want!r}")
    for xcmd, required in XSOAR_REQUIRED.items():
        spec = REG.get(xcmd)
        if spec is None:
            continue
        ours = set(spec.arguments.get("required", ()))
        props = spec.arguments["properties"]
        for arg in required:
            name = arguments.canonical_name(spec, arg)
            # an argument with a default is as good as required: it always has a value
            if name not in ours and "default" not in props.get(name, {}) and (xcmd, arg) not in DIFFER:
                found.append(f"{xcmd} {arg}: optional here, required in XSOAR")
        theirs = {arguments.canonical_name(spec, a) for a in required}
        found += [f"{xcmd} {n}: required here, optional in XSOAR" for n in ours - theirs
                  if (xcmd, n) not in DIFFER and (xcmd, next((a for a, c in spec.argument_aliases.items() if c == n),
                                                              n)) not in DIFFER]
    assert not found, "\n".join(found)


def test_the_message_body_takes_both_names_everywhere():
    for spec in REG:
        names = set(spec.argument_names) | set(spec.argument_aliases)
        if {"content", "message"} & set(spec.argument_names):
            assert {"content", "message"} <= names, f"{spec.name}: give the body both names (content, message)"


# ------------------------------------------------------------------ validation


def test_alias_maps_to_the_argument():
    spec = REG.get("microsoft-teams-member-add")
    got = arguments.validate(spec, {"team_id": "IT Helpdesk", "user_id": "a@x,b@y", "is_owner": "true"})
    assert got == {"team": "IT Helpdesk", "member": ["a@x", "b@y"], "owner": True}
    assert arguments.validate(REG.get("channel-user-list"), {"team": "t", "channel-name": "c"}) == {"team": "t",
                                                                                                 "channel": "c"}


def test_both_names_is_an_argument_error():
    spec = REG.get("channel-user-remove")
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"team": "t", "channel": "a", "channel_name": "b", "member": "m"})
    assert e.value.argument == "channel" and "'channel'" in str(e.value) and "'channel_name'" in str(e.value)
    assert e.value.exit_code == 2
    # a name given as None counts as not given (Python callers passing every key)
    assert arguments.validate(spec, {"team": "t", "channel": None, "channel_name": "b", "member": "m"})["channel"] == "b"


def test_unknown_argument_lists_the_aliases_too():
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get("team-member-add"), {"team": "t", "member": "m", "bogus": 1})
    assert "team (or team_id)" in str(e.value) and "member (or user_id)" in str(e.value)


def write(tmp_path, text, name="commands.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("props,text", [
    ("{a: {type: string, description: d, aliases: [b]}, b: {type: string, description: d}}",
     "'b' is already an argument"),
    ("{a: {type: string, description: d, aliases: [x]}, b: {type: string, description: d, aliases: [x]}}",
     "'x' is already an alias of 'a'"),
    ("{a: {type: string, description: d, aliases: [a]}}", "'a' is already an argument"),
    ("{a: {type: string, description: d, aliases: [Bad-Name]}}", "does not match"),
])
def test_registry_refuses_colliding_aliases(tmp_path, props, text):
    p = write(tmp_path, f"""\
        commands:
          c:
            description: d
            flows: {{app: []}}
            request: {{method: GET, path: /users}}
            arguments: {{type: object, properties: {props}}}
        """)
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert text in str(e.value) and "command 'c'" in str(e.value)


def test_help_and_docs_show_aliases():
    spec = REG.get("team-member-add")
    assert "[alias: team_id]" in docs.command_help(spec) and "[alias: is_owner]" in docs.command_help(spec)
    md = docs.command_markdown(spec)
    assert "| `team` (alias `team_id`) |" in md and "| `member` (alias `user_id`) |" in md


def test_cli_help_names_the_alias_flags(capsys):
    assert main(["channel-user-list", "--help"]) == 0
    assert "Also --channel-name." in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ front ends


def run(argv):
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def test_cli_flag_and_warroom_form_take_xsoar_names(cfg_file):
    code, out, err = run(["--config", str(cfg_file), "-o", "json", "microsoft-teams-channel-user-list",
                          "--team", "Security Operations", "--channel-name", "Threat Intel"])
    assert code == 0, err
    code, out2, err = run(["--config", str(cfg_file), "-o", "json",
                           '!microsoft-teams-channel-user-list team="Security Operations" channel_name="Threat Intel"'])
    assert code == 0, err and out2 == out
    code, _, err = run(["--config", str(cfg_file), "channel-user-list", "--team", "Security Operations",
                        "--channel", "Threat Intel", "--channel-name", "Threat Intel"])
    assert code == 2 and "given twice" in err
    code, _, err = run(["--config", str(cfg_file), '!channel-user-list team=x channel=a channel_name=b'])
    assert code == 2 and "given twice" in err and "Traceback" not in err


def test_shell_completes_aliases():
    from integration.frontends.shell import Shell

    sh = Shell.__new__(Shell)
    sh.registry = REG
    assert "channel_name=" in sh.candidates("!channel-user-list team=x ch", 26, "ch")
    assert "channel_name=" not in sh.candidates("!channel-user-list ", 19, "")
    assert sh.candidates("!team-member-add is_owner=t", 17, "is_owner=t") == ["is_owner=true "]
    # an argument given under its alias is not offered again
    assert "channel=" not in sh.candidates("!channel-user-list channel_name=x ", 34, "")


def test_playbook_takes_aliases_and_refuses_both(tmp_path):
    p = write(tmp_path, """\
        name: aliases
        steps:
          - id: members
            command: microsoft-teams-channel-user-list
            args: {team: Security Operations, channel_name: Threat Intel}
          - id: add
            command: microsoft-teams-member-add
            args: {team_id: IT Helpdesk, user_id: bob.smith@contoso.example, is_owner: "false"}
        """, "pb.yml")
    pb = load(p)
    assert [s.spec.name for s in pb.steps] == ["channel-user-list", "team-member-add"]
    lines = []
    r = run_playbook(p, {}, dry_run=True, out=lines.append)
    assert r.status == "planned", lines
    bad = write(tmp_path, """\
        name: both
        steps:
          - id: members
            command: channel-user-list
            args: {team: Security Operations, channel: a, channel_name: b}
        """, "bad.yml")
    with pytest.raises(FileError) as e:
        load(bad)
    assert "given twice" in str(e.value)
    typo = write(tmp_path, """\
        name: typo
        steps:
          - id: members
            command: channel-user-list
            args: {team: Security Operations, chanel_name: b}
        """, "typo.yml")
    with pytest.raises(FileError) as e:
        load(typo)
    assert "unknown argument 'chanel_name'" in str(e.value) and "channel_name" in str(e.value)


def test_playbook_runs_with_aliases(emu, runtime, tmp_path):
    p = write(tmp_path, """\
        name: aliases
        steps:
          - id: members
            command: microsoft-teams-channel-user-list
            args: {team: Security Operations, channel_name: Threat Intel}
        """, "pb.yml")
    r = run_playbook(p, {}, runtime=runtime, out=lambda s: None)
    assert r.status == "ok", r.error


# ------------------------------------------------------------------ end to end with XSOAR's names


def test_member_add_and_remove_by_xsoar_names(emu, runtime):
    r = execute("microsoft-teams-member-add", {"team_id": "IT Helpdesk", "user_id": BOB, "is_owner": "true"},
                runtime)
    assert r.outputs[0]["roles"] == ["owner"]
    members = execute("microsoft-teams-members-list", {"team_id": team_of(emu, "IT Helpdesk").id}, runtime).outputs
    mid = next(m["id"] for m in members if m["userId"] == uid(emu, BOB))
    assert mid.startswith("MCMj")
    gone = execute("microsoft-teams-member-remove", {"team_id": "IT Helpdesk", "membership_id": mid}, runtime)
    assert gone.outputs[0]["userId"] == uid(emu, BOB)
    assert all(m.user_id != uid(emu, BOB) for m in team_of(emu, "IT Helpdesk").members)
    with pytest.raises(Exception) as e:
        execute("microsoft-teams-member-remove", {"team_id": "IT Helpdesk", "membership_id": mid}, runtime)
    assert getattr(e.value, "exit_code", None) == 5


def test_create_channel_with_owner_user_and_channel_name_lists(emu, runtime):
    make_owner(emu, "Security Operations", ALICE)
    r = execute("microsoft-teams-create-channel", {"team": "Security Operations", "channel_name": "IR-77",
                                                   "membership_type": "private", "owner_user": ALICE}, runtime)
    assert r.outputs[0]["channelName"] == "IR-77"
    ch = channel_of(emu, "Security Operations", "IR-77")
    assert [m.user_id for m in ch.members] == [uid(emu, ALICE)]
    listed = execute("microsoft-teams-channel-user-list", {"team": "Security Operations", "channel_name": "IR-77"},
                     runtime)
    assert {m["members"]["userId"] for m in listed.outputs} == {uid(emu, ALICE)}
    execute("microsoft-teams-add-user-to-channel", {"team": "Security Operations", "channel": "IR-77",
                                                    "member": BOB}, runtime)
    execute("microsoft-teams-user-remove-from-channel", {"team": "Security Operations", "channel_name": "IR-77",
                                                         "member": BOB}, runtime)
    assert [m.user_id for m in ch.members] == [uid(emu, ALICE)]


def test_meeting_member_is_the_organizer(emu, runtime):
    r = execute("microsoft-teams-create-meeting", {"subject": "IR bridge", "member": GRACE}, runtime)
    assert r.flow == "app" and r.outputs[0]["participantId"] == uid(emu, GRACE)


def test_message_body_as_message_or_content(emu, signed_in):
    from teams_helpers import make_chat

    chat = make_chat(emu, ["soar-svc@contoso.example", BOB, ALICE], "Alias room")
    a = execute("microsoft-teams-message-send-to-chat", {"chat": chat, "message": "as message"}, signed_in)
    b = execute("message-send-to-chat", {"chat": chat, "content": "as content"}, signed_in)
    assert a.outputs and b.outputs
    with emu.state.lock:
        texts = [m.body["content"] for m in emu.state.chats[chat].messages]
    assert texts == ["as message", "as content"]
    with pytest.raises(ArgumentError, match="given twice"):
        execute("message-send-to-chat", {"chat": chat, "content": "x", "message": "y"}, signed_in)
