"""The registry: the shipped commands.yml loads and cross-checks; broken files give errors
naming the file, command, field and line."""
import textwrap

import pytest

from integration import registry
from integration.errors import FileError


def write(tmp_path, text):
    p = tmp_path / "commands.yml"
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_registry_loads_with_handlers_cross_checked():
    reg = registry.load(check_handlers=True)
    assert {"chat-create", "message-send-to-chat", "ring-user", "channel-list", "cache-reset"} <= set(reg.names())
    assert reg.get("microsoft-teams-chat-create").name == "chat-create"
    assert reg.get("ring-user").flow_names == ("app",)
    assert reg.get("message-send-to-chat").flow_names == ("delegated",)


def test_unknown_field_names_command_field_and_line(tmp_path):
    p = write(tmp_path, """\
        commands:
          ok-cmd:
            description: fine
            local: true
            handler: admin.cache_show
            arguments: {type: object, properties: {}}
          bad-cmd:
            description: broken
            flows: {app: [User.Read.All]}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {}}
            colour: blue
        """)
    with pytest.raises(FileError) as e:
        registry.load(p)
    msg = str(e.value)
    assert str(p) in msg and ":7:" in msg and "bad-cmd" in msg and "colour" in msg


def test_required_argument_must_exist(tmp_path):
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {a: {type: string, description: x}}, required: [b]}
        """)
    with pytest.raises(FileError, match=r"'b' is not an argument"):
        registry.load(p)


def test_handler_named_but_missing_is_a_load_error(tmp_path):
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            handler: chats.no_such_handler
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="no handler 'chats.no_such_handler'"):
        registry.load(p, check_handlers=True)


def test_handler_without_command_is_a_load_error(tmp_path):
    # a registry that omits ring-user leaves calls.ring_user orphaned
    p = write(tmp_path, """\
        commands:
          c:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="handler\\(s\\) with no command: .*calls.ring_user"):
        registry.load(p, check_handlers=True)


def test_bad_yaml_reports_line(tmp_path):
    p = write(tmp_path, "commands:\n  c: [unclosed\n")
    with pytest.raises(FileError) as e:
        registry.load(p)
    assert "not valid YAML" in str(e.value) and str(p) in str(e.value)


def test_duplicate_alias_refused(tmp_path):
    p = write(tmp_path, """\
        commands:
          a:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            aliases: [same]
            arguments: {type: object, properties: {}}
          b:
            description: d
            flows: {app: []}
            request: {method: GET, path: /users}
            aliases: [same]
            arguments: {type: object, properties: {}}
        """)
    with pytest.raises(FileError, match="'same' is already used by 'a'"):
        registry.load(p)
