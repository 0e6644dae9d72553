"""The one place that turns a failure into an HTTP answer: an RFC 9457 problem
(``application/problem+json``) with the status our error class stands for.

    error (integration/engine/errors.py)       status  code (our kind)
    ArgumentError (names the argument)          422     input
    InputError, AmbiguousError, FileError       400     input
    RequestRejected (Graph said 400/409/413)    400     graph
    ConfigError, ConfigFileError, AuthError     503     config / auth
    a store failing (from_foreign)              503     config
    PermissionDenied (Graph said 403)           403     permission
    NotFound                                    404     not_found
    ThrottledError (beyond the retry budget)    429     throttled       + Retry-After
    GraphError without an answer (timed out)    504     graph
    NotSent, other GraphError, PartialFailure,  502     graph / partial / error
    a delivery of unknown outcome
    any other IntegrationError                  409     error           the command cannot do it in the
                                                                        present state (another sender holds
                                                                        the delivery, the mirror is closed,
                                                                        no receiver is set up)
    anything else (a bug)                       500     internal        (logged; never the text)

The service's own refusals are :class:`Problem` raised with their status and code (401
``unauthorized`` with ``WWW-Authenticate``, 403 ``scope``, 404 ``unknown_command``, 409
``idempotency_in_progress``, 413 ``too_large``, 415, 422 ``idempotency_mismatch``, 429
``rate_limited``, 504 ``timeout``, ...).

A problem body: ``type`` (``urn:msteams-soar:problem:<code>``), ``title`` (the status's
phrase), ``status``, ``detail`` (our message), ``code``, ``hint``, ``exit_code`` (what the CLI
would exit with) and ``details`` (the argument, candidates, permissions, Graph's status and
request id...). Strings are escaped and redacted (``IntegrationError.to_dict``): never a
traceback, never a secret.
"""
from __future__ import annotations

import logging
from http import HTTPStatus

from integration.engine import errors as E

log = logging.getLogger("msteams.service")

TYPE_PREFIX = "urn:msteams-soar:problem:"
MEDIA_TYPE = "application/problem+json"
THROTTLED_RETRY_AFTER = 30  # seconds: Microsoft kept throttling past our own retry budget


class Problem(Exception):
    """An HTTP answer that is not a result: its status, code, message, hint and details."""

    def __init__(self, status: int, code: str, detail: str, *, hint: str | None = None, details: dict | None = None,
                 headers: dict | None = None, exit_code: int | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.hint = status, code, detail, hint
        self.details = details or {}
        self.headers = headers or {}
        self.exit_code = exit_code

    def body(self, instance: str | None = None) -> dict:
        out = {"type": TYPE_PREFIX + self.code, "title": _phrase(self.status), "status": self.status,
               "detail": E.safe(self.detail), "code": self.code, "hint": E.safe(self.hint)}
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        if self.details:
            out["details"] = E.safe(self.details)
        if instance:
            out["instance"] = E.safe(instance)
        return out


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def status_of(exc: E.IntegrationError) -> int:
    """The HTTP status an error of ours answers with (the table above)."""
    from integration.delivery.outbox import UnknownDelivery

    if isinstance(exc, E.ArgumentError):
        return 422
    if isinstance(exc, E.InputError | E.RequestRejected):
        return 400
    if isinstance(exc, E.ConfigError | E.AuthError):
        return 503
    if isinstance(exc, E.PermissionDenied):
        return 403
    if isinstance(exc, E.NotFound):
        return 404
    if isinstance(exc, E.ThrottledError):
        return 429
    if isinstance(exc, E.NotSent):
        return 502
    if isinstance(exc, E.GraphError):
        return 504 if exc.status is None else 502
    if isinstance(exc, E.PartialFailure | UnknownDelivery):
        return 502
    return 409


def from_error(exc: BaseException) -> Problem:
    """Any exception as the problem to answer: ours by the table, a library's that stands for a
    store failing as configuration (503), anything else a bug (500, logged without its text
    reaching the caller)."""
    if isinstance(exc, Problem):
        return exc
    ours = exc if isinstance(exc, E.IntegrationError) else E.from_foreign(exc)
    if ours is None:
        log.error("internal error: %s", type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
        return Problem(500, "internal", "internal error", hint="this is a bug; the service log names it",
                       exit_code=1)
    data = ours.to_dict()  # escaped and redacted
    status = status_of(ours)
    details = {k: v for k, v in data.items() if k not in ("code", "message", "hint", "exit_code")}
    headers = {"Retry-After": str(THROTTLED_RETRY_AFTER)} if status == 429 else {}
    headers = {"Retry-After": str(ours.retry_after)} if isinstance(ours, E.ChannelDailyCap) else headers
    if status == 503 and isinstance(ours, E.AuthError | E.ConfigError):
        headers = {"Retry-After": "60"}
    return Problem(status, data["code"], data["message"], hint=data["hint"], details=details, headers=headers,
                   exit_code=data["exit_code"])


def unauthorized(detail: str, *, invalid: bool) -> Problem:
    """401 with the challenge RFC 6750 asks for (``error="invalid_token"`` when a key was sent)."""
    challenge = 'Bearer realm="msteams"' + (', error="invalid_token"' if invalid else "")
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge},
                   hint="send an API key (`msteams api-key create`) as `Authorization: Bearer KEY` or `X-API-Key: KEY`")
