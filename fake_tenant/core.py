"""The emulator's shared vocabulary: requests, responses, token claims, Graph errors and the
Graph route table that the HTTP server dispatches through.

Route modules under ``emulator/graph/`` only declare routes with :func:`graph_route`; the
server (``server.py``) verifies the bearer token, checks the permission the call needs
(``permissions.py``), applies throttling and fault injection, then calls the handler.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable


def utcnow_iso() -> str:
    """Graph's timestamp format: ISO 8601 UTC with milliseconds and a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_guid() -> str:
    return str(uuid.uuid4())


@dataclass
class Claims:
    """What a verified access token says about its caller."""

    kind: str  # "app" | "delegated" | "bot"
    app_id: str
    tenant_id: str
    user_id: str | None = None  # the signed-in user's object id (delegated only)
    roles: frozenset = frozenset()  # application permissions (app tokens)
    scopes: frozenset = frozenset()  # delegated permissions (scp claim)
    raw: dict = field(default_factory=dict)

    @property
    def permissions(self) -> frozenset:
        return self.roles if self.kind == "app" else self.scopes


@dataclass
class Request:
    method: str
    path: str  # Graph path after the version prefix, percent-decoded, e.g. "/chats/19:x@thread.v2"
    query: dict  # decoded query parameters, single values ("$top" -> "5")
    headers: dict  # lower-cased header names
    body: bytes = b""
    token: Claims | None = None
    params: dict = field(default_factory=dict)  # path parameters from the route pattern
    base_url: str = ""  # e.g. "https://127.0.0.1:PORT/v1.0", for building nextLinks / webUrls

    _json: Any = None
    _json_parsed: bool = False

    @property
    def json(self) -> Any:
        """The parsed JSON body; a Graph 400 when the body is not JSON."""
        if not self._json_parsed:
            self._json_parsed = True
            if not self.body:
                self._json = None
            else:
                try:
                    import json

                    self._json = json.loads(self.body)
                except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
                    raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
        return self._json


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> raw; None -> empty
    headers: dict = field(default_factory=dict)


class GraphError(Exception):
    """An error answered in Graph's shape: {"error":{"code","message","innerError":{...}}}."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_response(self, request_id: str | None = None, client_request_id: str | None = None) -> Response:
        inner = {"date": utcnow_iso()[:-5], "request-id": request_id or new_guid(),
                 "client-request-id": client_request_id or new_guid()}
        return Response(self.status, {"error": {"code": self.code, "message": self.message, "innerError": inner}},
                        dict(self.headers))


Handler = Callable[["Context", Request], Response]


@dataclass
class Route:
    method: str
    pattern: str  # "/chats/{chat_id}/messages"
    handler: Handler
    regex: re.Pattern
    permission_key: str  # "/chats/{id}/messages": lowercase with {id}, as in the permission map


ROUTES: list[Route] = []


def _compile(pattern: str) -> tuple[re.Pattern, str]:
    parts = []
    key_parts = []
    for seg in pattern.strip("/").split("/"):
        m = re.fullmatch(r"\{(\w+)\}", seg)
        if m:
            parts.append(f"(?P<{m.group(1)}>[^/]+)")
            key_parts.append("{id}")
        else:
            parts.append(re.escape(seg))
            key_parts.append(seg.lower())
    return re.compile("^/" + "/".join(parts) + "/?$", re.IGNORECASE), "/" + "/".join(key_parts)


def graph_route(method: str, pattern: str, permission_key: str | None = None):
    """Declare a Graph v1.0 route. ``permission_key`` overrides the map key derived from the pattern."""

    def deco(fn: Handler) -> Handler:
        regex, key = _compile(pattern)
        ROUTES.append(Route(method.upper(), pattern, fn, regex, permission_key or key))
        return fn

    return deco


def match_route(method: str, path: str) -> tuple[Route | None, dict, bool]:
    """(route, params, path_exists): path_exists is True when the path matched another method."""
    path_exists = False
    for r in ROUTES:
        m = r.regex.match(path)
        if m:
            if r.method == method.upper():
                return r, m.groupdict(), True
            path_exists = True
    return None, {}, path_exists


class Context:
    """What a handler may use besides its request. The server provides the implementation.

    - ``state``: the :class:`~fake_tenant.state.TenantState` (hold ``state.lock`` while mutating).
    - ``dispatch(method, url, headers, body, token) -> Response``: run one Graph request through
      the full pipeline (permission check, throttling, faults) as the given caller; ``url`` is
      relative to the version root ("/users?$top=2"). Used by ``$batch``.
    - ``base_url``: the Graph version root URL.
    """

    state: Any
    base_url: str

    def dispatch(self, method: str, url: str, headers: dict, body: Any, token: Claims | None) -> Response:  # pragma: no cover
        raise NotImplementedError
