"""Loads a playbook file and checks it before anything runs: YAML, the JSON Schema
(schema.json), then what a schema cannot see: unknown commands (with close names), argument
names and static argument values against each command's own schema, template syntax,
references to inputs and steps that do not exist or have not run yet, duplicate step ids and
`on_error` targets. Every problem is reported as `FILE:LINE: message`, all at once.
"""
from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration.engine.errors import ArgumentError, FileError, InputError
from integration.engine.untrusted import quote
from integration.engine.registry import CommandSpec, Registry, thaw
from . import templates as T
from integration.engine import yamlfile
from integration.engine.yamlfile import LineMap

SCHEMA_FILE = Path(__file__).resolve().parent / "schema.json"
# The playbooks shipped with the package (also at ./playbooks in a checkout), runnable by name.
LIBRARY_DIR = Path(__file__).resolve().parent / "library"
STEP_ATTRS = ("outputs", "context", "status", "error", "items", "failed")
ON_ERROR_KEYWORDS = ("fail", "continue")


@dataclass
class Step:
    index: int
    id: str
    command: str
    spec: CommandSpec
    args: dict = field(default_factory=dict)
    when: Any = None  # None, a bool, or a templates.Condition
    when_uses_item: bool = False
    foreach: Any = None  # None, a single-template string, or a list
    on_error: str = "fail"
    # "any": a step where some items (of its foreach, or of its command's fan-out) failed is
    # "partial", a failure on_error handles; "none": it is recorded as partial and the run goes on.
    fail_on: str = "any"
    retries: int = 0
    retry_delay: float = 1.0
    parallel: int = 1  # foreach items run at once (paced to the tenant's limits by the client)
    # The tenant profile the step runs against (a name or a template, such as ${inputs.tenant}
    # or ${item.tenant}); None: the playbook's `tenant:`, else the run's own tenant.
    tenant: Any = None
    outputs: dict = field(default_factory=dict)
    line: int | None = None


@dataclass
class Playbook:
    path: str
    name: str
    description: str
    inputs: dict  # name -> declaration (type, default, required, description, enum, items)
    steps: list[Step]
    outputs: dict
    lines: "LineMap | None" = None

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


def shipped() -> dict[str, Path]:
    """The shipped playbooks by name (file name without .yml), examples included."""
    found = {p.stem: p for p in sorted(LIBRARY_DIR.glob("examples/*.yml"))}
    found.update({p.stem: p for p in sorted(LIBRARY_DIR.glob("*.yml"))})
    return found


def locate(source) -> Path:
    """A path as given when it exists; otherwise a shipped playbook by name ('incident-war-room')."""
    path = Path(source)
    if path.exists() or path.parent != Path("."):
        return path
    return shipped().get(path.name.removesuffix(".yml").removesuffix(".yaml"), path)


def _read(source) -> tuple[str, str]:
    source = locate(source)
    path = str(source)
    if not source.exists() and source.parent == Path("."):
        raise FileError(path, "no such file, and no shipped playbook of that name (shipped: "
                              f"{', '.join(shipped())})")
    try:
        return path, Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileError(path, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FileError(path, "cannot read: not UTF-8 text") from None


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _label(path: list, data: Any) -> tuple[str, list]:
    """('step 'notify'', rest of path) for messages that say where, in the author's words."""
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        try:
            sid = data["steps"][path[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            sid = None
        return (f"step '{sid}'" if isinstance(sid, str) else f"step {path[1] + 1}"), path[2:]
    if len(path) >= 2 and path[0] in ("inputs", "outputs"):
        return f"{path[0][:-1]} '{path[1]}'", path[2:]
    return "", path


def _schema_problems(data: Any, lines: LineMap | None, path: str) -> list[FileError]:
    import jsonschema

    problems = []
    validator = jsonschema.Draft202012Validator(_schema())
    for e in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        where = list(e.absolute_path)
        label, rest = _label(where, data)
        fld = ".".join(str(p) for p in rest)
        prefix = f"{label}: " if label else ""
        at = f"'{fld}' " if fld else ""
        v = e.validator
        if v == "additionalProperties" and isinstance(e.instance, dict):
            allowed = list(e.schema.get("properties", {}))
            for key in e.instance:
                if key not in allowed:
                    close = difflib.get_close_matches(str(key), allowed, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(allowed)})"
                    problems.append(FileError(path, f"{prefix}unknown field '{key}'{hint}",
                                              lines.line(where + [key]) if lines else None))
            continue
        if v == "required":
            missing = e.message.split("'")[1] if "'" in e.message else e.message
            msg = f"{prefix}missing field '{missing}'" if label or not fld else f"{fld}: missing field '{missing}'"
        elif v == "type":
            want = e.validator_value if isinstance(e.validator_value, str) else " or ".join(e.validator_value)
            msg = f"{prefix}{at or 'value '}must be {'an' if want[0] in 'aeiou' else 'a'} {want}" \
                  f", not {type(e.instance).__name__}"
        elif v == "enum":
            msg = f"{prefix}{at or 'value '}must be one of {', '.join(map(str, e.validator_value))}, got {quote(e.instance)}"
        elif v == "pattern" and fld == "id":
            msg = f"{prefix}'{e.instance}' is not a valid step id (letters, digits, _ and -, not starting with a digit)"
        elif v == "not" and fld == "id":
            msg = f"{prefix}'{e.instance}' cannot be a step id: it is an on_error keyword"
        elif v == "propertyNames":
            msg = f"{prefix}{at}{e.message.replace('does not match', 'is not a valid name: does not match')}"
        elif v == "minItems" and fld == "steps":
            msg = "a playbook needs at least one step"
        else:
            msg = f"{prefix}{at}{e.message}"
        problems.append(FileError(path, msg, lines.line(where) if lines else None))
    return problems


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


class _Checker:
    """The checks after the schema, collecting every problem with its line."""

    def __init__(self, data: dict, path: str, lines: LineMap | None, registry: Registry):
        self.data, self.path, self.lines, self.registry = data, path, lines, registry
        self.problems: list[FileError] = []
        self.inputs: dict = data.get("inputs") or {}
        raw_steps = data.get("steps") or []
        self.step_index: dict[str, int] = {}
        for i, s in enumerate(raw_steps):
            self.step_index.setdefault(s["id"], i)
        self.raw_steps = raw_steps
        self.specs: dict[int, CommandSpec] = {}

    def problem(self, where: list, message: str) -> None:
        self.problems.append(FileError(self.path, message, self.lines.line(where) if self.lines else None))

    # -- inputs
    def check_inputs(self) -> None:
        import jsonschema

        for name, decl in self.inputs.items():
            if "default" in decl and decl["default"] is not None:
                errors = list(jsonschema.Draft202012Validator(input_schema(decl)).iter_errors(decl["default"]))
                if errors:
                    self.problem(["inputs", name, "default"],
                                 f"input '{name}': default {quote(decl['default'])} is not of type {decl.get('type', 'string')}"
                                 + (f" in {list(decl['enum'])}" if "enum" in decl else ""))

    # -- references
    def check_ref(self, ref: T.Ref, where: list, *, step: int | None, in_step_outputs: bool = False,
                  has_item: bool = False) -> None:
        label = f"step '{self.raw_steps[step]['id']}': " if step is not None else ""
        p = ref.parts
        if ref.root == "inputs":
            if not p:
                self.problem(where, f"{label}{ref}: name the input, e.g. ${{inputs.{next(iter(self.inputs), 'name')}}}")
            elif str(p[0]) not in self.inputs:
                declared = list(self.inputs)
                self.problem(where, f"{label}{ref} refers to an input that is not declared"
                             + (_suggest(str(p[0]), declared) or f" (declared: {', '.join(declared) or 'none'})"))
        elif ref.root == "item":
            if not has_item:
                self.problem(where, f"{label}{ref} is only available in a step with foreach")
        elif ref.root == "result":
            if not in_step_outputs:
                self.problem(where, f"{label}{ref}: 'result' is only available in a step's outputs")
        elif ref.root == "steps":
            self._check_step_ref(ref, where, step, label)

    def _check_step_ref(self, ref: T.Ref, where: list, step: int | None, label: str) -> None:
        p = ref.parts
        if not p:
            self.problem(where, f"{label}{ref}: name the step, e.g. ${{steps.<id>.outputs.<name>}}")
            return
        target = str(p[0])
        idx = self.step_index.get(target)
        if idx is None:
            self.problem(where, f"{label}{ref} refers to a step that does not exist: '{target}'"
                         + _suggest(target, list(self.step_index)))
            return
        if step is not None and idx == step:
            self.problem(where, f"{label}{ref}: a step cannot refer to itself (in its outputs, use ${{result...}})")
            return
        if step is not None and idx > step:
            self.problem(where, f"{label}{ref} refers to step '{target}' before it runs (it is step {idx + 1}, "
                                f"this is step {step + 1})")
            return
        if len(p) < 2 or str(p[1]) not in STEP_ATTRS:
            got = f" '{p[1]}'" if len(p) >= 2 else ""
            self.problem(where, f"{label}{ref}: a step has no{got or ' bare'} value; use one of: "
                                + ", ".join(f"steps.{target}.{a}" for a in STEP_ATTRS))
            return
        tstep = self.raw_steps[idx]
        if p[1] == "outputs" and len(p) >= 3:
            declared = list((tstep.get("outputs") or {}))
            if str(p[2]) not in declared:
                self.problem(where, f"{label}{ref}: step '{target}' publishes no output '{p[2]}'"
                             + (_suggest(str(p[2]), declared) or f" (its outputs: {', '.join(declared) or 'none'})"))
        if p[1] == "context" and len(p) >= 3:
            spec = self.specs.get(idx)
            prefix = spec.outputs.get("prefix") if spec else None
            path = ".".join(str(x) for x in p[2:])
            if spec and not prefix:
                self.problem(where, f"{label}{ref}: step '{target}' ({spec.name}) puts nothing in the context")
            elif spec:
                # the prefix, its next link, and what else the command writes (outputs.also/next_link/more)
                out = spec.outputs
                roots = [prefix, prefix + "NextLink", out.get("next_link")] + \
                    [a["prefix"] for a in out.get("also") or ()] + list(out.get("more") or ())
                if not any(r and (path == r or path.startswith(r + ".")) for r in roots):
                    self.problem(where, f"{label}{ref}: step '{target}' ({spec.name}) writes its context under "
                                        f"{', '.join(repr(r) for r in dict.fromkeys(r for r in roots if r))}, not '{path}'")

    def check_value(self, value: Any, where: list, *, step: int | None, in_step_outputs: bool = False,
                    has_item: bool = False) -> bool:
        """Template syntax and references in a value; False if the syntax is wrong."""
        if isinstance(value, dict):
            return all([self.check_value(v, where + [k], step=step, in_step_outputs=in_step_outputs,
                                         has_item=has_item) for k, v in value.items()])
        if isinstance(value, list):
            return all([self.check_value(v, where + [i], step=step, in_step_outputs=in_step_outputs,
                                         has_item=has_item) for i, v in enumerate(value)])
        if not isinstance(value, str):
            return True
        try:
            refs = T.refs_in(value)
        except InputError as exc:
            label = f"step '{self.raw_steps[step]['id']}': " if step is not None else ""
            self.problem(where, f"{label}{exc.message}")
            return False
        for ref in refs:
            self.check_ref(ref, where, step=step, in_step_outputs=in_step_outputs, has_item=has_item)
        return True

    # -- steps
    def check_steps(self) -> list[Step]:
        names = self.registry.all_names()
        first: dict[str, int] = {}
        for i, s in enumerate(self.raw_steps):
            if s["id"] in first:
                self.problem(["steps", i, "id"], f"duplicate step id '{s['id']}' (first used by step {first[s['id']] + 1})")
            first.setdefault(s["id"], i)
            spec = self.registry.get(s["command"])
            if spec is None:
                self.problem(["steps", i, "command"], f"step '{s['id']}': unknown command '{s['command']}'"
                             + (_suggest(s["command"], names) or " (`msteams --help` lists the commands)"))
            else:
                self.specs[i] = spec
        steps = []
        for i, s in enumerate(self.raw_steps):
            steps.append(self.check_step(i, s))
        if "tenant" in self.data:
            self.check_tenant(self.data["tenant"], ["tenant"], step=0, has_item=False)
        return steps

    def check_step(self, i: int, s: dict) -> Step:
        sid, base = s["id"], ["steps", i]
        has_item = "foreach" in s
        spec = self.specs.get(i)
        args = s.get("args") or {}
        self.check_value(args, base + ["args"], step=i, has_item=has_item)
        if spec is not None:
            self.check_args(i, sid, spec, args)
        when, uses_item = s.get("when"), False
        if isinstance(when, str):
            try:
                when = T.Condition(when)
                refs = when.refs()
            except InputError as exc:
                self.problem(base + ["when"], f"step '{sid}': when: {exc.message}")
                when, refs = None, []
            for ref in refs:
                self.check_ref(ref, base + ["when"], step=i, has_item=has_item)
                uses_item = uses_item or ref.root == "item"
        foreach = s.get("foreach")
        if isinstance(foreach, str):
            try:
                ok = T.single_ref(foreach) is not None
            except InputError as exc:
                self.problem(base + ["foreach"], f"step '{sid}': foreach: {exc.message}")
                ok = None
            if ok is False:
                self.problem(base + ["foreach"], f"step '{sid}': foreach must be one template that yields a list, "
                                                 f"such as ${{inputs.recipients}}, or a YAML list")
            elif ok:
                ref = T.single_ref(foreach)
                if ref.root == "item":
                    self.problem(base + ["foreach"], f"step '{sid}': foreach cannot loop over ${{item}}")
                else:
                    self.check_ref(ref, base + ["foreach"], step=i)
        elif isinstance(foreach, list):
            self.check_value(foreach, base + ["foreach"], step=i)
        outputs = s.get("outputs") or {}
        self.check_value(outputs, base + ["outputs"], step=i, in_step_outputs=True, has_item=has_item)
        tenant = s.get("tenant", self.data.get("tenant"))
        if "tenant" in s:
            self.check_tenant(tenant, base + ["tenant"], step=i, has_item=has_item)
        on_error = s.get("on_error", "fail")
        if on_error not in ON_ERROR_KEYWORDS:
            target = self.step_index.get(on_error)
            if target is None:
                self.problem(base + ["on_error"], f"step '{sid}': on_error: no step '{on_error}' to recover with; "
                             f"use fail, continue or a later step's id" + _suggest(on_error, list(self.step_index)))
            elif target <= i:
                self.problem(base + ["on_error"], f"step '{sid}': on_error: step '{on_error}' must come after "
                                                  f"this step (a recovery step runs later; jumps never go back)")
        return Step(index=i, id=sid, command=s["command"], spec=spec, args=args, when=when, when_uses_item=uses_item,
                    foreach=foreach, on_error=on_error, fail_on=s.get("fail_on", "any"), retries=s.get("retries", 0),
                    retry_delay=float(s.get("retry_delay", 1.0)), parallel=int(s.get("parallel", 1)), outputs=outputs,
                    tenant=tenant,
                    line=self.lines.line(base) if self.lines else None)

    def check_tenant(self, tenant: str, where: list, *, step: int, has_item: bool) -> None:
        """A tenant profile's name, or a template giving one (checked when the step runs)."""
        from integration.engine.config import TENANT_NAME

        if not self.check_value(tenant, where, step=step, has_item=has_item):
            return
        if not T.refs_in(tenant) and not TENANT_NAME.fullmatch(tenant):
            self.problem(where, f"tenant {tenant!r}: must name a tenant profile (1 to 32 lowercase letters, digits, "
                                "'_' or '-'), or be a template such as ${inputs.tenant}")

    def check_args(self, i: int, sid: str, spec: CommandSpec, args: dict) -> None:
        from integration.engine.arguments import canonical_name, valid_names

        props = dict(spec.arguments.get("properties", {}))
        original = {}
        canon = {}  # each argument key -> the argument it names (an alias: XSOAR's name for it)
        for key in args:
            name = canonical_name(spec, key)
            if name is None:
                name = str(key).replace("-", "_")
                self.problem(["steps", i, "args", key], f"step '{sid}': unknown argument '{key}' for '{spec.name}'"
                             + (_suggest(name, list(props) + list(spec.argument_aliases))
                                or f" (valid: {valid_names(spec)})"))
                continue
            if name in original:
                self.problem(["steps", i, "args", key], f"step '{sid}': argument '{name}' given twice, as "
                                                        f"'{original[name]}' and as '{key}': give it once")
                continue
            original[name] = key
            canon[key] = name
        try:
            templated = {canon[k] for k, v in args.items() if k in canon and T.has_template(v)}
            static = {canon[k]: T.render(v, _no_refs) for k, v in args.items()
                      if k in canon and not T.has_template(v)}
        except InputError:
            return  # template syntax is reported by check_value
        check_static_args(spec, static, templated, lambda arg, msg: self.problem(
            ["steps", i, "args", original[arg]] if arg in original else ["steps", i, "command"],
            f"step '{sid}': {msg}"))

    def check_playbook_outputs(self) -> None:
        self.check_value(self.data.get("outputs") or {}, ["outputs"], step=None)


def _no_refs(ref):  # pragma: no cover - only called for values without templates
    raise AssertionError(ref)


def check_static_args(spec: CommandSpec, static: dict, templated: set, report) -> bool:
    """Validate the arguments known before running against the command's schema, as if the
    templated ones were valid (they are checked when the step runs). report(arg, message)."""
    from integration.engine import arguments

    schema = thaw(spec.arguments)
    props = schema.get("properties", {})
    for name in templated:
        props.pop(name, None)
    schema["required"] = [r for r in schema.get("required", []) if r not in templated]
    if "allOf" in schema:  # a rule between arguments naming a templated one waits for the run too
        from integration.engine.registry import rule_names

        schema["allOf"] = [r for r in schema["allOf"] if not templated & set(rule_names(r))]
        if not schema["allOf"]:
            del schema["allOf"]
    partial = spec.replace(arguments=schema)
    try:
        arguments.validate(partial, {k: v for k, v in static.items() if k in props})
    except ArgumentError as exc:
        report(exc.argument, exc.message)
        return False
    return True


def input_schema(decl: dict) -> dict:
    """The JSON Schema of one declared input."""
    schema: dict = {"type": decl.get("type", "string")}
    if "enum" in decl:
        schema["enum"] = list(decl["enum"])
    if decl.get("items"):
        schema["items"] = dict(decl["items"])
    return schema


def _raise(path: str, problems: list[FileError]) -> None:
    problems.sort(key=lambda p: (p.line or 0))
    if len(problems) == 1:
        exc = problems[0]
    else:
        exc = FileError(path, f"{len(problems)} problems:\n" + "\n".join(str(p) for p in problems))
    exc.problems = problems  # every problem, for callers that list them one by one
    raise exc


def load(source: str | Path | dict, registry: Registry | None = None) -> Playbook:
    """Load and check a playbook (a file path, or an already parsed mapping). Raises FileError
    listing every problem found, each as FILE:LINE: message."""
    if registry is None:
        from integration.engine.registry import default_registry

        registry = default_registry()
    if isinstance(source, dict):
        path, lines, data = "<playbook>", None, source
        problems: list[FileError] = []
    else:
        path, text = _read(source)
        data, node = yamlfile.parse(text, path)
        lines = LineMap(node)
        problems = []
    if not isinstance(data, dict):
        raise FileError(path, "a playbook is a mapping with at least 'steps:'", line=1 if lines else None)
    problems += _schema_problems(data, lines, path)
    if problems:
        _raise(path, problems)
    checker = _Checker(data, path, lines, registry)
    checker.check_inputs()
    steps = checker.check_steps()
    checker.check_playbook_outputs()
    if checker.problems:
        _raise(path, checker.problems)
    name = data.get("name") or (Path(path).stem if path != "<playbook>" else "playbook")
    return Playbook(path=path, name=name, description=data.get("description", ""), inputs=dict(checker.inputs),
                    steps=steps, outputs=data.get("outputs") or {}, lines=lines)
