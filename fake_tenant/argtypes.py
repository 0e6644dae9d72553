"""argparse value types for ``msteams emulator serve``: a port, a whole number within bounds and
a positive number, each refused with one line that quotes the value given.

The fake tenant keeps its own (it imports nothing from the product); the messages read as the
product's own option types word theirs (``not a whole number: 'lots'``, ``must be between 0 and
65535: '70000'``), so the two commands answer alike.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable

# A value is echoed in an error message: characters that could drive or mislead a terminal (C0
# and C1 controls, DEL, bidi overrides and isolates, line separators, lone surrogates left by
# surrogateescape) are shown as escapes, and a long value is cut, with its length given.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_LIMIT = 200


def _piece(ch: str) -> str:
    if not _CONTROL.match(ch):
        return ch
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def shown(text: str) -> str:
    """``text`` quoted for a message: ``'lots'``, or ``'aaaa…' (600000 characters)`` when cut."""
    parts: list[str] = []
    size = 0
    for ch in text:  # only as far as the limit: a huge value costs no more than a short one
        piece = _piece(ch)
        if size + len(piece) > _LIMIT:  # cut between characters, never inside an escape
            return f"'{''.join(parts)}…' ({len(text)} characters)"
        parts.append(piece)
        size += len(piece)
    return f"'{''.join(parts)}'"


def whole_number(low: int, high: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    """A type for a whole number from ``low`` up to ``high`` (no upper bound when None)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {shown(text)}") from None
        if v < low or (high is not None and v > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}: {shown(text)}")
        return v
    return parse


# 0 asks the system for any free port.
port = whole_number(0, 65535, "a port number")


def positive_number(text: str) -> float:
    """A type for a finite number above 0 (``--speed``: a factor on every limit)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {shown(text)}") from None
    if not (v > 0 and math.isfinite(v)):  # nan, inf and 0 would make every limit meaningless
        raise argparse.ArgumentTypeError(f"must be greater than 0: {shown(text)}")
    return v
