"""Reading the YAML files the project trusts least: the registry, playbooks and config.

One parse (libyaml's C composer when present), then the checks PyYAML does not make: a duplicated
key is an error naming file and line (PyYAML silently keeps the last), and aliases may neither refer
to themselves (`&a [*a]`, which hangs whatever walks the result) nor expand past a size cap (a
"billion laughs" file). `LineMap` answers "which line is this JSON path on" for later messages.
"""
from __future__ import annotations

import functools

from .errors import FileError

# typing's import costs ~4 ms of every command's start: only type checkers read these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Far above any real playbook or registry (the shipped registry expands to a few thousand nodes).
MAX_EXPANDED_NODES = 200_000


def _yaml():
    import yaml

    return yaml


def parse(text: str, path: str, *, check_duplicates: bool = True) -> tuple[Any, Any]:
    """(data, root node) of one YAML document; FileError with the line for anything unsafe."""
    flat = _flat(text)
    if flat is not None:  # `key: value` lines only (a typical config): no PyYAML import needed
        return flat
    yaml = _yaml()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        line = mark.line + 1 if mark else None
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses (NUL, ESC...)
            problem = f"character U+{exc.character:04X} is not allowed"
            # libyaml counts UTF-8 bytes, PyYAML's reader characters.
            head = text.encode("utf-8", "surrogatepass") if loader is not yaml.SafeLoader else text
            line = head[:exc.position].count(b"\n" if isinstance(head, bytes) else "\n") + 1
        raise FileError(path, f"not valid YAML: {problem}", line=line) from None
    if node is None:
        return None, None
    _check(node, path, check_duplicates)
    constructor = yaml.SafeLoader("")
    try:
        data = constructor.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot be read"
        raise FileError(path, f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    finally:
        constructor.dispose()
    return data, node


# ---- flat documents without PyYAML
# Importing PyYAML costs ~20 ms, more than the rest of a command like `msteams cache-show`. A
# document of nothing but `key: value` lines at column 0 (printable ASCII; comments and blank
# lines allowed), with unique keys and each value a quoted string without escapes or a plain
# scalar whose type PyYAML's resolver would decide the same way as below, is read here. Anything
# else, or any doubt (booleans, nulls, numbers beyond plain decimals, timestamps, duplicates,
# indentation, flow collections, anchors, tags, directives), goes to PyYAML, which then also gives
# the error. tests/engine/test_yamlfile_flat.py checks the two agree on generated documents.

_BOOL_OR_NULL = frozenset("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF "
                          "~ null Null NULL".split())


class _Mark:
    __slots__ = ("line",)

    def __init__(self, line: int):
        self.line = line  # 0-based, as PyYAML's marks


class FlatNode:
    """The root "node" of a flat document read without PyYAML: the line of each key (for
    LineMap) and a start mark like PyYAML's mapping node (the first key's line)."""

    def __init__(self, key_lines: dict, first_line: int):
        self.key_lines = key_lines
        self.start_mark = _Mark(first_line - 1)


@functools.cache
def _flat_patterns():
    import re

    entry = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): +(?:'([^']*)'|\"([^\"\\]*)\"|([A-Za-z0-9_/.~+-][A-Za-z0-9_./:@+~=%,-]*))"
                       r"(?: +#.*)? *")
    skip = re.compile(r" *(?:#.*)?")
    not_ascii = re.compile(r"[^\n -~]")
    simple_int = re.compile(r"-?(?:0|[1-9][0-9]*)")
    simple_float = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
    return entry, skip, not_ascii, simple_int, simple_float


@functools.cache
def _typed_pattern():
    import re

    # PyYAML's own resolver patterns for plain scalars starting with - + . or a digit
    # (yaml/resolver.py: float, int, timestamp): a value matching none of them is a string.
    return re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
                    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN)
                    |[-+]?0b[0-1_]+
                    |[-+]?0[0-7_]+
                    |[-+]?(?:0|[1-9][0-9_]*)
                    |[-+]?0x[0-9a-fA-F_]+
                    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
                    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
                    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
                     (?:[Tt]|[ \t]+)[0-9][0-9]?
                     :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
                     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.X)


def _flat(text: str) -> tuple[dict, FlatNode] | None:
    """(data, FlatNode) of a flat `key: value` document, or None for PyYAML to read it."""
    if len(text) > 65536:
        return None
    entry, skip, not_ascii, simple_int, simple_float = _flat_patterns()
    if not_ascii.search(text):
        return None
    data: dict = {}
    lines: dict = {}
    for number, line in enumerate(text.split("\n"), 1):
        m = entry.fullmatch(line)
        if m is None:
            if skip.fullmatch(line):
                continue
            return None
        key, single, double, plain = m.groups()
        if key in _BOOL_OR_NULL or key in data:
            return None
        if single is not None:
            value = single
        elif double is not None:
            value = double
        elif plain in _BOOL_OR_NULL or plain.endswith(":") or plain == "-":
            return None
        elif plain[0] in "-+.0123456789":
            if simple_int.fullmatch(plain):
                value = int(plain)
            elif simple_float.fullmatch(plain):
                value = float(plain)
            elif _typed_pattern().match(plain):
                return None
            else:
                value = plain
        else:
            value = plain
        data[key] = value
        lines[key] = number
    if not data:
        return None
    return data, FlatNode(lines, min(lines.values()))


def _check(root, path: str, check_duplicates: bool) -> None:
    """Duplicate keys, self-referring aliases and runaway expansion, without recursion."""
    yaml = _yaml()
    size: dict[int, int] = {}  # expanded node count per finished node (aliases share node objects)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            children = _children(node, yaml)
            size[nid] = 1 + sum(size[id(c)] for c in children)
            if size[nid] > MAX_EXPANDED_NODES:
                raise FileError(path, f"too large once its aliases are expanded (over {MAX_EXPANDED_NODES:,} values)",
                                line=node.start_mark.line + 1)
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise FileError(path, "an alias refers to the value that contains it", line=node.start_mark.line + 1)
        on_path.add(nid)
        stack.append((node, True))
        if check_duplicates and isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode):
                    line = k.start_mark.line + 1
                    if k.value in seen:
                        raise FileError(path, f"duplicate key '{_short(k.value)}' (first at line {seen[k.value]})", line=line)
                    seen[k.value] = line
        for child in _children(node, yaml):
            if id(child) in on_path:
                raise FileError(path, "an alias refers to the value that contains it", line=child.start_mark.line + 1)
            if id(child) not in size:
                stack.append((child, False))


def _children(node, yaml) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _short(key: str) -> str:
    from .untrusted import escape_controls

    key = escape_controls(key)
    return key if len(key) <= 80 else key[:80] + "..."


class LineMap:
    """Line numbers of the nodes of a YAML document, looked up by JSON path."""

    def __init__(self, node):
        self.node = node

    def line(self, path) -> int | None:
        node = self.node
        if node is None:
            return None
        if isinstance(node, FlatNode):
            first = node.start_mark.line + 1
            return node.key_lines.get(str(path[0]), first) if len(path) else first
        yaml = _yaml()
        best = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        best, node = k.start_mark.line + 1, v
                        break
                else:
                    return best
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                best = node.start_mark.line + 1
            else:
                return best
        return best
