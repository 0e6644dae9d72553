"""Reading the YAML files the project trusts least: the registry, playbooks and config.

One parse (libyaml's C composer when present), then the checks PyYAML does not make: a duplicated
key is an error naming file and line (PyYAML silently keeps the last), and aliases may neither refer
to themselves (`&a [*a]`, which hangs whatever walks the result) nor expand past a size cap (a
"billion laughs" file). `LineMap` answers "which line is this JSON path on" for later messages.
"""
from __future__ import annotations

from typing import Any

from .errors import FileError

# Far above any real playbook or registry (the shipped registry expands to a few thousand nodes).
MAX_EXPANDED_NODES = 200_000


def _yaml():
    import yaml

    return yaml


def parse(text: str, path: str, *, check_duplicates: bool = True) -> tuple[Any, Any]:
    """(data, root node) of one YAML document; FileError with the line for anything unsafe."""
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
        yaml = _yaml()
        node = self.node
        if node is None:
            return None
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
