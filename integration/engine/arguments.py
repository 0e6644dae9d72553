"""Turns raw argument values (CLI strings, war-room `k=v` pairs, playbook values) into typed
values and validates them against a command's JSON Schema, with defaults applied. Every
error names the argument and what was expected.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ArgumentError, InputError
from .registry import CommandSpec, rule_form, thaw
from .untrusted import clean, lone_surrogate, quote

# typing's import costs ~4 ms of every command's start: only type checkers read these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def split_list(value: Any) -> list:
    """'a,b, c' -> ['a','b','c']; lists are flattened the same way (repeated flags)."""
    items = value if isinstance(value, list | tuple) else [value]
    out: list = []
    for item in items:
        if isinstance(item, str):
            out.extend(p.strip() for p in item.split(",") if p.strip())
        else:
            out.append(item)
    return out


def _coerce(name: str, value: Any, schema: dict) -> Any:
    typ = schema.get("type")
    if typ == "array":
        item_schema = schema.get("items", {})
        return [_coerce(name, v, item_schema) for v in split_list(value)]
    if not isinstance(value, str):
        return value
    if typ == "boolean":
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ArgumentError(name, f"expected true or false, got {quote(value)}")
    if typ == "integer":
        try:
            return int(value.strip())
        except ValueError:
            raise ArgumentError(name, f"expected a whole number, got {quote(value)}") from None
    if typ == "number":
        try:
            return float(value.strip())
        except ValueError:
            raise ArgumentError(name, f"expected a number, got {quote(value)}") from None
    if typ == "object":
        import json

        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: '[[[[...' nested past Python's limit
            raise ArgumentError(name, "expected a JSON object") from None
    return value


# ---- rules between arguments: `arguments.allOf` in commands.yml, one rule an item, in the
# four forms registry.py names; here, their words ----


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def rule_sentences(rule: dict) -> list[tuple[str, str]]:
    """(argument, sentence) for each thing a rule asks, its description when it has one: what
    an error says (the argument: the one to add or to drop) and what the docs list."""
    form, told = rule_form(rule), rule.get("description")
    if form == "dependentRequired":
        return [(dep, told or f"is required with {a}") for a, deps in rule[form].items() for dep in deps]
    if form == "anyOf":
        return [(rule[form][0]["required"][0], told or "give " + _either(rule[form]))]
    if form == "not":
        names = rule["not"]["required"]
        return [(names[0], told or (f"give {names[0]} or {names[1]}, not both" if len(names) == 2
                                    else f"{_and(names)} cannot all be given together"))]
    if form == "dependentSchemas":
        return [(sub["anyOf"][0]["required"][0], told or f"with {a}, give " + _either(sub["anyOf"]))
                for a, sub in rule[form].items()]
    return []


def _either(groups) -> str:
    return ", or ".join(_and(g["required"]) for g in groups)


def rules(spec: CommandSpec) -> list[str]:
    """The command's rules between arguments, one sentence each, for its help and docs."""
    out = []
    for rule in spec.arguments.get("allOf", ()):
        dependent = rule_form(rule) == "dependentRequired"  # its sentence says what of the argument
        out += [f"{arg} {sentence}" if dependent else sentence for arg, sentence in rule_sentences(rule)]
    return list(dict.fromkeys(out))  # rules that say the same (one of several pairs) said once


def _broken_rule(error, schema: dict) -> tuple[str, str] | None:
    """(argument, message) when ``error`` is a rule of `arguments.allOf` (of ``schema``) not kept."""
    rule, form = error.schema, error.validator
    given = error.instance if isinstance(error.instance, dict) else {}
    where = list(error.absolute_schema_path)  # ['allOf', i, 'dependentSchemas', a, 'anyOf'] for that form
    if where[:1] == ["allOf"] and where[2:3] == ["dependentSchemas"] and form == "anyOf" and not error.absolute_path:
        item = schema["allOf"][where[1]]  # jsonschema reports the anyOf under the argument that needs it
        return _begun(rule["anyOf"], given) or rule_sentences(item)[list(item["dependentSchemas"]).index(where[3])]
    if error.absolute_path or rule_form(rule) != form:
        return None
    if form == "dependentRequired":
        for a, deps in rule[form].items():
            missing = [d for d in deps if a in given and d not in given]
            if missing:
                return missing[0], rule.get("description") or f"is required with {a}"
        return None
    if form == "anyOf":
        begun = _begun(rule[form], given)
        if begun:
            return begun
    return rule_sentences(rule)[0]


def _begun(groups, given: dict) -> tuple[str, str] | None:
    """A group begun (a team without its channel): (what it lacks, "is required with ...")."""
    for group in groups:
        have = [n for n in group["required"] if n in given]
        if have:
            return next(n for n in group["required"] if n not in given), f"is required with {_and(have)}"
    return None


def _order(error) -> tuple:
    """Which error speaks: an argument's own first (a missing one, a wrong value), then a rule
    between them: arguments that conflict (adding one never mends that), then what a given
    argument needs, then "give one of these"."""
    if error.absolute_path or error.validator == "required":
        rank = 0
    elif "dependentSchemas" in error.absolute_schema_path:
        rank = 2
    else:
        rank = {"not": 1, "dependentRequired": 2, "anyOf": 3}.get(error.validator, 4)
    return rank, list(error.absolute_path), error.validator


def _describe(error, schema: dict) -> tuple[str, str]:
    """(argument, message) for a jsonschema error, in words a user reads. jsonschema's own
    messages embed the whole offending value, so every case is phrased here and a value is
    only ever shown through quote()."""
    broken = _broken_rule(error, schema)
    if broken is not None:
        return broken
    path = [str(p) for p in error.absolute_path]
    arg = path[0] if path else ""
    # Inside an object argument (routes): say where, the keys being the user's own text.
    at = f"at {quote('/'.join(path[1:]), 60)}: " if len(path) > 1 else ""
    v, want = error.validator, error.validator_value
    if v == "required":
        missing = [name for name in want if isinstance(error.instance, dict) and name not in error.instance]
        return (missing[0] if missing else arg), "is required"
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {}))) if isinstance(
            error.instance, dict) else []
        return arg, f"{at}unexpected key {quote(extra[0], 60) if extra else ''}".rstrip()
    if v == "enum":
        return arg, f"{at}expected one of {', '.join(map(str, want))}, got {quote(error.instance)}"
    if v == "minLength":
        return arg, f"{at}must not be empty" if want == 1 else f"{at}must be at least {want} characters"
    if v == "maxLength":
        return arg, f"{at}must be at most {want} characters (got {len(error.instance)})"
    if v == "minItems":
        return arg, f"{at}needs at least {want} value(s)"
    if v == "maxItems":
        return arg, f"{at}takes at most {want} value(s)"
    if v in ("minimum", "maximum"):
        return arg, f"{at}must be {'at least' if v == 'minimum' else 'at most'} {want}"
    if v == "type":
        return arg, f"{at}expected {want}, got {type(error.instance).__name__}"
    if v in ("anyOf", "oneOf"):
        if all(isinstance(s, dict) and s.get("title") for s in want):  # shapes named in commands.yml
            return arg, f"{at}expected {' or '.join(s['title'] for s in want)}"
        return arg, f"{at}expected {' or '.join(_kind(s) for s in want)}, got {type(error.instance).__name__}"
    if v == "pattern":
        return arg, f"{at}{quote(error.instance)} does not match the pattern {want}"
    return arg, f"{at}{quote(error.instance)} is not valid here ({v})"


def _kind(schema) -> str:
    """'a string' / 'a list' for one alternative of an anyOf, in a user's words."""
    typ = schema.get("type") if isinstance(schema, dict) else None
    return {"string": "a string", "array": "a list", "object": "an object", "integer": "a whole number",
            "number": "a number", "boolean": "true or false"}.get(typ, "another form")


def canonical_name(spec: CommandSpec, key: str) -> str | None:
    """The argument a name given by a user stands for: itself, or the argument it is an alias
    of (XSOAR's names: `channel_name` for `channel`); dashes read as underscores. None when
    the command has no such argument."""
    name = str(key).replace("-", "_")
    if name in spec.arguments.get("properties", {}):
        return name
    return spec.argument_aliases.get(name)


def valid_names(spec: CommandSpec) -> str:
    """'team (or team_id), member (or user_id), owner' for an unknown-argument message."""
    aliases: dict[str, list[str]] = {}
    for alias, canon in spec.argument_aliases.items():
        aliases.setdefault(canon, []).append(alias)
    return ", ".join(n + (f" (or {', '.join(aliases[n])})" if n in aliases else "")
                     for n in spec.arguments.get("properties", {})) or "none"


def canonical(spec: CommandSpec, raw: dict, *, skip_none: bool = True) -> dict:
    """``raw`` with every alias replaced by the argument it stands for. An unknown name, or one
    argument given under two of its names (`channel` and `channel_name`), is an ArgumentError.
    Values of None count as not given (``skip_none``)."""
    out: dict = {}
    given_as: dict[str, str] = {}
    for key, value in raw.items():
        name = canonical_name(spec, key)
        if name is None:
            raise ArgumentError(clean(str(key).replace("-", "_"), 60),
                                f"unknown argument for '{spec.name}' (valid: {valid_names(spec)})")
        if value is None and skip_none:
            continue
        if name in given_as:
            first, second = (clean(str(k), 60) for k in (given_as[name], key))
            raise ArgumentError(name, f"given twice, as '{first}' and as '{second}' (the same argument under "
                                      "two names): give it once")
        given_as[name] = key
        bad = lone_surrogate(value)
        if bad is not None:
            # Half of a UTF-16 pair (JSON's lone "\ud800" escape), or a byte that was not UTF-8
            # (surrogateescape): UTF-8 has no form for it, so nothing could store or send it.
            where, point, in_key = bad
            where = f"a key of {where or 'it'} " if in_key else f"item {where} " if where else ""
            raise ArgumentError(name, f"{where}is not valid text: it holds "
                                      f"U+{ord(point):04X}, half of a UTF-16 surrogate pair or a byte that is not "
                                      "UTF-8, which nothing can store or send",
                                hint="send the text as UTF-8 (in JSON, a character outside the BMP as a whole pair)")
        out[name] = value
    return out


def validate(spec: CommandSpec, raw: dict) -> dict:
    """Map aliases, coerce, apply defaults, validate. Unknown arguments are refused with the valid names."""
    given = canonical(spec, raw)
    if not given and getattr(spec, "bare_ok", False):
        # Nothing given, and the registry check found the defaults alone valid: the answer is
        # known without importing jsonschema (~150 ms), as for `msteams cache-show`.
        return {name: thaw(p["default"]) for name, p in spec.arguments.get("properties", {}).items() if "default" in p}
    import jsonschema

    schema = thaw(spec.arguments)
    props: dict = schema.get("properties", {})
    args: dict = {}
    for name, value in given.items():
        args[name] = _coerce(name, value, props[name])
    for name, p in props.items():
        if name not in args and "default" in p:
            args[name] = p["default"]
    schema.setdefault("additionalProperties", False)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(args), key=_order)
    if errors:
        arg, msg = _describe(errors[0], schema)
        raise ArgumentError(arg or "?", msg)
    return args


_WORD = re.compile(r"""([ \t\r\n]+)|([^ \t\r\n'"\\]+)|'([^']*)'|"([^"\\]*(?:\\.[^"\\]*)*)"|\\(.)|(.)""", re.S)
_DQ_ESCAPE = re.compile(r'\\(["\\])')


def split_words(text: str) -> list[str]:
    """shlex.split(text) semantics (POSIX quoting, no comments) in linear time: shlex builds
    each word a character at a time, which takes seconds on a 600 KB value."""
    words: list[str] = []
    current: list[str] | None = None
    for m in _WORD.finditer(text):
        space, plain, single, double, escaped, stray = m.groups()
        if space is not None:
            if current is not None:
                words.append("".join(current))
                current = None
            continue
        if current is None:
            current = []
        if plain is not None:
            current.append(plain)
        elif single is not None:
            current.append(single)
        elif double is not None:
            current.append(_DQ_ESCAPE.sub(r"\1", double))
        elif escaped is not None:
            current.append(escaped)
        elif stray == "\\":
            raise ValueError("No escaped character")
        else:
            raise ValueError("No closing quotation")
    if current is not None:
        words.append("".join(current))
    return words


def parse_warroom(line: str) -> tuple[str, dict]:
    """`!chat-create chat_type=group member="a@x,b@y"` -> ('chat-create', {...}).

    Values are literal text: quotes group words, nothing is evaluated.
    """
    text = line.strip()
    if text.startswith("!"):
        text = text[1:]
    try:
        tokens = split_words(text)
    except ValueError as exc:
        raise InputError(f"cannot parse command line: {exc}") from None
    if not tokens:
        raise InputError("empty command line")
    name, args = tokens[0], {}
    for tok in tokens[1:]:
        if "=" not in tok:
            raise InputError(f"expected name=value, got {quote(tok)}",
                             hint=f'quote values with spaces: {clean(tok.split("=")[0], 60)}="..."')
        k, v = tok.split("=", 1)
        if k in args:
            args[k] = split_list([args[k], v]) if isinstance(args[k], str | list) else v
        else:
            args[k] = v
    return name, args


def to_argv_pairs(values: Iterable[str]) -> dict:
    """['k=v', ...] (playbook --input, repeated) -> {'k': 'v'}."""
    out = {}
    for item in values:
        if "=" not in item:
            raise InputError(f"expected name=value, got {quote(item)}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out
