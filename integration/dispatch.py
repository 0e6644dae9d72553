"""The one entry point every front end calls: `execute(name, args)`. It walks the pipeline:
registry -> argument validation -> flow choice (fails before any request when no flow is
ready) -> names to ids -> the command's request(s) or handler -> result.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
import sys
import time
from collections.abc import Callable
from integration.engine.record import field, record as dataclass  # not dataclasses: start-up time (record.py)

from integration.engine import arguments, config as config_mod, registry
from integration.engine.errors import PARTIAL_EXIT, AuthError, InputError, IntegrationError, NotFound
from integration.engine.registry import CommandSpec, thaw
from integration.engine.results import Result, project

# graph (its client; requests when a request is made) is imported on a command's first Graph
# call: local commands (cache-show, auth status) start without it. typing costs ~4 ms of every
# start: only type checkers read these.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from integration.graph.client import Client

log = logging.getLogger("msteams.dispatch")


class Runtime:
    """Configuration, store, auth and clients, built on first use and shared by commands."""

    def __init__(self, cfg: config_mod.Config | None = None, *, config_path: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, registry_: registry.Registry | None = None,
                 tenant: str | None = None, provider: bool = False):
        self._cfg = cfg
        self._given_cfg = cfg is not None  # settings handed over: no file to read another tenant's from
        self._config_path = config_path
        # Tenant profiles: the profile this runtime reads (else the command line's --tenant, read
        # now: worker threads do not inherit it), and whether it may run without one (the HTTP
        # service's and the bot's own runtime: API keys, jobs; never a command).
        self._tenant = tenant if tenant is not None else config_mod.selected_tenant()
        self.provider = provider
        # Pinned: serves its own tenant only (the bot's runtime for a tenant's activities: a
        # `tenant=` naming another in a command from Teams is refused, never followed).
        self.pinned = False
        self._tenants: dict[str, Runtime] = {}
        self.sleep = sleep
        self._registry = registry_
        self.echo: Callable[[str], None] = print  # where interactive prompts (device code) go
        self._store = None
        self._auth = None
        self._clients: dict[str, Client] = {}
        self._pacer = None
        self.quiet = False  # no progress lines (the CLI's --quiet, and --output json)
        self._scope = threading.local()
        # Guards the parts built on first use, so that threads sharing one runtime (fan-outs,
        # the Python API's callers) build each exactly once.
        self._lock = threading.RLock()

    @property
    def cfg(self) -> config_mod.Config:
        if self._cfg is None:
            with self._lock:
                if self._cfg is None:
                    cfg = config_mod.load(self._config_path, tenant=self._tenant)
                    if not self.provider:
                        require_tenant(cfg)
                    self._cfg = cfg
        return self._cfg

    @property
    def tenant(self) -> str | None:
        """The tenant profile this runtime serves (None: a config without profiles, or the provider's)."""
        return self.cfg.tenant

    def for_tenant(self, name: str | None) -> Runtime:
        """The runtime of tenant profile ``name``, built once and kept (its own config, store,
        tokens and pacer: nothing is shared between two tenants); this one for its own tenant or
        for None. Only a runtime read from a config file can make another tenant's."""
        if name is None or name == (self._cfg.tenant if self._cfg is not None else self._tenant):
            return self
        if self.pinned:
            from integration.engine.errors import PermissionDenied
            from integration.engine.untrusted import quote

            raise PermissionDenied(f"this runs for tenant {quote(str(self.tenant), 40)} only, not {quote(name, 40)}",
                                   hint="a command from Teams runs in the tenant it came from")
        with self._lock:
            rt = self._tenants.get(name)
            if rt is None:
                cfg = self.cfg if self._cfg is not None or self.provider else None
                if cfg is not None and cfg.tenant_names and name not in cfg.tenant_names:
                    from integration.engine.untrusted import quote

                    raise InputError(f"no tenant profile {quote(name, 40)}",
                                     hint=f"the profiles: {', '.join(cfg.tenant_names)}")
                if self._given_cfg:
                    raise InputError(f"tenant {name!r} named, but this runtime was given one tenant's settings",
                                     hint="open the Python API with the config file's path to use its profiles")
                rt = Runtime(config_path=self._config_path, sleep=self.sleep, registry_=self._registry, tenant=name)
                rt.echo, rt.quiet = self.echo, self.quiet
                rt.cfg  # a bad name fails here, naming the profiles
                self._tenants[name] = rt
        return rt

    @property
    def registry(self) -> registry.Registry:
        if self._registry is None:
            with self._lock:
                if self._registry is None:
                    self._registry = registry.default_registry()
        return self._registry

    @property
    def store(self):
        if self._store is None:
            from integration.store.open import open_store

            with self._lock:
                if self._store is None:
                    self._store = open_store(self.cfg)
        return self._store

    @property
    def auth(self):
        if self._auth is None:
            from integration.graph.auth import Auth

            require_tenant(self.cfg)  # the provider's runtime signs in to no tenant
            with self._lock:
                if self._auth is None:
                    self._auth = Auth(self.cfg, self.store, sleep=self.sleep)
        return self._auth

    @property
    def delivery_scope(self) -> tuple | None:
        """What outbound messages of the command running on this thread are keyed by (outbox.py):
        the playbook run, step and item; None outside a run."""
        return getattr(self._scope, "value", None)

    @contextlib.contextmanager
    def delivery(self, scope: tuple | None):
        prev = self.delivery_scope
        self._scope.value = scope
        try:
            yield
        finally:
            self._scope.value = prev

    def progress(self, label: str, total: int | None = None):
        """A progress line on stderr for a long fan-out (silent unless stderr is a terminal)."""
        from integration.delivery.progress import Progress

        return Progress(label, total, enabled=not self.quiet, pacer=self._pacer)

    @property
    def pacer(self):
        """One pacer for every client of this runtime: Graph and the bot share the tenant's limits.
        With a shared store (store_url) the budget lives in Redis, shared by every process of
        every host (redis_pacer.py); otherwise in this process (pacer.py)."""
        if self._pacer is None:
            with self._lock:
                if self._pacer is None:
                    # pacing_speed matches a fake tenant run faster than Microsoft's limits (--speed).
                    if self.cfg.store_url:
                        from integration.delivery.redis_pacer import RedisPacer

                        self._pacer = RedisPacer.from_config(self.cfg, sleep=self.sleep)
                    else:
                        from integration.delivery.pacer import Pacer

                        self._pacer = Pacer(sleep=self.sleep, speed=self.cfg.pacing_speed)
        return self._pacer

    def client(self, flow: str) -> Client:
        if flow not in self._clients:
            with self._lock:
                return self._client(flow)
        return self._clients[flow]

    def _client(self, flow: str) -> Client:
        if flow not in self._clients:
            cfg = self.cfg
            base, service = (cfg.bot_service_url, "Bot Connector") if flow == "bot" else (cfg.graph_url, "Graph")
            from integration.graph.client import Client

            self._clients[flow] = Client(base, self.auth.provider(flow), verify=cfg.verify, timeout=cfg.timeout,
                                         max_retries=cfg.max_retries, retry_budget=cfg.retry_budget_seconds,
                                         sleep=self.sleep, service=service, pacer=self.pacer)
        return self._clients[flow]

    def choose_flow(self, spec: CommandSpec, prefer: str | None = None) -> str:
        flows = list(spec.flow_names)
        if prefer:
            if prefer not in flows:
                raise InputError(f"'{spec.name}' does not run with the {prefer} flow (it accepts: {', '.join(flows)})")
            flows = [prefer]
        for flow in flows:
            if self.auth.ready(flow):
                return flow
        needs = "; ".join(f"{f}: {', '.join(spec.permissions(f)) or 'no permissions'}" for f in flows)
        why = "; ".join(f"{f}: {self.auth.why_not_ready(f)}" for f in flows)
        raise AuthError(f"'{spec.name}' needs the {' or '.join(flows)} flow, and none is ready ({why})",
                        hint=f"permissions to grant per flow: {needs}")

    def execute(self, name: str, args: dict | None = None, *, flow: str | None = None) -> Result:
        """Run another command with this runtime: how code below the front ends (a question's
        cards, a handler) runs one without importing this module."""
        return execute(name, args, self, flow=flow)

    def context(self, name: str, args: dict, *, flow: str | None = None) -> CommandContext:
        """A handler's context for command ``name`` with already typed ``args`` (a worker running
        one queued item of a fan-out builds the context the command would have had)."""
        return CommandContext(self.registry.get(name), args, self, flow=flow)

    def close(self) -> None:
        """Close the store (this thread's connection), the clients' HTTP connections and the
        pacer's Redis connections, if any. All reopen if the runtime is used again (the Python
        API's Client refuses to be, instead)."""
        with self._lock:
            clients = list(self._clients.values())
        for c in clients:
            session = getattr(c, "session", None)
            if session is not None:
                session.close()
        if self._store is not None:
            self._store.close()
        close_pacer = getattr(self._pacer, "close", None)  # the shared budget's Redis connections
        if close_pacer is not None:
            close_pacer()
        with self._lock:
            tenants = list(self._tenants.values())
        for rt in tenants:
            rt.close()


@dataclass
class CommandContext:
    """What a Python handler gets: its validated arguments and the pipeline's services."""

    spec: CommandSpec
    args: dict
    runtime: Runtime
    flow: str | None = None
    extra: dict = field(default_factory=dict)  # resolved ids, for output fields ('$team_id')

    @property
    def cfg(self):
        return self.runtime.cfg

    @property
    def store(self):
        return self.runtime.store

    @property
    def graph(self) -> Client:
        return self.runtime.client(self.flow or "app")

    @property
    def bot(self) -> Client:
        return self.runtime.client("bot")

    @property
    def resolver(self):
        if "_resolver" not in self.extra:
            from integration.graph.resolve import Resolver

            self.extra["_resolver"] = Resolver(self.graph, self.store)
        return self.extra["_resolver"]

    def result(self, items: list | dict | None, raw: Any = None, *, message: str | None = None,
               title: str | None = None, next_link: str | None = None, context: dict | None = None,
               failed: int = 0) -> Result:
        """The command's result: each item projected through `outputs.fields` (and each `also`),
        XSOAR's nesting and next-link path from the registry; ``context`` adds more paths.
        ``failed``: how many of a fan-out's items (each among ``items``, with its status) failed
        or have an unknown outcome: the result then exits PARTIAL_EXIT, unless fail_on=none."""
        out = self.spec.outputs
        if isinstance(items, dict):
            items = [items]
        items = items or []
        fields = out.get("fields")
        values = {**self.args, **{k: v for k, v in self.extra.items() if not k.startswith("_")}}
        rows = [project(i, fields, values) for i in items] if fields else list(items)
        also = []
        for more in out.get("also") or ():
            extra_rows = [project(i, more["fields"], values) for i in items]
            if more.get("key"):
                extra_rows = [r for r in extra_rows if r.get(more["key"]) is not None]
            also.append((more["prefix"], extra_rows))
        t = title or out.get("title")
        if t:
            t = _fill(t, values)
        if message is None and out.get("message"):
            message = _fill(out["message"], values)
        partial = failed and self.args.get("fail_on", "any") != "none"
        return Result(self.spec.name, rows, out.get("prefix"), out.get("key"), t, list(out.get("columns") or []) or None,
                      raw, message, next_link, self.flow, nest=out.get("nest"), next_link_path=out.get("next_link"),
                      also=also, extra_context=dict(context or {}), failed=failed,
                      exit_code=PARTIAL_EXIT if partial else 0)


_TEMPLATE = re.compile(r"\{(\w+)\}")


def _fill(template: str, values: dict, encode: Callable[[str], str] = str) -> str:
    """Substitute {name} from values (registry text is trusted; values are only inserted)."""
    return _TEMPLATE.sub(lambda m: encode(str(values.get(m.group(1), ""))), template)


def _fill_value(value: Any, values: dict) -> Any:
    """Request body/query templates: a string that is exactly '{arg}' takes the typed value."""
    if isinstance(value, str):
        m = _TEMPLATE.fullmatch(value)
        if m:
            return values.get(m.group(1))
        return _fill(value, values)
    if isinstance(value, dict):
        out = {k: _fill_value(v, values) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, list):
        return [_fill_value(v, values) for v in value]
    return value


def _resolve_declared(ctx: CommandContext) -> None:
    r = ctx.resolver
    for pname, rule in ctx.spec.resolve.items():
        raw = ctx.args.get(rule["from"])
        if raw is None:
            continue
        kind = rule["kind"]
        if kind == "user":
            ctx.extra[pname] = r.user(raw)["id"]
        elif kind == "team":
            ctx.extra[pname] = r.team(raw)["id"]
        elif kind == "channel":
            ctx.extra[pname] = r.channel(ctx.extra[rule["team"]], raw)["id"]
        elif kind == "chat":
            from integration.graph.resolve import is_thread_id

            chat = {"id": raw} if is_thread_id(raw) else r.chat_by_topic(raw)
            if not chat:
                from integration.engine.untrusted import quote

                raise NotFound(f"chat {quote(raw)} not found")
            ctx.extra[pname] = chat["id"]


def _run_declared(ctx: CommandContext) -> Result:
    req = thaw(ctx.spec.request)
    values = {**ctx.args, **ctx.extra}
    from integration.graph.client import seg

    path = _fill(req["path"], values, seg)
    query = _fill_value(req.get("query") or {}, values)
    if req.get("paged"):
        page = ctx.graph.paged(path, params=query, limit=ctx.args.get("limit"), page_size=ctx.args.get("page_size"),
                               next_link=ctx.args.get("next_link"))
        return ctx.result(page.items, page.items, next_link=page.next_link)
    body = _fill_value(req["body"], values) if "body" in req else None
    reply = ctx.graph.request(req["method"], path, params=query or None, json=body).json()
    items = reply.get("value") if isinstance(reply, dict) and isinstance(reply.get("value"), list) else reply
    return ctx.result(items, reply)


def execute(name: str, args: dict | None = None, runtime: Runtime | None = None, *, flow: str | None = None) -> Result:
    """Run one command by name (or alias) with raw or typed arguments."""
    runtime = runtime or Runtime()
    if args and "tenant" in args:  # every command's: which tenant profile runs it (war-room tenant=)
        args = dict(args)
        runtime = runtime.for_tenant(tenant_argument(args.pop("tenant")))
    metrics = sys.modules.get("integration.engine.metrics")  # counted only in a service that enabled it
    if metrics is None or not metrics.enabled:
        return _execute(name, args, runtime, flow=flow)
    tenant = runtime._cfg.tenant if runtime._cfg is not None else runtime._tenant
    try:
        result = _execute(name, args, runtime, flow=flow)
    except IntegrationError as exc:
        metrics.command_done(name, exc.kind, tenant)
        raise
    except Exception:
        metrics.command_done(name, "internal", tenant)
        raise
    metrics.command_done(name, "ok", tenant)
    return result


def require_tenant(cfg: config_mod.Config) -> None:
    """With tenant profiles, a config read for none of them runs nothing: exit 2 naming them."""
    if cfg.tenant_names and cfg.tenant is None:
        raise InputError(config_mod.no_tenant_named(cfg.tenant_names))


def tenant_argument(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not config_mod.TENANT_NAME.fullmatch(value):
        from integration.engine.errors import ArgumentError

        raise ArgumentError("tenant", "must name a tenant profile (1 to 32 lowercase letters, digits, '_' or '-')")
    return value


def _execute(name: str, args: dict | None, runtime: Runtime, *, flow: str | None) -> Result:
    if runtime.provider:  # the service's or the Python API's runtime: a command needs its tenant
        require_tenant(runtime.cfg)
    spec = runtime.registry.get(name)
    if spec is None:
        import difflib

        close = difflib.get_close_matches(name, runtime.registry.all_names(), n=3)
        from integration.engine.untrusted import quote

        raise InputError(f"unknown command {quote(name)}", hint=f"did you mean: {', '.join(close)}?" if close else
                         "`msteams --help` lists the commands")
    values = arguments.validate(spec, args or {})
    ctx = CommandContext(spec, values, runtime)
    if not spec.local:
        ctx.flow = runtime.choose_flow(spec, flow)
    handler = registry.resolve_handler(spec.handler) if spec.handler else _run_declared
    if spec.local:
        return handler(ctx)
    for attempt in (0, 1):
        try:
            if spec.resolve:
                _resolve_declared(ctx)
            return handler(ctx)
        except NotFound:
            # A cached id may be stale (deleted chat, renamed team): refresh the names once.
            if attempt == 0 and ctx.extra.get("_resolver") and ctx.resolver.forget_cached():
                log.info("retrying %s after dropping stale cached names", spec.name)
                ctx.extra = {}
                continue
            raise
    raise AssertionError("unreachable")
