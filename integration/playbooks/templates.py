"""Playbook templates and conditions. Templates SUBSTITUTE DATA AND NEVER EVALUATE IT.

    ${inputs.severity}                          a declared input
    ${steps.create.outputs.chat_id}             an output a step published
    ${steps.create.context.MicrosoftTeams.ChatList.0.chatId}   a step's context, dotted, with list indexes
    ${steps.notify.status} / .error / .items / .failed         how a step went
    ${context.MicrosoftTeams.ChatList[-1].chatId}              the context accumulated so far
    ${item}, ${item.mail}                       the current element of a `foreach`
    ${result.outputs.0.chatId}                  (in a step's `outputs`) the step's own result
    $${                                         a literal "${"

Only the playbook's own text is parsed for templates. A value is substituted once and never
scanned again, so an input holding `${...}`, `{{ }}`, quotes or HTML arrives literally. A string
that is exactly one template keeps the value's type (a list stays a list); a template inside a
longer string is stringified.

Conditions (`when`) use a small grammar parsed here, with no Python evaluation:

    cond   := or
    or     := and ('or' and)*
    and    := not ('and' not)*
    not    := 'not' not | '(' cond ')' | cmp
    cmp    := value [('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in') (value | list)]
    list   := '[' value (',' value)* ']'
    value  := a template, a bare word, a quoted string (templates inside are substituted), true, false, null

A lone value is tested for truth ("", "false", "no", "off", "0", null, [] and {} are false).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from integration.engine.errors import InputError
from integration.engine.untrusted import quote

ROOTS = ("inputs", "steps", "context", "item", "result")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"\.([A-Za-z0-9_@-]+)|\[(-?\d+)\]")
_OPEN = re.compile(r"\$\$\{|\$\{")


@dataclass(frozen=True)
class Ref:
    """One `${root.part.part}`; parts are names (str) or bracketed indexes (int)."""

    root: str
    parts: tuple
    text: str  # as written, for messages and dry-run placeholders

    def __str__(self) -> str:
        return "${" + self.text + "}"


class Unknown:
    """A value not known before the playbook runs (dry run): shown as a placeholder."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return f"<{self.text}>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unknown) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


MISSING = object()


def parse_ref(inner: str) -> Ref:
    text = inner.strip()
    m = _NAME.match(text)
    if not m or m.group(0) not in ROOTS:
        root = m.group(0) if m else text
        raise InputError(f"template '${{{inner}}}': unknown name '{root}' (use one of: {', '.join(ROOTS)})")
    parts: list = []
    pos = m.end()
    while pos < len(text):
        s = _SEGMENT.match(text, pos)
        if not s:
            raise InputError(f"template '${{{inner}}}': cannot read the path after '{text[:pos]}'")
        parts.append(s.group(1) if s.group(1) is not None else int(s.group(2)))
        pos = s.end()
    return Ref(m.group(0), tuple(parts), text)


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> tuple:
    """A playbook string as literal pieces (str) and Refs. Raises InputError on bad syntax."""
    pieces: list = []
    buf: list[str] = []
    pos = 0
    for m in _OPEN.finditer(text):
        if m.start() < pos:  # inside a template already consumed
            continue
        buf.append(text[pos:m.start()])
        if m.group(0) == "$${":
            buf.append("${")
            pos = m.end()
            continue
        end = text.find("}", m.end())
        if end < 0:
            raise InputError(f"unclosed template in {quote(text)} (write $${{ for a literal ${{)")
        if buf and "".join(buf):
            pieces.append("".join(buf))
        buf = []
        pieces.append(parse_ref(text[m.end():end]))
        pos = end + 1
    buf.append(text[pos:])
    if "".join(buf):
        pieces.append("".join(buf))
    return tuple(pieces)


def refs_in(value: Any) -> list[Ref]:
    """Every Ref in a playbook value (strings inside dicts and lists too)."""
    if isinstance(value, str):
        return [p for p in parse(value) if isinstance(p, Ref)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


def has_template(value: Any) -> bool:
    return bool(refs_in(value))


def single_ref(value: Any) -> Ref | None:
    """The Ref when a string is exactly one template, else None."""
    if isinstance(value, str):
        pieces = parse(value)
        if len(pieces) == 1 and isinstance(pieces[0], Ref):
            return pieces[0]
    return None


def stringify(value: Any) -> str:
    """How a substituted value reads inside a longer string."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | list | tuple) for v in value):
        return ", ".join(stringify(v) for v in value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def render(value: Any, resolve: Callable[[Ref], Any]) -> Any:
    """Substitute templates in a playbook value (recursively). Resolved values are inserted,
    never parsed: this is the only place templates are expanded."""
    if isinstance(value, str):
        pieces = parse(value)
        if len(pieces) == 1 and isinstance(pieces[0], Ref):
            v = resolve(pieces[0])
            return None if v is MISSING else v
        return "".join(p if isinstance(p, str) else stringify(resolve(p)) for p in pieces)
    if isinstance(value, dict):
        return {k: render(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, resolve) for v in value]
    return value


def walk(value: Any, parts: tuple) -> Any:
    """Follow dotted parts into dicts and lists. A dict key may itself contain dots (context
    keys such as 'MicrosoftTeams.ChatList'), so the longest matching key wins."""
    i = 0
    while i < len(parts):
        if isinstance(value, Unknown):
            return value
        if isinstance(value, dict):
            for j in range(len(parts), i, -1):
                key = ".".join(str(p) for p in parts[i:j])
                if key in value:
                    value, i = value[key], j
                    break
            else:
                return MISSING
        elif isinstance(value, list | tuple):
            p = parts[i]
            try:
                idx = p if isinstance(p, int) else int(p)
            except ValueError:
                return MISSING
            if not -len(value) <= idx < len(value):
                return MISSING
            value, i = value[idx], i + 1
        else:
            return MISSING
    return value


# ---------------------------------------------------------------- conditions

_COND_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<word>(?:\$\{[^{}]*\}|[^\s()\[\],=!<>"'$]|\$(?!\{))+)
    )""", re.X)
_KEYWORDS = {"and", "or", "not", "in"}
_LITERALS = {"true": True, "false": False, "null": None}
_FALSY = {"", "false", "no", "off", "0", "null", "none"}


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()  # a condition's value before the playbook runs (dry run)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _COND_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"condition {quote(text)}: cannot read from {quote(text[pos:].strip())}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class Condition:
    """A parsed `when:`; evaluate() returns True, False, or UNKNOWN (dry run)."""

    def __init__(self, text: str):
        self.text = text
        self._tokens = _tokenize(text)
        self._pos = 0
        if not self._tokens:
            raise InputError("empty condition")
        self.tree = self._or()
        if self._pos != len(self._tokens):
            raise InputError(f"condition {quote(text)}: unexpected {quote(self._tokens[self._pos][1])}")

    # -- parser (recursive descent over the token list)
    def _peek(self, value: str | None = None) -> bool:
        if self._pos >= len(self._tokens):
            return False
        kind, tok = self._tokens[self._pos]
        return value is None or (tok == value and kind in ("op", "word"))

    def _take(self) -> tuple[str, str]:
        if self._pos >= len(self._tokens):
            raise InputError(f"condition {quote(self.text)}: ends too early")
        self._pos += 1
        return self._tokens[self._pos - 1]

    def _or(self):
        node = self._and()
        while self._peek("or"):
            self._take()
            node = ("or", node, self._and())
        return node

    def _and(self):
        node = self._not()
        while self._peek("and"):
            self._take()
            node = ("and", node, self._not())
        return node

    def _not(self):
        if self._peek("not"):
            self._take()
            return ("not", self._not())
        if self._peek("("):
            self._take()
            node = self._or()
            if not self._peek(")"):
                raise InputError(f"condition {quote(self.text)}: missing ')'")
            self._take()
            return node
        return self._cmp()

    def _cmp(self):
        left = self._value()
        if self._peek("not") and self._pos + 1 < len(self._tokens) and self._tokens[self._pos + 1][1] == "in":
            self._pos += 2
            return ("cmp", "not in", left, self._value(allow_list=True))
        if self._pos < len(self._tokens):
            kind, tok = self._tokens[self._pos]
            if (kind == "op" and tok in ("==", "!=", "<", "<=", ">", ">=")) or (kind == "word" and tok == "in"):
                self._take()
                return ("cmp", tok, left, self._value(allow_list=tok == "in"))
        return ("truth", left)

    def _value(self, allow_list: bool = False):
        kind, tok = self._take()
        if kind == "str":
            body = re.sub(r"\\(.)", r"\1", tok[1:-1])
            return ("text", body)
        if kind == "op" and tok == "[" and allow_list:
            items = [self._value()]
            while self._peek(","):
                self._take()
                items.append(self._value())
            if not self._peek("]"):
                raise InputError(f"condition {quote(self.text)}: missing ']'")
            self._take()
            return ("list", items)
        if kind == "word" and tok not in _KEYWORDS:
            if tok in _LITERALS:
                return ("lit", _LITERALS[tok])
            return ("text", tok)
        raise InputError(f"condition {quote(self.text)}: expected a value, got {quote(tok)}")

    # -- analysis and evaluation
    def refs(self) -> list[Ref]:
        out: list[Ref] = []

        def visit(node):
            if node[0] == "text":
                out.extend(refs_in(node[1]))
            elif node[0] == "list":
                for n in node[1]:
                    visit(n)
            elif node[0] in ("or", "and"):
                visit(node[1])
                visit(node[2])
            elif node[0] == "not":
                visit(node[1])
            elif node[0] == "truth":
                visit(node[1])
            elif node[0] == "cmp":
                visit(node[2])
                visit(node[3])

        visit(self.tree)
        return out

    def evaluate(self, resolve: Callable[[Ref], Any]):
        return _eval(self.tree, resolve, self.text)


def _operand(node, resolve):
    if node[0] == "lit":
        return node[1]
    if node[0] == "list":
        return [_operand(n, resolve) for n in node[1]]
    pieces = parse(node[1])
    if any(isinstance(p, Ref) and isinstance(resolve(p), Unknown) for p in pieces):
        return Unknown(node[1])
    v = render(node[1], resolve)  # substitutes templates; a lone template keeps its type
    return None if v is MISSING else v


def _has_unknown(value) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, list | tuple):
        return any(_has_unknown(v) for v in value)
    return False


def truthy(value) -> bool:
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY
    return bool(value)


def _canon(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def equal(a, b) -> bool:
    if type(a) is type(b):
        return a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None and (isinstance(a, int | float) or isinstance(b, int | float)):
        return na == nb
    return _canon(a) == _canon(b)


def _eval(node, resolve, text):
    op = node[0]
    if op == "or":
        left = _eval(node[1], resolve, text)
        if left is True:
            return True
        right = _eval(node[2], resolve, text)
        return True if right is True else (UNKNOWN if UNKNOWN in (left, right) else False)
    if op == "and":
        left = _eval(node[1], resolve, text)
        if left is False:
            return False
        right = _eval(node[2], resolve, text)
        return False if right is False else (UNKNOWN if UNKNOWN in (left, right) else True)
    if op == "not":
        v = _eval(node[1], resolve, text)
        return v if v is UNKNOWN else not v
    if op == "truth":
        v = _operand(node[1], resolve)
        return UNKNOWN if _has_unknown(v) else truthy(v)
    _, cmp, lnode, rnode = node
    a, b = _operand(lnode, resolve), _operand(rnode, resolve)
    if _has_unknown(a) or _has_unknown(b):
        return UNKNOWN
    if cmp in ("==", "!="):
        return equal(a, b) == (cmp == "==")
    if cmp in ("in", "not in"):
        if isinstance(b, list | tuple):
            found = any(equal(a, x) for x in b)
        elif isinstance(b, dict):
            found = _canon(a) in b
        elif isinstance(b, str):
            found = _canon(a) in b
        elif b is None:
            found = False
        else:
            raise InputError(f"condition {quote(text)}: 'in' needs a list or text on its right, got {type(b).__name__}")
        return found == (cmp == "in")
    na, nb = _number(a), _number(b)
    if na is None or nb is None:
        raise InputError(f"condition {quote(text)}: '{cmp}' compares numbers, got {quote(stringify(a))} and {quote(stringify(b))}")
    return {"<": na < nb, "<=": na <= nb, ">": na > nb, ">=": na >= nb}[cmp]
