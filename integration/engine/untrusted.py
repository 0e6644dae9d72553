"""The boundary for untrusted text: what a user, a pipe or a file hands us, and what we echo
back in messages.

- :func:`decode` turns argv strings (decoded by Python with surrogateescape) and raw stdin
  lines into text, or raises an InputError naming where the invalid UTF-8 is, so bad bytes
  fail as a user mistake (exit 2) instead of a UnicodeEncodeError deep in a request.
- :func:`quote`, :func:`clean`, :func:`printable` and :func:`escape_controls` (from escape.py)
  show a user's value safely in a message or on a terminal.
"""
from __future__ import annotations

import os

from .errors import InputError
from .escape import LIMIT, _SURROGATE, _compiled, clean, escape_controls, printable, quote

__all__ = ["LIMIT", "clean", "decode", "decode_argv", "escape_controls", "printable", "quote"]


def decode(value: bytes | str, where: str) -> str:
    """Text from bytes, or from a str Python decoded with surrogateescape (argv); an
    InputError saying `<where> is not valid UTF-8 (byte 0xff at position 0)` otherwise."""
    if isinstance(value, str):
        if value.isascii():  # the common case: nothing to look for
            return value
        bad = _compiled(_SURROGATE).search(value)
        if bad is None:
            return value
        try:
            raw = os.fsencode(value)  # undo surrogateescape: the bytes as they were given
        except UnicodeEncodeError:  # a lone surrogate that never was a byte (e.g. JSON "\ud800")
            raise InputError(f"{where} contains an invalid character "
                             f"(U+{ord(bad.group()):04X} at position {bad.start()})") from None
    else:
        raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})",
                         hint="pass text encoded as UTF-8") from None


def decode_argv(argv: list) -> list[str]:
    """Every argument checked; the first bad one named by its position (1 = first after the program)."""
    return [decode(arg, f"argument {i}") for i, arg in enumerate(argv, 1)]
