"""Runs a checked playbook step by step through `dispatch.execute()`, or plans it (dry run).

Per step: `when` (skip when false), `foreach` (once per item, `${item}` bound), `retries`
(re-run on errors other than input mistakes, which would fail again), `on_error` (`fail` stops
the playbook, `continue` goes on, a later step's id jumps there), then `outputs` published
from the result. Each result's context is merged into the playbook's context XSOAR-style:
entries under the same prefix with the same key field are updated, others appended.

A dry run resolves every step's arguments from the inputs (step results and the context are
shown as `<placeholders>`), checks them against the command's schema, and lists the HTTP calls
the step would make: it never builds a client, asks for a token or opens the store.
"""
from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from integration.engine.arguments import canonical_name
from integration.engine.errors import PARTIAL_EXIT, IntegrationError, InputError, PartialFailure, exit_code_for
from integration.engine.untrusted import quote
from integration.engine.registry import CommandSpec, Registry
from . import templates as T
from .loader import Playbook, Step, check_static_args, input_schema, load

_NO_ITEM = object()
# Statuses of a step, an item or a record that count as the step failing (on_error handles them).
FAILING = ("failed", "partial")


@dataclass
class PlaybookResult:
    name: str
    status: str  # "ok", "failed", "waiting", or "planned" (a dry run that found nothing wrong)
    context: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    # [{id, command, status, duration, attempts, error, outputs, readable?, reason?, items?, failed?, plan?}]
    steps: list[dict] = field(default_factory=list)
    error: BaseException | None = None  # what made the playbook fail
    failed_step: str | None = None
    dry_run: bool = False
    run_id: str | None = None  # the persisted run (`msteams playbook resume RUN_ID`)
    waiting_for: str | None = None  # status "waiting": the question id the run waits on

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "planned", "waiting")

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else exit_code_for(self.error) if self.error else 1

    def step(self, step_id: str) -> dict | None:
        return next((s for s in self.steps if s["id"] == step_id), None)

    def to_dict(self) -> dict:
        return _jsonable({"playbook": self.name, "run_id": self.run_id, "status": self.status,
                          "waiting_for": self.waiting_for, "dry_run": self.dry_run,
                          "failed_step": self.failed_step, "error": str(self.error) if self.error else None,
                          "outputs": self.outputs, "context": self.context,
                          "steps": [_public(s) for s in self.steps]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def _public(step: dict) -> dict:
    """A step record for JSON output: without the tables and the per-step context (the
    playbook's context has it all)."""
    out = {k: v for k, v in step.items() if k not in ("context", "readable")}
    if "items" in out:
        out["items"] = [{k: v for k, v in i.items() if k != "readable"} for i in out["items"]]
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------ inputs

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _coerce_input(name: str, value: Any, decl: dict) -> Any:
    typ = decl.get("type", "string")
    try:
        if typ == "array":
            if isinstance(value, str):
                if value.strip().startswith("["):
                    value = json.loads(value)
                else:
                    from integration.engine.arguments import split_list

                    value = split_list(value)
            item_decl = dict(decl.get("items") or {"type": "string"})
            return [_coerce_input(name, v, item_decl) for v in value] if isinstance(value, list | tuple) else value
        if not isinstance(value, str):
            return str(value) if typ == "string" and isinstance(value, int | float) and not isinstance(value, bool) else value
        text = value.strip()
        if typ == "integer":
            return int(text)
        if typ == "number":
            return float(text)
        if typ == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if typ == "object":
            return json.loads(value)
    except (ValueError, TypeError):
        raise InputError(f"input '{name}': expected {'a JSON ' + typ if typ in ('object', 'array') else 'a ' + typ}, "
                         f"got {quote(value)}") from None
    return value


def coerce_inputs(pb: Playbook, raw: dict | None) -> dict:
    """Typed input values: CLI strings coerced by declared type, defaults applied, required
    ones present, each checked against its declaration."""
    import jsonschema

    raw = dict(raw or {})
    unknown = [k for k in raw if k not in pb.inputs]
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}' for playbook '{pb.name}' "
                         f"(declared: {', '.join(pb.inputs) or 'none'})")
    values, missing = {}, []
    for name, decl in pb.inputs.items():
        if raw.get(name) is not None:
            values[name] = _coerce_input(name, raw[name], decl)
        elif decl.get("default") is not None:
            values[name] = copy.deepcopy(decl["default"])
        elif decl.get("required"):
            missing.append(name)
        else:
            values[name] = None
    if missing:
        raise InputError(f"missing required input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                         hint=" ".join(f"--input {m}=VALUE" for m in missing))
    for name, decl in pb.inputs.items():
        if values[name] is None:
            continue
        errors = list(jsonschema.Draft202012Validator(input_schema(decl)).iter_errors(values[name]))
        if errors:
            e = errors[0]
            if e.validator == "enum":
                msg = f"expected one of {', '.join(map(str, e.validator_value))}, got {quote(e.instance)}"
            else:
                msg = e.message
            raise InputError(f"input '{name}': {msg}")
    return values


# ------------------------------------------------------------------ context


def merge_context(context: dict, new: dict, key: str | None) -> None:
    """Merge one result's context: list entries with the same key field are updated in place
    (so a chat created then messaged is one entry), others appended; other values replaced."""
    for path, value in new.items():
        value = copy.deepcopy(value)
        current = context.get(path)
        if isinstance(value, list) and isinstance(current, list):
            for entry in value:
                match = None
                if key and isinstance(entry, dict) and entry.get(key) is not None:
                    match = next((e for e in current if isinstance(e, dict) and e.get(key) == entry[key]), None)
                if match is not None:
                    _deep_update(match, entry)
                else:
                    current.append(entry)
        else:
            context[path] = value


def _deep_update(target: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            _deep_update(target[k], v)
        elif isinstance(v, list) and isinstance(target.get(k), list) and \
                any(isinstance(x, dict) for x in v + target[k]):  # a list of objects (scalars: replaced)
            _merge_list(target[k], v)
        elif v is not None or k not in target:
            target[k] = v


_ITEM_KEYS = ("id", "userId", "messageRef")  # what identifies an object of a nested list


def _same_item(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in _ITEM_KEYS:
            if a.get(k) is not None and b.get(k) is not None:
                return a[k] == b[k]
    return a == b


def _merge_list(target: list, new: list) -> None:
    """A nested list (a chat's members, a channel's messages) merged, never replaced: objects
    already there (same id, else same userId) are updated, others appended, so no entry a
    playbook collected is dropped by a later result about the same parent."""
    for item in new:
        match = next((i for i, old in enumerate(target) if _same_item(old, item)), None)
        if match is None:
            target.append(item)
        elif isinstance(item, dict) and isinstance(target[match], dict):
            _deep_update(target[match], item)
        else:
            target[match] = item


# ------------------------------------------------------------------ dry-run call descriptions

_PARAM = re.compile(r"\{(\w+)\}")
_RESOLVE_CALL = {"user": "GET /users", "team": "GET /teams", "channel": "GET /teams/{team-id}/channels",
                 "chat": "GET /me/chats?$filter=topic"}


def declared_calls(spec: CommandSpec, registry: Registry) -> tuple:
    return spec.calls


def _fill(template: str, values: dict) -> str:
    return _PARAM.sub(lambda m: T.stringify(values[m.group(1)]) if values.get(m.group(1)) is not None
                      else m.group(0), template)


def _fill_value(value: Any, values: dict) -> Any:
    if isinstance(value, str):
        m = _PARAM.fullmatch(value)
        return values.get(m.group(1)) if m else _fill(value, values)
    if isinstance(value, dict):
        return {k: _fill_value(v, values) for k, v in value.items() if _fill_value(v, values) is not None}
    if isinstance(value, list):
        return [_fill_value(v, values) for v in value]
    return value


def planned_calls(spec: CommandSpec, args: dict, registry: Registry) -> list[str]:
    """The HTTP calls a command would make with these arguments, in words (nothing is sent)."""
    if spec.local:
        return ["none: runs locally (context store / sign-in state)"]
    from integration.engine.registry import thaw

    calls, resolved = [], {}
    for pname, rule in spec.resolve.items():
        raw = args.get(rule["from"])
        if raw is None:
            continue
        label = T.stringify(raw)
        if rule["kind"] == "chat" and isinstance(raw, str) and raw.strip().startswith("19:"):
            resolved[pname] = raw
            continue
        calls.append(f"{_RESOLVE_CALL[rule['kind']]} (find {rule['kind']} '{label}', unless cached)")
        resolved[pname] = f"<id of {rule['kind']} '{label}'>"
    if spec.request:
        req = thaw(spec.request)
        values = {**args, **resolved}
        line = f"{req['method']} {_fill(req['path'], values)}"
        query = _fill_value(req.get("query") or {}, values)
        if query:
            line += "?" + "&".join(f"{k}={T.stringify(v)}" for k, v in query.items())
        if req.get("paged"):
            line += " (paged)"
        if "body" in req:
            line += " " + json.dumps(_fill_value(req["body"], values), ensure_ascii=False, default=str)
        calls.append(line)
    else:
        calls += list(declared_calls(spec, registry)) or [f"(handler {spec.handler}; its calls are not declared)"]
    return calls


# ------------------------------------------------------------------ running

# Steps that wait for an answer: while their question is open the run is suspended (status
# "waiting", persisted), and resumed once it is answered or expired (resume_waiting_on, the
# bot endpoint, `msteams playbook worker`). The step runs again then: ask is idempotent within
# a run (the same question, its cards not sent again) and its result carries the answer.
WAITING_COMMANDS = ("ask", "ask-wait")


def _first_line(exc: BaseException) -> str:
    from integration.engine.redact import redact

    text = str(exc) if isinstance(exc, IntegrationError) else f"internal error: {type(exc).__name__}: {exc}"
    return redact(text.splitlines()[0] if text else type(exc).__name__)


class _Run:
    def __init__(self, pb: Playbook, inputs: dict, registry: Registry, out: Callable[[str], None], runtime=None,
                 dry_run: bool = False):
        self.pb, self.inputs, self.registry, self.out = pb, inputs, registry, out
        self.runtime, self.dry_run = runtime, dry_run
        self.context: dict = {}
        self.ns: dict[str, dict] = {}  # steps.<id> as templates see it
        self.records: list[dict] = []
        self.errors: dict[str, BaseException] = {}
        self.journal = None  # runs.Journal: where each checkpoint goes (None: not persisted)
        self.at, self.done = 0, set()  # the step to run next, and the steps finished
        self.partial: dict[str, dict] = {}  # a resumed step's saved record (items done before the stop)
        self.waiting: dict | None = None  # {"question", "step"} while suspended
        self.fails = 0  # times this run stopped failed: each is its own run.finished event
        self._lock = threading.RLock()  # parallel foreach items share the context and the records

    # -- persistence
    def state(self) -> dict:
        return {"inputs": self.inputs, "i": self.at, "done": sorted(self.done), "context": self.context,
                "records": self.records, "sha256": self.sha256, "waiting": self.waiting, "fails": self.fails}

    sha256 = None

    def restore(self, state: dict) -> None:
        self.context = state.get("context") or {}
        self.at, self.done = int(state.get("i", 0)), set(state.get("done") or ())
        self.records = [r for r in state.get("records") or [] if r["_index"] in self.done]
        self.partial = {r["id"]: r for r in state.get("records") or [] if r["_index"] not in self.done}
        self.ns = {r["id"]: r for r in self.records}
        self.sha256 = state.get("sha256")
        self.fails = int(state.get("fails") or 0)

    def checkpoint(self, status: str = "running") -> None:
        if self.journal is not None:
            with self._lock:
                self.journal.save(status, _jsonable(self.state()))

    # -- template resolution
    def resolver(self, item: Any = _NO_ITEM, result: Any = None) -> Callable[[T.Ref], Any]:
        def resolve(ref: T.Ref) -> Any:
            root = ref.root
            if root == "inputs":
                return T.walk(self.inputs, ref.parts)
            if root == "item":
                if item is _NO_ITEM:
                    return T.MISSING
                if isinstance(item, T.Unknown):
                    return T.Unknown(ref.text)
                return T.walk(item, ref.parts)
            if self.dry_run:  # steps, context and result are not known before running
                return T.Unknown(ref.text)
            if root == "steps":
                return T.walk(self.ns, ref.parts)
            if root == "context":
                return T.walk(self.context, ref.parts)
            if root == "result":
                return T.walk(result, ref.parts) if result is not None else T.MISSING
            return T.MISSING

        return resolve

    def _when(self, step: Step, item: Any = _NO_ITEM):
        if step.when is None:
            return True
        if isinstance(step.when, bool):
            return step.when
        return step.when.evaluate(self.resolver(item))

    def _items(self, step: Step) -> list | T.Unknown:
        if step.foreach is None:
            return [_NO_ITEM]
        value = T.render(step.foreach, self.resolver())
        if isinstance(value, T.Unknown):
            return value
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        raise InputError(f"step '{step.id}': foreach {quote(step.foreach)} gave {type(value).__name__}, not a list")

    def tag(self, step: Step, n: int | None = None, total: int | None = None) -> str:
        head = f"[{step.index + 1}/{len(self.pb.steps)}] {step.id}"
        if n is not None:
            head += f"[{n + 1}/{total}]"
        return f"{head} ({step.spec.name})"

    # -- the run
    def run(self) -> PlaybookResult:
        steps, i, done = self.pb.steps, self.at, self.done
        failed: tuple[Step, BaseException] | None = None
        self.waiting = None
        while i < len(steps):
            step = steps[i]
            rec = self.run_step(step)
            if rec["status"] == "waiting":
                self.at, self.waiting = i, {"question": rec["waiting"], "step": step.id}
                self.checkpoint("waiting")
                self.out(f"{self.tag(step)} waiting for the answer to question {rec['waiting']}"
                         + (f"; run {self.journal.id} is suspended" if self.journal else ""))
                records = [{k: v for k, v in r.items() if k != "_index"} for r in
                           sorted(copy.deepcopy(self.records), key=lambda r: r["_index"])]
                run_id = self.journal.id if self.journal else None
                self._emit("run.waiting", {"runId": run_id, "playbook": self.pb.name, "status": "waiting",
                                           "step": step.id, "questionId": rec["waiting"]},
                           (run_id, "waiting", rec["waiting"]) if run_id else None)
                return PlaybookResult(self.pb.name, "waiting", self.context, {}, records,
                                      run_id=run_id, waiting_for=rec["waiting"])
            failing = rec["status"] == "failed" or (rec["status"] == "partial" and step.fail_on != "none")
            if failing and step.on_error == "fail":
                # Not done: a resumed run starts again here (its delivered items are not resent).
                failed = (step, PartialFailure(f"step '{step.id}': {rec.get('error') or 'some items failed'}")
                          if rec["status"] == "partial" else
                          self.errors.get(step.id) or IntegrationError(rec.get("error") or "failed"))
                self.fails += 1
                self.checkpoint("failed")
                break
            done.add(i)
            if not failing:
                i += 1
            elif step.on_error == "continue":
                self.out("    on_error: continue")
                i += 1
            else:
                target = self.pb.step(step.on_error).index
                self.out(f"    on_error: recovering with step '{step.on_error}'")
                for j in range(i + 1, target):
                    self._skip(steps[j], f"jumped over: '{step.id}' failed and '{step.on_error}' recovers")
                    done.add(j)
                i = target
            self.at = i
            self.checkpoint()
        if not failed:
            self.checkpoint("ok")
        records = copy.deepcopy(self.records)
        for j, step in enumerate(steps):
            if j not in done and not any(r["id"] == step.id for r in records):
                records.append({"id": step.id, "command": step.spec.name, "duration": 0.0, "attempts": 0,
                                "error": None, "outputs": {}, "context": {}, "_index": step.index,
                                "status": "skipped", "reason": f"not run: the playbook failed at '{failed[0].id}'"
                                if failed else "not run"})
        records.sort(key=lambda r: r["_index"])
        for r in records:
            r.pop("_index", None)
        outputs = T.render(self.pb.outputs, self.resolver())
        status = "failed" if failed else "ok"
        self.out(f"playbook '{self.pb.name}': {status}" + (f" at step '{failed[0].id}'" if failed else ""))
        run_id = self.journal.id if self.journal else None
        error = failed[1] if failed else None
        self._emit("run.finished", {
            "runId": run_id, "playbook": self.pb.name, "status": status, "outputs": outputs,
            "error": (error.to_dict() if isinstance(error, IntegrationError) else {"message": _first_line(error)})
            if error is not None else None,
            "failedStep": failed[0].id if failed else None,
            "steps": [{"id": r["id"], "status": r["status"]} for r in records]},
            (run_id, "ok") if run_id and not failed else (run_id, "failed", self.fails) if run_id else None)
        return PlaybookResult(self.pb.name, status, self.context, outputs, records,
                              error=error, failed_step=failed[0].id if failed else None, run_id=run_id)

    def _emit(self, event: str, data: dict, key: tuple | None) -> None:
        """A webhook event (delivery/webhooks.py): queued, then sent to its subscribers. Never
        fails the run: a webhook that fails is logged and retried later."""
        if self.runtime is None or self.dry_run:
            return
        try:
            from integration.delivery import webhooks

            webhooks.emit(self.runtime.store, self.runtime.cfg, event, _jsonable(data), key=key)
        except Exception as exc:  # noqa: BLE001 - the run's outcome stands whatever the webhook does
            import logging

            logging.getLogger("msteams.playbook").warning("could not emit %s: %s", event, _first_line(exc))

    def _record(self, step: Step) -> dict:
        rec = {"id": step.id, "command": step.spec.name, "status": "running", "duration": 0.0, "attempts": 0,
               "error": None, "outputs": {}, "context": {}, "_index": step.index}
        if step.foreach is not None:
            rec["items"], rec["failed"] = [], []
        with self._lock:
            self.records = [r for r in self.records if r["id"] != step.id]
            self.records.append(rec)
            self.ns[step.id] = rec
        return rec

    def _skip(self, step: Step, reason: str, quiet: bool = False) -> dict:
        rec = self._record(step)
        rec.update(status="skipped", reason=reason)
        if not quiet:
            self.out(f"{self.tag(step)} skipped: {reason}")
        return rec

    def run_step(self, step: Step) -> dict:
        started = time.perf_counter()
        try:
            if not step.when_uses_item and not self._when(step):
                return self._skip(step, f"when is false ({step.when.text if hasattr(step.when, 'text') else step.when})")
            items = self._items(step)
        except IntegrationError as exc:
            rec = self._record(step)
            rec.update(status="failed", error=_first_line(exc))
            self.errors[step.id] = exc
            self.out(f"{self.tag(step)} failed: {rec['error']}")
            return rec
        if step.foreach is not None and not items:
            return self._skip(step, "foreach: no items")
        prior = self.partial.pop(step.id, None)
        rec = self._record(step)
        # Items finished before a stop are kept as they were: neither redone nor resent.
        kept = {e["n"]: e for e in (prior or {}).get("items") or [] if e.get("status") in ("ok", "skipped")}
        entries: dict[int, dict] = {}

        def one(n: int) -> dict:
            item = items[n]
            tag = self.tag(step, n, len(items)) if step.foreach is not None else self.tag(step)
            try:
                if step.when_uses_item and not self._when(step, item):
                    self.out(f"{tag} skipped: when is false for this item")
                    return {"n": n, "item": item, "status": "skipped", "error": None, "outputs": {}, "attempts": 0}
            except IntegrationError as exc:
                self.errors[step.id] = exc
                return {"n": n, "item": item, "status": "failed", "error": _first_line(exc), "outputs": {}, "attempts": 0}
            return {"n": n, "item": item, **self.run_item(step, item, tag, n)}

        def record(entry: dict) -> None:
            with self._lock:
                entries[entry["n"]] = entry
                if step.foreach is not None:
                    rec["items"] = [{k: v for k, v in entries[k].items() if k != "readable"} for k in sorted(entries)]
            if step.foreach is not None:
                self.checkpoint()

        for n, entry in kept.items():
            if n < len(items):
                record(entry)
        todo = [n for n in range(len(items)) if n not in kept]
        if step.parallel > 1 and len(todo) > 1:
            from integration.delivery.fanout import fan_out

            fan_out(todo, one, workers=step.parallel, on_done=lambda o: record(o.value if o.ok else {
                "n": o.item, "item": items[o.item], "status": "failed", "error": _first_line(o.error),
                "outputs": {}, "attempts": 1}))
        else:
            for n in todo:
                entry = one(n)
                record(entry)
                if entry["status"] in FAILING and step.on_error == "fail" and step.fail_on != "none":
                    break
        waiting = [e for n, e in sorted(entries.items()) if e["status"] == "waiting"]
        if waiting:
            rec.update(status="waiting", waiting=waiting[0]["question"],
                       duration=round(time.perf_counter() - started, 3))
            return rec
        outputs_per_item: list[dict | None] = []
        ran = failures = partials = 0
        for n in sorted(entries):
            entry = entries[n]
            if entry["status"] == "skipped":
                outputs_per_item.append(None)
                continue
            ran += 1
            rec["attempts"] += entry["attempts"]
            outputs_per_item.append(entry["outputs"] if entry["status"] in ("ok", "partial") else None)
            if entry["status"] in FAILING:
                failures += entry["status"] == "failed"
                partials += entry["status"] == "partial"
                rec["error"] = entry["error"]
                if step.foreach is not None:
                    rec["failed"].append(entry["item"])
        rec["duration"] = round(time.perf_counter() - started, 3)
        # Every item failed: the step failed; some (or some of a command's own items): partial.
        rec["status"] = ("failed" if failures and failures == ran else "partial" if failures or partials
                         else "ok" if ran else "skipped")
        if rec["status"] == "partial" and step.foreach is not None:
            rec["error"] = f"{failures + partials} of {ran} items failed; the last: {rec['error']}"
        if step.foreach is None:
            rec["outputs"] = outputs_per_item[0] or {} if outputs_per_item else {}
            if ran and entries[0].get("readable") is not None:
                rec["readable"] = entries[0]["readable"]  # the command's table, for front ends that show results
        else:
            names = list(step.outputs)
            rec["outputs"] = {k: [o.get(k) if o else None for o in outputs_per_item] for k in names}
            if rec["status"] == "skipped":
                rec["reason"] = "when is false for every item"
        return rec

    def runtime_for(self, step: Step, item: Any):
        """The runtime of the tenant the step names (its `tenant:`, else the playbook's), else the
        run's own."""
        if step.tenant is None:
            return self.runtime
        tenant = T.render(step.tenant, self.resolver(item))
        from integration.dispatch import tenant_argument

        return self.runtime.for_tenant(tenant_argument(tenant if tenant != "" else None))

    def run_item(self, step: Step, item: Any, tag: str, n: int = 0) -> dict:
        from ..dispatch import execute

        attempts = 0
        # Every attempt of this item sends under the same delivery keys: a retry after an
        # ambiguous send, or a resumed run, never delivers twice.
        scope = (self.journal.id, step.id, n) if self.journal else None
        while True:
            attempts += 1
            t0 = time.perf_counter()
            try:
                args = T.render(step.args, self.resolver(item))
                runtime = self.runtime_for(step, item)
                with runtime.delivery(scope):
                    result = execute(step.spec.name, args, runtime)
                break
            except Exception as exc:  # noqa: BLE001 - a step's failure is the playbook's to handle (on_error)
                took = time.perf_counter() - t0
                if not isinstance(exc, IntegrationError):
                    import logging

                    logging.getLogger("msteams.playbook").debug("step %s: internal error", step.id, exc_info=True)
                retry = attempts <= step.retries and not isinstance(exc, InputError)
                if retry:
                    self.out(f"{tag} attempt {attempts} of {step.retries + 1} failed in {took:.2f}s: "
                             f"{_first_line(exc)}; retrying in {step.retry_delay:g}s")
                    if step.retry_delay:
                        self.runtime.sleep(step.retry_delay)
                    continue
                self.errors[step.id] = exc
                self.out(f"{tag} failed in {took:.2f}s: {_first_line(exc)}")
                return {"status": "failed", "error": _first_line(exc), "outputs": {}, "attempts": attempts,
                        "duration": round(took, 3)}
        took = time.perf_counter() - t0
        raw = result.raw if isinstance(result.raw, dict) else {}
        if step.spec.name in WAITING_COMMANDS and raw.get("status") == "open" and raw.get("id"):
            return {"status": "waiting", "question": raw["id"], "error": None, "outputs": {}, "attempts": attempts,
                    "duration": round(took, 3)}
        ctx = result.context()
        with self._lock:
            merge_context(self.context, ctx, result.key)
            merge_context(self.ns[step.id]["context"], ctx, result.key)
        view = {"outputs": result.outputs, "context": ctx, "message": result.message, "raw": result.raw,
                "flow": result.flow}
        outputs = T.render(step.outputs, self.resolver(item, view))
        if result.exit_code == PARTIAL_EXIT:  # the command reached some of its items, not all
            why = _first_line(result.message or f"{result.failed} items failed")
            self.out(f"{tag} partial in {took:.2f}s: {why}")
            return {"status": "partial", "error": why, "outputs": outputs, "attempts": attempts,
                    "duration": round(took, 3), "readable": result.readable}
        self.out(f"{tag} ok in {took:.2f}s" + (f" (attempt {attempts})" if attempts > 1 else "")
                 + (f" [{result.flow} flow]" if result.flow else ""))
        return {"status": "ok", "error": None, "outputs": outputs, "attempts": attempts, "duration": round(took, 3),
                "readable": result.readable}

    # -- the plan (dry run)
    def plan(self) -> PlaybookResult:
        problems: list[str] = []
        for step in self.pb.steps:
            rec = self._record(step)
            rec.pop("_index")
            rec.pop("context")
            head = self.tag(step)
            when = self._when(step) if not step.when_uses_item else T.UNKNOWN
            if when is False:
                rec.update(status="skipped", reason="when is false")
                self.out(f"{head}: skipped (when is false: {step.when.text if hasattr(step.when, 'text') else step.when})")
                continue
            try:
                items = self._items(step)
            except IntegrationError as exc:
                rec.update(status="invalid", error=_first_line(exc))
                problems.append(rec["error"])
                self.out(f"{head}: {rec['error']}")
                continue
            if isinstance(items, T.Unknown):
                items = [T.Unknown("item")]
            if step.foreach is not None and not items:
                rec.update(status="skipped", reason="foreach: no items")
                self.out(f"{head}: skipped (foreach: no items)")
                continue
            rec.update(status="planned", plan=[])
            self.out(f"{head}" + (f"  flow: {' or '.join(step.spec.flow_names)}" if not step.spec.local else ""))
            if when is T.UNKNOWN:
                rec["condition"] = step.when.text
                self.out(f"    runs only if: {step.when.text}")
            if step.foreach is not None:
                self.out(f"    for each item of {T.stringify(step.foreach) if isinstance(step.foreach, str) else step.foreach}"
                         f" ({len(items) if not isinstance(items[0], T.Unknown) else 'known when it runs'})")
            for n, item in enumerate(items):
                resolve = self.resolver(item)
                args = T.render(step.args, resolve)
                # XSOAR's names (aliases) stand for the arguments they name; the loader refused unknown ones
                name = lambda k: canonical_name(step.spec, k) or str(k).replace("-", "_")  # noqa: E731
                unknown = {name(k) for k, v in step.args.items()
                           if any(isinstance(resolve(r), T.Unknown) for r in T.refs_in(v))}
                known = {name(k): v for k, v in args.items() if name(k) not in unknown}
                bad: list[str] = []
                check_static_args(step.spec, known, unknown, lambda arg, msg: bad.append(msg))
                calls = planned_calls(step.spec, {name(k): v for k, v in args.items()}, self.registry)
                pre = f"    [{n + 1}/{len(items)}] " if step.foreach is not None else "    "
                self.out(f"{pre}args: {json.dumps(args, ensure_ascii=False, default=str)}")
                if step.tenant is not None:
                    entry_tenant = T.render(step.tenant, resolve)
                    self.out(f"{pre}tenant: {entry_tenant}")
                for c in calls:
                    self.out(f"{pre}would call: {c}")
                entry = {"args": _jsonable(args), "calls": calls}
                if step.tenant is not None:
                    entry["tenant"] = _jsonable(entry_tenant)
                if step.foreach is not None:
                    entry["item"] = _jsonable(item)
                if bad:
                    entry["error"] = f"step '{step.id}': {bad[0]}"
                    rec.update(status="invalid", error=entry["error"])
                    problems.append(entry["error"])
                    self.out(f"{pre}would fail: {bad[0]}")
                rec["plan"].append(entry)
        outputs = _jsonable(T.render(self.pb.outputs, self.resolver()))
        error = InputError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")) \
            if problems else None
        self.out(f"dry run of '{self.pb.name}': {len(self.pb.steps)} step(s), no request made"
                 + (f"; {len(problems)} would fail" if problems else ""))
        return PlaybookResult(self.pb.name, "failed" if problems else "planned", {}, outputs, self.records,
                              error=error, dry_run=True)


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def _need_tenants(pb: Playbook, runtime) -> None:
    """With tenant profiles, a run with no tenant of its own (the provider's) needs every step to
    name one: refused before the run is recorded, naming the steps."""
    cfg = runtime.cfg
    if not cfg.tenant_names or cfg.tenant is not None:
        return
    loose = [s.id for s in pb.steps if s.tenant is None]
    if loose:
        from integration.engine.config import no_tenant_named

        raise InputError(no_tenant_named(cfg.tenant_names) + f"; or give these steps a tenant: {', '.join(loose[:5])}"
                         + (" ..." if len(loose) > 5 else ""))


def run_playbook(source: str | Path | dict | Playbook, inputs: dict | None = None, runtime=None, dry_run: bool = False,
                 out: Callable[[str], None] | None = None, *, run_key: str | None = None,
                 persist: bool = True) -> PlaybookResult:
    """Check, then run (or plan, with dry_run) a playbook. Problems with the playbook or its
    inputs raise (FileError / InputError) before any step; a failing step does not raise: the
    result says status "failed", which step, and the error (result.exit_code).

    A run from a file is persisted step by step (its id is printed first and is the result's
    run_id); with a ``run_key`` already used, the earlier run is resumed instead."""
    out = out or _stderr
    if runtime is not None:
        reg = runtime.registry
    else:
        from integration.engine.registry import default_registry

        reg = default_registry()
    pb = source if isinstance(source, Playbook) else load(source, reg)
    values = coerce_inputs(pb, inputs)
    if dry_run:
        return _Run(pb, values, reg, out, dry_run=True).plan()
    own = runtime is None
    if own:
        from ..dispatch import Runtime

        runtime = Runtime(registry_=reg)
    try:
        _need_tenants(pb, runtime)
        run = _Run(pb, values, reg, out, runtime=runtime)
        if persist and pb.path and Path(pb.path).is_file():
            from .runs import Journal, digest

            run.sha256 = digest(pb.path)
            run.journal, row = Journal.start(runtime.store, pb.path, pb.name, _jsonable(values), run_key)
            if row is not None:
                return _continue(run, row, out)
            out(f"run {run.journal.id} started" + (f" (run key {run_key})" if run_key else ""))
        return run.run()
    finally:
        if own:
            runtime.close()


def _continue(run: "_Run", row: dict, out) -> PlaybookResult:
    state = row["state"]
    run.inputs = state.get("inputs") or run.inputs
    run.restore(state)
    if row["status"] == "ok":
        out(f"run {run.journal.id} already finished: nothing to do")
    else:
        out(f"run {run.journal.id} resumed at step {run.at + 1} of {len(run.pb.steps)}"
            + (f" ({len(run.done)} finished before)" if run.done else ""))
    return run.run()  # a finished run only reports its saved result again


def resume_waiting(run_id: str, runtime, out: Callable[[str], None] | None = None) -> PlaybookResult | None:
    """Resume a run suspended on a question, if it still waits: one caller of any process gets
    it (the run turns running in one transaction), the others get None."""
    from integration.engine.errors import InputError as _InputError
    from integration.delivery.owners import owner_id
    from .runs import LEASE_SECONDS, Journal, digest

    out = out or _stderr
    row = runtime.store.run_claim_waiting(run_id, owner_id(), lease=LEASE_SECONDS)
    if row is None:
        return None
    journal = Journal(runtime.store, run_id, row["playbook"], row["name"])
    try:
        if not Path(row["playbook"]).is_file() or digest(row["playbook"]) != row["state"].get("sha256"):
            raise _InputError(f"run {run_id}: its playbook {row['playbook']} is gone or changed since the run started")
        pb = load(row["playbook"], runtime.registry)
    except IntegrationError as exc:
        journal.save("failed", row["state"])
        out(f"run {run_id} cannot resume: {_first_line(exc)}")
        raise
    run = _Run(pb, row["state"].get("inputs") or {}, runtime.registry, out, runtime=runtime)
    run.journal = journal
    return _continue(run, row, out)


def resume_waiting_on(runtime, question_id: str | None = None, out: Callable[[str], None] | None = None) -> list:
    """Resume the runs waiting on ``question_id`` (None: on any question no longer open); the
    results of those this process resumed."""
    from integration.teams import questions

    out = out or _stderr
    if question_id:
        ids = runtime.store.runs_waiting_on(question_id)
    else:
        ids = []
        for r in runtime.store.run_list("waiting", 1000):
            q = questions.current(runtime, r["waiting_for"]) if r.get("waiting_for") else None
            if q is not None and q["status"] != "open":
                ids.append(r["id"])
    results = []
    for rid in ids:
        try:
            result = resume_waiting(rid, runtime, out)
        except Exception as exc:  # noqa: BLE001 - one run that cannot resume does not stop the others
            import logging

            logging.getLogger("msteams.playbook").warning("run %s could not resume: %s", rid, _first_line(exc))
            continue
        if result is not None:
            results.append(result)
    return results


def resume_playbook(run_id: str, runtime, out: Callable[[str], None] | None = None) -> PlaybookResult:
    """Continue a persisted run after a crash, a kill or a failed step: finished steps are not
    redone, delivered items are not resent."""
    from .runs import Journal

    out = out or _stderr
    journal, row = Journal.claim(runtime.store, run_id)
    pb = load(row["playbook"], runtime.registry)
    run = _Run(pb, row["state"].get("inputs") or {}, runtime.registry, out, runtime=runtime)
    run.journal = journal
    return _continue(run, row, out)
