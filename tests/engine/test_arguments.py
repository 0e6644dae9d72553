"""Argument coercion and validation: defaults, lists, booleans, and errors naming the argument."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.engine import arguments, registry
from integration.engine.errors import ArgumentError, InputError

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


# Hostile values (issue 9): an error echoes a value only through quote(), so no escape
# sequence or NUL reaches the terminal and a huge value is cut, with its length given.
HUGE = "\x1b[2J" + "a" * 600_000


@pytest.mark.parametrize("command,raw,argument", [
    ("chat-create", {"member": "a@x", "chat_type": HUGE}, "chat_type"),  # enum
    ("cache-reset", {"include_tokens": HUGE}, "include_tokens"),  # boolean
    ("auth-login", {"port": HUGE}, "port"),  # integer
    ("chat-create", {"member": "a@x", "chat_name": HUGE}, "chat_name"),  # maxLength
    ("chat-create", {HUGE: "x"}, "\\x1b[2J"),  # the argument name itself
])
def test_errors_escape_and_shorten_the_value(command, raw, argument):
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get(command), raw)
    text = str(e.value)
    assert "\x1b" not in text and len(text) < 500, text[:600]
    assert f"argument '{argument}" in text


def test_enum_error_shows_the_escaped_value_and_its_length():
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get("chat-create"), {"member": "a@x", "chat_type": "\x00" + "g" * 1000})
    assert "got '\\x00ggg" in str(e.value) and "(1001 characters)" in str(e.value)


def test_object_argument_errors_say_where_without_jsonschema_echoing_the_value():
    with pytest.raises(ArgumentError) as e:
        arguments.validate(REG.get("recipients-resolve"), {"routes": '{"admin\\u001b": 5}'})
    assert str(e.value) == "argument 'routes': at 'admin\\x1b': expected a string or a list, got int"
    with pytest.raises(ArgumentError, match="expected a JSON object"):  # nested past the recursion limit
        arguments.validate(REG.get("recipients-resolve"), {"routes": "[" * 100_000})


def test_warroom_and_pair_errors_quote_the_token():
    with pytest.raises(InputError) as e:
        arguments.parse_warroom("!chat-create " + "\x1b" * 5000)
    assert "\x1b" not in str(e.value) and len(str(e.value)) < 600
    with pytest.raises(InputError) as e:
        arguments.to_argv_pairs(["\x00" * 10])
    assert str(e.value) == "expected name=value, got '" + "\\x00" * 10 + "'"


@given(st.text(alphabet=st.sampled_from(list("ab =\t\n\"'\\x\u00e9")), max_size=30))
@settings(max_examples=400, deadline=None, derandomize=True)
def test_split_words_splits_as_shlex_does(text):
    """The war-room splitter keeps shlex's POSIX quoting (without its quadratic cost)."""
    import shlex

    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(ValueError):
            arguments.split_words(text)
        return
    assert arguments.split_words(text) == expected


def test_a_600_kb_value_is_split_in_linear_time():
    words = arguments.split_words('chat-create chat_type="' + "a" * 600_000 + '" x=\\"')
    assert [len(w) for w in words] == [11, 600_010, 3]


@pytest.mark.parametrize("args,name,point", [
    ({"chat": "x", "content": "half a pair \ud83d here"}, "content", "U+D83D"),  # JSON's "\ud83d" alone
    ({"chat": "bad\udcff byte", "content": "hi"}, "chat", "U+DCFF"),  # a byte that was not UTF-8
    ({"chats": ["ok", "no\udc80"], "content": "hi"}, "chats", "U+DC80"),  # in a list
])
def test_a_lone_surrogate_is_refused_with_the_arguments_name(args, name, point):
    spec = REG.get("message-send-to-chat")
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, args)
    assert e.value.argument == name and point in str(e.value)
    assert all(not 0xD800 <= ord(c) <= 0xDFFF for c in str(e.value))  # the message itself is text
    # a whole pair is text, and passes
    assert arguments.validate(spec, {"chat": "x", "content": "a \U0001F600 b"})["content"] == "a \U0001F600 b"


# ---- rules between arguments (arguments.allOf in commands.yml) ----
def _ruled(*rules):
    from integration.engine.registry import CommandSpec

    return CommandSpec(name="c", description="d", flows=(), arguments={
        "type": "object", "properties": {"chat": {"type": "string", "minLength": 1},
                                         "team": {"type": "string", "minLength": 1},
                                         "channel": {"type": "string", "minLength": 1, "aliases": ["channel_name"]},
                                         "limit": {"type": "integer", "default": 5}},
        "allOf": list(rules)})


_ONE_OF_THEM = {"anyOf": [{"required": ["chat"]}, {"required": ["team", "channel"]}]}


@pytest.mark.parametrize("given,argument,message", [
    ({}, "chat", "give chat, or team and channel"),
    ({"team": "SOC"}, "channel", "is required with team"),  # a group begun: what it lacks
    ({"channel_name": "General"}, "team", "is required with channel"),  # an alias counts as its argument
    ({"chat": "IR", "team": "SOC", "channel": "General"}, "chat", "give chat or team, not both"),
])
def test_a_broken_rule_names_the_argument_to_add_or_drop(given, argument, message):
    spec = _ruled(_ONE_OF_THEM, {"not": {"required": ["chat", "team"]}})
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, given)
    assert (e.value.argument, e.value.message) == (argument, f"argument '{argument}': {message}")


def test_rules_kept_pass_with_defaults_applied():
    spec = _ruled(_ONE_OF_THEM, {"dependentRequired": {"channel": ["team"]}})
    assert arguments.validate(spec, {"team": "SOC", "channel_name": "General"}) == {"team": "SOC", "channel": "General",
                                                                          "limit": 5}
    assert arguments.validate(spec, {"chat": "IR 42"}) == {"chat": "IR 42", "limit": 5}


def test_the_narrowest_broken_rule_speaks_and_an_arguments_own_error_before_any():
    spec = _ruled({"anyOf": [{"required": ["chat"]}, {"required": ["channel"]}]},
                  {"dependentRequired": {"team": ["channel"]}, "description": "needs its channel"})
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"team": "SOC"})  # both broken: what the team needs, not "give one of these"
    assert (e.value.argument, e.value.message) == ("channel", "argument 'channel': needs its channel")
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"team": "SOC", "limit": "many"})
    assert e.value.argument == "limit"


def test_the_shapes_an_argument_takes_are_named_by_their_titles():
    """send-notification's adaptive_card: a card or an attachment (anyOf with a title each in
    commands.yml), refused before anything runs in the words of the titles; a JSON string (the
    CLI's, a war room's) is read first."""
    spec = registry.load().get("send-notification")
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"user": ["a"], "adaptive_card": {"type": "MessageCard"}})
    assert e.value.argument == "adaptive_card"
    assert e.value.message == ("argument 'adaptive_card': expected an Adaptive Card ({\"type\": \"AdaptiveCard\", ...}) "
                               "or an attachment ({\"contentType\": \"application/vnd.microsoft.card.adaptive\", "
                               "\"content\": {\"type\": \"AdaptiveCard\", ...}})")
    card = arguments.validate(spec, {"user": ["a"], "adaptive_card": '{"type": "AdaptiveCard", "body": []}'})
    assert card["adaptive_card"] == {"type": "AdaptiveCard", "body": []}


def test_an_argument_that_needs_one_of_others_names_the_first_and_comes_before_the_general_rule():
    spec = _ruled({"anyOf": [{"required": ["chat"]}, {"required": ["channel"]}]},
                  {"dependentSchemas": {"team": {"anyOf": [{"required": ["channel"]}, {"required": ["chat"]}]}}})
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"team": "SOC"})  # both broken: what the team needs speaks
    assert (e.value.argument, e.value.message) == ("channel", "argument 'channel': with team, give channel, or chat")
    assert arguments.validate(spec, {"team": "SOC", "chat": "IR"})["chat"] == "IR"
    assert arguments.rules(spec) == ["give chat, or channel", "with team, give channel, or chat"]


def test_arguments_that_conflict_are_said_before_what_one_of_them_needs():
    """chat with team: "not both" (adding a channel would not mend it), before "with team, give
    channel" and before "give one of these"."""
    spec = _ruled({"anyOf": [{"required": ["chat"]}, {"required": ["team", "channel"]}]},
                  {"not": {"required": ["chat", "team"]}},
                  {"dependentSchemas": {"team": {"anyOf": [{"required": ["channel"]}]}}})
    with pytest.raises(ArgumentError) as e:
        arguments.validate(spec, {"chat": "IR", "team": "SOC"})
    assert (e.value.argument, e.value.message) == ("chat", "argument 'chat': give chat or team, not both")
