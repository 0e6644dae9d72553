"""The HTTP API's routes (a Starlette app), one table (:func:`routes`):

    POST /v1/commands/{name}   run a command: the body is its arguments (a JSON object)
    GET  /v1/commands          the commands, and whether this key may run each
    GET  /v1/openapi.json      the OpenAPI 3.1 document (no key; ?version=3.0: in OpenAPI 3.0.3)
    GET  /v1/health            alive (no key; nothing checked)
    GET  /v1/ready             the integration-health checks: 200, or 503 with the report
    GET  /metrics              Prometheus (no key when bound to loopback; else the scope 'metrics')
    POST /v1/playbooks/{name}/runs, GET /v1/runs[/{id}], POST /v1/runs/{id}/resume   (runs.py)
    GET  /v1/jobs/{id}         a command started with ``Prefer: respond-async`` (jobs.py)

and, with ``--bot``, the bot's messaging endpoint (``/api/messages``, ``/api/calls``,
``/healthz``) in the same app.

A command request, in this order: no key -> 401 at once; a declared body over the cap -> 413;
the body read up to the cap (413 past it); then the command runs, where: the key (401:
unknown, revoked, expired) -> its rate (429) -> the command (404) -> the key's scopes (403) ->
the body (400 not JSON, 422 not an object of arguments) -> the Idempotency-Key (replay, 409,
422) -> ``execute()`` -> the answer (the result, or a problem: problems.py) -> the audit entry,
committed before the answer. A ``store_only`` command with an API key and none of those headers
runs on the event loop, in the lane's group of the moment (lane.py: one commit a group); any
other runs in the thread pool, under the request time limit (504 past it: the command goes on,
and its answer is recorded for an Idempotency-Key retry), and its audit entry is committed by
its thread when it ran alone, else by the lane with the group's (with a Redis store, which has
no lane, by AuditTrail). With ``Prefer:
respond-async`` the steps from the Idempotency-Key on run as a job (jobs.py) and the answer is
202 at once. Every call with a key is audited in the
store's audit log (the bot's: ``msteams bot audit``; conversation type ``http``): the key's
name, the command, the sha256 of the arguments (never the arguments), the decision, the
outcome and status, and the duration.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
import threading
import time

from integration.engine import metrics
from integration.engine.untrusted import lone_surrogate, may_hold_surrogates, quote
from integration.frontends.bot.server import whole_body
from integration.frontends.pool import WarmPool

from . import idempotency as idem
from . import tenancy
from .answers import Answer, problem_answer, result_body
from .answers import dumps as _dumps  # the service's JSON (wire.py): one encoder for every answer
from .audit import AuditTrail, audit_row, hand_over
from .keys import Keys, RateLimiter, Refused, allows
from .problems import Problem, from_error, unauthorized

log = logging.getLogger("msteams.service")

MAX_BODY = 256 * 1024
TIME_LIMIT = 60.0
READY_CACHE_SECONDS = 5.0
FLOWS = ("app", "delegated", "bot")
_KEYLIKE = re.compile(r"mst_[0-9A-Za-z]{4}")
# The request headers a command reads, found in one pass over them (lowercase, as ASGI gives them).
_TENANT = tenancy.HEADER.lower().encode()
_COMMAND_HEADERS = frozenset((b"authorization", b"x-api-key", b"content-length", idem.HEADER.lower().encode(),
                              b"prefer", _TENANT))


def _token(headers) -> str | None:
    """The API key a request sends: Starlette's headers, or the dict of raw header names
    Service.command makes."""
    if isinstance(headers, dict):
        auth, key = headers.get(b"authorization"), headers.get(b"x-api-key")
    else:
        auth, key = headers.get("authorization"), headers.get("x-api-key")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return key.strip() if key is not None else None


class Service:
    """What the routes share: the runtime (config, store, clients), the keys, the rate limiter,
    the idempotency records and the thread pool commands run in."""

    def __init__(self, runtime, *, loopback: bool, workers: int = 8, max_body: int = MAX_BODY,
                 time_limit: float = TIME_LIMIT, rate: float = 20.0, burst: int = 40):
        self.runtime = runtime
        self.loopback = loopback
        self.max_body = max_body
        self.time_limit = time_limit
        self.keys = Keys(runtime.store)
        audience = runtime.cfg.api_entra_audience
        if audience:  # Entra ID bearer tokens too (entra.py); else API keys only
            from .entra import EntraTokens

            self.entra = EntraTokens(runtime, audience)
        else:
            self.entra = None
        self.limiter = RateLimiter(rate, burst)
        self.idempotency = idem.Idempotency(runtime.store, lease=max(300.0, 2 * time_limit))
        self.pool = WarmPool(workers, thread_name_prefix="msteams-api")  # the thread idle last first: warm
        self._workers = workers
        self._tenants_lock = threading.Lock()
        self._runs: dict = {}  # tenant profile (None: the config's own) -> Runs
        self._trails: dict = {}  # tenant profile -> AuditTrail of its store
        from .jobs import Jobs

        self.jobs = Jobs(runtime.store, workers=workers)
        self._ready: tuple[float, Answer] | None = None
        self.trail = AuditTrail(runtime.store)
        # A command that answers from a local store alone runs on the event loop (lane.py); with
        # tenant profiles each call's store is known only once its key is read: the pool.
        from integration.frontends.lane import lane_of

        self.lane = None if runtime.cfg.tenant_names else lane_of(runtime.store, self.pool)
        self._running = 0  # commands running in the pool (their audit entries: alone or not)
        self._running_lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.trail.close()  # what is queued is written before the process goes
        with self._tenants_lock:
            trails, runs = list(self._trails.values()), list(self._runs.values())
        for t in trails:
            t.close()
        for r in runs:
            r.close()
        self.jobs.close()

    # ---- tenants (tenancy.py): each call's runtime, runs and audit trail ----
    def tenant_of(self, key: dict, headers, args: dict | None = None) -> str | None:
        """The tenant profile a call under ``key`` runs against (checked), or None."""
        tenant = tenancy.requested(headers, args)
        tenancy.check(self.runtime.cfg, key, tenant)
        return tenant

    @property
    def runs(self):
        """The runs of the config's own tenant (a config without profiles)."""
        return self.runs_of(None)

    def runs_of(self, tenant: str | None):
        with self._tenants_lock:
            runs = self._runs.get(tenant)
            if runs is None:
                from .runs import Runs

                runs = self._runs[tenant] = Runs(self.runtime.for_tenant(tenant), workers=self._workers,
                                                 wait=max(1.0, self.time_limit - 0.5))
            return runs

    def trail_of(self, tenant: str | None) -> "AuditTrail":
        """Where a call's audit entry goes: its tenant's store (the provider's: refused before a
        tenant was settled)."""
        if tenant is None:
            return self.trail
        with self._tenants_lock:
            trail = self._trails.get(tenant)
            if trail is None:
                trail = self._trails[tenant] = AuditTrail(self.runtime.for_tenant(tenant).store)
            return trail

    # ---- the async side: cap the body, one hop to the pool, the time limit ----
    async def _in_pool(self, request, work, *args, path: str | None = None) -> Answer:
        """``work(*args)`` in the pool, its answer handed back to the loop in one call; past the
        time limit, 504 (the work goes on). No task, shield or executor future on the loop's
        side: a future, a timer, and the pool's thread setting the one once done."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.pool.submit(_hand_back, loop, waiter, work, args)
        return await self._answer_of(waiter, path or request.url.path)

    async def _answer_of(self, waiter, path: str) -> Answer:
        """What ``waiter`` is given, or 504 past the time limit (the work goes on)."""
        timer = waiter.get_loop().call_later(self.time_limit, _settle, waiter, None)
        try:
            answer = await waiter
        finally:
            timer.cancel()
        if answer is None:
            return problem_answer(Problem(504, "timeout", f"no answer within the service's time limit of "
                                                          f"{self.time_limit:g} s; the command goes on",
                                          hint="retry with the same Idempotency-Key and body to get its answer "
                                               "once it is done"), path)
        return answer

    async def _body(self, request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_body):
            raise Problem(413, "too_large", f"the body is over {self.max_body} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise Problem(413, "too_large", f"the body is over {self.max_body} bytes")
        return bytes(body)

    async def command(self, request):
        """The hot path: the headers read in one pass, the body (declared: read whole; else
        streamed up to the cap), then one hop to the pool, which does everything else."""
        started = time.monotonic()
        scope = request.scope
        headers: dict = {}
        for k, v in scope["headers"]:
            if k in _COMMAND_HEADERS and k not in headers:  # the first of a repeated header, as Starlette's get
                headers[k] = v.decode("latin-1")
        path = scope["path"]
        if "?" in path or "#" in path or "\\" in path:  # as Starlette's URL escapes them
            path = request.url.path
        try:
            token = _token(headers)
            if token is None:
                raise unauthorized("no API key", invalid=False)
            declared = headers.get(b"content-length")
            if declared is None:
                body = await self._body(request)
            elif not declared.strip().isdigit() or int(declared) > self.max_body:
                raise Problem(413, "too_large", f"the body is over {self.max_body} bytes")
            else:  # the server holds the body to the length declared
                body = await whole_body(request)
        except Problem as p:
            _note(p.status)
            log.warning("refused %s %s from %s: %d %s", request.method, _clean(path), _peer(request),
                        p.status, p.code)
            return problem_answer(p, path).response()
        query = scope.get("query_string")
        client = scope.get("client")
        call = {"name": scope["path_params"]["name"], "token": token, "body": body, "started": started,
                "idempotency_key": headers.get(_IDEM), "flow": request.query_params.get("flow") if query else None,
                "peer": client[0] if client else "?", "path": path, "prefer": headers.get(b"prefer"),
                "tenant_header": headers.get(_TENANT)}
        if self.lane is not None and token.startswith("mst_") and call["idempotency_key"] is None and \
                call["prefer"] is None and call["tenant_header"] is None:
            spec = self.runtime.registry.get(call["name"])
            if spec is not None and spec.store_only:
                return (await self.lane.run(functools.partial(self._in_lane, call))).response()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        if self.lane is None:
            self.pool.submit(self._command_job, loop, waiter, call)
            return (await self._answer_of(waiter, path)).response()
        # The command in the pool; its audit entry committed by the loop's lane, with the group
        # of the moment (not in the pool thread, nor by the trail's: one hand-off fewer).
        self.pool.submit(self._command_pooled, loop, waiter, call)
        got = await self._answer_of(waiter, path)
        if type(got) is tuple:
            answer, row = got
            if row is not None:
                await self.lane.run(functools.partial(self._audit_in_lane, row))
            got = answer
        return got.response()

    def _command_pooled(self, loop, waiter, call: dict) -> None:
        """In a pool thread: the command; (answer, its audit entry) handed to the loop. A command
        that ran alone (none other in the pool) commits its entry itself first: one commit either
        way, and this thread's connection is at hand (the loop's would be one more turn of the
        loop, and its pages stale after this thread's writes: ~80 us of the answer's latency,
        benchmarks/api.py, section a); side by side, the loop's lane commits the entries of the
        moment together."""
        answer, row, alone = self._counted(call)
        if alone and row is not None:
            self.trail.write([row])  # never raises: a failed audit write is logged, the answer stands
            row = None
        try:
            loop.call_soon_threadsafe(self._answered, waiter, answer, row)
        except RuntimeError:  # the loop is closed: the server stopped; its entry is still written
            if row is not None:
                self.trail.write([row])

    def _counted(self, call: dict) -> tuple[Answer, dict | None, bool]:
        """In a pool thread: the command, its audit entry (not written), and whether it ran
        alone (none other in the pool meanwhile)."""
        with self._running_lock:
            self._running += 1
        try:
            answer, row = self._command(call)
        except Exception as exc:  # noqa: BLE001 - _command never raises; a bug is a 500, never a traceback
            answer, row = problem_answer(from_error(exc), call["path"]), None
        finally:
            with self._running_lock:
                self._running -= 1
                alone = not self._running
        return answer, row, alone

    def _answered(self, waiter, answer: Answer, row: dict | None) -> None:
        """On the loop: a pooled command's answer to its caller, who commits its entry before
        answering; when nobody waits any more (answered 504, or gone), the entry is committed
        all the same."""
        if not waiter.done():
            waiter.set_result((answer, row))
        elif row is not None:
            self.lane.run(functools.partial(self._audit_in_lane, row))

    def _audit_in_lane(self, row: dict, effects) -> None:
        """An audit entry written in a lane work: with the group's, in one statement; alone,
        by itself."""
        if effects.before_commit is None:
            self.trail.write([row])  # never raises: a failed audit write is logged, the answer stands
            return
        rows = effects.shared.get(_GROUP_ROWS)
        if rows is None:
            rows = effects.shared[_GROUP_ROWS] = []
            effects.before_commit.append(functools.partial(self.trail.store.audit_add_many, rows))
        rows.append(row)

    def _in_lane(self, call: dict, effects) -> Answer:
        """A store-only command on the event loop (lane.py): the key, the command and its audit
        entry in the lane's group transaction, committed with the group's before the answer
        (the group's entries in one statement; a key read once a group: one snapshot)."""
        answer, row = self._command(call, effects.shared)
        if row is not None:
            self._audit_in_lane(row, effects)
        return answer

    async def start_run(self, request):
        try:
            body = await self._body(request)
        except Problem as p:
            return problem_answer(p, request.url.path).response()
        name = request.path_params["name"]
        header = request.headers.get(idem.HEADER)

        def work(key: dict) -> Answer:
            from integration.playbooks.loader import shipped

            from .runs import scope_of

            audit = {"command": scope_of(name)[:100], "key": key["name"], "digest": None, "decision": "refused"}

            def start(settle) -> dict:
                self._allow(key, scope_of(name), destructive=True)  # before saying whether it exists
                if name not in shipped():
                    raise Problem(404, "not_found", f"no shipped playbook {name[:80]!r}",
                                  hint="`msteams playbook list` lists them")
                args = _arguments(body)
                runs = settle(self.tenant_of(key, request.headers))
                audit.update(digest=hashlib.sha256(_dumps(args)).hexdigest(), decision="allowed")
                run_key = None
                if header is not None:
                    run_key = idem.dedupe_key(idem.scoped(key["name"], idem.check_header(header)))
                return runs.start(name, args, run_key)

            return self._run_answer(request, audit, start)

        return (await self._guarded(request, work)).response()

    async def get_run(self, request):
        run_id = request.path_params["run_id"]

        def work(key: dict) -> Answer:
            from .runs import scope_of

            runs = self.runs_of(self.tenant_of(key, request.headers))
            self._allow(key, scope_of(runs.row(run_id)["name"]), destructive=True)
            return Answer(200, _dumps(runs.get(run_id)))

        return (await self._guarded(request, work)).response()

    async def list_runs(self, request):
        status = request.query_params.get("status")
        limit = request.query_params.get("limit", "50")

        def work(key: dict) -> Answer:
            from .runs import STATUSES, scope_of

            if status is not None and status not in STATUSES:
                raise Problem(400, "input", f"status must be one of {', '.join(STATUSES)}",
                              details={"parameter": "status"})
            if not (limit.isdigit() and 1 <= int(limit) <= 1000):
                raise Problem(400, "input", "limit must be a whole number from 1 to 1000",
                              details={"parameter": "limit"})
            scopes = key.get("scopes") or ()
            runs = self.runs_of(self.tenant_of(key, request.headers))
            rows = runs.listing(status, int(limit), lambda book: allows(scopes, scope_of(book)))
            return Answer(200, _dumps({"runs": rows}))

        return (await self._guarded(request, work)).response()

    async def resume_run(self, request):
        run_id = request.path_params["run_id"]

        def work(key: dict) -> Answer:
            from .runs import scope_of

            audit = {"command": "resume", "key": key["name"], "digest": None, "decision": "refused"}

            def resume(settle) -> dict:
                runs = settle(self.tenant_of(key, request.headers))
                row = runs.row(run_id)
                audit["command"] = scope_of(row["name"])[:100]
                self._allow(key, scope_of(row["name"]), destructive=True)
                audit["decision"] = "allowed"
                return runs.resume(run_id)

            return self._run_answer(request, audit, resume)

        return (await self._guarded(request, work)).response()

    def _run_answer(self, request, audit: dict, step) -> Answer:
        """A run started or resumed: 202 with its Location, or the problem; audited either way,
        in the store of the tenant ``step`` settled on (``settle(tenant)`` answers its Runs)."""
        started = time.monotonic()
        tenant: list = [None]

        def settle(name):
            tenant[0] = name
            return self.runs_of(name)

        try:
            run = step(settle)
            answer = Answer(202, _dumps(run), headers={"Location": f"/v1/runs/{run['id']}"})
        except Exception as exc:  # noqa: BLE001 - every failure is a problem, never a traceback
            answer = problem_answer(from_error(exc), request.url.path)
        self._audit({"peer": _peer(request), "started": started}, audit, answer, tenant[0])
        return answer

    async def list_commands(self, request):
        return (await self._guarded(request, self._listing)).response()

    async def ready(self, request):
        return (await self._guarded(request, self._ready_report)).response()

    async def metrics(self, request):
        if not self.loopback:
            answer = await self._guarded(request, lambda key: self._allow(key, "metrics", destructive=True))
            if answer.status != 200:
                return answer.response()
        body, media_type = metrics.render()
        from starlette.responses import Response

        return Response(body, media_type=media_type.split(";")[0], headers={"Content-Type": media_type})

    async def health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def openapi(self, request):
        from starlette.responses import Response

        from .openapi import VERSIONS, document

        version = request.query_params.get("version", VERSIONS[0])
        if version not in VERSIONS:
            return problem_answer(Problem(400, "input", f"version must be one of {', '.join(VERSIONS)}",
                                          details={"parameter": "version"}), request.url.path).response()
        return Response(document(version=version), media_type="application/json")

    async def _guarded(self, request, work) -> Answer:
        """A GET route behind a key: ``work(key record)`` in the pool after the key and its rate."""
        token = _token(request.headers)
        if token is None:
            _note(401)
            return problem_answer(unauthorized("no API key", invalid=False), request.url.path)

        def run() -> Answer:
            try:
                key = self._authenticate(token)
                return work(key) or Answer(200, b"{}")
            except Exception as exc:  # noqa: BLE001 - every failure is a problem, never a traceback
                p = from_error(exc)
                _note(p.status)
                return problem_answer(p, request.url.path)

        return await self._in_pool(request, run)

    # ---- the worker side (a thread of the pool) ----
    def _authenticate(self, token: str, shared: dict | None = None) -> dict:
        try:
            if self.entra is not None and token.count(".") == 2 and not token.startswith("mst_"):
                from integration.teams.verify import Rejected

                try:
                    key = self.entra.key_of(token)
                except Rejected as exc:
                    raise Refused(f"Entra ID token refused: {exc}") from None
            elif shared is not None:  # a lane group: one snapshot of the store, one read of a key
                key = shared.get(token)
                if key is None:
                    key = shared[token] = self.keys.authenticate(token)
            else:
                key = self.keys.authenticate(token)
        except Refused as exc:
            raise unauthorized(str(exc), invalid=True) from None
        wait = self.limiter.take(key["name"])
        if wait:
            raise Problem(429, "rate_limited", f"API key {key['name']!r}: over its rate limit",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))}, hint="slow down, or ask for a "
                          "service with a higher --rate")
        return key

    def _allow(self, key: dict, name: str, *, destructive: bool) -> None:
        if not allows(key.get("scopes") or (), name, destructive=destructive):
            why = " (destructive: a glob does not allow it, only a scope naming it)" if destructive else ""
            raise Problem(403, "scope", f"API key {key['name']!r} may not run {name!r}{why}",
                          hint=f"create a key with --scope {name}", details={"scope": name})

    def _spec(self, name: str):
        spec = self.runtime.registry.get(name)
        if spec is None:
            import difflib

            close = difflib.get_close_matches(name, self.runtime.registry.all_names(), n=3)
            raise Problem(404, "unknown_command", f"unknown command {quote(name, 80)}",
                          hint=f"did you mean: {', '.join(close)}?" if close else "GET /v1/commands lists them")
        return spec

    def _command_job(self, loop, waiter, call: dict) -> None:
        """In a pool thread: the command; its answer goes to ``waiter`` once its audit entry is
        committed (AuditTrail: with those of the calls answered meanwhile, in one transaction)."""
        answer, row, alone = self._counted(call)
        if row is None:
            hand_over(loop, [(waiter, answer)])
        else:
            self.trail_of(call.get("tenant")).add(row, loop, waiter, answer, alone=alone)

    def _command(self, call: dict, shared: dict | None = None) -> tuple[Answer, dict | None]:
        """One command request, from the key to the answer and its audit entry (not written).
        ``shared``: the lane group's (lane.py), where a key read is kept for the group."""
        audit = {"command": call["name"][:100], "key": None, "digest": None, "decision": "refused"}
        path = call["path"]
        answer = None
        try:
            try:
                key = self._authenticate(call["token"], shared)
            except Problem as p:
                audit["key"] = "?"
                if p.status == 401:  # a key it does not know: by its first characters, as `api-key list` shows them
                    audit["shown"] = call["token"][:8] + "..." if _KEYLIKE.fullmatch(call["token"][:8]) \
                        else "not an API key"
                raise
            audit["key"] = key["name"]
            spec = self._spec(call["name"])
            audit["command"] = spec.name
            self._allow(key, spec.name, destructive=spec.destructive)
            args = _arguments(call["body"])
            audit["digest"] = hashlib.sha256(_dumps(args)).hexdigest()
            if call.get("tenant_header") is None and "tenant" not in args and not self.runtime.cfg.tenant_names:
                tenant, runtime = None, self.runtime  # nothing named, no profiles: tenancy has nothing to check
            else:
                tenant = self.tenant_of(key, {tenancy.HEADER.lower(): call.get("tenant_header")}
                                        if call.get("tenant_header") is not None else {}, args)
                runtime = self.runtime.for_tenant(tenant)
            call["tenant"] = tenant  # its audit entry goes to the tenant's store from here on
            flow = call["flow"]
            if flow is not None and flow not in FLOWS:
                raise Problem(400, "input", f"flow must be one of {', '.join(FLOWS)}", details={"parameter": "flow"})
            audit["decision"] = "allowed"
            header = call["idempotency_key"]
            if call.get("prefer") is not None and _prefers_async(call["prefer"]):
                answer = self._start_job(key, spec, args, flow, header, path, runtime)
            elif header is None:
                answer = self._execute(spec, args, flow, path, runtime)
            else:
                answer = self._idempotent(key, spec, args, flow, idem.check_header(header), path, audit, runtime)
        except Exception as exc:  # noqa: BLE001 - every failure is a problem, never a traceback
            answer = problem_answer(from_error(exc), path)
        _note(answer.status)
        return answer, audit_row(call, audit, answer)

    def _start_job(self, key, spec, args, flow, header: str | None, path: str, runtime) -> Answer:
        """The command as a job (jobs.py): 202 with its Location; the same Idempotency-Key, the same job."""
        scope = idem.scoped(key["name"], idem.check_header(header)) if header is not None else None

        def work() -> tuple[int, bytes]:
            try:
                if scope is None:
                    answer = self._execute(spec, args, flow, path, runtime)
                else:
                    answer = self._idempotent(key, spec, args, flow, idem.check_header(header), path, {}, runtime)
            except Exception as exc:  # noqa: BLE001 - a refusal under the key (409, 422) is the job's problem
                answer = problem_answer(from_error(exc), path)
            return answer.status, answer.body

        record, _ = self.jobs.start(command=spec.name, key_name=key["name"], scope=scope, work=work,
                                    fingerprint=_fingerprint(spec.name, args, runtime), tenant=runtime.cfg.tenant)
        location = f"/v1/jobs/{record['id']}"
        return Answer(202, _dumps(dict(self.jobs.view(record), location=location)),
                      headers={"Location": location, "Preference-Applied": "respond-async", "Vary": "Prefer"})

    async def get_job(self, request):
        job_id = request.path_params["job_id"]

        def work(key: dict) -> Answer:
            record = self.jobs.record(job_id)
            if record is None:
                raise Problem(404, "not_found", "no such job (or it finished more than 24 hours ago)",
                              hint="POST /v1/commands/{name} with Prefer: respond-async starts one")
            if record.get("key") != key["name"]:  # the key that started it, or one that may run the command
                spec = self.runtime.registry.get(record["command"])
                self._allow(key, record["command"], destructive=spec is None or bool(spec.destructive))
                if record.get("tenant"):  # ... for that tenant
                    tenancy.check(self.runtime.cfg, key, record["tenant"])
            return Answer(200, _dumps(self.jobs.view(record)))

        return (await self._guarded(request, work)).response()

    def _idempotent(self, key, spec, args, flow, header: str, path: str, audit: dict, runtime) -> Answer:
        scope = idem.scoped(key["name"], header)
        fp = _fingerprint(spec.name, args, runtime)
        recorded = self.idempotency.begin(scope, fp)
        if recorded is not None:
            audit["replayed"] = True
            return Answer(recorded["status"], recorded["body"].encode("utf-8", "surrogateescape"),
                          recorded.get("media_type") or "application/json",
                          {**(recorded.get("headers") or {}), "Idempotent-Replayed": "true"})
        answer = None
        try:
            run_args = dict(args)
            if "dedupe_key" in spec.argument_names and not _gives(spec, args, "dedupe_key"):
                run_args["dedupe_key"] = idem.dedupe_key(scope)
            answer = self._execute(spec, run_args, flow, path, runtime)
        finally:
            if answer is None:
                self.idempotency.release(scope)
            else:
                self.idempotency.finish(scope, fp, answer.status, answer.body, answer.headers, answer.media_type)
        return answer

    def _execute(self, spec, args: dict, flow: str | None, path: str, runtime=None) -> Answer:
        from integration.dispatch import execute

        try:
            result = execute(spec.name, args, runtime or self.runtime, flow=flow)
        except Exception as exc:  # noqa: BLE001 - ours by the table, a bug as 500
            return problem_answer(from_error(exc), path)
        return Answer(200, _dumps(result_body(result)))

    def _audit(self, call: dict, audit: dict, answer: Answer, tenant: str | None = None) -> None:
        row = audit_row(call, audit, answer)
        if row is not None:
            self.trail_of(tenant).write([row])

    def _listing(self, key: dict) -> Answer:
        scopes = key.get("scopes") or ()
        rows = [{"name": s.name, "description": s.description, "category": s.category or "admin",
                 "aliases": list(s.aliases), "destructive": bool(s.destructive),
                 "allowed": allows(scopes, s.name, destructive=s.destructive)} for s in self.runtime.registry]
        return Answer(200, _dumps({"commands": rows}))

    def _ready_report(self, key: dict) -> Answer:
        self._allow(key, "integration-health", destructive=False)
        now = time.monotonic()
        if self._ready is not None and now - self._ready[0] < READY_CACHE_SECONDS:
            return self._ready[1]
        if self.runtime.cfg.tenant_names:  # every tenant profile's health (msteams tenants)
            from integration.frontends.tenants import report

            rows, code = report(self.runtime)
            checks, readable = rows, None
        else:
            from integration.dispatch import execute

            result = execute("integration-health", {}, self.runtime)
            code, checks, readable = result.exit_code, result.outputs, result.readable
        ok = code == 0
        answer = Answer(200 if ok else 503, _dumps({"status": "ready" if ok else "not ready",
                                                    "exit_code": code, "checks": checks, "readable": readable}),
                        headers={} if ok else {"Retry-After": "30"})
        self._ready = (now, answer)
        return answer


def _fingerprint(command: str, args: dict, runtime) -> str:
    """An Idempotency-Key's body fingerprint: the command, its arguments and, with tenant
    profiles, the tenant (the same key for another tenant is another request: 422)."""
    tenant = runtime.cfg.tenant
    return idem.fingerprint(command, args if tenant is None else {"args": args, "tenant": tenant})


_IDEM = idem.HEADER.lower().encode()
_GROUP_ROWS = object()  # a lane group's audit entries, in its shared dict (keys there are tokens)


def _hand_back(loop, waiter, work, args) -> None:
    """In a pool thread: ``work(*args)`` (which answers, never raises: a bug is a 500 here),
    its answer handed to ``waiter`` on the loop."""
    try:
        answer = work(*args)
    except Exception as exc:  # noqa: BLE001 - every failure is a problem, never a traceback
        answer = problem_answer(from_error(exc))
    try:
        loop.call_soon_threadsafe(_settle, waiter, answer)
    except RuntimeError:  # the loop is closed: the server stopped; nobody waits for this answer
        pass


def _settle(waiter, answer) -> None:
    if not waiter.done():  # else: answered 504 already, or the client went away
        waiter.set_result(answer)


def _arguments(body: bytes) -> dict:
    if body == b"{}" or not body.strip():  # no arguments: the body of most reads
        return {}
    try:
        args = json.loads(body)
    except (ValueError, RecursionError):
        raise Problem(400, "input", "the body is not JSON", hint="send the arguments as a JSON object "
                      "(Content-Type: application/json)") from None
    if not isinstance(args, dict):
        raise Problem(422, "input", f"the body must be a JSON object of arguments, not {type(args).__name__}",
                      hint='{"team": "Security Operations"}')
    if may_hold_surrogates(body):
        bad = lone_surrogate(args)
        if bad is not None:  # nothing could store, send or audit it (a run's inputs, a run key...)
            where, point, in_key = bad
            what = quote(where, 80) if where else "the body"
            raise Problem(422, "input", f"{f'a key of {what}' if in_key else what} is not valid text: it "
                          f"holds U+{ord(point):04X}, half of a UTF-16 surrogate pair",
                          hint="send text as UTF-8 (in JSON, a character outside the BMP as a whole pair)",
                          details={"argument": re.split(r"[.\[]", where, maxsplit=1)[0]} if where else None)
    return args


def _prefers_async(prefer: str) -> bool:
    from .jobs import prefers_async

    return prefers_async(prefer)


def _gives(spec, args: dict, name: str) -> bool:
    from integration.engine.arguments import canonical_name

    return any(canonical_name(spec, k) == name and v is not None for k, v in args.items())


def _note(status: int) -> None:
    metrics.inbound("accepted" if status < 400 else f"refused-{status}" if status < 500 else "error", kind="http")


def _peer(request) -> str:
    return request.client.host if request.client else "?"


def _clean(text: str) -> str:
    from integration.engine.untrusted import clean

    return clean(text, 100)


def routes(service: Service, bot_endpoint=None) -> list:
    """The service's routes: add one line here for a new one."""
    from starlette.routing import Route

    table = [
        Route("/v1/commands/{name}", service.command, methods=["POST"]),
        Route("/v1/commands", service.list_commands, methods=["GET"]),
        Route("/v1/openapi.json", service.openapi, methods=["GET"]),
        Route("/v1/health", service.health, methods=["GET"]),
        Route("/v1/ready", service.ready, methods=["GET"]),
        Route("/metrics", service.metrics, methods=["GET"]),
        Route("/v1/playbooks/{name}/runs", service.start_run, methods=["POST"]),
        Route("/v1/runs", service.list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", service.get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}/resume", service.resume_run, methods=["POST"]),
        Route("/v1/jobs/{job_id}", service.get_job, methods=["GET"]),
    ]
    if bot_endpoint is not None:
        from integration.frontends.bot.server import routes as bot_routes

        table += bot_routes(bot_endpoint)
    return table


def create_app(service: Service, bot_endpoint=None):
    from starlette.applications import Starlette

    async def not_found(request, exc):
        status = getattr(exc, "status_code", 404)
        code = "method_not_allowed" if status == 405 else "not_found"
        return problem_answer(Problem(status, code, "no such route" if status == 404 else "method not allowed",
                                      hint="GET /v1/openapi.json describes the routes",
                                      headers=dict(getattr(exc, "headers", None) or {})),
                              request.url.path).response()

    async def server_error(request, exc):
        log.error("internal error on %s: %s", _clean(request.url.path), type(exc).__name__)
        return problem_answer(from_error(exc), request.url.path).response()

    from integration.frontends.bot.server import FrontDoor, hot_routes

    app = Starlette(routes=routes(service, bot_endpoint),
                    exception_handlers={404: not_found, 405: not_found, 500: server_error})
    return FrontDoor(app, hot_routes(bot_endpoint) if bot_endpoint is not None else {},
                     {"/v1/commands/": ("name", service.command)}, on_error=server_error)
