"""Replies to Teams as Adaptive Cards. Every piece of text goes into a ``TextRun`` (which
Adaptive Cards never read as markdown) after control characters are escaped, so nothing a
result or a sender wrote can become a link, a mention, markup or a terminal escape; a table is
an Adaptive Card ``Table``, cut to fit Teams' message size."""
from __future__ import annotations

import json
from typing import Any

from integration.engine.untrusted import clean

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.5"
MAX_ROWS = 25
MAX_COLUMNS = 6
MAX_CELL = 200
MAX_TEXT = 2000
MAX_BYTES = 24 * 1024  # below Teams' ~28 KB per message, with room for the envelope


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(_text(v, limit) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    return clean(str(value).replace("\r\n", "\n"), limit).replace("\\n", "\n")


def run(text: Any, *, weight: str | None = None, size: str | None = None, subtle: bool = False,
        limit: int = MAX_TEXT) -> dict:
    """A RichTextBlock holding one TextRun: literal text, never markdown."""
    r: dict = {"type": "TextRun", "text": _text(text, limit)}
    if weight:
        r["weight"] = weight
    if size:
        r["size"] = size
    if subtle:
        r["isSubtle"] = True
    return {"type": "RichTextBlock", "inlines": [r]}


def card(body: list[dict], summary: str) -> dict:
    content = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
               "version": CARD_VERSION, "body": body, "msteams": {"width": "Full"}}
    return {"type": "message", "summary": _text(summary, 200),
            "attachments": [{"contentType": ADAPTIVE, "content": content}]}


def text_reply(title: str, message: str | None = None) -> dict:
    body = [run(title, weight="Bolder")]
    if message:
        body.append(run(message))
    return card(body, title)


def _table(rows: list[dict], columns: list[str]) -> dict:
    from integration.engine.results import dig

    header = {"type": "TableRow", "style": "accent",
              "cells": [{"type": "TableCell", "items": [run(c, weight="Bolder", limit=60)]} for c in columns]}
    body = [{"type": "TableRow", "cells": [{"type": "TableCell", "items": [run(dig(r, c), limit=MAX_CELL)]}
                                           for c in columns]} for r in rows]
    return {"type": "Table", "firstRowAsHeader": True, "showGridLines": True,
            "columns": [{"width": 1} for _ in columns], "rows": [header, *body]}


def result_reply(command_line: str, result) -> dict:
    """A command's readable result: its message, its title and a table of its rows."""
    body = [run(command_line, subtle=True, limit=300)]
    if result.message:
        body.append(run(result.message))
    rows = list(result.outputs or [])
    if rows or not result.message:
        if result.title:
            body.append(run(result.title, weight="Bolder", size="Medium"))
        if not rows:
            body.append(run("No entries."))
        else:
            columns = list(result.columns or dict.fromkeys(k for r in rows for k in r))[:MAX_COLUMNS]
            shown = rows[:MAX_ROWS]
            while True:
                extra = [run(f"{len(rows) - len(shown)} more not shown: run it from the CLI or a playbook "
                             "for all of them.", subtle=True)] if len(shown) < len(rows) else []
                reply = card(body + [_table(shown, columns)] + extra, f"{result.command}: {len(rows)} result(s)")
                if len(json.dumps(reply).encode()) <= MAX_BYTES or len(shown) <= 1:
                    break
                shown = shown[: max(1, len(shown) * 2 // 3)]
            if result.next_link:
                reply["attachments"][0]["content"]["body"].append(run("More results exist (next_link).", subtle=True))
            return reply
    if result.next_link:
        body.append(run("More results exist (next_link).", subtle=True))
    return card(body, f"{result.command}: done")
