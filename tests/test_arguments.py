"""Argument coercion and validation: defaults, lists, booleans, and errors naming the argument."""
import pytest

from integration import arguments, registry
from integration.errors import ArgumentError, InputError

REG = registry.load()


def test_defaults_and_list_splitting():
    args = arguments.validate(REG.get("chat-create"), {"member": "a@x, b@y", "chat_name": "IR 42"})
    assert args == {"member": ["a@x", "b@y"], "chat_name": "IR 42", "chat_type": "group"}


def test_repeated_values_flatten():
    args = arguments.validate(REG.get("chat-create"), {"member": ["a@x", "b@y,c@z"]})
    assert args["member"] == ["a@x", "b@y", "c@z"]


def test_enum_error_names_argument_and_choices():
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get("chat-create"), {"member": "a@x", "chat_type": "triple"})
    assert "chat_type" in str(e.value) and "group, oneOnOne" in str(e.value)


def test_missing_required_named():
    with pytest.raises(ArgumentError, match="'content': is required"):
        arguments.validate(REG.get("message-send-to-chat"), {"chat": "x"})


def test_unknown_argument_lists_valid_ones():
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get("ring-user"), {"user": "x"})
    assert "unknown argument" in str(e.value) and "username" in str(e.value)


def test_boolean_and_integer_coercion():
    assert arguments.validate(REG.get("cache-reset"), {"include_tokens": "yes"})["include_tokens"] is True
    with pytest.raises(ArgumentError, match="expected true or false"):
        arguments.validate(REG.get("cache-reset"), {"include_tokens": "maybe"})
    assert arguments.validate(REG.get("auth-login"), {"port": "8400"})["port"] == 8400
    with pytest.raises(ArgumentError, match="whole number"):
        arguments.validate(REG.get("auth-login"), {"port": "eighty"})


def test_max_length():
    with pytest.raises(ArgumentError, match="at most 250 characters"):
        arguments.validate(REG.get("chat-create"), {"member": "a@x", "chat_name": "x" * 251})


def test_warroom_parsing_is_literal():
    name, args = arguments.parse_warroom('!chat-create chat_type=group member="a@x,b@y" chat_name="IR ${x} {{y}}"')
    assert name == "chat-create"
    assert args == {"chat_type": "group", "member": "a@x,b@y", "chat_name": "IR ${x} {{y}}"}


def test_warroom_errors():
    with pytest.raises(InputError, match="expected name=value"):
        arguments.parse_warroom("!chat-create oops")
    with pytest.raises(InputError, match="cannot parse"):
        arguments.parse_warroom('!chat-create a="unclosed')
