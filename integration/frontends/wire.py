"""The JSON the HTTP service answers with (`msteams serve`): orjson's bytes, the standard
library's where orjson refuses a value.

Why: an answer carries a command's rows three times (context, raw, outputs); the standard
library's encoder took ~16 us of a cached read's ~300 us of server CPU, orjson ~1 us
(benchmarks/api.py, section c: ~30 us less CPU a request in all). Imported only by the service,
never on a command's path (pyproject.toml's lean-command-path contract). Bodies are still read
by the standard library: orjson reads an integer over 64 bits as a float, silently.

The bytes are the standard library's (``ensure_ascii=False``, compact separators, ``default=str``
for what JSON has no type for) but for three cases, each valid JSON where the standard library's
was not always: a float below 1e-4 is written without an exponent (``0.00001``, not ``1e-05``: the
same number); NaN and the infinities as ``null`` (the standard library writes ``NaN``, which JSON
parsers refuse); a plain (non-``str``) Enum as its value. What orjson cannot write (an integer over
64 bits, a lone surrogate, nesting over 254 deep) the standard library writes, a lone surrogate as
its ``\\ud800`` escape (so the answer stays UTF-8: encoding it raw failed, a 500 for a body that
sent one).
"""
from __future__ import annotations

import json

import orjson

# Dataclasses and datetimes by ``default=str``, as the standard library writes them (orjson
# would write a dataclass as an object, a datetime with a "T"); keys that are not strings as
# the standard library writes them ("1", "null").
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

# Answers are trees (JSON from Graph, the store, rows built from them): no cycle check (a cycle
# would be a RecursionError, answered 500 as any bug).
_encode = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"), check_circular=False).encode
_encode_ascii = json.JSONEncoder(default=str, separators=(",", ":"), check_circular=False).encode


def dumps(value) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one: what orjson cannot write
        text = _encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escaped, as ASCII
        return _encode_ascii(value).encode("ascii")
