"""Loads `commands.yml`, validates it against the meta-schema, and freezes it into command
specs. Cross-checks handlers both ways at load time, so a mismatch is a load error rather
than a surprise at run time. Errors name the file, the command and the field.
"""
from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

from .errors import FileError

PACKAGE_DIR = Path(__file__).resolve().parent
COMMANDS_FILE = PACKAGE_DIR / "commands.yml"
META_SCHEMA_FILE = PACKAGE_DIR / "commands.schema.json"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    description: str
    arguments: Any  # JSON Schema (a read-only mapping)
    flows: tuple  # ((flow, (permission, ...)), ...) in order of preference
    lookups: tuple = ()  # same shape: Graph flows used only to look names up (bot commands)
    category: str = "admin"
    aliases: tuple = ()
    local: bool = False
    handler: str | None = None
    resolve: Any = field(default_factory=dict)
    request: Any = None
    outputs: Any = field(default_factory=dict)
    example: str | None = None
    calls: tuple = ()  # what a handler command calls, for docs and dry runs ("POST /chats")

    @property
    def flow_names(self) -> tuple:
        return tuple(f for f, _ in self.flows)

    def permissions(self, flow: str) -> tuple:
        return dict(self.flows).get(flow, ())

    @property
    def argument_names(self) -> list[str]:
        return list(self.arguments.get("properties", {}))

    @property
    def argument_aliases(self) -> dict[str, str]:
        """{alias: argument} from each argument's `aliases` (XSOAR's names for it)."""
        return {a: name for name, p in self.arguments.get("properties", {}).items() for a in p.get("aliases", ())}


class Registry:
    def __init__(self, specs: dict[str, CommandSpec], source: str):
        self.specs = specs
        self.source = source
        self._aliases = {a: s.name for s in specs.values() for a in s.aliases}

    def get(self, name: str) -> CommandSpec | None:
        name = name.strip()
        return self.specs.get(name) or self.specs.get(self._aliases.get(name, ""))

    def names(self) -> list[str]:
        return sorted(self.specs)

    def all_names(self) -> list[str]:
        return sorted(list(self.specs) + list(self._aliases))

    def __iter__(self):
        return iter(self.specs[n] for n in self.names())


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A mutable deep copy of a frozen spec value (for jsonschema and request templates)."""
    if isinstance(value, MappingProxyType | dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def _yaml_load(text: str, path: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FileError(path, f"not valid YAML: {getattr(exc, 'problem', exc)}",
                        line=mark.line + 1 if mark else None) from None


def _command_lines(text: str) -> dict[str, int]:
    """The line of each command's key, computed only when an error needs it."""
    import yaml

    lines: dict[str, int] = {}
    node = yaml.compose(text)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == "commands" and isinstance(v, yaml.MappingNode):
                for ck, _ in v.value:
                    lines[ck.value] = ck.start_mark.line + 1
    return lines


def available_handlers() -> dict[str, Callable]:
    """Every public function of every module under integration/handlers, as 'module.function'."""
    from . import handlers

    found: dict[str, Callable] = {}
    for mod in pkgutil.iter_modules(handlers.__path__):
        m = importlib.import_module(f"{handlers.__name__}.{mod.name}")
        for name in getattr(m, "HANDLERS", ()):
            found[f"{mod.name}.{name}"] = getattr(m, name)
    return found


def resolve_handler(dotted: str) -> Callable:
    mod, fn = dotted.split(".")
    return getattr(importlib.import_module(f"{__package__}.handlers.{mod}"), fn)


def load(path: str | Path | None = None, *, check_handlers: bool = False, validate: bool = True) -> Registry:
    """Load a registry file. ``validate`` checks it against the meta-schema (skipped only to
    print help fast); ``check_handlers`` imports every handler module (tests do)."""
    path = Path(path) if path else COMMANDS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError(str(path), f"cannot read: {exc.strerror}") from None
    data = _yaml_load(text, str(path))
    if not isinstance(data, dict) or not isinstance(data.get("commands"), dict):
        raise FileError(str(path), "expected a top-level mapping 'commands:'")
    if validate:
        _validate(data["commands"], text, str(path))
    specs: dict[str, CommandSpec] = {}
    for name, body in data["commands"].items():
        specs[name] = CommandSpec(
            name=name,
            description=body["description"].strip(),
            arguments=_freeze(body["arguments"]),
            flows=tuple((f, tuple(p)) for f, p in body.get("flows", {}).items()),
            lookups=tuple((f, tuple(p)) for f, p in body.get("lookups", {}).items()),
            category=body.get("category", "admin"),
            aliases=tuple(body.get("aliases", [])),
            local=bool(body.get("local", False)),
            handler=body.get("handler"),
            resolve=_freeze(body.get("resolve", {})),
            request=_freeze(body.get("request")),
            outputs=_freeze(body.get("outputs", {})),
            example=body.get("example"),
            calls=tuple(body.get("calls", ())),
        )
    if check_handlers:
        _check_handlers(specs, str(path), _command_lines(text))
    return Registry(specs, str(path))


def _validate(commands: dict, text: str, path: str) -> None:
    import jsonschema

    meta = json.loads(META_SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(meta)
    seen_aliases: dict[str, str] = {}

    def fail(name: str, message: str):
        raise FileError(path, f"command '{name}', {message}", line=_command_lines(text).get(name))

    for name, body in commands.items():
        if not isinstance(body, dict):
            fail(name, "expected a mapping")
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            fld = ".".join(str(p) for p in e.absolute_path) or "(command)"
            fail(name, f"field '{fld}': {e.message}")
        try:
            jsonschema.Draft202012Validator.check_schema(body["arguments"])
        except jsonschema.SchemaError as exc:
            fail(name, f"field 'arguments': {exc.message}")
        props = body["arguments"]["properties"]
        for req in body["arguments"].get("required", []):
            if req not in props:
                fail(name, f"field 'arguments.required': '{req}' is not an argument")
        for pname, r in body.get("resolve", {}).items():
            if r["from"] not in props:
                fail(name, f"field 'resolve.{pname}.from': '{r['from']}' is not an argument")
        taken: dict[str, str] = {}  # an argument alias must name one argument only
        for pname, p in props.items():
            for alias in p.get("aliases", []):
                if alias in props:
                    fail(name, f"field 'arguments.properties.{pname}.aliases': '{alias}' is already an argument")
                if alias in taken:
                    fail(name, f"field 'arguments.properties.{pname}.aliases': '{alias}' is already an alias "
                               f"of '{taken[alias]}'")
                taken[alias] = pname
        for alias in body.get("aliases", []):
            other = seen_aliases.get(alias) or (alias if alias in commands else None)
            if other:
                fail(name, f"field 'aliases': '{alias}' is already used by '{other}'")
            seen_aliases[alias] = name


def _check_handlers(specs: dict[str, CommandSpec], path: str, lines: dict[str, int]) -> None:
    handlers = available_handlers()
    named = {s.handler: s.name for s in specs.values() if s.handler}
    for h, cmd in named.items():
        if h not in handlers:
            raise FileError(path, f"command '{cmd}', field 'handler': no handler '{h}' in integration/handlers",
                            line=lines.get(cmd))
    orphans = sorted(set(handlers) - set(named))
    if orphans:
        raise FileError(path, f"handler(s) with no command: {', '.join(orphans)}")


@functools.lru_cache(maxsize=4)
def default_registry() -> Registry:
    return load()
