"""Property tests with generated hostile input: the war-room parser, argument coercion against
every command's schema, the shell in batch mode and the CLI against the fake tenant, and the
config, registry and playbook loaders. Properties: no internal error and no traceback, the exit
code is one of the documented ones, a batch never stops early, and nothing printed carries a
raw control character.

CI runs a fixed, small budget of examples. For a long local run:

    MSTEAMS_FUZZ_EXAMPLES=3000 .venv/bin/python -m pytest -q -s tests/engine/test_fuzz.py

(3,000 examples make about 11,000 war-room lines in 3,000 shell batches; -s prints the counts.)
"""
from __future__ import annotations

import io
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration.engine import arguments, registry
from integration.engine.errors import IntegrationError

EXAMPLES = int(os.environ.get("MSTEAMS_FUZZ_EXAMPLES", "0") or 0)
DOCUMENTED_EXIT = {0, 1, 2, 3, 4, 5}
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Commands that would sign the account out or wait for a person: not for a fuzzer.
SKIP = {"auth-login", "auth-reset", "auth-status", "generate-login-url", "cache-reset", "cache-preload"}


SEEN: dict[str, int] = {}  # what the long mode tried, printed at the end of the module (run with -s)


@pytest.fixture(scope="module", autouse=True)
def _report_long_mode():
    yield
    if EXAMPLES:
        print("\nfuzz long mode:", ", ".join(f"{v:,} {k}" for k, v in sorted(SEEN.items())))


def _seen(kind: str, n: int = 1) -> None:
    SEEN[kind] = SEEN.get(kind, 0) + n


def budget(small: int):
    return settings(max_examples=EXAMPLES or small, deadline=None, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


REG = registry.default_registry()
NAMES = [s.name for s in REG if s.name not in SKIP]
hostile = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["", "!", "!!", "! ", '!"', "'", "\x1b[31mred", "\x00", "a" * 5000, "O'Brien", "19:x@thread.v2", "-1",
     "true", "[1,2", "{\"a\":", "$filter eq 'x'", "\u202egnp.exe", "../../etc/passwd", "%2F", "\r\n"])


def _arg_value(prop: dict):
    typ = prop.get("type")
    base = hostile
    if typ == "boolean":
        base = st.sampled_from(["true", "false", "yes", "maybe", ""]) | hostile
    elif typ in ("integer", "number"):
        base = st.integers(-10**6, 10**6).map(str) | hostile
    elif "enum" in prop:
        base = st.sampled_from([str(v) for v in prop["enum"]]) | hostile
    return base


@st.composite
def command_args(draw, names=NAMES):
    spec = REG.get(draw(st.sampled_from(names)))
    props = dict(spec.arguments.get("properties", {}))
    chosen = draw(st.lists(st.sampled_from(sorted(props) + ["bogus", "chat_type "]), max_size=4, unique=True)) \
        if props else []
    args = {k: draw(_arg_value(props.get(k, {}))) for k in chosen}
    return spec, args


def _quote(v: str) -> str:
    return '"' + v.replace('"', "'") + '"'


@st.composite
def warroom_lines(draw):
    if draw(st.booleans()):
        return draw(hostile)
    spec, args = draw(command_args())
    parts = [("!" if draw(st.booleans()) else "") + spec.name]
    parts += [f"{k}={_quote(v) if draw(st.booleans()) else v}" for k, v in args.items()]
    return " ".join(parts)


def _clean(text: str) -> None:
    assert "internal error" not in text, text[:500]
    assert "Traceback" not in text, text[:500]
    bad = RAW_CONTROL.search(text)
    assert bad is None, f"raw control character {bad.group()!r} in: {text[:300]!r}"


# ---------------------------------------------------------------- pure parsers

@budget(400)
@given(line=warroom_lines())
def test_the_warroom_parser_answers_or_refuses_cleanly(line):
    _seen("war-room lines parsed")
    try:
        name, args = arguments.parse_warroom(line)
    except IntegrationError as exc:
        assert exc.exit_code == 2
        _clean(str(exc))
    else:
        assert isinstance(name, str) and isinstance(args, dict)


@budget(400)
@given(case=command_args(names=[s.name for s in REG]))
def test_argument_coercion_against_every_schema(case):
    spec, args = case
    _seen("argument sets coerced")
    try:
        values = arguments.validate(spec, args)
    except IntegrationError as exc:
        assert exc.exit_code == 2
        _clean(str(exc))
    else:
        assert set(values) <= set(spec.arguments.get("properties", {}))


# ---------------------------------------------------------------- loaders

yaml_text = st.one_of(
    hostile,
    st.recursive(st.none() | st.booleans() | st.integers() | hostile,
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile, inner, max_size=3),
                 max_leaves=8).map(lambda v: __import__("yaml").safe_dump(v, allow_unicode=True)),
    st.sampled_from(["a: 1\na: 2\n", "timeout: -5\n", "graph_url: ftp//x\n", "tenant_id: [\n", "\t- x",
                     "commands:\n  x: 1\n", "!!python/object/apply:os.system ['true']\n", "&a [*a]"]),
)


@budget(200)
@given(text=yaml_text)
def test_the_config_loader_refuses_cleanly(tmp_path_factory, text):
    from integration.engine import config

    p = tmp_path_factory.mktemp("cfg") / "c.yml"
    p.write_text(text, encoding="utf-8")
    try:
        config.load(str(p), env={})
    except IntegrationError as exc:
        assert exc.exit_code in (2, 3)
        _clean(str(exc))


@budget(150)
@given(text=yaml_text)
def test_the_playbook_loader_refuses_cleanly(tmp_path_factory, text):
    from integration.playbooks.loader import load

    p = tmp_path_factory.mktemp("pb") / "p.yml"
    p.write_text(text, encoding="utf-8")
    try:
        load(str(p))
    except IntegrationError as exc:
        assert exc.exit_code == 2
        _clean(str(exc))


@budget(60)
@given(cut=st.integers(0, 10_000), junk=hostile)
def test_the_registry_loader_refuses_a_damaged_file_cleanly(tmp_path_factory, cut, junk):
    text = registry.COMMANDS_FILE.read_text(encoding="utf-8")
    cut = cut % len(text)
    p = tmp_path_factory.mktemp("reg") / "commands.yml"
    p.write_text(text[:cut] + junk + text[cut + len(junk):], encoding="utf-8")
    try:
        registry.load(p, check_handlers=True)
    except IntegrationError as exc:
        assert exc.exit_code == 2
        _clean(str(exc))


# ---------------------------------------------------------------- front ends against the fake tenant

@pytest.fixture
def signed_cfg(cfg_file):
    from integration.frontends.cli import main

    assert main(["--config", str(cfg_file), "auth", "login"], out=lambda s: None, err=lambda s: None) == 0
    return cfg_file


@budget(40)
@given(lines=st.lists(warroom_lines(), min_size=1, max_size=6))
def test_a_shell_batch_runs_every_line_whatever_it_holds(signed_cfg, lines):
    from integration.frontends.shell import main

    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    _seen("war-room lines in shell batches", len(lines))
    _seen("shell batches")
    stdin = io.StringIO("\n".join(lines + ["!cache-show"]) + "\n")
    out, err = [], []
    code = main(["--no-history"], out=out.append, err=err.append, config=str(signed_cfg), stdin=stdin)
    assert code in DOCUMENTED_EXIT
    _clean("\n".join(err))
    assert any("Context store" in o for o in out), "the batch stopped before its last line"


@budget(60)
@given(case=command_args())
def test_the_cli_answers_or_refuses_every_command_cleanly(signed_cfg, case):
    from integration.frontends.cli import main

    spec, args = case
    _seen("CLI argument sets")
    argv = ["--config", str(signed_cfg), spec.name]
    for k, v in args.items():
        argv += [f"--{k.replace('_', '-')}", v] if not k.endswith(" ") else [f"{k}={v}"]
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    assert code in DOCUMENTED_EXIT
    _clean("\n".join(err))
