"""A command's result: context outputs under an XSOAR-style prefix and key field, a readable
markdown table, and the raw response; rendered as a table, JSON or context by front ends.
"""
from __future__ import annotations

import json
from itertools import chain
from .record import field, record as dataclass  # not dataclasses: start-up time (record.py)

# typing's import costs ~4 ms of every command's start: only type checkers read these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def dig(obj: Any, path: str) -> Any:
    """Value at a dotted path ('from.user.displayName', 'targets.0.identity.user.id')."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _set(out: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = out
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):  # absent, or null in the item: a nested field makes it an object
            nxt = cur[p] = {}
        cur = nxt
    cur[parts[-1]] = value


def _copy(value: Any) -> Any:
    """A copy of JSON data, so that a context entry never shares its objects with the raw reply."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def whole(item: Any) -> Any:
    """A Graph object as XSOAR keeps it in the context: all of it, without its top-level OData
    annotations (@odata.context, @odata.type, @odata.etag); nested ones stay (eventDetail's type)."""
    if not isinstance(item, dict):
        return _copy(item)
    return {k: _copy(v) for k, v in item.items() if not (isinstance(k, str) and k.startswith("@odata."))}


def source(item: Any, path: str, extra: dict | None = None) -> Any:
    """One output field's value: '$name' an argument or resolved id, '*' the whole item (see
    :func:`whole`), 'a.b|c.d' the first of the dotted paths that is not null."""
    if path.startswith("$"):
        return (extra or {}).get(path[1:])
    if path == "*":
        return whole(item)
    for alt in path.split("|"):
        value = dig(item, alt.strip())
        if value is not None:
            return value
    return None


def project(item: dict, fields: dict, extra: dict | None = None) -> dict:
    """Map one response item to its context entry. A field's source is a dotted path into the
    item, '$name' (a resolved parameter), '*' (the whole item) or 'a|b' (the first not null);
    the key '*' puts the whole item's keys at the top of the entry, before the other fields."""
    out: dict = {}
    for key, path in fields.items():
        value = source(item, path, extra)
        if key == "*":
            if isinstance(value, dict):
                out.update(value)
            continue
        _set(out, key, value)
    return out


def nest_rows(rows: list, key: str | None, nest: str) -> list:
    """XSOAR's shape of a listing inside a parent (a chat's or a channel's members or
    messages): one entry per parent (rows with the same ``key`` value), holding the rows'
    ``nest`` objects as a list. Rows without a key value stay entries of their own."""
    out: list = []
    by_key: dict = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        k = row.get(key) if key else None
        inner = row.get(nest)
        entry = by_key.get(k) if k is not None else None
        if entry is None:
            entry = {f: v for f, v in row.items() if f != nest}
            entry[nest] = []
            out.append(entry)
            if k is not None:
                by_key[k] = entry
        else:
            for f, v in row.items():
                if f != nest and entry.get(f) is None:
                    entry[f] = v
        if isinstance(inner, list):
            entry[nest].extend(inner)
        elif inner is not None:
            entry[nest].append(inner)
    return out


def _cell(value: Any) -> str:
    """A value as one table cell: lists joined by commas, objects as JSON, backslashes and
    pipes escaped, whitespace runs (newlines too) as one space."""
    t = type(value)
    if t is str:
        # The common cell: printable (so its only whitespace is the ASCII space), nothing to
        # escape, no run of spaces to fold, none at either end. Otherwise as below.
        if value.isprintable() and "|" not in value and "\\" not in value and "  " not in value \
                and value[:1] != " " and value[-1:] != " ":
            return value
    elif t is int or t is bool or t is float:  # their text has nothing to escape or fold
        return str(value)
    elif value is None:
        return ""
    elif isinstance(value, list | tuple):
        value = ", ".join(_cell(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())  # newlines would break the table


def markdown_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None) -> str:
    lines = [f"### {title}"] if title else []
    if not rows:
        lines.append("**No entries.**")
        return "\n".join(lines)
    columns = columns or list(dict.fromkeys(chain.from_iterable(rows)))
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    # A column at a time: a column of numbers, or of text with nothing to escape or fold (most
    # tables), is checked in one pass over its text joined, not a _cell call a cell.
    flat = not any("." in c for c in columns) and all(type(r) is dict for r in rows)  # dig is a get
    cells = [_column([r.get(c) for r in rows] if flat else [dig(r, c) for r in rows]) for c in columns]
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells)]
    return "\n".join(lines)


_NUMBERS = frozenset((int, bool, float))


def _column(values: list) -> list[str]:
    """The cells of one column, as _cell makes each."""
    kinds = set(map(type, values))
    if kinds <= _NUMBERS:  # their text has nothing to escape or fold
        return list(map(str, values))
    if kinds == _STR:
        # Joined by "|": a value holding a "|" shows as one more of them; one starting or ending
        # with a space, as "| " or " |" (or at either end).
        text = "|".join(values)
        if text.isprintable() and text.count("|") == len(values) - 1 and "\\" not in text and "  " not in text \
                and "| " not in text and " |" not in text and text[:1] != " " and text[-1:] != " ":
            return values
    return [_cell(v) for v in values]


_STR = frozenset((str,))


@dataclass
class Result:
    command: str
    outputs: list = field(default_factory=list)
    prefix: str | None = None
    key: str | None = None
    title: str | None = None
    columns: list | None = None
    raw: Any = None
    message: str | None = None  # a sentence for results without a table
    next_link: str | None = None
    flow: str | None = None
    # The CLI's exit code for a result that reports a problem without failing (integration-health;
    # a fan-out where some items failed: errors.PARTIAL_EXIT).
    exit_code: int = 0
    # Items of a fan-out that failed or whose outcome is unknown (each is also a row, with its status).
    failed: int = 0
    # XSOAR's shapes (commands.yml `outputs`): `nest` gathers each row's object of that name into
    # one list per key value; `next_link_path` is where the next link goes (default
    # prefix + "NextLink"); `also` more (prefix, entries) written beside; `extra_context` more
    # paths a handler writes (a listing's counts).
    nest: str | None = None
    next_link_path: str | None = None
    also: list = field(default_factory=list)
    extra_context: dict = field(default_factory=dict)

    @property
    def readable(self) -> str:
        parts = []
        if self.message:
            parts.append(self.message)
        if self.outputs or not self.message:
            parts.append(markdown_table(self.outputs, self.columns, self.title))
        if self.next_link:
            parts.append(f"More results: pass next_link={self.next_link}")
        return "\n\n".join(parts)

    def context(self) -> dict:
        """The context entries as XSOAR writes them (see `nest`, `also`, `next_link_path`)."""
        if not self.prefix:
            return dict(self.extra_context)
        entries = nest_rows(self.outputs, self.key, self.nest) if self.nest else self.outputs
        ctx: dict = {self.prefix: entries}
        for prefix, rows in self.also:
            if rows:
                ctx[prefix] = rows
        if self.next_link:
            ctx[self.next_link_path or self.prefix + "NextLink"] = self.next_link
        ctx.update(self.extra_context)
        return ctx

    def to_dict(self) -> dict:
        return {"command": self.command, "flow": self.flow, "context": self.context(), "readable": self.readable,
                "raw": self.raw, "failed": self.failed, "exit_code": self.exit_code}

    def render(self, fmt: str = "table") -> str:
        if fmt == "json":
            return json.dumps(self.raw if self.raw is not None else self.outputs, indent=2, ensure_ascii=False)
        if fmt == "context":
            return json.dumps(self.context(), indent=2, ensure_ascii=False)
        return self.readable
