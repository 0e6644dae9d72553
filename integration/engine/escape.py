"""Untrusted text made safe to show: what we echo back of what a user, a pipe or a file gave us.
It imports nothing of the package, so the error hierarchy can use it (untrusted.py re-exports it).

- :func:`quote` is how a message shows a user value: control characters, bidi overrides and
  lone surrogates escaped visibly, long values cut with the full length given.
- :func:`escape_controls` is the CLI's last guard on whatever it prints as an error: a message
  that echoed a value without :func:`quote` still cannot drive the terminal.
"""
from __future__ import annotations

import functools
import re

LIMIT = 200

# C0 (but tab and newline, which messages use for layout), DEL, C1, bidi embeddings/overrides
# and isolates (they reorder what the reader sees: "\u202egnp.exe"), line/paragraph separators,
# and lone surrogates (left by surrogateescape; they cannot be printed or encoded).
_GUARD = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
# In a quoted value tab and newline are escaped too: the value must read as one visible token.
_ANY_CONTROL = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
_SURROGATE = "[\ud800-\udfff]"
# The three are compiled on first use (~3 ms together, and every CLI start imports this module).


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


@functools.cache
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """Every character that could drive or mislead a terminal, written as a visible escape
    (`\\x1b`, `\\x00`, `\\u202e`); tab and newline are kept."""
    if text.isascii() and text.isprintable():  # nothing to escape (and no regex to compile)
        return text
    return _compiled(_GUARD).sub(lambda m: _escape_char(m.group()), text)


def printable(text: str, limit: int = 2000) -> str:
    """A whole message made safe to print: :func:`escape_controls`, and cut at `limit`
    characters (with the full length) for messages built from values not passed through
    :func:`quote`, such as a file's own text quoted back by a loader."""
    text = escape_controls(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _shorten(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit and text.isascii() and text.isprintable():  # the common case, at once
        return text, False
    parts: list[str] = []
    size = 0
    control = _compiled(_ANY_CONTROL)
    # Walk only as far as the limit: a 600 KB value costs no more than a short one.
    for ch in text:
        piece = _escape_char(ch) if control.match(ch) else ch
        if size + len(piece) > limit:
            return "".join(parts) + "…", True
        parts.append(piece)
        size += len(piece)
    return "".join(parts), False


def clean(value, limit: int = LIMIT) -> str:
    """`value` as printable text, escaped and cut to `limit` characters (a trailing `…` when
    cut). For names embedded in a message that adds its own quotes."""
    return _shorten(value if isinstance(value, str) else str(value), limit)[0]


def quote(value, limit: int = LIMIT) -> str:
    """A user value as a message shows it: `'O\\x1b[31m'`, or `'aaaa…' (600000 characters)`
    when it was cut, so the reader knows how much they sent."""
    text = value if isinstance(value, str) else str(value)
    shown, cut = _shorten(text, limit)
    return f"'{shown}' ({len(text)} characters)" if cut else f"'{shown}'"
