"""The HTTP service's JSON (frontends/wire.py): the standard library's bytes, from orjson where
it can and from the standard library where orjson refuses."""
import datetime
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.frontends import wire


def stdlib(value, ascii_only: bool = False) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, default=str, separators=(",", ":")).encode("utf-8")


# What answers hold: JSON from Graph and the store, rows built from them. Floats above 1e-4 in
# magnitude (below it, orjson drops the exponent: the same number, other bytes; see below).
_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f == 0 or abs(f) >= 1e-4)
            | st.text())
_trees = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
                      max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_the_bytes_are_the_standard_librarys(value):
    assert wire.dumps(value) == stdlib(value)


def test_what_orjson_cannot_write_is_written_by_the_standard_library():
    for value in ({"big": 2 ** 80, "é": "é"}, _nested(300)):
        assert wire.dumps(value) == stdlib(value)


def test_a_lone_surrogate_is_escaped_so_the_answer_stays_utf8():
    for text in ("a\ud800b", "\udcff"):  # as JSON's "\ud800" escape reads, or a byte kept by surrogateescape
        value = {"text": text, "é": 1}
        assert wire.dumps(value) == stdlib(value, ascii_only=True)
        assert json.loads(wire.dumps(value).decode("utf-8")) == value


def test_other_types_are_written_as_the_standard_librarys_default_str():
    when = datetime.datetime(2026, 12, 7, 18, 0, tzinfo=datetime.timezone.utc)
    value = {1: when, None: {1, 2}, "day": when.date(), "raw": b"x", "many": frozenset("a")}
    assert wire.dumps(value) == stdlib(value)
    assert wire.dumps({"t": when}) == b'{"t":"2026-12-07 18:00:00+00:00"}'
    assert b'"null":"{1, 2}"' in wire.dumps(value) and b'"raw":"b\'x\'"' in wire.dumps(value)


def test_the_documented_differences_are_valid_json():
    assert wire.dumps(1e-05) == b"0.00001" and json.loads(wire.dumps(1e-05)) == 1e-05
    assert wire.dumps(float("nan")) == b"null"  # the standard library's NaN is not JSON


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value
