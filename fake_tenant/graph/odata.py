"""OData query options as Microsoft Graph v1.0 accepts them: ``$filter`` (a real tokenizer and
recursive-descent parser compiled to a predicate, never ``eval``), ``$select``, ``$top``,
``$orderby`` and ``$expand``.

Every route that filters describes what may be filtered with a :class:`Schema`; anything the
schema does not name (a property, a function, an operator) is a Graph 400, as is any syntax
error. Hostile input never raises anything but :class:`GraphError`.

Supported ``$filter`` grammar (case-insensitive keywords)::

    expr     := or
    or       := and ('or' and)*
    and      := unary ('and' unary)*
    unary    := 'not' unary | cmp
    cmp      := operand (('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand | 'in' '(' literal (',' literal)* ')')?
    operand  := '(' expr ')' | literal | func '(' args ')' | path '/' ('any'|'all') '(' var ':' expr ')' | path
    literal  := 'str''ing' | number | true | false | null | 2024-01-01T00:00:00Z | GUID

Strings compare case-insensitively when the schema says so (the directory does).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..core import GraphError

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32
MAX_IN_ITEMS = 15  # Graph caps `in` at 15 values for directory objects


def _bad(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def _filter_error(detail: str) -> GraphError:
    return _bad(f"Invalid filter clause: {detail}")


# ----------------------------------------------------------------------------------- tokens

@dataclass
class Tok:
    kind: str  # STR NUM DT GUID BOOL NULL IDENT LP RP COMMA COLON END
    value: Any
    pos: int


_DT_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})")
_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-])")
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w])")
_IDENT_RE = re.compile(r"[A-Za-z_@][A-Za-z0-9_.@]*(?:/[A-Za-z_@][A-Za-z0-9_.@]*)*")


def parse_datetime(s: str) -> datetime | None:
    """ISO 8601 as Graph writes it (Z or offset, up to 7 fractional digits); None if not one."""
    if not isinstance(s, str):
        return None
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?", s.strip())
    if not m:
        return None
    base, frac, tz = m.groups()
    if len(base) == 16:
        base += ":00"
    frac = (frac or "0")[:6].ljust(6, "0")
    tz = "+00:00" if tz in (None, "Z") else tz
    try:
        dt = datetime.fromisoformat(f"{base}.{frac}{tz}")
    except ValueError:
        return None
    return dt.astimezone(timezone.utc)


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "'":
            j = i + 1
            buf = []
            while True:
                if j >= n:
                    raise _filter_error(f"unterminated string literal at position {i}.")
                if text[j] == "'":
                    if j + 1 < n and text[j + 1] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            toks.append(Tok("STR", "".join(buf), i))
            i = j + 1
            continue
        if c == "(":
            toks.append(Tok("LP", c, i)); i += 1; continue
        if c == ")":
            toks.append(Tok("RP", c, i)); i += 1; continue
        if c == ",":
            toks.append(Tok("COMMA", c, i)); i += 1; continue
        if c == ":":
            toks.append(Tok("COLON", c, i)); i += 1; continue
        m = _DT_RE.match(text, i)
        if m:
            dt = parse_datetime(m.group(0))
            if dt is None:
                raise _filter_error(f"invalid DateTimeOffset literal '{m.group(0)}' at position {i}.")
            toks.append(Tok("DT", dt, i)); i = m.end(); continue
        m = _GUID_RE.match(text, i)
        if m:
            toks.append(Tok("GUID", m.group(0).lower(), i)); i = m.end(); continue
        m = _NUM_RE.match(text, i)
        if m:
            s = m.group(0)
            try:
                v: Any = int(s) if re.fullmatch(r"-?\d+", s) else float(s)
            except (ValueError, OverflowError):
                raise _filter_error(f"invalid number '{s}' at position {i}.") from None
            toks.append(Tok("NUM", v, i)); i = m.end(); continue
        m = _IDENT_RE.match(text, i)
        if m:
            word = m.group(0)
            low = word.lower()
            if low in ("true", "false"):
                toks.append(Tok("BOOL", low == "true", i))
            elif low == "null":
                toks.append(Tok("NULL", None, i))
            else:
                toks.append(Tok("IDENT", word, i))
            i = m.end()
            continue
        raise _filter_error(f"syntax error at position {i}: unexpected character '{c}'.")
    toks.append(Tok("END", None, n))
    return toks


# ----------------------------------------------------------------------------------- schema

@dataclass
class Schema:
    """What a resource exposes to ``$filter``.

    ``props``: lowercase property path -> getter(item). ``collections``: lowercase path ->
    (getter(item) -> list, element Schema or None for a collection of primitives), usable only
    inside ``any``/``all``. ``functions``: allowed function names (lowercase).
    """

    type_name: str
    props: dict[str, Callable[[Any], Any]]
    collections: dict[str, tuple[Callable[[Any], list], "Schema | None"]] = field(default_factory=dict)
    functions: frozenset = frozenset({"startswith"})
    operators: frozenset = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "in", "not"})
    case_insensitive: bool = True


_CMP_OPS = ("eq", "ne", "gt", "ge", "lt", "le")
_FUNCS = {"startswith": 2, "endswith": 2, "contains": 2}

Pred = Callable[[Any, dict], Any]  # (item, lambda-bindings) -> value


def _norm(v: Any, ci: bool) -> Any:
    if isinstance(v, str) and ci:
        return v.casefold()
    return v


def _compare(op: str, a: Any, b: Any, ci: bool) -> bool:
    # datetimes: compare with ISO strings by parsing them
    if isinstance(a, datetime) or isinstance(b, datetime):
        if isinstance(a, str):
            a = parse_datetime(a)
        if isinstance(b, str):
            b = parse_datetime(b)
    a, b = _norm(a, ci), _norm(b, ci)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    try:
        if op == "gt":
            return a > b
        if op == "ge":
            return a >= b
        if op == "lt":
            return a < b
        if op == "le":
            return a <= b
    except TypeError:
        return False
    return False


class _Parser:
    def __init__(self, text: str, schema: Schema):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.schema = schema
        self.depth = 0
        # lambda variable name -> element schema (or None for primitives)
        self.scopes: list[tuple[str, Schema | None]] = []

    # helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, *words: str) -> bool:
        t = self.peek()
        return t.kind == "IDENT" and t.value.lower() in words

    def expect(self, kind: str, what: str) -> Tok:
        t = self.next()
        if t.kind != kind:
            got = "end of expression" if t.kind == "END" else f"'{t.value}'"
            raise _filter_error(f"syntax error at position {t.pos}: expected {what}, found {got}.")
        return t

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _filter_error("the expression is nested too deeply.")

    def leave(self) -> None:
        self.depth -= 1

    # grammar
    def parse(self) -> Callable[[Any], bool]:
        kind, fn = self.expr()
        t = self.peek()
        if t.kind != "END":
            raise _filter_error(f"syntax error at position {t.pos}: unexpected '{t.value}'.")
        if kind != "bool":
            raise _filter_error("the expression does not evaluate to a boolean.")
        return lambda item: bool(fn(item, {}))

    def expr(self) -> tuple[str, Pred]:
        self.enter()
        try:
            return self.or_()
        finally:
            self.leave()

    def or_(self) -> tuple[str, Pred]:
        kind, left = self.and_()
        while self.is_kw("or"):
            t = self.next()
            k2, right = self.and_()
            self._need_bool(kind, t)
            self._need_bool(k2, t)
            left = (lambda l, r: lambda it, env: bool(l(it, env)) or bool(r(it, env)))(left, right)
            kind = "bool"
        return kind, left

    def and_(self) -> tuple[str, Pred]:
        kind, left = self.unary()
        while self.is_kw("and"):
            t = self.next()
            k2, right = self.unary()
            self._need_bool(kind, t)
            self._need_bool(k2, t)
            left = (lambda l, r: lambda it, env: bool(l(it, env)) and bool(r(it, env)))(left, right)
            kind = "bool"
        return kind, left

    def unary(self) -> tuple[str, Pred]:
        if self.is_kw("not"):
            t = self.next()
            if "not" not in self.schema.operators:
                raise _filter_error("operator 'not' is not supported.")
            self.enter()
            try:
                k, inner = self.unary()
            finally:
                self.leave()
            self._need_bool(k, t)
            return "bool", lambda it, env: not inner(it, env)
        return self.cmp()

    def _need_bool(self, kind: str, t: Tok) -> None:
        if kind != "bool":
            raise _filter_error(f"operand of '{t.value}' at position {t.pos} is not a boolean expression.")

    def cmp(self) -> tuple[str, Pred]:
        kind, left = self.operand()
        ci = self.schema.case_insensitive
        if self.is_kw(*_CMP_OPS):
            t = self.next()
            op = t.value.lower()
            if op not in self.schema.operators:
                raise _filter_error(f"operator '{op}' is not supported.")
            k2, right = self.operand()
            if kind == "bool" and k2 == "bool" and op not in ("eq", "ne"):
                raise _filter_error(f"operator '{op}' cannot compare boolean expressions.")
            if kind == "literal" and k2 == "literal":
                raise _filter_error(f"the comparison at position {t.pos} does not reference a property.")
            return "bool", (lambda l, r, o: lambda it, env: _compare(o, l(it, env), r(it, env), ci))(left, right, op)
        if self.is_kw("in"):
            t = self.next()
            if "in" not in self.schema.operators:
                raise _filter_error("operator 'in' is not supported.")
            self.expect("LP", "'('")
            values = [self._literal_value()]
            while self.peek().kind == "COMMA":
                self.next()
                values.append(self._literal_value())
            self.expect("RP", "')'")
            if len(values) > MAX_IN_ITEMS:
                raise _filter_error(f"too many values in 'in' (at most {MAX_IN_ITEMS}).")
            normed = [_norm(v, ci) for v in values]
            return "bool", lambda it, env: _norm(left(it, env), ci) in normed
        return kind, left

    def _literal_value(self) -> Any:
        t = self.next()
        if t.kind in ("STR", "NUM", "DT", "GUID", "BOOL", "NULL"):
            return t.value
        got = "end of expression" if t.kind == "END" else f"'{t.value}'"
        raise _filter_error(f"syntax error at position {t.pos}: expected a literal, found {got}.")

    def operand(self) -> tuple[str, Pred]:
        t = self.peek()
        if t.kind == "LP":
            self.next()
            kind, fn = self.expr()
            self.expect("RP", "')'")
            return kind, fn
        if t.kind in ("STR", "NUM", "DT", "GUID", "BOOL", "NULL"):
            self.next()
            v = t.value
            return "literal", lambda it, env: v
        if t.kind == "IDENT":
            self.next()
            name = t.value
            low = name.lower()
            if low in ("and", "or", "eq", "ne", "gt", "ge", "lt", "le", "in", "not"):
                raise _filter_error(f"syntax error at position {t.pos}: unexpected '{name}'.")
            if self.peek().kind == "LP":
                segs = low.split("/")
                if len(segs) >= 2 and segs[-1] in ("any", "all"):
                    return self.lambda_(name, t)
                return self.func(name, t)
            return "value", self.property(name, t)
        got = "end of expression" if t.kind == "END" else f"'{t.value}'"
        raise _filter_error(f"syntax error at position {t.pos}: expected an operand, found {got}.")

    def func(self, name: str, t: Tok) -> tuple[str, Pred]:
        low = name.lower()
        if low not in _FUNCS or low not in self.schema.functions:
            raise _filter_error(f"unknown or unsupported function '{name}'.")
        self.expect("LP", "'('")
        args = [self.expr()]
        while self.peek().kind == "COMMA":
            self.next()
            args.append(self.expr())
        self.expect("RP", "')'")
        if len(args) != _FUNCS[low]:
            raise _filter_error(f"function '{name}' takes {_FUNCS[low]} arguments.")
        (k1, a), (k2, b) = args
        if k1 == "bool" or k2 == "bool":
            raise _filter_error(f"function '{name}' takes string arguments.")
        ci = self.schema.case_insensitive

        def call(it: Any, env: dict) -> bool:
            x, y = a(it, env), b(it, env)
            if not isinstance(x, str) or not isinstance(y, str):
                return False
            x, y = _norm(x, ci), _norm(y, ci)
            if low == "startswith":
                return x.startswith(y)
            if low == "endswith":
                return x.endswith(y)
            return y in x

        return "bool", call

    def lambda_(self, name: str, t: Tok) -> tuple[str, Pred]:
        segs = name.split("/")
        coll_path, op = "/".join(segs[:-1]), segs[-1].lower()
        entry = self.schema.collections.get(coll_path.lower())
        if entry is None:
            raise _filter_error(f"could not find a collection property named '{coll_path}' on type '{self.schema.type_name}'.")
        getter, elem_schema = entry
        self.expect("LP", "'('")
        var_tok = self.expect("IDENT", "a lambda variable")
        var = var_tok.value
        if "/" in var:
            raise _filter_error(f"invalid lambda variable '{var}'.")
        self.expect("COLON", "':'")
        self.scopes.append((var.lower(), elem_schema))
        try:
            kind, body = self.expr()
        finally:
            self.scopes.pop()
        self.expect("RP", "')'")
        if kind != "bool":
            raise _filter_error(f"the body of '{op}' is not a boolean expression.")
        key = var.lower()

        def run(it: Any, env: dict) -> bool:
            try:
                elems = getter(it) or []
            except Exception:  # pragma: no cover - getters are ours
                elems = []
            results = (bool(body(it, {**env, key: e})) for e in elems)
            return any(results) if op == "any" else all(results)

        return "bool", run

    def property(self, name: str, t: Tok) -> Pred:
        segs = name.split("/")
        head = segs[0].lower()
        for var, elem_schema in reversed(self.scopes):
            if head == var:
                rest = "/".join(segs[1:]).lower()
                if not rest:
                    if elem_schema is not None:
                        raise _filter_error(f"lambda variable '{segs[0]}' refers to an object, not a value.")
                    return lambda it, env: env.get(var)
                if elem_schema is None or rest not in elem_schema.props:
                    tn = elem_schema.type_name if elem_schema else "primitive"
                    raise _filter_error(f"could not find a property named '{'/'.join(segs[1:])}' on type '{tn}'.")
                g = elem_schema.props[rest]
                return lambda it, env: _safe(g, env.get(var))
        low = name.lower()
        if low not in self.schema.props:
            raise _filter_error(f"could not find a property named '{name}' on type '{self.schema.type_name}'.")
        g = self.schema.props[low]
        return lambda it, env: _safe(g, it)


def _safe(getter: Callable[[Any], Any], obj: Any) -> Any:
    try:
        return getter(obj)
    except (KeyError, TypeError, AttributeError, IndexError):
        return None


def compile_filter(text: str | None, schema: Schema) -> Callable[[Any], bool] | None:
    """A predicate for ``$filter``; None when there is no filter. Raises a Graph 400 on any error."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise _filter_error("the filter is not a string.")
    if not text.strip():
        raise _filter_error("the filter is empty.")
    if len(text) > MAX_FILTER_LENGTH:
        raise _filter_error("the filter is too long.")
    return _Parser(text, schema).parse()


# ----------------------------------------------------------------------------------- other options

def qopt(req_query: dict, name: str) -> str | None:
    """A system query option by name, case-insensitively (``$top`` / ``$TOP``)."""
    low = name.lower()
    for k, v in (req_query or {}).items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def parse_top(value: str | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    s = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,12}", s):
        raise _bad(f"Invalid value '{value}' for query option '$top'. The value must be an integer.")
    n = int(s)
    if n < 1 or n > maximum:
        raise _bad(f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive.")
    return n


def parse_select(value: str | None, known: list[str], type_name: str) -> list[str] | None:
    """Canonical property names for ``$select`` (``id`` always included); None when absent."""
    if value is None:
        return None
    by_low = {k.lower(): k for k in known}
    out: list[str] = []
    for raw in str(value).split(","):
        name = raw.strip()
        if not name:
            raise _bad(f"Syntax error: character ',' is not valid at position {len(value)} in '{value}'.")
        canon = by_low.get(name.lower())
        if canon is None:
            raise _bad(f"Could not find a property named '{name}' on type '{type_name}'.")
        if canon not in out:
            out.append(canon)
    if "id" not in out:
        out.insert(0, "id")
    return out


def apply_select(resource: dict, select: list[str] | None) -> dict:
    if select is None:
        return resource
    out = {k: v for k, v in resource.items() if k.startswith("@odata.")}
    for k in select:
        out[k] = resource.get(k)
    return out


def parse_orderby(value: str | None, allowed: dict[str, tuple[str, ...]], type_name: str) -> tuple[str, bool] | None:
    """One ``$orderby`` clause: (canonical property, descending). ``allowed`` maps a lowercase
    property to the directions accepted ("asc", "desc"). Anything else is a 400."""
    if value is None:
        return None
    parts = str(value).strip().split()
    if not parts or len(parts) > 2 or "," in str(value):
        raise _bad(f"Invalid $orderby value '{value}'.")
    prop = parts[0]
    direction = parts[1].lower() if len(parts) == 2 else "asc"
    if direction not in ("asc", "desc"):
        raise _bad(f"Invalid $orderby direction '{parts[1]}'.")
    dirs = allowed.get(prop.lower())
    if dirs is None:
        raise _bad(f"$orderby on '{prop}' is not supported for type '{type_name}'.")
    if direction not in dirs:
        raise _bad(f"$orderby '{prop} {direction}' is not supported; supported: "
                   + ", ".join(f"{prop} {d}" for d in dirs) + ".")
    return prop, direction == "desc"


def parse_expand(value: str | None, known: list[str], type_name: str) -> list[str]:
    if value is None:
        return []
    by_low = {k.lower(): k for k in known}
    out = []
    for raw in str(value).split(","):
        name = raw.strip()
        if "(" in name or ")" in name:
            raise _bad(f"Nested query options in $expand are not supported: '{name}'.")
        canon = by_low.get(name.lower())
        if canon is None:
            raise _bad(f"Could not find a property named '{name}' on type '{type_name}'.")
        if canon not in out:
            out.append(canon)
    return out
