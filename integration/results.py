"""A command's result: context outputs under an XSOAR-style prefix and key field, a readable
markdown table, and the raw response; rendered as a table, JSON or context by front ends.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

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
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def project(item: dict, fields: dict, extra: dict | None = None) -> dict:
    """Map one response item to its context entry; '$name' takes a resolved parameter."""
    out: dict = {}
    for key, path in fields.items():
        value = (extra or {}).get(path[1:]) if path.startswith("$") else dig(item, path)
        _set(out, key, value)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
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
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(_cell(dig(r, c)) for c in columns) + " |")
    return "\n".join(lines)


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
    # The CLI's exit code for a result that reports a problem without failing (integration-health).
    exit_code: int = 0

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
        if not self.prefix:
            return {}
        ctx: dict = {self.prefix: self.outputs}
        if self.next_link:
            ctx[self.prefix + "NextLink"] = self.next_link
        return ctx

    def to_dict(self) -> dict:
        return {"command": self.command, "flow": self.flow, "context": self.context(), "readable": self.readable,
                "raw": self.raw}

    def render(self, fmt: str = "table") -> str:
        if fmt == "json":
            return json.dumps(self.raw if self.raw is not None else self.outputs, indent=2, ensure_ascii=False)
        if fmt == "context":
            return json.dumps(self.context(), indent=2, ensure_ascii=False)
        return self.readable
