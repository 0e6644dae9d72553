"""yamlfile reads flat `key: value` documents (a typical config) without importing PyYAML: whatever
it accepts must read exactly as PyYAML reads it (values, their types, the line of each key), and
anything else goes to PyYAML."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.engine import yamlfile


def _slow(text: str):
    """The document through PyYAML (the flat reader switched off)."""
    saved = yamlfile._flat
    yamlfile._flat = lambda text: None
    try:
        return yamlfile.parse(text, "t.yml")
    finally:
        yamlfile._flat = saved


def _typed(data):
    return [(k, type(v).__name__, v) for k, v in data.items()]


def _agree(text: str) -> bool:
    """True when the flat reader took the document (and then it agrees with PyYAML)."""
    fast = yamlfile._flat(text)
    if fast is None:
        return False
    data, node = fast
    slow_data, slow_node = _slow(text)
    assert _typed(data) == _typed(slow_data), text
    fast_lines, slow_lines = yamlfile.LineMap(node), yamlfile.LineMap(slow_node)
    assert node.start_mark.line == slow_node.start_mark.line
    for path in [[]] + [[k] for k in data] + [[k, "deeper"] for k in data] + [["absent"]]:
        assert fast_lines.line(path) == slow_lines.line(path), (text, path)
    return True


@pytest.mark.parametrize("text,expected", [
    ("store_path: /tmp/x/store.sqlite3\n", {"store_path": "/tmp/x/store.sqlite3"}),
    ("# a comment\n\ntenant_id: 11111111-1111-1111-1111-111111111111  # the tenant\ntimeout: 30\n"
     "pacing_speed: 2.5\nclient_secret: 'emu~Graph.Secret'\ngraph_url: https://127.0.0.1:8443/v1.0\n"
     "service_account: \"soar svc@contoso.example\"\nmax_retries: -0\n",
     {"tenant_id": "11111111-1111-1111-1111-111111111111", "timeout": 30, "pacing_speed": 2.5,
      "client_secret": "emu~Graph.Secret", "graph_url": "https://127.0.0.1:8443/v1.0",
      "service_account": "soar svc@contoso.example", "max_retries": 0}),
    ("a: ~x\nb: .x\nc: _x\nd: -x\ne: +x\nf: 1-2\ng: 1.2.3\nh: x:y\n",
     {"a": "~x", "b": ".x", "c": "_x", "d": "-x", "e": "+x", "f": "1-2", "g": "1.2.3", "h": "x:y"}),
])
def test_flat_documents_read_without_pyyaml_as_pyyaml_reads_them(text, expected):
    assert _agree(text)
    assert yamlfile.parse(text, "t.yml")[0] == expected


@pytest.mark.parametrize("text", [
    "a: yes\n", "a: No\n", "a: null\n", "a: ~\n", "on: 1\n", "a: 0x1f\n", "a: 010\n", "a: 1_000\n", "a: 1:30\n",
    "a: .inf\n", "a: 1.\n", "a: +1\n", "a: 2024-01-01\n", "a: 1\na: 2\n", "a:\n", "a: x:\n", "a: -\n",
    "  a: 1\n", "a: [1]\n", "a: &x 1\n", "a: !!str 1\n", "a: 'it''s'\n", 'a: "x\\ty"\n', "a: x\n  y\n", "---\na: 1\n",
    "a: x#y\n", "a:\t1\n", "a: é\n", "\ufeffa: 1\n", "a: 1\r\n", "", "# only a comment\n", "a b: 1\n", "a: 'x'y\n",
])
def test_anything_else_goes_to_pyyaml(text):
    assert yamlfile._flat(text) is None


_KEYS = st.one_of(st.sampled_from(["a", "b", "tenant_id", "x_1", "_", "yes", "on", "null", "Y", "n"]),
                  st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True))
_PLAIN = st.one_of(
    st.sampled_from(["yes", "no", "On", "OFF", "true", "null", "~", "~x", ".", "..", "...", "-", "-1", "+1", "0", "00",
                     "010", "0o10", "0x1F", "0b101", "1_0", "1:30", "190:20:30", "1.5", "1.", ".5", "-.5", "1e3",
                     "1.0e+3", ".inf", "-.Inf", ".nan", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "12:30:45",
                     "=", "<<", "a:b", "a:", "http://h:1/p?q=1", "x,y", "x%y", "@x", "%x", "x=y"]),
    st.from_regex(r"[A-Za-z0-9_/.~+:@=%,-]{1,12}", fullmatch=True))
_QUOTED = st.one_of(st.from_regex(r"'[ -&(-~]{0,10}'", fullmatch=True),
                    st.from_regex(r'"[ !#-\[\]-~]{0,10}"', fullmatch=True))
_LINE = st.one_of(
    st.builds(lambda k, sp, v, c: f"{k}:{sp}{v}{c}", _KEYS, st.sampled_from([" ", "  ", ""]), st.one_of(_PLAIN, _QUOTED),
              st.sampled_from(["", " ", " # note", "  #x", "#x"])),
    st.sampled_from(["", " ", "# comment", "  # indented comment", "  continued", "- item", "---", "a:\t1"]))


@settings(max_examples=int(os.environ.get("MSTEAMS_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=8), st.booleans())
def test_generated_documents_read_by_the_flat_reader_agree_with_pyyaml(lines, newline):
    _agree("\n".join(lines) + ("\n" if newline else ""))


_VALUE = st.one_of(_PLAIN, _QUOTED, st.integers(-10**6, 10**6).map(str),
                  st.floats(0, 1000, allow_nan=False).map(lambda f: f"{f:.3f}"))


@settings(max_examples=int(os.environ.get("MSTEAMS_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), _VALUE, min_size=1, max_size=8),
       st.lists(st.sampled_from(["", "# c", "  # c"]), max_size=3))
def test_generated_config_like_documents_agree_with_pyyaml(entries, extra):
    lines = [f"{k}: {v}" for k, v in entries.items()] + extra
    _agree("\n".join(lines) + "\n")


def test_a_flat_config_loads_without_importing_pyyaml(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"store_path: {tmp_path / 's.sqlite3'}\ntimeout: 20\n", encoding="utf-8")
    code = ("import sys; from integration.engine import config; c = config.load(sys.argv[1], env={}); "
            "print(c.timeout, 'yaml' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["20.0", "False"], r.stdout + r.stderr
