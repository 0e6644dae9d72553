"""The Python API: for SOAR platforms that run the integration in their own process (a StackStorm
action, a Shuffle app, a custom runner) instead of through the `msteams` command line.

    from integration import api

    with api.Client("/etc/msteams/config.yml") as teams:           # or a Config object
        result = teams.execute("channel-list", {"team": "Security Operations"})
        result.context    # {"MicrosoftTeams.Channel": [...]}: XSOAR-style context paths
        result.readable   # the markdown table the CLI prints
        result.raw        # Graph's reply

Everything here is what docs/python-api.md documents; the rest of the package may change.
Importing this module starts nothing and reads no configuration: a :class:`Client` reads its
configuration when it is made, signs in and opens the context store on its first command.

Failures are raised as :class:`IntegrationError` subclasses, each with an ``exit_code`` (what
the CLI would exit with), a ``kind`` string and :meth:`IntegrationError.to_dict`. Any other
exception is a bug.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from integration.engine.errors import (
    AmbiguousError,
    ArgumentError,
    AuthError,
    ConfigError,
    ConfigFileError,
    FileError,
    GraphError,
    InputError,
    IntegrationError,
    PARTIAL_EXIT,
    NotFound,
    NotSent,
    PartialFailure,
    PermissionDenied,
    RequestRejected,
    ThrottledError,
    exit_code_for,
)

if TYPE_CHECKING:  # pragma: no cover
    from integration.engine.config import Config
    from integration.engine.results import Result

__all__ = [
    "Client", "CommandResult", "Config", "execute", "load_config",
    "IntegrationError", "InputError", "ArgumentError", "AmbiguousError", "FileError", "ConfigError",
    "ConfigFileError", "AuthError", "PermissionDenied", "NotFound", "GraphError", "RequestRejected",
    "NotSent", "ThrottledError", "PartialFailure", "PARTIAL_EXIT", "exit_code_for",
]

def __getattr__(name: str):
    if name == "Config":  # lazily: `import integration.frontends.api` stays cheap
        from integration.engine.config import Config

        return Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_config(path: str | os.PathLike | None = None, env: dict | None = None) -> "Config":
    """Read a config file (default: $MSTEAMS_CONFIG) overlaid by MSTEAMS_* variables from ``env``
    (default: os.environ), checked as the CLI checks it. Raises ConfigError / ConfigFileError.
    The result may be adjusted (``cfg.store_path = ...``) before it is given to :class:`Client`."""
    from integration.engine.config import load

    return load(os.fspath(path) if path is not None else None, env)


@dataclass(frozen=True)
class CommandResult:
    """What a command returned.

    - ``context``: XSOAR-style context, ``{"MicrosoftTeams.ChatList": [ {...}, ... ]}`` (and
      ``<prefix>NextLink`` when more pages remain); empty for commands without outputs.
    - ``readable``: the human-readable markdown (a sentence and/or a table) the CLI prints.
    - ``raw``: the reply of Graph / the Bot Connector (or the handler's own data), as parsed JSON.
    - ``outputs``: the context entries (the list under the prefix).
    - ``exit_code``: 0, or what a report that found a problem exits with (integration-health: 3
      or 4), or 6 (``PARTIAL_EXIT``) when some items of a fan-out failed and the call did not pass
      ``fail_on="none"``; ``ok`` is ``exit_code == 0``.
    - ``failed``: how many items of a fan-out failed or have an unknown outcome (each is among
      ``outputs`` with its status and error).
    """

    command: str
    context: dict
    readable: str
    raw: Any
    outputs: list
    flow: str | None = None
    next_link: str | None = None
    exit_code: int = 0
    failed: int = 0
    _result: "Result | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_result(cls, result: "Result") -> "CommandResult":
        return cls(result.command, result.context(), result.readable, result.raw, list(result.outputs),
                   result.flow, result.next_link, result.exit_code, result.failed, result)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict:
        """Plain data (JSON-serialisable when the reply is): command, flow, context, readable,
        raw, exit_code, failed."""
        return {"command": self.command, "flow": self.flow, "context": self.context, "readable": self.readable,
                "raw": self.raw, "exit_code": self.exit_code, "failed": self.failed}

    def render(self, fmt: str = "table") -> str:
        """What `msteams --output FMT` prints: "table" (readable), "json" (raw) or "context"."""
        if self._result is not None:
            return self._result.render(fmt)
        return self.readable


def _log_echo(text: str) -> None:
    import logging

    logging.getLogger("msteams.api").warning("%s", text)


class Client:
    """One configured integration: configuration, context store, tokens and HTTP connections,
    shared by every command run through it. Make one per tenant and reuse it; it may be used
    from several threads at once (commands run concurrently, sharing one token cache, one
    store and one pacer for the tenant's limits). Close it, or use it as a context manager.

    ``config``: a path to a config file, a :class:`Config` (from :func:`load_config`, or built
    directly), or None for $MSTEAMS_CONFIG and MSTEAMS_* variables. The file is read here: a
    missing or invalid one raises ConfigError / ConfigFileError (exit code 3).

    ``tenant``: with tenant profiles in the config (docs/tenants.md), the profile every command
    runs against unless ``execute(..., tenant=)`` names another; without it each call must name
    one. ``flow``: force an auth flow ("app", "delegated", "bot") for every command, instead of the
    first one ready. ``echo``: where interactive sign-in prompts go (`auth-login` with a device
    code); by default the "msteams.api" logger, never stdout. ``progress``: progress lines on
    stderr for long fan-outs (off by default).
    """

    def __init__(self, config: "str | os.PathLike | Config | None" = None, *, flow: str | None = None,
                 echo: Callable[[str], None] | None = None, progress: bool = False,
                 sleep: Callable[[float], None] = time.sleep, tenant: str | None = None):
        from integration.engine import redact
        from integration.engine.config import Config as _Config
        from integration.dispatch import Runtime

        if isinstance(config, _Config):
            for key in ("client_secret", "bot_secret"):  # masked in messages, as load() does
                redact.register(getattr(config, key))
            runtime = Runtime(config, sleep=sleep, provider=True)
        elif config is None or isinstance(config, str | os.PathLike):
            runtime = Runtime(config_path=os.fspath(config) if config is not None else None, sleep=sleep,
                              tenant=tenant, provider=True)
        else:
            raise TypeError(f"config must be a path, a Config or None, not {type(config).__name__}")
        runtime.echo = echo or _log_echo
        runtime.quiet = not progress
        runtime.cfg  # read now: a bad config fails here, not in the middle of a playbook
        self.flow = flow
        self._runtime = runtime
        self._lock = threading.Lock()
        self._closed = False

    @property
    def config(self) -> "Config":
        return self._runtime.cfg

    @property
    def runtime(self):
        """The engine's runtime (integration.dispatch.Runtime), for the playbook runner
        (integration.playbooks.run_playbook); not part of the stable surface."""
        return self._runtime

    @property
    def closed(self) -> bool:
        return self._closed

    def commands(self) -> list[str]:
        """The command names this integration knows (aliases such as XSOAR's names also work)."""
        return list(self._runtime.registry.names())

    def execute(self, command: str, args: dict | None = None, *, flow: str | None = None,
                tenant: str | None = None) -> CommandResult:
        """Run one command by name (or alias) with its arguments as a dict: values typed
        (``{"limit": 5, "member": ["a@x", "b@x"]}``) or as strings as a playbook would give
        them (``{"limit": "5"}``), checked against the command's schema. Returns a
        :class:`CommandResult`; raises an :class:`IntegrationError` subclass on failure."""
        if self._closed:
            raise IntegrationError("this msteams client is closed", hint="make a new api.Client")
        if not isinstance(command, str):
            raise InputError(f"the command name must be a string, not {type(command).__name__}")
        if args is not None and not isinstance(args, dict):
            raise InputError(f"the arguments must be a dict of name to value, not {type(args).__name__}")
        from integration.dispatch import execute as _execute

        args = dict(args or {})
        if tenant is not None:
            args["tenant"] = tenant
        result = _execute(command, args, self._runtime, flow=flow or self.flow)
        return CommandResult.from_result(result)

    def close(self) -> None:
        """Close the context store and HTTP connections. Idempotent; the client refuses further
        commands."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._runtime.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        cfg = self._runtime._cfg
        where = getattr(cfg, "source", None) or "?"
        return f"<msteams api.Client config={where!r}{' closed' if self._closed else ''}>"


def execute(command: str, args: dict | None = None, *, config: "str | os.PathLike | Config | None" = None,
            client: Client | None = None, flow: str | None = None, tenant: str | None = None) -> CommandResult:
    """Run one command. With ``client``, on it (reused, not closed); otherwise on a Client made
    from ``config`` for this call alone and closed after it (simple, but it re-reads the config
    and opens the store every time: keep a Client for more than a few commands)."""
    if client is not None:
        return client.execute(command, args, flow=flow, tenant=tenant)
    with Client(config) as once:
        return once.execute(command, args, flow=flow, tenant=tenant)
