"""Turns raw argument values (CLI strings, war-room `k=v` pairs, playbook values) into typed
values and validates them against a command's JSON Schema, with defaults applied. Every
error names the argument and what was expected.
"""
from __future__ import annotations

import shlex
from typing import Any, Iterable

from .errors import ArgumentError, InputError
from .registry import CommandSpec, thaw

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
        raise ArgumentError(name, f"expected true or false, got {value!r}")
    if typ == "integer":
        try:
            return int(value.strip())
        except ValueError:
            raise ArgumentError(name, f"expected a whole number, got {value!r}") from None
    if typ == "number":
        try:
            return float(value.strip())
        except ValueError:
            raise ArgumentError(name, f"expected a number, got {value!r}") from None
    if typ == "object":
        import json

        try:
            return json.loads(value)
        except ValueError:
            raise ArgumentError(name, "expected a JSON object") from None
    return value


def _describe(error) -> tuple[str, str]:
    """(argument, message) for a jsonschema error, in words a user reads."""
    path = [str(p) for p in error.absolute_path]
    arg = path[0] if path else ""
    v = error.validator
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return missing, "is required"
    if v == "additionalProperties":
        return "", error.message
    if v == "enum":
        return arg, f"expected one of {', '.join(map(str, error.validator_value))}, got {error.instance!r}"
    if v == "minLength" and error.validator_value == 1:
        return arg, "must not be empty"
    if v == "maxLength":
        return arg, f"must be at most {error.validator_value} characters"
    if v == "minItems":
        return arg, f"needs at least {error.validator_value} value(s)"
    if v == "maxItems":
        return arg, f"takes at most {error.validator_value} value(s)"
    if v in ("minimum", "maximum"):
        return arg, f"must be {'at least' if v == 'minimum' else 'at most'} {error.validator_value}"
    if v == "type":
        return arg, f"expected {error.validator_value}, got {type(error.instance).__name__}"
    return arg, error.message


def validate(spec: CommandSpec, raw: dict) -> dict:
    """Coerce, apply defaults, validate. Unknown arguments are refused with the valid names."""
    import jsonschema

    schema = thaw(spec.arguments)
    props: dict = schema.get("properties", {})
    args: dict = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in props:
            valid = ", ".join(props) or "none"
            raise ArgumentError(name, f"unknown argument for '{spec.name}' (valid: {valid})")
        if value is None:
            continue
        args[name] = _coerce(name, value, props[name])
    for name, p in props.items():
        if name not in args and "default" in p:
            args[name] = p["default"]
    schema.setdefault("additionalProperties", False)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(args), key=lambda e: (list(e.absolute_path), e.validator))
    if errors:
        arg, msg = _describe(errors[0])
        raise ArgumentError(arg or "?", msg)
    return args


def parse_warroom(line: str) -> tuple[str, dict]:
    """`!chat-create chat_type=group member="a@x,b@y"` -> ('chat-create', {...}).

    Values are literal text: quotes group words, nothing is evaluated.
    """
    text = line.strip()
    if text.startswith("!"):
        text = text[1:]
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError as exc:
        raise InputError(f"cannot parse command line: {exc}") from None
    if not tokens:
        raise InputError("empty command line")
    name, args = tokens[0], {}
    for tok in tokens[1:]:
        if "=" not in tok:
            raise InputError(f"expected name=value, got {tok!r}",
                             hint=f'quote values with spaces: {tok.split("=")[0]}="..."')
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
            raise InputError(f"expected name=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out
