"""The endpoint's HTTP side: a Starlette app served by uvicorn (``msteams bot serve``).

Routes are one table (:func:`routes`): ``POST /api/messages`` (Bot Framework activities),
``POST /api/calls`` (Graph's call notifications, ``calls.py``: the same steps with the calling
service's keys, recorded in the store, answered 202) and ``GET /healthz``. For
``/api/messages``, in this order and before anything is processed or stored:

1. no ``Authorization`` header -> 401;
2. a declared body over :data:`MAX_BODY` -> 413;
3. the token (``verify.py``) -> 401 when anything is wrong; checked on the event loop when
   the signing keys are at hand (no I/O: parsing and one RSA check), else in a thread that may
   fetch them;
4. the body, read up to the cap -> 413 past it; not a JSON object -> 400;
5. the activity's ``serviceUrl`` against the token's -> 401;
6. the processor (``activities.py``) answers at once (200/202) and works in the background.
   With a local store its acceptance (the conversation learned, the audit entry) runs on the
   event loop, in the lane's group of the moment (``frontends/lane.py``: one commit a group,
   what it starts in the background started once committed); else one hop to the endpoint's
   threads.

``FrontDoor`` hands ``POST /api/messages`` (and, in ``serve``, ``POST /v1/commands/{name}``)
to its handler past Starlette's router and middleware.

A refusal is logged in one line (peer, path, reason), never with the token; no answer carries
a traceback.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
from typing import Callable

from integration.engine.untrusted import may_hold_surrogates, without_lone_surrogates

log = logging.getLogger("msteams.bot.server")

MAX_BODY = 256 * 1024  # Teams activities are far smaller (messages stop at ~28 KB)


def _json(status: int, body: dict | None = None):
    from starlette.responses import JSONResponse, Response

    if body is None:
        empty = _EMPTY.get(status)
        if empty is None:  # one each: an ASGI response without a body is sent as is, never changed
            empty = _EMPTY[status] = Response(status_code=status)
        return empty
    return JSONResponse(body, status_code=status)


_EMPTY: dict = {}  # status -> the empty answer (200, 202: most of the endpoint's answers)


class Endpoint:
    """The verifier and processor the routes use."""

    def __init__(self, verifier, processor, *, max_body: int = MAX_BODY, calls=None, threads: int = 4):
        self.verifier = verifier
        self.processor = processor
        self.calls = calls  # CallNotifications (calls.py), or None: /api/calls answers 404
        self.max_body = max_body
        self.rejected = 0  # refused requests (health, tests)
        self.threads = threads
        self._pool = None  # the threads requests hop to (made on first use)
        self._pool_lock = threading.Lock()
        self._lane_of: tuple | None = None  # (the processor, its lane or None)

    def _threads(self):
        pool = self._pool
        if pool is None:
            from integration.frontends.pool import WarmPool

            with self._pool_lock:
                if self._pool is None:
                    self._pool = WarmPool(self.threads, thread_name_prefix="msteams-bot-http")
                pool = self._pool
        return pool

    async def _in_thread(self, fn, *args):
        """``fn(*args)`` in one of the endpoint's threads: its result (or its exception) handed
        back to the loop in one call (no executor future chained to an asyncio one, no anyio)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._threads().submit(_run_for, loop, waiter, fn, args)
        return await waiter

    def _lane(self):
        """The event loop's lane (lane.py) for a processor of one tenant on a local store; None
        (a hop to the threads) for a Redis store or the router of many tenants' processors."""
        processor = self.processor
        if self._lane_of is not None and self._lane_of[0] is processor:
            return self._lane_of[1]
        from integration.frontends.lane import lane_of

        store = getattr(getattr(processor, "runtime", None), "store", None)
        lane = lane_of(store, self._threads()) if hasattr(processor, "accept_deferred") else None
        self._lane_of = (processor, lane)
        return lane

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _refuse(self, request, status: int, reason: str):
        self.rejected += 1
        _note_inbound(request, _REFUSED.get(status, f"refused-{status}"))
        peer = request.client.host if request.client else "?"
        from integration.engine.untrusted import clean

        # The reason may quote what the caller sent (an issuer, an algorithm): escaped, one line.
        log.warning("refused %s %s from %s: %d %s", request.method, clean(request.url.path, 100), peer, status,
                    clean(reason, 300))
        message = {401: "Unauthorized", 413: "Request body too large", 400: "Bad request"}.get(status, "Refused")
        return _json(status, {"error": {"code": message.replace(" ", ""), "message": message}})

    async def _verified_json(self, request, verify, *, at_hand: bool = False):
        """(what ``verify`` made of the token, the parsed body), in the order Microsoft asks:
        the token is checked before a byte of the body is read. A _Refusal otherwise.
        ``at_hand``: ``verify`` takes ``fetch=False`` (InboundVerifier.verify): checked on the
        loop with the keys at hand, in a thread only when they must be fetched."""
        from integration.teams.verify import Rejected

        headers = request.headers
        auth = headers.get("authorization")
        if not auth:
            raise _Refusal(401, "no Authorization header")
        declared = headers.get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_body):
            raise _Refusal(413, f"declared body of {declared[:20]} bytes")
        try:
            identity = verify(auth, fetch=False) if at_hand else None
            if identity is None:
                identity = await self._in_thread(verify, auth)
        except Rejected as exc:
            raise _Refusal(401, str(exc)) from None
        if declared is not None:  # the server holds the body to the length declared, under the cap
            body = await whole_body(request)
        else:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.max_body:
                    raise _Refusal(413, f"body over {self.max_body} bytes")
        body = bytes(body)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise _Refusal(400, "body is not JSON") from None
        if may_hold_surrogates(body):
            # Half of a UTF-16 pair (a lone "\ud800" escape) has no UTF-8 form: nothing could
            # audit, store or answer it. As a lenient decoder reads it: U+FFFD.
            doc = without_lone_surrogates(doc)
        return identity, doc

    def _internal(self, request, exc: Exception):
        _note_inbound(request, "error")
        log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        log.debug("internal error", exc_info=True)
        return _json(500, {"error": {"code": "InternalError", "message": "Internal error"}})

    async def messages(self, request):
        from integration.teams.verify import InboundVerifier, Rejected

        try:
            identity, activity = await self._verified_json(request, self.verifier.verify,
                                                           at_hand=isinstance(self.verifier, InboundVerifier))
            if not isinstance(activity, dict):
                raise _Refusal(400, "body is not a JSON object")
            try:
                self.verifier.check_activity(identity, activity)
            except Rejected as exc:
                raise _Refusal(401, str(exc)) from None
            lane = self._lane()
            if lane is not None:  # on the loop, with the activities of this turn (lane.py)
                status, payload = await lane.run(functools.partial(self.processor.accept_deferred, activity))
            else:
                status, payload = await self._in_thread(self.processor.accept, activity)
            _note_inbound(request, "accepted")
            return _json(status, payload)
        except _Refusal as r:
            return self._refuse(request, r.status, r.reason)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the caller
            return self._internal(request, exc)

    async def call_notifications(self, request):
        """``POST /api/calls``: verified as the messages are (calls.py), then recorded."""
        try:
            if self.calls is None:
                return _json(404, {"error": {"code": "NotFound", "message": "Not found"}})
            claims, doc = await self._verified_json(request, self.calls.verifier.verify)
            try:
                await self._in_thread(self.calls.accept, doc, claims)
            except ValueError as exc:
                raise _Refusal(400, str(exc)) from None
            _note_inbound(request, "accepted")
            return _json(202)
        except _Refusal as r:
            return self._refuse(request, r.status, r.reason)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the caller
            return self._internal(request, exc)

    async def healthz(self, request):
        return _json(200, {"status": "ok"})


_REFUSED = {401: "refused-auth", 413: "refused-size", 400: "refused-invalid"}


def _run_for(loop, waiter, fn, args) -> None:
    """In an endpoint thread: ``fn(*args)``, its result or exception set on ``waiter`` on ``loop``."""
    from integration.frontends.lane import settle_from_thread

    try:
        result, error = fn(*args), None
    except BaseException as exc:  # noqa: BLE001 - raised again on the loop, where the route handles it
        result, error = None, exc
    settle_from_thread(loop, waiter, result, error)


def _note_inbound(request, decision: str) -> None:
    """Count a request in the service metrics (metrics.py), when `bot serve` turned them on."""
    from integration.engine import metrics

    metrics.inbound(decision, kind="call" if request.scope["path"].endswith("/calls") else "activity")


class _Refusal(Exception):
    """A request refused before anything was processed: its status and the reason to log."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def routes(endpoint: Endpoint) -> list:
    """The endpoint's routes: add one line here for a new one."""
    from starlette.routing import Route

    return [
        Route("/api/messages", endpoint.messages, methods=["POST"]),
        Route("/api/calls", endpoint.call_notifications, methods=["POST"]),
        Route("/healthz", endpoint.healthz, methods=["GET"]),
    ]



def hot_routes(endpoint: Endpoint) -> dict:
    """The endpoint's busiest route, for FrontDoor: ``{path: handler}``."""
    return {"/api/messages": endpoint.messages}


class FrontDoor:
    """An ASGI app: a POST to a busy route goes straight to its handler (a Starlette request in,
    a response out, as from a Route), everything else to ``app`` (Starlette, with its routing,
    redirects and error handlers). Starlette's router and middleware cost about 30 us a request
    of CPU (a quarter of an echo's: benchmarks/api.py); the busy handlers answer every failure
    themselves, and ``on_error`` answers what escapes them (logged, never a traceback).
    ``exact``: {path: handler}; ``prefixed``: {prefix: (parameter, handler)} for a path of one
    more segment (``/v1/commands/{name}``)."""

    def __init__(self, app, exact: dict, prefixed: dict | None = None, *, on_error):
        self.app, self.exact, self.prefixed, self.on_error = app, exact, dict(prefixed or {}), on_error

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            handler = self.exact.get(path)
            if handler is None:
                for prefix, (parameter, h) in self.prefixed.items():
                    rest = path[len(prefix):]
                    if path.startswith(prefix) and rest and "/" not in rest:
                        scope["path_params"] = {parameter: rest}
                        handler = h
                        break
            if handler is not None:
                from starlette.requests import Request

                request = Request(scope, receive)
                try:
                    response = await handler(request)
                except Exception as exc:  # noqa: BLE001 - as Starlette's error middleware: logged, a 500
                    response = await self.on_error(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def whole_body(request) -> bytes:
    """The body of a request with a length declared under the cap, as ``request.body()`` reads
    it, without its stream's async generator (~5 us a request): a small body comes in one
    message; a bigger one's are joined."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # gone before the body came
            from starlette.requests import ClientDisconnect

            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def create_app(endpoint: Endpoint):
    from starlette.applications import Starlette

    async def not_found(request, exc):
        return _json(getattr(exc, "status_code", 404), {"error": {"code": "NotFound", "message": "Not found"}})

    async def server_error(request, exc):
        log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        return _json(500, {"error": {"code": "InternalError", "message": "Internal error"}})

    app = Starlette(routes=routes(endpoint), exception_handlers={404: not_found, 405: not_found,
                                                                  500: server_error})
    return FrontDoor(app, hot_routes(endpoint), on_error=server_error)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port), so the URL is known before serving. Made
    with IPPROTO_TCP, not the default protocol 0: asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on connections whose socket says TCP, and with it on, a small answer
    written as headers then body waits for the client's delayed ACK: 40 ms a request on a
    kept-alive connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server_class():
    import contextlib
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping on SIGINT/SIGTERM without raising the signal again after
        the graceful shutdown (uvicorn does, to end the process by it): `msteams bot serve` says
        it stopped and exits 0."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = [s for s in (signal.SIGINT, signal.SIGTERM)]
            original = {s: signal.signal(s, self.handle_exit) for s in sigs}
            try:
                yield
            finally:
                for s, handler in original.items():
                    signal.signal(s, handler)

    return Server


def _Server(config):
    return _server_class()(config)


class Served:
    """uvicorn serving an ASGI app on a socket of its own, bound before serving (so the URL is
    known): ``start()`` in a thread (tests) or ``run()`` in the foreground (``msteams bot serve``,
    ``msteams serve``: Ctrl-C and SIGTERM stop it gracefully and the process exits 0)."""

    what = "the server"  # for the error when it does not start

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, tls_cert: str | None = None,
                 tls_key: str | None = None):
        import uvicorn

        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.tls = bool(tls_cert)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_keep_alive=15,
                                timeout_graceful_shutdown=5,  # a TLS peer that never closes cannot hold us
                                h11_max_incomplete_event_size=64 * 1024, server_header=False, http="h11")
        try:
            config.load()  # a bad certificate or key fails here, not once serving
        except BaseException:
            self.sock.close()
            raise
        self.server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout: float = 10.0):
        self._thread = threading.Thread(target=self.run, name=f"msteams:{self.port}", daemon=True)
        self._thread.start()
        import time

        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.what} did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BotServer(Served):
    """The bot's messaging endpoint served (``msteams bot serve``)."""

    what = "the bot endpoint"

    def __init__(self, endpoint: Endpoint, **kw):
        self.endpoint = endpoint
        super().__init__(create_app(endpoint), **kw)

    @property
    def messaging_endpoint(self) -> str:
        return self.url + "/api/messages"

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.endpoint.processor.close()
        self.endpoint.close()


def build(runtime, *, workers: int = 4, clock: Callable[[], float] | None = None, verifier=None) -> Endpoint:
    """The endpoint for a runtime's config: verifier, access policy, rate limiter, processor."""
    import time

    from integration.teams.access import Access, GraphDirectory, RateLimiter, load_policy
    from .activities import Processor
    from integration.teams.verify import InboundVerifier

    cfg = runtime.cfg
    verifier = verifier or InboundVerifier.from_config(cfg)
    policy = load_policy(getattr(cfg, "bot_access_file", None), runtime.registry)
    if policy.empty:
        log.warning("no bot_access_file (or it allows nothing): every command from Teams will be refused")
    clock = clock or time.monotonic
    access = Access(policy, GraphDirectory(runtime), clock=clock)
    limiter = RateLimiter(policy.per_minute, policy.burst, clock=clock)
    calls = None
    if cfg.client_id:  # the app that places calls (ring-user) is the notifications' audience
        from integration.teams.calls import CallNotifications, CallVerifier

        calls = CallNotifications(CallVerifier.from_config(cfg), runtime.store)
    return Endpoint(verifier, Processor(runtime, access, limiter, workers=workers, clock=clock), calls=calls)
