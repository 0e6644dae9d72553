"""Loads `commands.yml`, checks it in full, and freezes it into command specs.

Every load is a full check, whatever the front end (help, `--help`, a command, the war-room form,
the shell, playbooks, docs): the YAML read through :mod:`integration.engine.yamlfile` (duplicate keys,
alias cycles), each command against the meta-schema `commands.schema.json` (unknown fields), each
argument schema against JSON Schema's own (``check_schema``), defaults against their argument,
templates (`{name}` in a request's path, query and body, and a declared command's title and
message) against the arguments and resolved ids, aliases, and the handlers both ways (a command's
handler must exist in `integration/handlers`, and every function a handlers module lists in
``HANDLERS`` must have a command). Every refusal is a FileError naming the file and line (exit 2).

That check costs ~0.3 s (PyYAML, jsonschema, the handler modules), so its result is cached per
content: the parsed commands as JSON in ``$XDG_CACHE_HOME/msteams-soar/`` (or
``~/.cache/msteams-soar/``), under a sha256 of the file's bytes, the package version, the
meta-schema's bytes and the size and time of the code that does the checking (this module,
yamlfile, the handler modules). A changed byte of the registry or meta-schema, or a changed code
file, means a full check again. A cache file that cannot be read, is not the user's own, or does
not hold what is expected is ignored and rebuilt; without a writable cache directory every load
checks in full. A warm load imports neither PyYAML nor jsonschema, and freezes only the commands
used.

The registry used is `integration/commands.yml`, or the file ``$MSTEAMS_REGISTRY`` names.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from integration import __version__
from .errors import FileError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # integration/: commands.yml and its schema
# Handlers are plugins found by package name, so the engine (the lowest stage) imports none of them.
HANDLERS_PACKAGE = "integration.handlers"
COMMANDS_FILE = PACKAGE_DIR / "commands.yml"
META_SCHEMA_FILE = PACKAGE_DIR / "commands.schema.json"
REGISTRY_ENV = "MSTEAMS_REGISTRY"  # another registry file (tests, a site's own commands)
CACHE_FORMAT = "msteams-soar registry cache 1"
CACHE_KEEP = 8  # cache files kept (one per registry content seen); older ones are removed

# Patterns of the full check (compiled there, through re's own cache: a warm start needs none).
_COMMAND_NAME = r"[a-z0-9][a-z0-9-]*"
_ARGUMENT_NAME = r"[a-z][a-z0-9_]*"
_TEMPLATE = r"\{(\w+)\}"  # as dispatch fills them


class CommandSpec:
    """One command of the registry, read-only once built."""

    __slots__ = ("name", "description", "arguments", "flows", "lookups", "category", "aliases", "local",
                 "handler", "resolve", "request", "outputs", "example", "calls", "bare_ok", "destructive",
                 "store_only")

    def __init__(self, name: str, description: str, arguments, flows: tuple, lookups: tuple = (),
                 category: str = "admin", aliases: tuple = (), local: bool = False, handler: str | None = None,
                 resolve=None, request=None, outputs=None, example: str | None = None, calls: tuple = (),
                 bare_ok: bool = False, destructive: bool = False, store_only: bool = False):
        values = dict(name=name, description=description, arguments=arguments,  # JSON Schema (read-only)
                      flows=flows,  # ((flow, (permission, ...)), ...) in order of preference
                      lookups=lookups,  # same shape: Graph flows used only to look names up (bot commands)
                      category=category, aliases=aliases, local=local, handler=handler,
                      resolve={} if resolve is None else resolve, request=request,
                      outputs={} if outputs is None else outputs, example=example,
                      calls=calls,  # what a handler command calls, for docs and dry runs ("POST /chats")
                      # the registry check found a call without arguments valid (its defaults):
                      # arguments.validate then needs no jsonschema for it
                      bare_ok=bare_ok,
                      # deletes or removes what cannot be had back by running another command
                      # (team-delete, member removals, cache-reset): an HTTP API key needs a
                      # scope naming it exactly, never a glob (frontends/service/keys.py)
                      destructive=destructive,
                      # answers from the context store alone (no network, no wait): the HTTP
                      # service runs it on its event loop (frontends/lane.py)
                      store_only=store_only)
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, key, value):
        raise AttributeError(f"CommandSpec is read-only (cannot set {key!r})")

    def replace(self, **changes) -> CommandSpec:
        """A copy with some fields changed (other arguments: no longer known valid bare)."""
        values = {k: getattr(self, k) for k in self.__slots__}
        if "arguments" in changes and "bare_ok" not in changes:
            values["bare_ok"] = False
        values.update(changes)
        return CommandSpec(**values)

    def __eq__(self, other):
        if other.__class__ is not CommandSpec:
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self):
        return hash((self.name, self.handler, self.description))

    def __repr__(self):
        return f"CommandSpec(name={self.name!r}, handler={self.handler!r}, flows={self.flow_names!r})"

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
    """The commands by name. Built from specs, or from checked plain data (``commands``), each
    command then frozen into its spec when first asked for (a command starts with only its own)."""

    def __init__(self, specs: dict[str, CommandSpec] | None, source: str, *, commands: dict | None = None,
                 bare_ok=()):
        self.source = source
        self._specs: dict[str, CommandSpec] = dict(specs or {})
        self._commands = commands or {}
        self._bare = frozenset(bare_ok)
        self._order = list(self._specs) + [n for n in self._commands if n not in self._specs]  # file order
        self._aliases = {a: s.name for s in self._specs.values() for a in s.aliases}
        self._aliases.update({a: n for n, body in self._commands.items() for a in body.get("aliases", ())})

    def _spec(self, name: str) -> CommandSpec | None:
        spec = self._specs.get(name)
        if spec is None and name in self._commands:
            spec = self._specs[name] = _spec_of(name, self._commands[name], name in self._bare)
        return spec

    @property
    def specs(self) -> dict[str, CommandSpec]:
        return {n: self._spec(n) for n in self._order}

    def get(self, name: str) -> CommandSpec | None:
        name = name.strip()
        return self._spec(name) or self._spec(self._aliases.get(name, ""))

    def names(self) -> list[str]:
        return sorted(self._order)

    def all_names(self) -> list[str]:
        return sorted(self._order + list(self._aliases))

    def __iter__(self):
        return iter(self._spec(n) for n in self.names())

    def descriptions(self) -> list[tuple[str, str]]:
        """(name, description) of every command, sorted, without building the specs (--help)."""
        return [(n, self._specs[n].description if n in self._specs else self._commands[n]["description"].strip())
                for n in self.names()]

    def permissions_by_flow(self) -> dict[str, dict[str, list[str]]]:
        """{flow: {command: [permissions]}} for every Graph command (name lookups included)."""
        out: dict[str, dict[str, list[str]]] = {}
        for spec in self:
            for flow, perms in spec.flows + spec.lookups:
                have = out.setdefault(flow, {}).setdefault(spec.name, [])
                have += [p for p in perms if p not in have]
        return out


def _freeze(value):
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


# Rules between arguments: `arguments.allOf` in commands.yml, one rule an item, in one of four
# JSON Schema forms (so the OpenAPI document states them as well as the validation keeps them):
# {dependentRequired: {a: [b]}}: b is required with a; {anyOf: [{required: [a]}, {required:
# [b, c]}]}: give a, or b and c; {not: {required: [a, b]}}: not a and b together;
# {dependentSchemas: {a: {anyOf: [{required: [b]}, {required: [c]}]}}}: with a, give b or c. An
# item's `description` is the sentence its error and the docs say (of a dependentRequired: what
# follows the argument's name, "is required with a"); engine/arguments.py words those without one.
_RULE_KEYWORDS = frozenset({"anyOf", "oneOf", "not", "dependentRequired", "dependentSchemas", "if", "then", "else"})
RULE_FORMS = ("{dependentRequired: {a: [b]}}, {anyOf: [{required: [a]}, {required: [b, c]}]}, {not: {required: "
              "[a, b]}} or {dependentSchemas: {a: {anyOf: [{required: [b]}, {required: [c]}]}}}")


def rule_form(rule) -> str | None:
    """Which of the four forms a rule has ('dependentRequired', 'anyOf', 'not',
    'dependentSchemas'), or None. (A spec's rules are frozen: mappings and tuples, not dicts and
    lists.)"""
    if not isinstance(rule, Mapping):
        return None
    keys = set(rule) - {"description"}
    if keys == {"dependentRequired"} and isinstance(rule["dependentRequired"], Mapping):
        return "dependentRequired"
    if keys == {"anyOf"} and _groups(rule["anyOf"]):
        return "anyOf"
    if keys == {"not"} and isinstance(rule["not"], Mapping) and set(rule["not"]) == {"required"} and \
            _seq(rule["not"]["required"]) and len(rule["not"]["required"]) >= 2:
        return "not"
    if keys == {"dependentSchemas"} and isinstance(rule["dependentSchemas"], Mapping) and rule["dependentSchemas"] \
            and all(isinstance(s, Mapping) and set(s) == {"anyOf"} and _groups(s["anyOf"])
                    for s in rule["dependentSchemas"].values()):
        return "dependentSchemas"
    return None


def _seq(value) -> bool:
    return isinstance(value, list | tuple)


def _groups(value) -> bool:
    """An anyOf of groups of names, each {required: [...]}."""
    return _seq(value) and bool(value) and all(
        isinstance(g, Mapping) and set(g) == {"required"} and _seq(g["required"]) and g["required"] for g in value)


def rule_names(rule: dict) -> list[str]:
    """The arguments a rule names, in its order."""
    form = rule_form(rule)
    if form == "dependentRequired":
        return list(dict.fromkeys(n for a, deps in rule[form].items() for n in (a, *deps)))
    if form == "anyOf":
        return list(dict.fromkeys(n for g in rule[form] for n in g["required"]))
    if form == "dependentSchemas":
        return list(dict.fromkeys(n for a, sub in rule[form].items()
                                  for n in (a, *(m for g in sub["anyOf"] for m in g["required"]))))
    return list(rule["not"]["required"]) if form == "not" else []


def thaw(value):
    """A mutable deep copy of a frozen spec value (for jsonschema and request templates)."""
    if isinstance(value, MappingProxyType | dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


def available_handlers() -> dict:
    """Every function listed in the HANDLERS of a module under integration/handlers, as 'module.function'."""
    import importlib
    import pkgutil

    handlers = importlib.import_module(HANDLERS_PACKAGE)
    found: dict = {}
    for mod in pkgutil.iter_modules(handlers.__path__):
        m = importlib.import_module(f"{handlers.__name__}.{mod.name}")
        for name in getattr(m, "HANDLERS", ()):
            fn = getattr(m, name, None) if isinstance(name, str) else None
            if not callable(fn):
                raise FileError(getattr(m, "__file__", m.__name__),
                                f"HANDLERS lists {name!r}, which is not a function of {m.__name__}")
            found[f"{mod.name}.{name}"] = fn
    return found


def resolve_handler(dotted: str):
    handler = _handlers.get(dotted)
    if handler is None:
        import importlib

        mod, fn = dotted.split(".")
        handler = _handlers[dotted] = getattr(importlib.import_module(f"{HANDLERS_PACKAGE}.{mod}"), fn)
    return handler


_handlers: dict = {}  # "module.function" -> the handler (a service resolves one each call)


# ---------------------------------------------------------------- loading (and the cache)

def registry_path() -> Path:
    """The registry file in use: $MSTEAMS_REGISTRY, else the shipped commands.yml."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(os.path.expanduser(env)) if env else COMMANDS_FILE


def load(path: str | Path | None = None, *, cache: bool = True, check_handlers: bool = True,
         validate: bool = True) -> Registry:
    """Load a registry file (default: :func:`registry_path`), checked in full or taken from the
    cache of an earlier full check of the same content. ``check_handlers`` and ``validate`` are
    accepted for older callers and change nothing: there is no partial check any more."""
    path = Path(path) if path else registry_path()
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FileError(source, f"cannot read: {exc.strerror or exc}") from None
    key = _cache_key(raw) if cache else None
    if key:
        cached = _cache_read(key)
        if cached is not None:
            try:
                return _build(cached["commands"], cached["bare_ok"], source, lazy=True)
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # not what this version writes: check the file again
    commands, bare_ok = check(raw, source)
    reg = _build(commands, bare_ok, source)
    if key:
        _cache_write(key, {"format": CACHE_FORMAT, "key": key, "version": __version__,
                           "commands": commands, "bare_ok": sorted(bare_ok)})
    return reg


# What _spec_of reads from a command, as a check leaves it: (field, types, default when absent).
_SHAPE = (("description", str, None), ("arguments", dict, None), ("flows", dict, {}), ("lookups", dict, {}),
          ("category", str, ""), ("aliases", list, []), ("local", bool, False), ("handler", str | None, None),
          ("resolve", dict, {}), ("request", dict | None, None), ("outputs", dict, {}), ("example", str | None, None),
          ("calls", list, []), ("destructive", bool, False), ("store_only", bool, False))


def _spec_of(name: str, body: dict, bare_ok: bool) -> CommandSpec:
    return CommandSpec(
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
        bare_ok=bare_ok,
        destructive=bool(body.get("destructive", False)),
        store_only=bool(body.get("store_only", False)),
    )


def _build(commands: dict, bare_ok, source: str, *, lazy: bool = False) -> Registry:
    """The registry of checked commands: every spec built now, or (``lazy``, from the cache,
    whose content a full check once passed) each on first use."""
    if lazy:
        for body in commands.values():
            if not all(isinstance(body.get(k, default), kinds) for k, kinds, default in _SHAPE):
                raise TypeError("not the shape a check leaves")
        return Registry(None, source, commands=commands, bare_ok=bare_ok)
    bare = set(bare_ok)
    return Registry({name: _spec_of(name, body, name in bare) for name, body in commands.items()}, source)


_loaded: dict = {}


def default_registry() -> Registry:
    """The registry in use (:func:`registry_path`), loaded once per process and file."""
    path = str(registry_path())
    reg = _loaded.get(path)
    if reg is None:
        reg = _loaded[path] = load(path)
    return reg


default_registry.cache_clear = _loaded.clear  # as when it was an lru_cache


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/msteams-soar, or ~/.cache/msteams-soar (a relative XDG path is ignored, as
    the XDG spec says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msteams-soar"


def _sha256():
    try:  # CPython's own sha256, without loading OpenSSL (hashlib's ~6 ms import)
        from _sha256 import sha256
    except ImportError:
        try:
            from _sha2 import sha256  # Python 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256


def _checker_files() -> list[str]:
    """The code a full check runs besides the meta-schema: this module, yamlfile, the handlers."""
    here = os.path.realpath(__file__)
    handlers = str(PACKAGE_DIR / "handlers")
    return [here, os.path.join(os.path.dirname(here), "yamlfile.py")] + sorted(
        os.path.join(handlers, n) for n in os.listdir(handlers) if n.endswith(".py"))


def _cache_key(raw: bytes) -> str | None:
    """sha256 over the registry's bytes, the package version, the meta-schema's bytes, and the
    size and modification time of each file of checking code (hashing their ~100 KB on every
    start would cost more than the rest of the key)."""
    sha256 = _sha256()
    h = sha256(f"{CACHE_FORMAT}\0{__version__}\0".encode())
    h.update(sha256(raw).digest())
    try:
        h.update(sha256(META_SCHEMA_FILE.read_bytes()).digest())
        for p in _checker_files():
            st = os.stat(p)
            h.update(f"{os.path.basename(p)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    except OSError:
        return None  # cannot tell what checked it: no cache
    return h.hexdigest()


def _cache_file(key: str) -> Path:
    return cache_dir() / f"registry-{key[:40]}.json"


def read_private(path: Path) -> bytes | None:
    """A cache file's bytes, or None when missing, unreadable or not ours (someone else's file in
    our cache directory is not trusted)."""
    try:
        with open(path, "rb") as f:
            if hasattr(os, "geteuid") and os.fstat(f.fileno()).st_uid != os.geteuid():
                return None
            return f.read()
    except OSError:
        return None


def write_private(target: Path, data: bytes) -> bool:
    """A cache file written atomically (a temp file renamed over), mode 0600, in a 0700
    directory; False when it could not be (which only means no cache)."""
    import tempfile

    tmp = None
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name.split('-')[0]}-", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        os.replace(tmp, target)
        tmp = None
        return True
    except (OSError, ValueError):
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _cache_read(key: str) -> dict | None:
    import json

    raw = read_private(_cache_file(key))
    try:
        data = json.loads(raw) if raw is not None else None
    except (ValueError, RecursionError):  # not JSON (or not UTF-8)
        return None
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key \
            or not isinstance(data.get("commands"), dict) or not isinstance(data.get("bare_ok"), list):
        return None
    return data


def _cache_write(key: str, payload: dict) -> None:
    """Atomically, mode 0600 (write_private); any failure just means no cache."""
    import json

    try:
        text = json.dumps(payload, separators=(",", ":"))  # ASCII: even a lone surrogate is written
    except (TypeError, ValueError):
        return
    target = _cache_file(key)
    if write_private(target, text.encode("ascii")):
        try:
            _cache_prune(target.parent, target)
        except OSError:
            pass


def _cache_prune(directory: Path, keep: Path) -> None:
    import time

    entries = []
    for e in os.scandir(directory):
        try:
            if e.name.startswith("registry-") and e.name.endswith(".json") and e.path != str(keep):
                entries.append((e.stat().st_mtime, e.path))
            elif e.name.startswith(".registry-") and e.name.endswith(".tmp") \
                    and e.stat().st_mtime < time.time() - 3600:  # left by a killed process
                os.unlink(e.path)
        except OSError:
            continue
    for _, p in sorted(entries)[:max(0, len(entries) - (CACHE_KEEP - 1))]:
        try:
            os.unlink(p)
        except OSError:
            pass


# ---------------------------------------------------------------- the full check

def check(raw: bytes, path: str) -> tuple[dict, set]:
    """Check a registry file's bytes in full: (its commands as plain data, the names of the
    commands whose call without arguments is valid). FileError (file and line) for any problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                        line=raw.count(b"\n", 0, exc.start) + 1) from None
    from . import yamlfile

    data, node = yamlfile.parse(text, path)
    lines = yamlfile.LineMap(node)
    if not isinstance(data, dict) or not isinstance(data.get("commands"), dict):
        line = lines.line(["commands"]) if isinstance(data, dict) and "commands" in data else None
        raise FileError(path, "expected a top-level mapping 'commands:'",
                        line=line or (node.start_mark.line + 1 if node is not None else 1))
    for key in data:
        if key != "commands":
            raise FileError(path, f"unknown top-level key {_show(key)} (only 'commands' is expected)",
                            line=lines.line([key]))
    commands = data["commands"]
    _check_plain(commands, path, lines)
    bare_ok = _check_commands(commands, path, lines)
    _check_handlers(commands, path, lines)
    return commands, bare_ok


def _show(value) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 80 else text[:80] + "..."


def _check_plain(commands: dict, path: str, lines) -> None:
    """Only what JSON can hold: string keys; strings, numbers, booleans, null, lists, mappings
    (no dates, binary or sets). The cache keeps the commands as JSON, exactly."""
    stack: list = [(commands, ["commands"])]
    seen: set = set()
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict | list):
            if id(value) in seen:  # a YAML alias: checked once
                continue
            seen.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise FileError(path, f"key {_show(k)} is not a string (quote it)", line=lines.line(where + [k]))
                stack.append((v, where + [k]))
        elif isinstance(value, list):
            stack.extend((v, where + [i]) for i, v in enumerate(value))
        elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise FileError(path, "not a finite number (quote it for text)", line=lines.line(where))
        elif not (value is None or isinstance(value, str | int | float | bool)):
            raise FileError(path, f"a value of type {type(value).__name__} is not allowed here (quote it for text)",
                            line=lines.line(where))


def _template_names(value, where: list):
    """(name, path) of every {name} in the strings of a request template."""
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, str):
            for m in re.finditer(_TEMPLATE, v):
                yield m.group(1), at
        elif isinstance(v, dict):
            stack.extend((x, at + [k]) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, at + [i]) for i, x in enumerate(v))


def _non_local_refs(schema, where: list):
    """(ref, path) of every $ref / $dynamicRef that leaves the arguments schema."""
    stack = [(schema, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("$ref", "$dynamicRef") and not (isinstance(x, str) and x.startswith("#")):
                    yield x, at + [k]
                elif k not in ("default", "enum", "const", "examples"):
                    stack.append((x, at + [k]))
        elif isinstance(v, list):
            stack.extend((x, at + [i]) for i, x in enumerate(v))


def _check_commands(commands: dict, path: str, lines) -> set:
    import difflib
    import json

    import jsonschema

    meta = json.loads(META_SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(meta)
    seen_aliases: dict[str, str] = {}
    bare_ok: set = set()

    def fail(name: str, where: list, message: str):
        raise FileError(path, f"command '{name}', {message}", line=lines.line(["commands", name, *where]))

    def field(where) -> str:
        return ".".join(str(p) for p in where)

    for name, body in commands.items():
        if not re.fullmatch(_COMMAND_NAME, name):
            raise FileError(path, f"command name {_show(name)}: use lowercase letters, digits and dashes",
                            line=lines.line(["commands", name]))
        errors = list(validator.iter_errors(body))
        if errors:
            located = []
            for e in errors:
                where = list(e.absolute_path)
                if e.validator == "additionalProperties" and isinstance(e.instance, dict):
                    known = e.schema.get("properties", {})
                    extra = [k for k in e.instance if k not in known]
                    if extra:
                        close = difflib.get_close_matches(extra[0], list(known), n=1)
                        message = f"unknown field '{field(where + [extra[0]])}'" + (
                            f" (did you mean '{close[0]}'?)" if close else "")
                        located.append((lines.line(["commands", name, *where, extra[0]]) or 0, where + [extra[0]],
                                        message))
                        continue
                message = f"field '{field(where)}': {e.message}" if where else e.message
                located.append((lines.line(["commands", name, *where]) or 0, where, message))
            _, where, message = min(located, key=lambda t: t[0])
            fail(name, where, message)
        args = body["arguments"]
        try:
            jsonschema.Draft202012Validator.check_schema(args)
        except jsonschema.SchemaError as exc:
            where = ["arguments", *exc.absolute_path]
            fail(name, where, f"field '{field(where)}': not a valid JSON Schema: {exc.message}")
        for ref, where in _non_local_refs(args, ["arguments"]):
            fail(name, where, f"field '{field(where)}': {_show(ref)} leaves the arguments schema "
                              "(only references starting with '#' are allowed)")
        props = args["properties"]
        for pname in props:
            if not re.fullmatch(_ARGUMENT_NAME, pname):
                fail(name, ["arguments", "properties", pname],
                     f"argument name {_show(pname)}: use lowercase letters, digits and underscores")
        for i, req in enumerate(args.get("required", [])):
            if req not in props:
                fail(name, ["arguments", "required", i], f"field 'arguments.required': '{req}' is not an argument")
        for key in _RULE_KEYWORDS & set(args):
            fail(name, ["arguments", key], f"field 'arguments.{key}': rules between arguments go in arguments.allOf, "
                                           f"one an item: {RULE_FORMS}")
        for i, rule in enumerate(args.get("allOf", [])):
            where = ["arguments", "allOf", i]
            if rule_form(rule) is None:
                fail(name, where, f"field '{field(where)}': a rule between arguments is {RULE_FORMS}, "
                                  "with a description or not")
            for arg in rule_names(rule):
                if arg not in props:
                    fail(name, where, f"field '{field(where)}': '{arg}' is not an argument (a rule names arguments, "
                                      "not their aliases)")
                if "default" in props[arg]:
                    fail(name, where, f"field '{field(where)}': '{arg}' has a default, so it is always given: "
                                      "a rule on it could never hold or never fail")
        resolved: dict[str, str] = {}
        for pname, r in body.get("resolve", {}).items():
            if r["from"] not in props:
                fail(name, ["resolve", pname, "from"], f"field 'resolve.{pname}.from': '{r['from']}' is not an argument")
            if r["kind"] == "channel" and resolved.get(r.get("team")) != "team":
                fail(name, ["resolve", pname], f"field 'resolve.{pname}.team': a channel needs 'team' naming a "
                                               "team resolved before it")
            resolved[pname] = r["kind"]
        taken: dict[str, str] = {}  # an argument alias must name one argument only
        for pname, p in props.items():
            for alias in p.get("aliases", []):
                where = ["arguments", "properties", pname, "aliases"]
                if alias in props:
                    fail(name, where, f"field '{field(where)}': '{alias}' is already an argument")
                if alias in taken:
                    fail(name, where, f"field '{field(where)}': '{alias}' is already an alias of '{taken[alias]}'")
                taken[alias] = pname
        for alias in body.get("aliases", []):
            other = seen_aliases.get(alias) or (alias if alias in commands else None)
            if other:
                fail(name, ["aliases"], f"field 'aliases': '{alias}' is already used by '{other}'")
            seen_aliases[alias] = name
        # Templates: dispatch fills {name} from the arguments and the resolved ids; any other
        # name would silently become "" in a request.
        known = set(props) | set(resolved)
        templated = [(body.get("request"), ["request"])]
        if not body.get("handler"):
            outputs = body.get("outputs", {})
            templated += [(outputs.get(k), ["outputs", k]) for k in ("title", "message")]
        for value, where in templated:
            for tname, at in _template_names(value, where):
                if tname not in known:
                    fail(name, at, f"field '{field(at)}': '{{{tname}}}' is not an argument or a resolved id "
                                   f"(known: {', '.join(sorted(known)) or 'none'})")
        if not body.get("handler"):
            for key, src in body.get("outputs", {}).get("fields", {}).items():
                if src.startswith("$") and src[1:] not in known:
                    fail(name, ["outputs", "fields", key], f"field 'outputs.fields.{key}': '{src}' is not an argument "
                                                            "or a resolved id")
        # Defaults must be valid for their argument; a call without arguments that passes is
        # marked, so that running it needs no jsonschema (arguments.validate).
        schema = thaw(args)
        schema.setdefault("additionalProperties", False)
        defaults = {k: p["default"] for k, p in props.items() if "default" in p}
        try:
            errs = list(jsonschema.Draft202012Validator(schema).iter_errors(defaults))
        except Exception as exc:  # a reference that does not resolve, a regex Python refuses...
            fail(name, ["arguments"], f"field 'arguments': cannot be used: {type(exc).__name__}: {exc}")
        inner = [e for e in errs if e.absolute_path]
        if inner:
            arg = inner[0].absolute_path[0]
            fail(name, ["arguments", "properties", arg, "default"],
                 f"field 'arguments.properties.{arg}.default': {inner[0].message}")
        if not errs:
            bare_ok.add(name)
    return bare_ok


def _check_handlers(commands: dict, path: str, lines) -> None:
    handlers = available_handlers()
    named: dict[str, str] = {}
    for name, body in commands.items():
        h = body.get("handler")
        if h is None:
            continue
        if h not in handlers:
            raise FileError(path, f"command '{name}', field 'handler': no handler '{h}' in integration/handlers "
                                  "(a function listed in its module's HANDLERS)",
                            line=lines.line(["commands", name, "handler"]))
        named.setdefault(h, name)
    orphans = sorted(set(handlers) - set(named))
    if orphans:
        raise FileError(path, f"handler(s) with no command: {', '.join(orphans)} (each function listed in a "
                              "handlers module's HANDLERS needs a command with `handler: module.function`)",
                        line=lines.line(["commands"]))
