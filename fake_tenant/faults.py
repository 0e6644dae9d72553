"""Fault injection for tests: make the next N matching requests fail with a status, arrive
late, or lose their connection, so retry and error paths can be exercised on demand.

``emu.faults.add(method="POST", path=r"/chats/.*/messages", status=503, count=2)`` fails the
next two chat-message posts with a Graph-shaped 503. ``path`` is a regular expression searched
in the request path (Graph paths are matched both without and with the ``/v1.0`` prefix; Bot
Connector paths both without and with ``/botframework``). ``delay`` sleeps first; with no
explicit ``status`` a delayed request then proceeds normally. ``drop=True`` closes the
connection without any response. ``after=True`` applies the fault once the request has been
carried out (the write is applied; the caller sees a dropped connection, a late answer or an
error): what a client must reconcile rather than blindly retry. By default faults hit Graph and the Bot Connector
(``target="api"``); ``target="entra"`` aims at the sign-in endpoints, ``"any"`` at everything.
"""
from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field

from .core import GraphError

_CODES = {400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Forbidden", 404: "NotFound",
          405: "MethodNotAllowed", 409: "Conflict", 412: "PreconditionFailed", 413: "RequestEntityTooLarge",
          424: "FailedDependency", 429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway",
          503: "ServiceUnavailable", 504: "GatewayTimeout"}
_UNSET = object()
_ids = itertools.count(1)


@dataclass
class Fault:
    method: str | None
    path: str
    status: int | None
    count: int
    delay: float = 0.0
    drop: bool = False
    retry_after: int | None = None
    body: object = None
    target: str = "api"
    after: bool = False
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def __post_init__(self) -> None:
        self._rx = re.compile(self.path)

    def matches(self, method: str, paths: tuple[str, ...], target: str) -> bool:
        if self.target != "any" and self.target != target:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return any(self._rx.search(p) for p in paths)

    def error(self) -> GraphError:
        """The Graph-shaped error this fault answers with (``status`` must be set)."""
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        code = _CODES.get(self.status, "UnknownError")
        return GraphError(self.status, code, f"Injected fault: {self.status} {code}.", headers)

    def describe(self) -> dict:
        return {"id": self.id, "method": self.method, "path": self.path, "status": self.status,
                "remaining": self.count, "delay": self.delay, "drop": self.drop,
                "retry_after": self.retry_after, "target": self.target, "after": self.after, "hits": self.hits}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, method: str | None = None, path: str = ".*", status=_UNSET, count: int = 1,
            delay: float = 0.0, drop: bool = False, retry_after: int | None = None, body=None,
            target: str = "api", after: bool = False) -> Fault:
        if status is _UNSET:
            status = None if (delay and not drop) else 503
        if status is not None and not (100 <= int(status) <= 599):
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        if target not in ("api", "entra", "any"):
            raise ValueError("target must be 'api', 'entra' or 'any'")
        if count < 1:
            raise ValueError("count must be at least 1")
        f = Fault(method.upper() if method else None, path, int(status) if status is not None else None,
                  int(count), float(delay), bool(drop), retry_after, body, target, bool(after))
        with self._lock:
            self._faults.append(f)
        return f

    def take(self, method: str, paths: tuple[str, ...], target: str) -> Fault | None:
        """The first armed fault matching this request, with one use consumed."""
        with self._lock:
            for f in self._faults:
                if f.matches(method, paths, target):
                    f.count -= 1
                    f.hits += 1
                    if f.count <= 0:
                        self._faults.remove(f)
                    return f
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def __len__(self) -> int:
        return len(self._faults)
