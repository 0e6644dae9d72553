"""The boundary for untrusted text: what a user, a pipe or a file hands us, and what we echo
back in messages.

- :func:`decode` turns argv strings (decoded by Python with surrogateescape) and raw stdin
  lines into text, or raises an InputError naming where the invalid UTF-8 is, so bad bytes
  fail as a user mistake (exit 2) instead of a UnicodeEncodeError deep in a request.
- :func:`lone_surrogate` finds, in a value read from JSON (when :func:`may_hold_surrogates` of
  its body), a string holding half of a UTF-16
  surrogate pair (JSON's lone ``"\\ud800"`` escape reads as one): no UTF-8 form, so nothing can
  store or send it; :func:`without_lone_surrogates` replaces each by U+FFFD.
- :func:`quote`, :func:`clean`, :func:`printable` and :func:`escape_controls` (from escape.py)
  show a user's value safely in a message or on a terminal.
"""
from __future__ import annotations

import os

from .errors import InputError
from .escape import LIMIT, _SURROGATE, _compiled, clean, escape_controls, printable, quote

__all__ = ["LIMIT", "clean", "decode", "decode_argv", "escape_controls", "lone_surrogate", "may_hold_surrogates",
           "printable", "quote", "without_lone_surrogates"]

# How a JSON body's bytes may hold a code point U+D800-U+DFFF: its escape, or its three bytes as
# UTF-8 would write one (not UTF-8, yet json.loads reads bytes with "surrogatepass"). A body with
# neither reads as a value without one, so the walks below are skipped for it.
_SURROGATE_BYTES = rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]"


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


def may_hold_surrogates(body: bytes) -> bool:
    """Whether a JSON body may read as a value with a code point U+D800-U+DFFF (when not, the
    walks below have nothing to find)."""
    return _compiled(_SURROGATE_BYTES).search(body) is not None


def lone_surrogate(value, path: str = "") -> tuple[str, str, bool] | None:
    """The first string in ``value`` (a str, or in a list's or an object's keys and values)
    holding a code point U+D800-U+DFFF, or None: (where, as ``team`` or ``inputs.roles[1]``, the
    object's for one of its keys; that code point; whether it is in a key)."""
    t = type(value)
    if t is str:
        bad = _compiled(_SURROGATE).search(value)
        return (path, bad.group(), False) if bad else None
    if t is dict:
        for k, v in value.items():
            bad = _compiled(_SURROGATE).search(k) if type(k) is str else None
            if bad:
                return (path, bad.group(), True)
            found = lone_surrogate(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif t is list or t is tuple:
        for i, v in enumerate(value):
            found = lone_surrogate(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def without_lone_surrogates(value):
    """``value`` with each code point U+D800-U+DFFF of its strings (keys too) replaced by U+FFFD."""
    t = type(value)
    if t is str:
        return _compiled(_SURROGATE).sub("\ufffd", value)
    if t is dict:
        return {without_lone_surrogates(k): without_lone_surrogates(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [without_lone_surrogates(v) for v in value]
    return value
