"""The integration's one error hierarchy, and the one place it maps to exit codes.

    IntegrationError                  exit 1  anything not listed below
    ├── InputError                    exit 2  a user mistake in what they typed or wrote
    │   ├── ArgumentError                     names the argument
    │   ├── AmbiguousError                    a name matched several objects (lists candidates)
    │   └── FileError                         names the file (and line, when known)
    ├── ConfigError                   exit 3  configuration missing or invalid
    │   └── ConfigFileError                   names the config file, the setting and the line
    ├── AuthError                     exit 3  sign-in failed / no usable flow / token refused
    ├── PermissionDenied              exit 4  Graph said 403: names the permission(s) to grant
    ├── NotFound                      exit 5  a user, team, channel, chat... that does not exist
    └── GraphError                    exit 1  any other Graph / Bot Connector error (status, code, request id)
        ├── RequestRejected           exit 2  Graph refused what was asked (400, 409): the input needs changing
        └── ThrottledError                    429s that outlasted the retry budget

Messages never carry secrets: callers pass only what the user may see, and the CLI runs every
message through :func:`integration.redact.redact` as a last guard.
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


class InputError(IntegrationError):
    exit_code = 2
    kind = "input"


class ArgumentError(InputError):
    def __init__(self, argument: str, message: str, *, hint: str | None = None):
        super().__init__(f"argument '{argument}': {message}", hint=hint)
        self.argument = argument


class AmbiguousError(InputError):
    def __init__(self, what: str, name: str, candidates: list[str]):
        from .untrusted import quote  # here, not at the top: untrusted imports this module

        listing = "; ".join(candidates[:10]) + (" ..." if len(candidates) > 10 else "")
        super().__init__(f"{what} {quote(name)} is ambiguous: {len(candidates)} match ({listing})",
                         hint=f"pass the {what}'s id instead")
        self.candidates = candidates


class FileError(InputError):
    def __init__(self, path: str, message: str, line: int | None = None):
        from .untrusted import printable  # a file's own text is quoted back: make it safe to print

        where = f"{path}:{line}" if line else str(path)
        super().__init__(printable(f"{where}: {message}", limit=4000))
        self.path = str(path)
        self.line = line
        self.detail = message  # without the file and line, for a caller that re-raises it


class ConfigError(IntegrationError):
    exit_code = 3
    kind = "config"


class ConfigFileError(ConfigError):
    """A problem in the config file: `path:line: message` (exit 3, not FileError's 2: what needs
    fixing is the configuration). `also` holds further problems as (line, message) pairs, one
    line each after the first."""

    def __init__(self, path: str, message: str, line: int | None = None, *, key: str | None = None,
                 hint: str | None = None, also: list | None = None):
        from .untrusted import printable

        text = "\n".join(f"{path}:{ln}: {msg}" if ln else f"{path}: {msg}"
                         for ln, msg in [(line, message), *(also or [])])
        super().__init__(printable(text, limit=4000), hint=hint)
        self.path = str(path)
        self.line = line
        self.key = key


class AuthError(IntegrationError):
    exit_code = 3
    kind = "auth"


class PermissionDenied(IntegrationError):
    exit_code = 4
    kind = "permission"

    def __init__(self, message: str, *, permissions: list[str] | None = None, flow: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.permissions = permissions or []
        self.flow = flow


class NotFound(IntegrationError):
    exit_code = 5
    kind = "not_found"


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
        self.code = code
        self.request_id = request_id


class RequestRejected(GraphError):
    exit_code = 2


class ThrottledError(GraphError):
    kind = "throttled"


def exit_code_for(exc: BaseException) -> int:
    """The CLI's exit code for an exception: 0 ok, 2 input, 3 config/auth, 4 permission, 5 not found, 1 other."""
    if isinstance(exc, IntegrationError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
