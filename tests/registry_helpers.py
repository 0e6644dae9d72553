"""Broken registries for the tests: the shipped commands.yml with one thing wrong, and the line
the error must name (so that every other check passes and the break is what gets reported)."""
from __future__ import annotations

from integration.engine import registry

SHIPPED = registry.COMMANDS_FILE.read_text(encoding="utf-8")

DUPLICATE = """\
  cache-show:
    description: A second command under the same key.
    local: true
    handler: admin.cache_show
    arguments: {type: object, properties: {}}
"""


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


def _swap(old: str, new: str) -> str:
    assert SHIPPED.count(old) >= 1, old
    return SHIPPED.replace(old, new, 1)


def broken(kind: str) -> tuple[str, int, str]:
    """(file text, line the error names, a fragment of the message)."""
    if kind == "missing-handler":
        text = _swap("    handler: chats.chat_create\n", "    handler: chats.no_such_handler\n")
        return text, line_of(text, "handler: chats.no_such_handler"), "no handler 'chats.no_such_handler'"
    if kind == "handler-without-command":
        # ring-user now names another (existing) handler: calls.ring_user has no command left
        text = _swap("    handler: calls.ring_user\n", "    handler: chats.chat_create\n")
        return text, line_of(text, "commands:\n"), "handler(s) with no command: calls.ring_user"
    if kind == "duplicate-command":
        text = SHIPPED.rstrip("\n") + "\n\n" + DUPLICATE
        first = line_of(SHIPPED, "\n  cache-show:\n") + 1
        return text, line_of(text, DUPLICATE), f"duplicate key 'cache-show' (first at line {first})"
    if kind == "unknown-field":
        text = _swap("  chat-create:\n", "  chat-create:\n    colour: blue\n")
        return text, line_of(text, "colour: blue"), "command 'chat-create', unknown field 'colour'"
    if kind == "bad-argument-schema":
        text = _swap("          minItems: 1\n", "          minItems: -1\n")
        return text, line_of(text, "minItems: -1"), "not a valid JSON Schema"
    if kind == "template-unknown-argument":
        text = _swap("      path: /teams/{team_id}/channels\n", "      path: /teams/{team_idd}/channels\n")
        return text, line_of(text, "{team_idd}"), "'{team_idd}' is not an argument or a resolved id"
    raise ValueError(kind)


KINDS = ("missing-handler", "handler-without-command", "duplicate-command", "unknown-field", "bad-argument-schema",
         "template-unknown-argument")


def write_broken(tmp_path, kind: str):
    """(path, line, message fragment) of a broken registry written under tmp_path."""
    text, line, fragment = broken(kind)
    p = tmp_path / f"{kind}.yml"
    p.write_text(text, encoding="utf-8")
    return p, line, fragment
