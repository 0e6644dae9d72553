"""The boundary for untrusted text (integration/engine/untrusted.py): decoding argv and stdin bytes,
quote() for values echoed in messages, and the escaping the CLI applies to whatever it prints;
then the boundary at work in `msteams` itself (argv, playbook --input, playbook files)."""
import os

import pytest

from integration.frontends import cli
from integration.engine.errors import InputError, exit_code_for
from integration.engine.untrusted import clean, decode, decode_argv, escape_controls, printable, quote


def run_cli(argv):
    out, err = [], []
    code = cli.main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


# ------------------------------------------------------------------ quote


@pytest.mark.parametrize("value,shown", [
    ("O'Brien", "'O'Brien'"),
    ("\x1b[31mred", "'\\x1b[31mred'"),
    ("a\x00b", "'a\\x00b'"),
    ("tab\there\nnew", "'tab\\there\\nnew'"),  # a value reads as one token
    ("\x7f\x85\x9b", "'\\x7f\\x85\\x9b'"),  # DEL and C1 (0x9b is a one-byte CSI)
    ("\u202egnp.exe", "'\\u202egnp.exe'"),  # bidi override
    ("\u2066x\u2069", "'\\u2066x\\u2069'"),  # bidi isolates
    ("x\udcff", "'x\\udcff'"),  # a lone surrogate cannot be printed: escaped too
    ("Zoë Müller", "'Zoë Müller'"),  # ordinary text untouched
    (42, "'42'"),
])
def test_quote_escapes_what_could_drive_a_terminal(value, shown):
    assert quote(value) == shown


def test_quote_cuts_long_values_and_gives_the_length():
    assert quote("a" * 600_000) == "'" + "a" * 200 + "…' (600000 characters)"
    assert quote("a" * 200) == "'" + "a" * 200 + "'"  # exactly the limit: whole, no count
    shown = quote("\x1b" * 600_000)
    assert len(shown) < 260 and shown.endswith("…' (600000 characters)") and "\x1b" not in shown
    assert not shown[1:].split("…")[0].endswith("\\")  # never cut inside an escape
    assert clean("b" * 500, 60) == "b" * 60 + "…"


def test_escape_controls_keeps_layout_but_nothing_else():
    assert escape_controls("error: x\n  hint: y\tz") == "error: x\n  hint: y\tz"
    assert escape_controls("a\rb\x1b]0;t\x07\x00\u202e") == "a\\rb\\x1b]0;t\\x07\\x00\\u202e"
    assert printable("x" * 5000, limit=100) == "x" * 100 + "… (5000 characters)"
    assert printable("ok\x1b") == "ok\\x1b"


# ------------------------------------------------------------------ decode


def test_decode_names_the_position_of_the_bad_byte():
    assert decode(b"Zo\xc3\xab", "line 1") == "Zoë"
    with pytest.raises(InputError) as e:
        decode(b"ab\xff", "line 7")
    assert e.value.message == "line 7 is not valid UTF-8 (byte 0xff at position 2)"
    assert exit_code_for(e.value) == 2


def test_decode_argv_undoes_surrogateescape():
    # What Python makes of argv bytes b"ok" and b"\xc3\xab\xff": the second kept as surrogates.
    argv = [os.fsdecode(b"ok"), os.fsdecode(b"\xc3\xab\xff")]
    with pytest.raises(InputError) as e:
        decode_argv(argv)
    assert e.value.message == "argument 2 is not valid UTF-8 (byte 0xff at position 2)"
    assert decode_argv(["ok", "Zoë"]) == ["ok", "Zoë"]
    with pytest.raises(InputError, match=r"argument 1 contains an invalid character \(U\+D800 at position 1\)"):
        decode_argv(["x\ud800"])  # a surrogate that never was a byte


# ------------------------------------------------------------------ the CLI


def test_cli_refuses_invalid_utf8_in_argv_before_anything_runs():
    code, out, err = run_cli(["user-get", "--user", os.fsdecode(b"\xff")])
    assert code == 2 and err.startswith("error: argument 3 is not valid UTF-8 (byte 0xff at position 0)")


def test_cli_unknown_command_is_quoted_and_escaped():
    code, out, err = run_cli(["\x1b[2J" + "z" * 5000])
    assert code == 2 and err.startswith("error: unknown command '\\x1b[2Jzzz") and "(5004 characters)" in err
    assert "\x1b" not in err and len(err) < 400
    code, out, err = run_cli(["help", "\x00x"])
    assert code == 2 and "unknown command '\\x00x'" in err


def test_cli_last_guard_escapes_a_message_built_without_quote(monkeypatch):
    def raw_message(*a, **k):
        raise InputError("value \x1b]0;owned\x07 echoed raw")

    monkeypatch.setattr(cli, "_main", raw_message)
    code, out, err = run_cli(["anything"])
    assert code == 2 and err == "error: value \\x1b]0;owned\\x07 echoed raw"


# ------------------------------------------------------------------ playbooks


@pytest.mark.parametrize("pair,message", [
    ("novalue", "error: --input 1 expects NAME=VALUE, got 'novalue'"),
    ("=x", "error: --input 1 has no name before '=' (got '=x')"),
    ("a\x1b[2J=x", "error: --input 1: 'a\\x1b[2J' is not an input name"),
    ("\x1b" + "n" * 600_000 + "=x", "error: --input 1: '\\x1b" + "n" * 56 + "…' (600001 characters) is not"),
    (os.fsdecode(b"note=\xff"), "error: argument 5 is not valid UTF-8 (byte 0xff at position 5)"),
])
def test_playbook_inputs_bad_pairs_are_input_errors(tmp_path, pair, message):
    code, out, err = run_cli(["playbook", "run", str(tmp_path / "none.yml"), "--input", pair, "--dry-run"])
    assert code == 2 and err.startswith(message), err[:500]
    assert len(err) < 500


def test_playbook_inputs_called_directly_are_checked_too():
    from integration.playbooks.tool import _inputs

    with pytest.raises(InputError, match=r"--input 2 is not valid UTF-8 \(byte 0xfe at position 2\)"):
        _inputs(["a=1", os.fsdecode(b"b=\xfe")])
    assert _inputs(["a=1", "a=2", " b =x=y"]) == {"a": ["1", "2"], "b": "x=y"}


def test_playbook_validate_escapes_what_the_file_says(tmp_path):
    bad = tmp_path / "esc.yml"
    bad.write_text('steps: [{id: "\\e]0;x\\a", command: "\\e[2J"}]\n', encoding="utf-8")
    not_utf8 = tmp_path / "latin1.yml"
    not_utf8.write_bytes(b"steps: [\xff]\n")
    code, out, err = run_cli(["playbook", "validate", str(bad), str(not_utf8)])
    assert code == 2, err
    assert "\\x1b]0;x\\x07" in err and "\x1b" not in err and "\x07" not in err
    assert f"{not_utf8}: cannot read" in err and "Traceback" not in err


def test_lone_surrogates_are_found_where_they_are_and_replaced():
    from integration.engine.untrusted import lone_surrogate, may_hold_surrogates, without_lone_surrogates

    value = {"inputs": {"roles": ["ok", "b\ud800"]}, "plain": "a \U0001F600 b"}
    assert lone_surrogate(value) == ("inputs.roles[1]", "\ud800", False)
    assert lone_surrogate({"a": {"k\udcff": 1}}) == ("a", "\udcff", True)  # a key: named by its object
    assert lone_surrogate({"plain": "a \U0001F600 b", "n": [1, None, True]}) is None  # a whole pair is text
    assert without_lone_surrogates(value) == {"inputs": {"roles": ["ok", "b\ufffd"]}, "plain": "a \U0001F600 b"}
    # the escapes a JSON body holds them by (a whole pair's escapes too: the walk then finds none)
    assert may_hold_surrogates(b'{"a": "\\uD83D\\ude00"}') and not may_hold_surrogates(b'{"a": "\\u00e9"}')
    # or its three bytes, as UTF-8 would write one (json.loads reads bytes with surrogatepass)
    assert may_hold_surrogates(b'"\xed\xa0\x80"') and not may_hold_surrogates("\ud7ff \ue000".encode())
