"""The integration's one error hierarchy, and the one place it maps to exit codes.

                                      exit    kind (`code` in JSON errors)
    IntegrationError                  1       error      anything not listed below
    ├── InputError                    2       input      a user mistake in what they typed or wrote
    │   ├── ArgumentError                     input      names the argument
    │   ├── AmbiguousError                    input      a name matched several objects (lists candidates)
    │   └── FileError                         input      names the file (and line, when known)
    ├── ConfigError                   3       config     configuration missing or invalid; the
    │   │                                                context store failing (from_foreign)
    │   └── ConfigFileError                   config     names the config file, the setting and the line
    ├── AuthError                     3       auth       sign-in failed / no usable flow / token refused
    ├── PermissionDenied              4       permission Graph said 403: names the permission(s) to grant
    ├── NotFound                      5       not_found  a user, team, channel, chat... that does not exist
    ├── PartialFailure                6       partial    a playbook step where some items failed (the rest were reached)
    └── GraphError                    1       graph      any other Graph / Bot Connector error (status, code, request id)
        ├── NotSent                   1       graph      the connection never opened (refused, DNS, TLS): nothing was sent
        ├── RequestRejected           2       graph      Graph refused what was asked (400, 409): the input needs changing
        └── ThrottledError            1       throttled  429s that outlasted the retry budget
            └── ChannelDailyCap               throttled  a channel's messages of the day are at Microsoft's
                                                         cap: refused before any request, until it resets

A command that fans out (several chats, recipients) and reaches some items but not all is not an
error: its result lists every item with its status, and exits PARTIAL_EXIT (6) unless the caller
passed ``fail_on=none``. A playbook that stops at such a step fails with PartialFailure (6).

:meth:`IntegrationError.to_dict` is the error as data (kind, message, hint, exit code and the
class's details), escaped and redacted: `msteams --output json` prints it, the Python API
(integration/frontends/api.py) documents it.

Messages never carry secrets: callers pass only what the user may see, and the CLI runs every
message through :func:`integration.engine.redact.redact` as a last guard.
"""
from __future__ import annotations


class IntegrationError(Exception):
    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def details(self) -> dict:
        """What a program may want besides the message: the argument, file and line, missing
        permissions, HTTP status... (subclasses add theirs; values are not escaped here)."""
        return {}

    def to_dict(self) -> dict:
        """The error as data, safe to print or store: what `msteams --output json` writes to
        stderr under "error" and what the Python API's callers may log. Keys: code (the kind),
        message, hint (or None), exit_code, then any details. Strings have control characters
        escaped (untrusted.escape_controls) and secrets masked (redact.redact)."""
        out = {"code": self.kind, "message": safe(self.message), "hint": safe(self.hint),
               "exit_code": self.exit_code}
        out.update({k: safe(v) for k, v in self.details().items() if v not in (None, [], "")})
        return out


def safe(value):
    """Strings escaped (no control character reaches a log or a terminal) and redacted (no
    secret leaves), recursively (lists of candidates or permissions, a problem's fields)."""
    if isinstance(value, str):
        from .redact import redact
        from .escape import escape_controls

        return redact(escape_controls(value))
    if isinstance(value, list | tuple):
        return [safe(v) for v in value]
    if isinstance(value, dict):
        return {k: safe(v) for k, v in value.items()}
    return value


class InputError(IntegrationError):
    exit_code = 2
    kind = "input"


class ArgumentError(InputError):
    def __init__(self, argument: str, message: str, *, hint: str | None = None):
        super().__init__(f"argument '{argument}': {message}", hint=hint)
        self.argument = argument

    def details(self) -> dict:
        return {"argument": self.argument}


class AmbiguousError(InputError):
    def __init__(self, what: str, name: str, candidates: list[str]):
        from .escape import quote

        listing = "; ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(f"{what} {quote(name)} is ambiguous: {len(candidates)} match ({listing})",
                         hint=f"pass the {what}'s id instead")
        self.candidates = candidates

    def details(self) -> dict:
        return {"candidates": list(self.candidates[:50])}


class FileError(InputError):
    def __init__(self, path: str, message: str, line: int | None = None):
        from .escape import printable  # a file's own text is quoted back: make it safe to print

        where = f"{path}:{line}" if line else str(path)
        super().__init__(printable(f"{where}: {message}", limit=4000))
        self.path = str(path)
        self.line = line
        self.detail = message  # without the file and line, for a caller that re-raises it

    def details(self) -> dict:
        return {"path": self.path, "line": self.line}


class ConfigError(IntegrationError):
    exit_code = 3
    kind = "config"


class ConfigFileError(ConfigError):
    """A problem in the config file: `path:line: message` (exit 3, not FileError's 2: what needs
    fixing is the configuration). `also` holds further problems as (line, message) pairs, one
    line each after the first."""

    def __init__(self, path: str, message: str, line: int | None = None, *, key: str | None = None,
                 hint: str | None = None, also: list | None = None):
        from .escape import printable

        text = "\n".join(f"{path}:{ln}: {msg}" if ln else f"{path}: {msg}"
                         for ln, msg in [(line, message), *(also or [])])
        super().__init__(printable(text, limit=4000), hint=hint)
        self.path = str(path)
        self.line = line
        self.key = key

    def details(self) -> dict:
        return {"path": self.path, "line": self.line, "setting": self.key}


class AuthError(IntegrationError):
    exit_code = 3
    kind = "auth"


class PermissionDenied(IntegrationError):
    exit_code = 4
    kind = "permission"
    code: str | None = None  # the service's error code (BotNotInConversationRoster)

    def __init__(self, message: str, *, permissions: list[str] | None = None, flow: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.permissions = permissions or []
        self.flow = flow

    def details(self) -> dict:
        return {"permissions": list(self.permissions), "flow": self.flow}


class NotFound(IntegrationError):
    exit_code = 5
    kind = "not_found"
    code: str | None = None  # the service's error code, when a service said it (ConversationNotFound)


class PartialFailure(IntegrationError):
    """Some items of a step (or of its command's fan-out) failed and the others were reached:
    every item is in the output with its status."""
    exit_code = 6
    kind = "partial"


class GraphError(IntegrationError):
    kind = "graph"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, hint: str | None = None):
        detail = message
        if status is not None:
            detail = f"{message} (HTTP {status}{', ' + code if code else ''}"
            detail += f", request-id {request_id})" if request_id else ")"
        super().__init__(detail, hint=hint)
        self.status = status
        self.code = code  # Graph's or the Bot Connector's error code ("Forbidden"), not the kind
        self.request_id = request_id

    def details(self) -> dict:
        return {"status": self.status, "graph_code": self.code, "request_id": self.request_id}


class NotSent(GraphError):
    """The request never reached the service (the connection did not open): nothing was
    written, so a delivery that failed this way is failed, never of unknown outcome."""


class RequestRejected(GraphError):
    exit_code = 2


class ThrottledError(GraphError):
    kind = "throttled"


class ChannelDailyCap(ThrottledError):
    """A message that would take one channel past Microsoft's cap of messages per app per day
    (limits.CHANNEL_MESSAGES_PER_DAY, counted by the pacer over a UTC day): refused before any
    request. Says the channel, the cap and when it resets (``resets_at``, epoch seconds: the
    next UTC midnight; ``retry_after``: whole seconds until then, the service's Retry-After)."""

    def __init__(self, channel: str, cap: int, resets_at: float, *, now: float):
        import math

        self.channel, self.cap, self.resets_at = channel, int(cap), float(resets_at)
        self.retry_after = max(1, math.ceil(self.resets_at - now))
        hours, minutes = divmod(math.ceil(self.retry_after / 60), 60)
        super().__init__(f"channel {channel}: {self.cap:,} messages sent today, Microsoft's cap per app per day "
                         f"to one channel; not sent. The cap resets at {self.resets_on()} "
                         f"(in {hours} h {minutes:02d} min)",
                         hint="send it after the reset, or to another channel")

    def resets_on(self) -> str:
        import time

        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.resets_at))

    def details(self) -> dict:
        return {**super().details(), "channel": self.channel, "cap": self.cap, "resets_at": self.resets_on(),
                "retry_after": self.retry_after}


STORE_SERVER_HINT = "check store_url, store_username and store_password, and that the Redis server is up"


def from_foreign(exc: BaseException) -> IntegrationError | None:
    """A library's exception that stands for a problem outside the integration, as one of ours:
    the shared store's server gone or refusing (redis), the SQLite file locked, full or
    unreadable. None for anything else, which is a bug. Modules are looked up, never imported:
    a process that never loaded redis cannot have a Redis error."""
    import sys

    from .redact import redact

    redis = sys.modules.get("redis")
    if redis is not None and isinstance(exc, redis.RedisError):
        return ConfigError(f"context store (Redis) failed: {redact(str(exc).strip()) or type(exc).__name__}",
                           hint=STORE_SERVER_HINT)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return ConfigError(f"context store (SQLite) failed: {redact(str(exc).strip()) or type(exc).__name__}",
                           hint="check store_path: the file must be writable, on a disk with room, and not a "
                                "copy in use elsewhere")
    return None


# Some items of a fan-out failed or have an unknown outcome; every item is in the output with its status.
PARTIAL_EXIT = PartialFailure.exit_code
# What a caller may ask of a fan-out: "any" failed item makes the result partial (exit 6; every
# item failed: the error itself), "none" reports the items and exits 0 whatever they did.
FAIL_ON = ("any", "none")


def exit_code_for(exc: BaseException) -> int:
    """The CLI's exit code for an exception: 0 ok, 2 input, 3 config/auth, 4 permission, 5 not found, 1 other
    (6, a partial fan-out, is a result's exit code, not an exception's: see PARTIAL_EXIT)."""
    if isinstance(exc, IntegrationError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
