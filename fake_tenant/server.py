"""The emulator's HTTPS server and the :class:`Emulator` that tests and ``msteams emulator
serve`` start: one loopback listener that routes by path prefix to Entra ID
(``/{tenant}/...``), Microsoft Graph (``/v1.0/...``), the Bot Connector (``/botframework/...``)
and the admin API (``/_emulator/...``).

A Graph request goes through: route match (400 for an unknown segment, 405) -> bearer token
(401) -> ``/me`` needs a delegated token (400) -> permission (403) -> throttling (429) -> injected
faults -> body checked against Microsoft's Graph v1.0 metadata (400, ``conformance.py``) ->
handler -> response properties the metadata does not list are recorded (``/_emulator/conformance``).
A Bot Connector request goes through: bearer token (401) -> throttling (429) -> injected
faults -> handler.
``$batch`` items re-enter the same pipeline through :meth:`_Context.dispatch`, so every item
is checked, throttled and fault-injected on its own.

With several hosted tenants (``Emulator(tenants=N)``, ``hosting.py``) the one listener routes
Entra by the authority in the path (``/{tenant id or domain}/...``), Graph by the token's ``tid``
(that tenant's token service checks it; its data, its throttle) and the Bot Connector by the
tenant of the conversation a request names.

The request log keeps method, path, status, caller kind, app id and timing; never tokens,
secrets, authorization codes, query strings or bodies.
"""
from __future__ import annotations

import copy
import importlib
import json
import logging
import math
import os
import pkgutil
import socket
import ssl
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

from . import conformance, permissions
from .bot import BotConnector
from .core import ROUTES, Claims, Context, GraphError, Request, Response, match_route, new_guid, utcnow_iso
from .entra import Entra, EntraError
from .faults import Faults
from .hosting import BOTFRAMEWORK_DOMAIN, BOTFRAMEWORK_TENANT_ID, HomeTenant, HostedTenant, home_name
from .state import TenantState
from .tenant import generate_tenant, hosted_tenant_name, hosted_tenant_seed, load_tenant
from .throttle import Throttler
from .tls import TlsMaterial
from .calling import CallError, CallingService
from .teams_channel import ChannelError, TeamsChannel
from .tokens import GRAPH_AUDIENCE, TokenError, TokenService

log = logging.getLogger("fake_tenant")

GRAPH_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
_WWW_AUTH = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
             'client_id="00000003-0000-0000-c000-000000000000"')
_MAX_LOG = 200_000

_routes_loaded = False
_routes_lock = threading.Lock()


def load_graph_routes() -> None:
    """Import every module under ``emulator/graph`` so their ``graph_route`` declarations run."""
    global _routes_loaded
    with _routes_lock:
        if _routes_loaded:
            return
        from . import graph
        for mod in pkgutil.iter_modules(graph.__path__):
            importlib.import_module(f"{graph.__name__}.{mod.name}")
        _routes_loaded = True


class _Drop(Exception):
    """A fault asked for the connection to be closed without a response."""


class _Context(Context):
    def __init__(self, emu: "Emulator", token: Claims | None, state=None):
        self._emu = emu
        self.state = emu.state if state is None else state  # the token's tenant's
        self.base_url = emu.graph_url
        self.token = token

    def dispatch(self, method: str, url: str, headers: dict, body: Any, token: Claims | None) -> Response:
        if isinstance(body, (dict, list)):
            raw = json.dumps(body).encode()
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = body or b""
        u = url.strip()
        if u.lower().startswith(("http://", "https://")):
            u = urllib.parse.urlsplit(u)._replace(scheme="", netloc="").geturl()
        if not u.startswith("/"):
            u = "/" + u
        if u.lower().startswith("/v1.0/"):
            u = u[5:]
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        return self._emu._graph(method.upper(), u, hdrs, raw, claims=token, batch_item=True)


def _segments_match(route_segs: list, segs: list[str]) -> int:
    n = 0
    for r, s in zip(route_segs, segs):
        if r is not None and r != s.lower():
            break
        n += 1
    return n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, handler, emulator: "Emulator", ssl_context: ssl.SSLContext):
        self.emulator = emulator
        self.ssl_context = ssl_context
        self.live: set = set()
        self.live_lock = threading.Lock()
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # Handshake in the connection's own thread so one slow client cannot stall accept().
        try:
            request.settimeout(30)
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            try:
                request.close()
            except OSError:
                pass
            return
        with self.live_lock:
            self.live.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            with self.live_lock:
                self.live.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def close_all(self) -> None:
        with self.live_lock:
            conns = list(self.live)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "msteams-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _serve(self) -> None:
        emu: Emulator = self.server.emulator  # type: ignore[attr-defined]
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp, json_type = emu.handle(self.command, self.path, headers, body)
        except _Drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(resp, json_type)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _write(self, resp: Response, json_type: str) -> None:
        body = resp.body
        hdrs = {k: v for k, v in (resp.headers or {}).items()}
        lower = {k.lower() for k in hdrs}
        if isinstance(body, (dict, list)):
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if "content-type" not in lower:
                hdrs["Content-Type"] = json_type
        elif isinstance(body, str):
            payload = body.encode("utf-8")
            if "content-type" not in lower:
                hdrs["Content-Type"] = "text/plain; charset=utf-8"
        elif body is None:
            payload = b""
        else:
            payload = bytes(body)
        status = int(resp.status)
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {self.date_time_string()}",
                 f"Server: {self.server_version}"]
        for k, v in hdrs.items():
            if k.lower() in ("content-length", "date", "server", "connection"):
                continue
            lines.append(f"{k}: {v}")
        if status not in (204, 304) and not (100 <= status < 200):
            lines.append(f"Content-Length: {len(payload)}")
        else:
            payload = b""
        if self.close_connection:
            lines.append("Connection: close")
        # One write per response: separate header/body writes interact badly with delayed ACKs.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + payload)


class Emulator:
    """A fake Microsoft 365 tenant on ``https://127.0.0.1:PORT``.

    ``Emulator(tenant=None|path|dict, users=None, throttling=False, speed=1.0, port=0,
    token_lifetime=3600, tenants=1)``; use as a context manager or call :meth:`start` / :meth:`stop`.

    ``tenants=N`` hosts N tenants (``hosting.py``): tenant 1 is ``tenant`` (default contoso) and
    what ``state``, ``tokens``, ``throttle``, ``authority``, ``config()`` are; the others are
    generated (fabrikam, northwind, tenant4...). :meth:`tenant_names`, :meth:`tenant`,
    ``config(tenant=NAME)``, ``write_config(path, tenants=True)``, :meth:`set_consent`.
    """

    def __init__(self, tenant: str | dict | None = None, users: int | None = None, throttling: bool = False,
                 speed: float = 1.0, port: int = 0, token_lifetime: int = 3600, host: str = "127.0.0.1",
                 retry_after: bool = True, messaging_endpoint: str | None = None, conformance_checks: bool = True,
                 tenants: int = 1):
        if isinstance(tenants, bool) or not isinstance(tenants, int) or tenants < 1:
            raise ValueError(f"tenants must be a whole number of at least 1, not {tenants!r}")
        self.state = load_tenant(tenant, users)
        # Requests checked against Microsoft's Graph v1.0 metadata (conformance.py): unknown body
        # properties and @odata.type are 400; response properties the metadata does not list are
        # recorded in ``self.conformance`` (since the last reset) and counted in ``conformance_total``.
        self.conformance_checks = conformance_checks
        self.conformance: list[dict] = []
        self.conformance_total = {"invented": 0, "refused": 0}
        self.host = host
        self.port = port
        self.token_lifetime = token_lifetime
        self.faults = Faults()
        self.throttle = Throttler(enabled=throttling, speed=speed, retry_after=retry_after,
                                  n_users=len(self.state.users))
        # The hosted tenants, tenant 1 first (it is this emulator's state, throttle, tokens...).
        taken = {hosted_tenant_name(i) for i in range(2, tenants + 1)}
        self._hosted: list[HostedTenant] = [HomeTenant(home_name(self.state.domain, taken), self)]
        self._registrations: dict = {}  # app id -> the multi-tenant app's registration (tenants > 1)
        self._botframework: HostedTenant | None = None  # the botframework.com authority (tenants > 1)
        if tenants > 1:
            apps = (self.state._seed or {}).get("apps") or []
            self._registrations = {a.app_id: copy.deepcopy(a) for a in self.state.apps.values()}
            for i in range(2, tenants + 1):
                seed = hosted_tenant_seed(i, apps)
                if users:  # --users grows every hosted tenant's directory alike (a fan-out to each)
                    seed = generate_tenant(int(users), seed=i, base=seed)
                st = TenantState.from_seed(seed)
                if any(h.tenant_id == st.tenant_id for h in self._hosted):
                    raise ValueError(f"hosted tenant {i} has the tenant id of another ({st.tenant_id})")
                self._hosted.append(HostedTenant(hosted_tenant_name(i), st, Throttler(
                    enabled=throttling, speed=speed, retry_after=retry_after, n_users=len(st.users))))
            for h in self._hosted[1:]:
                h.seed_permissions = self._permissions_snapshot(h.state)
            bots = [a for a in apps if a.get("kind") == "bot"]
            self._botframework = HostedTenant("botframework", TenantState.from_seed(
                {"tenant_id": BOTFRAMEWORK_TENANT_ID, "domain": BOTFRAMEWORK_DOMAIN, "apps": copy.deepcopy(bots)}))
        self.request_log: list[dict] = []
        self._where = threading.local()  # the hosted tenant of the request this thread serves
        self._seed_permissions = self._permissions_snapshot()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.tls: TlsMaterial | None = None
        self.tokens: TokenService | None = None
        self.entra: Entra | None = None
        self.bot: BotConnector | None = None
        self.teams: TeamsChannel | None = None  # the Teams side: simulated users writing to the bot
        self.calling: CallingService | None = None  # simulated users answering the app's calls
        self._messaging_endpoint = messaging_endpoint
        self.base_url = self.authority = self.graph_url = self.bot_service_url = ""
        self.ca_bundle = ""

    # ---- lifecycle ----
    def start(self) -> "Emulator":
        if self._server is not None:
            return self
        load_graph_routes()
        permissions.check_routes(ROUTES)
        conformance.check_routes(ROUTES)
        self.tls = TlsMaterial()
        try:
            self._server = _Server((self.host, self.port), _Handler, self, self.tls.server_context())
        except OSError:
            self.tls.cleanup()
            raise
        self.port = self._server.server_address[1]
        self.base_url = f"https://{self.host}:{self.port}"
        self.authority = f"{self.base_url}/{self.state.tenant_id}"
        self.graph_url = f"{self.base_url}/v1.0"
        self.bot_service_url = f"{self.base_url}/botframework/"
        self.ca_bundle = self.tls.ca_path
        self.tokens = TokenService(f"{self.authority}/v2.0", self.state.tenant_id, self.token_lifetime)
        self.entra = Entra(self.state, self.tokens, self.base_url)
        self.bot = BotConnector(self.state, self.tokens)
        self.teams = TeamsChannel(self.state, self.base_url, self.bot_service_url, self.ca_bundle)
        self.calling = CallingService(self.state, self.base_url, self.ca_bundle)
        if len(self._hosted) > 1:
            self._start_hosted()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"msteams-emulator:{self.port}", daemon=True)
        self._thread.start()
        if self._messaging_endpoint:
            self.teams.register(self._messaging_endpoint)  # a ChannelError here: stop() works
        return self

    def _start_hosted(self) -> None:
        """Tenants 2..N (and the botframework.com authority): each its own authority, token
        service, Entra, Bot Connector over its conversations, Teams side (a peer of tenant 1's:
        one signing key, one messaging endpoint) and calling service (tenant 1's signing key)."""
        self.entra.registration = self._registrations.get
        for h in [*self._hosted[1:], self._botframework]:
            h.authority = f"{self.base_url}/{h.tenant_id}"
            h.tokens = TokenService(f"{h.authority}/v2.0", h.tenant_id, self.token_lifetime)
            h.entra = Entra(h.state, h.tokens, self.base_url, registration=self._registrations.get)
            if h is self._botframework:
                continue
            h.bot = BotConnector(h.state, h.tokens)
            h.teams = TeamsChannel(h.state, self.base_url, self.bot_service_url, self.ca_bundle, hub=self.teams)
            h.calling = CallingService(h.state, self.base_url, self.ca_bundle)
            # One calling service signs for every tenant (its tokens name the tenant): tenant 1's
            # key, and its deliveries list.
            h.calling._key, h.calling.kid, h.calling._jwk = self.calling._key, self.calling.kid, self.calling._jwk
            h.calling.deliveries, h.calling._lock = self.calling.deliveries, self.calling._lock

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        srv.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.tls is not None:
            self.tls.cleanup()

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # ---- test controls ----
    @property
    def throttling(self) -> bool:
        return self.throttle.enabled

    @throttling.setter
    def throttling(self, enabled: bool) -> None:
        for h in self._hosted:
            h.throttle.configure(enabled=enabled)

    def set_throttling(self, enabled: bool, speed: float | None = None, retry_after: bool | None = None) -> None:
        """Throttling on or off in every hosted tenant (each keeps its own buckets)."""
        for h in self._hosted:
            h.throttle.configure(enabled=enabled, speed=speed, retry_after=retry_after)

    def reset(self) -> None:
        """Back to the seed; request log, faults and throttle buckets cleared; tokens stay valid."""
        self.state.reset()
        self.request_log.clear()
        self.conformance.clear()
        self.faults.clear()
        self.throttle.reset()
        for h in self._hosted[1:]:
            h.state.reset()
            h.throttle.reset()
        if self.teams is not None:
            self.teams.reset()
        if self.calling is not None:
            self.calling.reset()

    def expire_tokens(self) -> None:
        """Every access token issued so far now fails with 401 (in every hosted tenant)."""
        self.tokens.expire_all()
        for h in [*self._hosted[1:], *([self._botframework] if self._botframework else [])]:
            if h.tokens is not None:
                h.tokens.expire_all()

    def revoke_refresh_tokens(self, user: str | None = None) -> int:
        if len(self._hosted) > 1 and user is None:
            return sum(h.tokens.revoke_refresh_tokens(None) for h in self._hosted if h.tokens is not None)
        host = self._hosted[0]
        uid = None
        if user:
            host = next((h for h in self._hosted if h.state.user(user)), host)
            u = host.state.user(user)
            uid = u["id"] if u else user
        return host.tokens.revoke_refresh_tokens(uid)

    def register_api_client(self, name: str, roles, *, resource: str | None = None,
                            tenant: str | None = None) -> dict:
        """Register a client app (a SOAR platform's) in a tenant (default tenant 1) with app roles
        assigned on ``resource``'s API (default: the integration's own app, the config's
        client_id): it gets Entra ID tokens for that API by client credentials. Returns its
        client_id and client_secret. Gone on reset()."""
        import secrets as _secrets

        from .state import App

        state = self.tenant(tenant).state if tenant else self.state
        resource = resource or self.config()["client_id"]
        app = App(name, new_guid(), _secrets.token_urlsafe(24), "graph", api_roles={resource: set(roles)})
        with state.lock:
            state.apps[app.app_id] = app
        return {"client_id": app.app_id, "client_secret": app.secret, "resource": resource}

    def set_permissions(self, app_id: str, application=None, delegated=None, tenant: str | None = None) -> None:
        """Replace what the tenant (default tenant 1; or a hosted tenant's name or id) granted an
        app; tokens issued afterwards carry the new set."""
        state = self.tenant(tenant).state if tenant else self.state
        with state.lock:
            app = state.app(app_id)
            if app is None:
                raise KeyError(f"unknown app {app_id}")
            if application is not None:
                app.application_permissions = set(application)
            if delegated is not None:
                app.delegated_permissions = set(delegated)

    def _permissions_snapshot(self, state=None) -> dict:
        return {a.app_id: (set(a.application_permissions), set(a.delegated_permissions))
                for a in (state or self.state).apps.values()}

    def restore_permissions(self) -> None:
        for app_id, (application, delegated) in self._seed_permissions.items():
            if self.state.app(app_id) is not None:
                self.set_permissions(app_id, application, delegated)
        for h in self._hosted[1:]:
            for app_id, (application, delegated) in h.seed_permissions.items():
                if h.state.app(app_id) is not None:
                    self.set_permissions(app_id, application, delegated, tenant=h.tenant_id)

    # ---- several hosted tenants ----
    def tenant_names(self) -> list[str]:
        """The hosted tenants' short names, tenant 1 first: ["contoso"] (or ["contoso",
        "fabrikam", "northwind", "tenant4", ...] with ``tenants=N``)."""
        return [h.name for h in self._hosted]

    def tenant_ids(self) -> dict[str, str]:
        """Name -> tenant id, tenant 1 first."""
        return {h.name: h.tenant_id for h in self._hosted}

    def tenant(self, key: str | None = None) -> HostedTenant:
        """A hosted tenant by name, tenant id or domain (None: tenant 1): its ``state`` (users,
        teams, chats... what tests look at), ``throttle``, ``tokens``, ``authority``, ``teams``..."""
        if key is None:
            return self._hosted[0]
        k = str(key).lower()
        for h in self._hosted:
            if k in (h.name, h.tenant_id.lower(), (h.domain or "").lower()):
                return h
        raise KeyError(f"no hosted tenant {key!r} (hosted: {', '.join(self.tenant_names())})")

    def _host_by_id(self, tenant_id: str | None) -> HostedTenant | None:
        t = (tenant_id or "").lower()
        return next((h for h in self._hosted if h.tenant_id.lower() == t), None) if t else None

    def set_consent(self, tenant: str, consented: bool, app_id: str | None = None) -> None:
        """Grant or withdraw (admin) consent to the multi-tenant app (``app_id``, default every
        app registration) in one hosted tenant. Withdrawn, the tenant has no service principal
        for it: app-only sign-in there is refused AADSTS7000229, user sign-in AADSTS65001 (tokens
        issued before stay good until they expire, as Entra's do); granted again, with the
        permissions it was seeded with. :meth:`reset` grants it again too (back to the seed)."""
        if len(self._hosted) < 2:
            raise ValueError("consent per tenant needs several hosted tenants (Emulator(tenants=N))")
        h = self.tenant(tenant)
        ids = [app_id] if app_id else list(self._registrations)
        with h.state.lock:
            for a in ids:
                reg = self._registrations.get(a)
                if reg is None:
                    raise KeyError(f"unknown app {a}")
                if not consented:
                    h.state.apps.pop(a, None)
                elif a not in h.state.apps:
                    app = copy.deepcopy(reg)
                    perms = (h.seed_permissions if h is not self._hosted[0] else self._seed_permissions).get(a)
                    if perms is not None:
                        app.application_permissions, app.delegated_permissions = set(perms[0]), set(perms[1])
                    h.state.apps[a] = app

    # ---- configuration for clients ----
    def _app_of(self, kind: str):
        for a in self.state.apps.values():
            if a.kind == kind:
                return a
        return None

    def config(self, tenant: str | None = None) -> dict:
        """The client config for tenant 1 (or the hosted tenant ``tenant``, by name or id): one
        flat mapping, as the CLI reads it."""
        cfg = self._config()
        if tenant is not None:
            cfg.update(self._profile(self.tenant(tenant)))
        return cfg

    def _profile(self, h: HostedTenant) -> dict:
        """What differs per hosted tenant: its id, authority (the fake tenant's authority host is
        not login.microsoftonline.com, so it is written out) and delegated service account."""
        sa = h.state.users.get(h.state.service_account or "")
        return {"tenant_id": h.tenant_id, "authority": h.authority,
                "service_account": sa["userPrincipalName"] if sa else None}

    def tenants_config(self) -> dict:
        """The config of every hosted tenant: the shared app settings (and tenant 1 as the
        default) at the top level, and ``tenants: {name: {tenant_id, authority, service_account}}``,
        a profile per hosted tenant whose keys override the top level's."""
        cfg = self._config()
        cfg["tenants"] = {h.name: self._profile(h) for h in self._hosted}
        return cfg

    def _config(self) -> dict:
        g, b = self._app_of("graph"), self._app_of("bot")
        if g is None and self._registrations:  # consent withdrawn in tenant 1: the registration stays
            g = next((a for a in self._registrations.values() if a.kind == "graph"), None)
        if b is None and self._registrations:
            b = next((a for a in self._registrations.values() if a.kind == "bot"), None)
        sa = self.state.users.get(self.state.service_account or "")
        return {
            "tenant_id": self.state.tenant_id,
            "client_id": g.app_id if g else None,
            "client_secret": g.secret if g else None,
            "bot_id": b.app_id if b else None,
            "bot_secret": b.secret if b else None,
            "authority": self.authority,
            "graph_url": self.graph_url,
            "bot_service_url": self.bot_service_url,
            "ca_bundle": self.ca_bundle,
            "bot_openid_metadata_url": self.teams.metadata_url if self.teams else None,
            "call_openid_metadata_url": self.calling.metadata_url if self.calling else None,
            "service_account": sa["userPrincipalName"] if sa else None,
            # The client's pacer keeps to this tenant's limits: x speed when it runs faster (or
            # slower) than Microsoft's.
            **({"pacing_speed": self.throttle.speed}
               if self.throttle.speed != 1.0 and math.isfinite(self.throttle.speed) else {}),
        }

    def write_config(self, path: str, store_path: str | None = None, tenants: bool = False) -> str:
        """Write :meth:`config` as YAML, readable only by the owner (it holds secrets); with
        ``store_path``, the config names that context store (``msteams emulator serve
        --write-config`` gives each config its own, beside it). With ``tenants``,
        :meth:`tenants_config`: the shared settings and a ``tenants:`` profile per hosted tenant
        (the store is shared: ``store_path`` stays at the top level)."""
        path = os.path.abspath(path)
        cfg = self.tenants_config() if tenants else self.config()
        if store_path:
            cfg["store_path"] = os.path.abspath(store_path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
        return path

    def info(self) -> dict:
        """Like :meth:`config` without secrets (for the admin API and logs)."""
        c = self.config()
        c.pop("client_secret", None)
        c.pop("bot_secret", None)
        c["base_url"] = self.base_url
        if len(self._hosted) > 1:
            c["tenants"] = {h.name: dict(self._profile(h), domain=h.domain) for h in self._hosted}
        return c

    # ---- request handling ----
    def _log(self, method: str, path: str, status: int, claims: Claims | None, started: float,
             batch_item: bool = False, app_id: str | None = None, tenant: str | None = None) -> None:
        self.request_log.append({
            "method": method, "path": path, "status": status,
            "token_kind": claims.kind if claims else None,
            "app_id": claims.app_id if claims else app_id,
            "tenant": tenant or (claims.tenant_id if claims else None),
            "time": utcnow_iso(), "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "batch_item": batch_item,
        })
        if len(self.request_log) > _MAX_LOG:
            del self.request_log[: _MAX_LOG // 2]

    def handle(self, method: str, raw_path: str, headers: dict, body: bytes) -> tuple[Response, str]:
        """Answer one HTTP request; returns (response, content type for JSON bodies)."""
        path, _, query = raw_path.partition("?")
        if path == "/v1.0" or path.startswith("/v1.0/"):
            return self._graph(method, raw_path[5:] or "/", headers, body), GRAPH_CONTENT_TYPE
        resp = self._handle_other(method, path, query, headers, body)
        resp.headers = dict(resp.headers or {})
        resp.headers.setdefault("request-id", new_guid())
        resp.headers.setdefault("client-request-id", headers.get("client-request-id") or new_guid())
        return resp, JSON_CONTENT_TYPE

    def _handle_other(self, method: str, path: str, query: str, headers: dict, body: bytes) -> Response:
        started = time.perf_counter()
        if path.startswith("/botframework/"):
            self._where.tenant = None
            resp, claims = self._bot(method, path[len("/botframework"):], headers, body)
            self._log(method, path, resp.status, claims, started, tenant=self._where.tenant)
            return resp
        if path.startswith("/_emulator/"):
            return self._admin(method, path[len("/_emulator/"):].strip("/"), query, body)
        if path.startswith("/calling-login/"):
            resp = self.calling.handle(method, path) or Response(404, {"error": {"code": "NotFound",
                                                                                "message": "Not found"}})
            self._log(method, path, resp.status, None, started)
            return resp
        if path.startswith("/botframework-login/"):
            resp = self.teams.handle(method, path) or Response(404, {"error": {"code": "NotFound",
                                                                              "message": "Not found"}})
            self._log(method, path, resp.status, None, started)
            return resp
        client_id = None
        if method == "POST" and body and "form-urlencoded" in headers.get("content-type", ""):
            try:  # for the log only: which app asked (never the secret, code or token)
                client_id = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"))).get("client_id")
            except ValueError:
                pass
        qd = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        client_id = client_id or qd.get("client_id")
        fault = self.faults.take(method, (path,), "entra") if len(self.faults) else None
        if fault is not None:
            self._apply_fault_delay(fault)
            if fault.drop:
                self._log(method, path, 0, None, started, app_id=client_id)
                raise _Drop()
            if fault.status is not None:
                resp = self.entra.error_response(
                    EntraError("temporarily_unavailable", 90033, f"Injected fault: {fault.status}.", fault.status),
                    headers.get("client-request-id") or new_guid())
                if fault.retry_after is not None:
                    resp.headers["Retry-After"] = str(fault.retry_after)
                self._log(method, path, resp.status, None, started, app_id=client_id)
                return resp
        resp = self._entra_for(path).handle(method, path, qd, headers, body)
        if resp is None:
            resp = Response(404, {"error": {"code": "NotFound", "message": f"No emulator endpoint at {path}"}})
        self._log(method, path, resp.status, None, started, app_id=client_id)
        return resp

    def _entra_for(self, path: str) -> Entra:
        """The Entra of the authority the path names (``/{tenant id or domain}/...``): a hosted
        tenant's or botframework.com's; tenant 1's for common, organizations and the rest."""
        if len(self._hosted) == 1:
            return self.entra
        first = path.strip("/").split("/", 1)[0].lower()
        for h in [*self._hosted[1:], self._botframework]:
            if first in (h.tenant_id.lower(), (h.domain or "").lower()):
                return h.entra
        return self.entra

    @staticmethod
    def _unverified_claims(token: str) -> dict:
        """A bearer token's payload, unchecked: only to pick the tenant whose token service then
        checks it."""
        import jwt

        try:
            payload = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return {}
        return payload if isinstance(payload, dict) else {}

    def _tokens_for(self, token: str) -> TokenService:
        """The token service of the tenant a token names (``tid``): tenant 1's when it names none
        hosted (which then refuses it)."""
        if len(self._hosted) == 1:
            return self.tokens
        tid = str(self._unverified_claims(token).get("tid") or "")
        if self._botframework is not None and tid == self._botframework.tenant_id:
            return self._botframework.tokens
        h = self._host_by_id(tid)
        return h.tokens if h is not None and h.tokens is not None else self.tokens

    @staticmethod
    def _apply_fault_delay(fault) -> None:
        if fault.delay > 0:
            time.sleep(fault.delay)

    # ---- Graph ----
    def _unknown_segment(self, path: str) -> str:
        segs = [s for s in path.strip("/").split("/") if s]
        if not segs:
            return ""
        patterns = [[None if (p.startswith("{") and p.endswith("}")) else p.lower()
                     for p in r.pattern.strip("/").split("/")] for r in ROUTES]
        depth = max((_segments_match(r, segs) for r in patterns), default=0)
        return segs[min(depth, len(segs) - 1)]

    def _graph(self, method: str, target: str, headers: dict, body: bytes, *, claims: Claims | None = None,
               batch_item: bool = False) -> Response:
        started = time.perf_counter()
        request_id = new_guid()
        client_request_id = headers.get("client-request-id") or new_guid()
        raw_path, _, query = target.partition("?")
        path = urllib.parse.unquote(raw_path) or "/"
        caller = [claims]  # filled in once the token is verified, for the log
        try:
            resp = self._graph_inner(method, path, query, headers, body, caller, batch_item, request_id)
        except _Drop:
            self._log(method, "/v1.0" + path, 0, caller[0], started, batch_item)
            raise
        except GraphError as e:
            resp = e.to_response(request_id, client_request_id)
        resp.headers["request-id"] = request_id
        resp.headers["client-request-id"] = client_request_id
        self._log(method, "/v1.0" + path, resp.status, caller[0], started, batch_item)
        return resp

    def _graph_inner(self, method: str, path: str, query: str, headers: dict, body: bytes, caller: list,
                     batch_item: bool, request_id: str) -> Response:
        route, params, exists = match_route(method, path)
        if route is None:
            if exists:
                raise GraphError(405, "BadRequest",
                                 f"The HTTP method '{method}' is not allowed for the resource '{path}'.")
            # Graph answers an unknown segment with 400 (a path its metadata knows but the fake
            # tenant does not emulate is answered the same way).
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{self._unknown_segment(path)}'.")
        if caller[0] is None:
            caller[0] = self._authenticate(headers)
        claims: Claims = caller[0]
        if path.strip("/").split("/", 1)[0].lower() == "me" and claims.kind != "delegated":
            raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        permissions.check(claims, route)
        # Several hosted tenants: the token's tenant's data and throttle (per app per tenant).
        host = self._hosted[0] if len(self._hosted) == 1 else (self._host_by_id(claims.tenant_id) or self._hosted[0])
        host.throttle.check(claims.app_id, method, route.permission_key, path)
        fault = self.faults.take(method, (path, "/v1.0" + path), "api") if len(self.faults) else None
        if fault is not None and not fault.after:
            self._apply_fault_delay(fault)
            if fault.drop and not batch_item:
                raise _Drop()
            if fault.drop:  # one item of a batch cannot lose the connection; it times out instead
                raise GraphError(504, "GatewayTimeout", "Injected fault: the request timed out.")
            if fault.status is not None:
                if fault.body is not None:
                    extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    return Response(fault.status, fault.body, extra)
                raise fault.error()
        qd: dict = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if k in qd and k.startswith("$"):
                raise GraphError(400, "BadRequest",
                                 f"Query option '{k}' was specified more than once but it must be specified at most once.")
            qd.setdefault(k, v)
        req = Request(method=method, path=path, query=qd, headers=headers, body=body, token=claims,
                      params=params, base_url=self.graph_url)
        if self.conformance_checks and method in ("POST", "PATCH", "PUT") and body:
            try:
                parsed = json.loads(body)
            except (ValueError, RecursionError):
                parsed = None  # the handler answers Graph's 400 for a body that is not JSON
            try:
                conformance.check_body(route, parsed)
            except GraphError:
                self.conformance_total["refused"] += 1
                raise
        try:
            resp = route.handler(_Context(self, claims, host.state), req)
        except GraphError:
            raise
        except Exception:
            log.error("unhandled error in Graph handler %s %s (request-id %s)\n%s", method, route.pattern,
                      request_id, traceback.format_exc())
            raise GraphError(500, "InternalServerError", "An internal server error occurred.") from None
        if resp is None:
            resp = Response(204)
        resp.headers = dict(resp.headers or {})
        if self.conformance_checks:
            flags = conformance.invented(route, resp.status, resp.body)
            if flags:
                self.conformance_total["invented"] += len(flags)
                self.conformance.extend({"method": method, "route": route.pattern, **f} for f in flags)
                del self.conformance[:-1000]  # the latest 1,000 flags
                log.warning("fake tenant response %s %s has properties the Graph metadata does not list: %s",
                            method, route.pattern, flags)
        if fault is not None and fault.after:  # applied, but the caller does not learn it
            self._apply_fault_delay(fault)
            if fault.drop and not batch_item:
                raise _Drop()
            if fault.drop or fault.status is not None:
                raise fault.error() if fault.status is not None else GraphError(
                    504, "GatewayTimeout", "Injected fault: the request timed out.")
        return resp

    def _authenticate(self, headers: dict) -> Claims:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth or scheme.lower() != "bearer":
            token = ""
        try:
            return self._tokens_for(token.strip()).verify(token.strip(), GRAPH_AUDIENCE)
        except TokenError as e:
            raise GraphError(401, "InvalidAuthenticationToken", str(e), {"WWW-Authenticate": _WWW_AUTH}) from None

    # ---- Bot Connector ----
    def _bot_host(self, method: str, path: str, headers: dict, body: bytes) -> tuple[HostedTenant, TokenService]:
        """Several hosted tenants: (the tenant a Bot Connector request is about, the token
        service that issued its bearer token). The tenant is the one that has the conversation
        in the path, or the one a new conversation's ``tenantId`` names; else the token's."""
        token = (headers.get("authorization") or "").partition(" ")[2].strip()
        tokens = self._tokens_for(token)
        own = next((h for h in self._hosted if h.tokens is tokens), self._hosted[0])
        segs = [urllib.parse.unquote(x) for x in path.strip("/").split("/") if x]
        if len(segs) > 2 and segs[:2] == ["v3", "conversations"]:
            conv = segs[2].partition(";messageid=")[0]
            for h in self._hosted:
                st = h.state
                with st.lock:
                    if (conv in st.bot_conversations or conv in st.chats
                            or any(conv in t.channels for t in st.teams.values())):
                        return h, tokens
        elif len(segs) == 2 and segs == ["v3", "conversations"] and method == "POST" and body:
            try:
                data = json.loads(body)
                tid = data.get("tenantId") or ((data.get("channelData") or {}).get("tenant") or {}).get("id")
            except (ValueError, AttributeError, RecursionError):
                tid = None
            h = self._host_by_id(str(tid)) if isinstance(tid, str) else None
            if h is not None:
                return h, tokens
        return own, tokens

    def _bot(self, method: str, path: str, headers: dict, body: bytes) -> tuple[Response, Claims | None]:
        if len(self._hosted) == 1:
            host, tokens = self._hosted[0], None
        else:
            host, tokens = self._bot_host(method, path, headers, body)
        self._where.tenant = host.tenant_id  # the request log says whose conversation it was
        bot = host.bot
        try:
            claims = bot.authenticate(headers, tokens)
        except GraphError as e:
            return bot.error(e.status, "Unauthorized", e.message), None
        if tokens is not None and claims.tenant_id != host.tenant_id and self._host_by_id(claims.tenant_id):
            # A single-tenant bot's token (issued by one hosted tenant's authority) about another
            # tenant's conversation: answered as a conversation the bot does not have, 404
            # ConversationNotFound, not 403: the Bot Connector resolves a conversation within the
            # caller's tenant, and a 403 would tell one customer's bot that another customer's
            # conversation exists. Opening a conversation in another tenant (the tenant is named
            # in the body, not found) is 403, as the Bot Connector refuses a tenant the bot is
            # not in. A botframework.com token (a multi-tenant bot) is good in every tenant.
            if len([x for x in path.strip("/").split("/") if x]) > 2:  # /v3/conversations/{id}/...
                return bot.error(404, "ConversationNotFound", "Conversation not found."), claims
            return bot.error(403, "Forbidden", f"The bot's token is for tenant {claims.tenant_id}; it cannot act "
                                               f"in tenant {host.tenant_id}."), claims
        # The Bot Connector's limits are per app per tenant (graph-facts.md: "50 requests per
        # second per app per tenant"): the tenant whose conversation it is counts the request.
        if host.throttle.enabled:
            try:
                host.throttle.check_bot(claims.app_id, bot.conversation_of(method, path, body, claims),
                                        posts=method == "POST")  # a POST posts a message (channel cap)
            except GraphError as e:
                resp = self.bot.error(e.status, e.code, e.message)
                resp.headers.update(e.headers)
                return resp, claims
        fault = self.faults.take(method, (path, "/botframework" + path), "api") if len(self.faults) else None
        if fault is not None and not fault.after:
            self._apply_fault_delay(fault)
            if fault.drop:
                raise _Drop()
            if fault.status is not None:
                resp = Response(fault.status, fault.body if fault.body is not None else
                                {"error": {"code": "ServiceError", "message": f"Injected fault: {fault.status}."}})
                if fault.retry_after is not None:
                    resp.headers["Retry-After"] = str(fault.retry_after)
                return resp, claims
        try:
            resp = bot.handle(method, path, headers, body, claims)
        except Exception:
            log.error("unhandled error in Bot Connector %s %s\n%s", method, path, traceback.format_exc())
            return bot.error(500, "ServiceError", "An internal server error occurred."), claims
        if fault is not None and fault.after:  # applied, but the caller does not learn it
            self._apply_fault_delay(fault)
            if fault.drop:
                raise _Drop()
            if fault.status is not None:
                return self.bot.error(fault.status, "ServiceError", f"Injected fault: {fault.status}."), claims
        return resp, claims

    # ---- admin ----
    def _admin(self, method: str, what: str, query: str, body: bytes) -> Response:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return Response(400, {"error": "body must be JSON"})
        if not isinstance(data, dict):
            return Response(400, {"error": "body must be a JSON object"})
        try:
            if method == "GET" and what == "state":
                q = dict(urllib.parse.parse_qsl(query))
                name = q.get("tenant")
                if name is None and q.get("user"):  # the tenant that user is in (tenant 1 when none)
                    name = next((h.tenant_id for h in self._hosted if h.state.user(q["user"])), None)
                try:
                    return Response(200, self.tenant(name).state.snapshot())
                except KeyError as e:
                    return Response(404, {"error": str(e.args[0])})
            if method == "GET" and what == "requests":
                return Response(200, {"requests": list(self.request_log)})
            if method == "GET" and what == "conformance":
                return Response(200, {"checks": self.conformance_checks, "invented": list(self.conformance),
                                      "total": dict(self.conformance_total)})
            if method == "GET" and what == "info":
                return Response(200, self.info())
            if method == "GET" and what == "refresh-tokens":  # redeemed / refused (reused, revoked) / outstanding
                return Response(200, self.tokens.refresh_stats())
            if method == "POST" and what == "reset":
                self.reset()
                return Response(200, {"reset": True})
            if what == "faults":
                if method == "GET":
                    return Response(200, {"faults": self.faults.list()})
                if method == "DELETE" or (method == "POST" and data.get("clear")):
                    self.faults.clear()
                    return Response(200, {"faults": []})
                if method == "POST":
                    allowed = {"method", "path", "status", "count", "delay", "drop", "retry_after", "body", "target",
                               "after"}
                    unknown = set(data) - allowed
                    if unknown:
                        return Response(400, {"error": f"unknown fault fields: {sorted(unknown)}"})
                    f = self.faults.add(**data)
                    return Response(201, f.describe())
            if what == "throttling":
                if method == "POST":  # every hosted tenant's (each keeps its own buckets)
                    for h in self._hosted:
                        h.throttle.configure(enabled=data.get("enabled"), speed=data.get("speed"),
                                             retry_after=data.get("retry_after"))
                return Response(200, self.throttle.settings())
            if method == "POST" and what == "revoke":
                return Response(200, {"revoked": self.revoke_refresh_tokens(data.get("user"))})
            if what in ("messaging-endpoint", "user-says", "user-clicks", "install-bot", "uninstall-bot",
                        "forget-conversations", "deliveries"):
                return self._teams_admin(method, what, data)
            if what == "answer-call" and method == "POST":
                unknown = set(data) - {"user", "answer"}
                if unknown or not data.get("user") or not data.get("answer"):
                    return Response(400, {"error": "answer-call takes user and answer"})
                calling = next((h.calling for h in self._hosted[1:]
                                if h.calling is not None and h.state.user(data["user"])), self.calling)
                try:
                    return Response(200, calling.answer(data["user"], data["answer"]))
                except CallError as e:
                    return Response(e.status, {"error": str(e)})
            if method == "POST" and what == "expire":
                self.expire_tokens()
                return Response(200, {"expired": True})
            if method == "POST" and what == "permissions":
                app_id = data.get("app_id")
                try:  # "tenant": a hosted tenant's name or id (default tenant 1)
                    state = self.tenant(data.get("tenant")).state
                except KeyError as e:
                    return Response(404, {"error": str(e.args[0])})
                if not app_id or state.app(app_id) is None:
                    return Response(404, {"error": f"unknown app_id {app_id!r}"})
                self.set_permissions(app_id, data.get("application"), data.get("delegated"), data.get("tenant"))
                app = state.app(app_id)
                return Response(200, {"app_id": app_id, "application": sorted(app.application_permissions),
                                      "delegated": sorted(app.delegated_permissions)})
        except (TypeError, ValueError, KeyError) as e:
            return Response(400, {"error": str(e)})
        return Response(404, {"error": f"no admin endpoint {method} /_emulator/{what}"})

    def _teams_admin(self, method: str, what: str, data: dict) -> Response:
        """The Teams side: the bot's messaging endpoint setting, and simulated users acting."""
        teams = self.teams
        try:
            if what == "messaging-endpoint":
                if method == "POST":
                    teams.register(data.get("url"), data.get("ca_bundle"))
                elif method == "DELETE":
                    teams.register(None)
                return Response(200, {"url": teams.messaging_endpoint})
            if what == "deliveries" and method == "GET":
                return Response(200, {"deliveries": list(teams.deliveries)})
            if what == "user-says" and method == "POST":
                unknown = set(data) - {"user", "text", "team", "channel", "chat"}
                if unknown or not data.get("user") or not data.get("text"):
                    return Response(400, {"error": "user-says takes user and text, and team + channel or chat"})
                return Response(200, teams.user_says(data["user"], data["text"], team=data.get("team"),
                                                     channel=data.get("channel"), chat=data.get("chat")))
            if what == "user-clicks" and method == "POST":
                unknown = set(data) - {"user", "choice", "question", "activity_id", "reason"}
                if unknown or not data.get("user") or not data.get("choice"):
                    return Response(400, {"error": "user-clicks takes user, choice, question or activity_id, reason"})
                return Response(200, teams.user_clicks(data["user"], data["choice"], question=data.get("question"),
                                                       activity_id=data.get("activity_id"), reason=data.get("reason")))
            if what == "install-bot" and method == "POST":
                return Response(200, teams.install_bot(user=data.get("user"), team=data.get("team")))
            if what == "uninstall-bot" and method == "POST":
                return Response(200, teams.uninstall_bot(user=data.get("user"), team=data.get("team")))
            if what == "forget-conversations" and method == "POST":
                return Response(200, teams.forget_conversations(user=data.get("user")))
        except ChannelError as e:
            return Response(e.status, {"error": str(e)})
        return Response(404, {"error": f"no admin endpoint {method} /_emulator/{what}"})
