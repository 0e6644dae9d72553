"""The `msteams` command line: a subcommand per registry command (generated from
commands.yml), the war-room form (`msteams '!chat-create member=a@x'`), `help COMMAND`, and the
tool commands (auth, emulator, demo, permissions, docs). A thin front end over `execute()`.

Heavy modules (requests, msal, jsonschema) are imported only when a command runs, so help is fast.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable  # not typing: its import costs more than a help page

from integration import __version__

OUTPUTS = ("table", "json", "context")
TOOLS = {
    "help": "show a command's arguments, flows, permissions and an example",
    "auth": "sign-in: `auth login`, `auth status`, `auth reset`; in two steps: `auth start`, `auth complete`",
    "emulator": "the built-in fake tenant: `emulator serve --write-config PATH`",
    "demo": "run an incident scenario against the built-in emulator",
    "playbook": "check or run a YAML playbook: `playbook validate FILE`, `playbook run FILE --input k=v [--dry-run]`",
    "shell": "the interactive war-room prompt (`!command arg=value`); or pipe lines of commands on stdin",
    "permissions": "the Graph permissions each command needs per flow, and the totals to grant",
    "docs": "print (or --write) docs/commands.md, generated from commands.yml (--xsoar: docs/xsoar-migration.md)",
    "pack": "a SOAR platform's pack generated from commands.yml: `pack xsoar|stackstorm|splunk-soar --out DIR`",
    "app-package": "build the Teams app package for the bot: `app-package --out app.zip` (manifest and icons)",
    "bot": "the bot's messaging endpoint: `bot serve [--port N] [--write-url FILE]`; `bot audit` lists commands from Teams",
    "store": "the shared store's encryption key: `store keygen --out FILE [--rotate]`, `store rotate-key`, `store status`; "
             "retention: `store prune --older-than DAYS [--dry-run]`",
    "worker": "a worker of the pool sending queued notifications and resuming runs (needs store_url); `worker status`",
    "serve": "the HTTP API (OpenAPI, API keys, Idempotency-Key): `serve [--port N] [--write-url FILE] [--bot]`",
    "api-key": "the HTTP API's keys: `api-key create --name NAME --scope GLOB [--expires 90d]`, `api-key list`, "
               "`api-key revoke NAME`",
    "tenants": "each tenant profile of the config (`tenants:`) with its health in one table; run a command "
               "against one with `--tenant NAME`",
    "webhook": "events to the SOAR platform, signed (Standard Webhooks): `webhook add URL --event run.finished`, "
               "`webhook list`, `webhook remove NAME`, `webhook deliveries [--state failed|dead|pending] [--retry]`",
}
AUTH_ACTIONS = {"login": "auth-login", "status": "auth-status", "reset": "auth-reset", "start": "auth-start",
                "complete": "auth-complete"}
AUTH_USAGE = ("usage: msteams auth {login,status,reset,start,complete} [options]  "
              "(start/complete: a device-code sign-in in two steps)")
EMULATOR_USAGE = (
    "usage: msteams emulator serve [--port N] [--tenant FILE] [--tenants N] [--users N] [--speed X] [--write-config PATH] "
    "[--messaging-endpoint URL] | emulator user-says --user MAIL [--team NAME --channel NAME | --chat ID] TEXT | "
    "emulator user-clicks --user MAIL (--question ID | --message-ref REF) --choice TITLE [--reason TEXT] | "
    "emulator install-bot|uninstall-bot --user MAIL | --team NAME | emulator forget-conversations [--user MAIL] | "
    "emulator answer-call --user MAIL accept|decline|busy|ignore")


def _pack_usage() -> str:
    from .packs import PLATFORMS  # packs/__init__ imports nothing: cheap

    return f"usage: msteams pack {{{','.join(PLATFORMS)}}} --out DIR"


# The groups of tool commands: `msteams GROUP --help` prints the group's usage (exit 0).
GROUP_USAGE = {"auth": lambda: AUTH_USAGE, "emulator": lambda: EMULATOR_USAGE,
               "playbook": lambda: __import__("integration.playbooks.tool", fromlist=["USAGE"]).USAGE,
               "pack": _pack_usage,
               "bot": lambda: __import__("integration.frontends.bot.tool", fromlist=["USAGE"]).USAGE,
               "store": lambda: __import__("integration.store.tool", fromlist=["USAGE"]).USAGE,
               "api-key": lambda: __import__("integration.frontends.service.tool", fromlist=["KEY_USAGE"]).KEY_USAGE,
               "webhook": lambda: __import__("integration.delivery.webhook_tool", fromlist=["USAGE"]).USAGE}


def _registry(validate: bool = True):
    """The registry, checked in full on every path (the check is cached per content, so help
    stays fast); a broken one is a FileError naming file and line (exit 2). ``validate`` is
    accepted for older callers and changes nothing."""
    from integration.engine import registry

    return registry.default_registry()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _describe_arg(prop: dict) -> str:
    text = prop.get("description", "")
    if "enum" in prop:
        text += f" One of: {', '.join(map(str, prop['enum']))}."
    if "default" in prop and prop["default"] not in ("", None, False):
        text += f" Default: {prop['default']}."
    return text


def _width() -> int:
    """What argparse's HelpFormatter computes (shutil.get_terminal_size().columns - 2), without
    importing shutil (~5 ms of a help page)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns - 2


class _Help(argparse.HelpFormatter):
    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, _width() if width is None else width)


class _RawHelp(argparse.RawDescriptionHelpFormatter, _Help):
    pass


class _Listed:
    """A subcommand as `msteams --help` lists it (name and help line) without the parser behind
    it: building ~50 argparse parsers costs more than the rest of the help page. It never parses:
    a command given on the line gets its real parser (build_parser's ``full``)."""

    def __init__(self, **kwargs):
        self.prog = kwargs.get("prog", "msteams")

    def parse_known_args(self, args=None, namespace=None):
        from integration.engine.errors import InputError

        raise InputError(f"usage: {self.prog} ... (give the command first: `msteams --help` lists them)")


def build_parser(reg, full: set | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. ``full=None``: every tool and command with its flags. ``full`` a set of
    command names: only those commands (what running one needs). ``full`` empty: the list of
    tools and commands that --help prints, without a parser per command."""
    p = argparse.ArgumentParser(
        prog="msteams",
        description="Microsoft Teams for security automation: run commands against Microsoft Graph "
                    "(or the built-in emulator). War-room form: msteams '!chat-create member=a@x'.",
        formatter_class=_RawHelp)
    p.add_argument("--version", action="version", version=f"msteams {__version__}")
    _common(p, top=True)
    listing = full is not None and not full
    sub = p.add_subparsers(dest="command", metavar="COMMAND", **({"parser_class": _Listed} if listing else {}))
    if full is None or listing:
        for tool, text in TOOLS.items():
            sub.add_parser(tool, help=text, add_help=False)
    if listing:
        for name, description in reg.descriptions():
            if not name.startswith("auth-"):
                sub.add_parser(name, help=_summary(description))
        return p
    for spec in reg if full is None else [reg.get(name) for name in sorted(full)]:
        if not spec.name.startswith("auth-"):
            _add_spec_parser(sub, spec)
    return p


def _summary(description: str) -> str:
    return description.split(". ")[0].rstrip(".")


def _add_spec_parser(sub, spec) -> None:
    """One subcommand whose flags come from the command's JSON Schema arguments."""
    sp = sub.add_parser(spec.name, help=_summary(spec.description), description=spec.description,
                        argument_default=argparse.SUPPRESS, formatter_class=_Help)
    # A command argument may share a global option's name (token-permissions-list --flow):
    # after the command name, the command's own argument wins.
    _common(sp, skip=set(spec.arguments.get("properties", {})) | set(spec.argument_aliases))
    for name, prop in spec.arguments.get("properties", {}).items():
        aliases = list(prop.get("aliases", ()))
        text = _describe_arg(prop) + (f" Also {', '.join(map(_flag, aliases))}." if aliases else "")
        # An alias is a flag of its own (its own dest), so that giving both names is reported
        # by the argument check rather than one value silently winning.
        for flag, dest, help_text in [(name, name, text)] + [(a, a, argparse.SUPPRESS) for a in aliases]:
            kwargs: dict = {"help": help_text, "dest": f"arg_{dest}"}
            if prop.get("type") == "boolean":
                kwargs["action"] = argparse.BooleanOptionalAction
            elif prop.get("type") == "array":
                kwargs.update(action="append", metavar="VALUE")
            else:
                kwargs["metavar"] = "VALUE"
            sp.add_argument(_flag(flag), **kwargs)
    sp.add_argument("pairs", nargs="*", metavar="name=value", help="arguments in war-room form")


def _common(p: argparse.ArgumentParser, top: bool = False, skip: set = frozenset()) -> None:
    default = None if top else argparse.SUPPRESS
    if "config" not in skip:
        p.add_argument("--config", default=default, help="config file (default: $MSTEAMS_CONFIG)")
    if "output" not in skip:
        p.add_argument("-o", "--output", choices=OUTPUTS, default=default, help="table (default), json or context")
    if "tenant" not in skip:
        p.add_argument("--tenant", default=default, metavar="NAME",
                       help="the tenant profile to run against (a config with `tenants:`; default: $MSTEAMS_TENANT)")
    if "flow" not in skip:
        p.add_argument("--flow", choices=("app", "delegated", "bot"), default=default,
                       help="force an auth flow instead of the first one ready")
    if "verbose" not in skip:
        p.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                       help="log more (-vv: debug)")
    if "quiet" not in skip:
        p.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                       help="no progress line for long fan-outs")


def _setup_logging(verbosity: int) -> None:
    import logging

    from integration.engine.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG)


def _print_error(exc: BaseException, err: Callable[[str], None], as_json: bool = False) -> None:
    """An error as text (`error: MESSAGE` and `  hint: ...`), or with --output json as one line
    of JSON, `{"error": {"code": KIND, "message": ..., "hint": ..., "exit_code": N, ...}}`
    (IntegrationError.to_dict). Either way escaped and redacted: the last guard."""
    from integration.engine.redact import redact
    from integration.engine.untrusted import escape_controls

    if as_json:
        from integration.engine.errors import IntegrationError

        if isinstance(exc, IntegrationError):
            payload = exc.to_dict()
        elif isinstance(exc, KeyboardInterrupt):
            payload = {"code": "interrupted", "message": "interrupted", "hint": None, "exit_code": 130}
        else:  # a bug
            payload = {"code": "internal", "message": redact(escape_controls(f"internal error: {type(exc).__name__}: {exc}")),
                       "hint": "this is a bug; rerun with -vv for details and report it", "exit_code": 1}
        import json

        err(json.dumps({"error": payload}, ensure_ascii=False))
        return
    text = escape_controls(str(exc))  # last guard: no message may drive the terminal
    err(redact(f"error: {text}"))


def _json_requested(argv: list[str]) -> bool:
    """Whether the command line asks for --output json (-o json, --output=json, -ojson), read
    before any parsing so that even a parse error can be reported as JSON."""
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word in ("-o", "--output") and argv[i + 1:i + 2] == ["json"]:
            return True
        if word in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


_ARGPARSE_RAISES = None  # a ContextVar, made when --output json is first asked for


def _argparse_raises():
    """While set on this thread, argparse's usage errors (from any parser: the CLI's, a tool's)
    raise an InputError (exit 2) instead of printing usage text and exiting, so that with
    --output json they come out as JSON like every other error. Unset, argparse is unchanged."""
    global _ARGPARSE_RAISES
    if _ARGPARSE_RAISES is None:
        import contextvars

        flag = contextvars.ContextVar("msteams_argparse_raises", default=False)
        original = argparse.ArgumentParser.error

        def error(self, message):
            if flag.get():
                from integration.engine.errors import InputError

                raise InputError(f"{self.prog}: {message}", hint=" ".join(self.format_usage().split()))
            return original(self, message)

        argparse.ArgumentParser.error = error
        _ARGPARSE_RAISES = flag
    return _ARGPARSE_RAISES


def run_command(name: str, args: dict, *, config: str | None, output: str, flow: str | None,
                out: Callable[[str], None], runtime=None, quiet: bool = False) -> int:
    from integration.dispatch import Runtime, execute

    rt = runtime or Runtime(config_path=config)
    rt.echo = out
    rt.quiet = quiet or output == "json"  # progress lines never mix with JSON
    try:
        result = execute(name, args, rt, flow=flow)
        out(result.render(output or "table"))
        return result.exit_code  # 0, or what a report found (integration-health)
    finally:
        if runtime is None:
            rt.close()


def help_command(reg, name: str | None, out: Callable[[str], None]) -> int:
    from integration.engine.errors import InputError

    if not name:
        out("usage: msteams help COMMAND\n\ncommands: " + ", ".join(reg.names()))
        return 0
    spec = reg.get(name)
    if spec is None:
        from integration.engine.untrusted import quote

        raise InputError(f"unknown command {quote(name)}", hint="`msteams --help` lists the commands")
    from .docs import command_help

    out(command_help(spec))
    return 0


def main(argv: list[str] | None = None, *, out: Callable[[str], None] | None = None,
         err: Callable[[str], None] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or (lambda s: print(s, flush=True))
    err = err or (lambda s: print(s, file=sys.stderr, flush=True))
    from integration.engine.errors import IntegrationError, exit_code_for

    # --output json: every error is one line of JSON on stderr (argparse's included).
    as_json = _json_requested(argv)
    raising = _argparse_raises().set(True) if as_json else None
    try:
        from integration.engine.untrusted import decode_argv

        return _main(decode_argv(argv), out, err)  # invalid UTF-8 fails here, naming the argument
    except IntegrationError as exc:
        _print_error(exc, err, as_json)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        _print_error(exc, err, True) if as_json else err("interrupted")
        return 130
    except SystemExit as exc:  # argparse has already printed its usage message
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug, not a user mistake: say so without dumping internals
        from integration.engine.errors import from_foreign

        if (ours := from_foreign(exc)) is not None:  # the store's server or file, not a bug
            _print_error(ours, err, as_json)
            return exit_code_for(ours)
        from integration.engine.redact import redact
        from integration.engine.untrusted import escape_controls

        if as_json:
            _print_error(exc, err, True)
        else:
            err(redact(escape_controls(f"internal error: {type(exc).__name__}: {exc}")))
            err("this is a bug; rerun with -vv for details and report it")
        import logging

        logging.getLogger("msteams").debug("internal error", exc_info=True)
        return 1
    finally:
        if raising is not None:
            _ARGPARSE_RAISES.reset(raising)


def _main(argv: list[str], out, err) -> int:
    # Global options may precede the command; pull out the few that apply everywhere.
    # No abbreviations: a command's own option (app-package --out) must not read as --output.
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, formatter_class=_Help)
    _common(pre, top=True)
    opts, rest = pre.parse_known_args(argv)
    if opts.tenant is None:
        return _routed(opts, rest, out, err)
    from integration.engine import config as config_mod

    if not config_mod.TENANT_NAME.fullmatch(opts.tenant):
        from integration.engine.errors import InputError

        raise InputError("--tenant: must name a tenant profile (1 to 32 lowercase letters, digits, '_' or '-')")
    token = config_mod.select_tenant(opts.tenant)  # every tool of this invocation reads that profile
    try:
        return _routed(opts, rest, out, err)
    finally:
        config_mod._SELECTED.reset(token)


def _routed(opts, rest: list[str], out, err) -> int:
    head = rest[0] if rest else None
    # Help prints and leaves: no logging to set up (the logging module alone costs a quarter of
    # `msteams --help`). Everything else logs through the redacting handler.
    quick = head is None or head == "help" or (head.startswith("-") and "--" not in rest)
    if not quick:
        _setup_logging(opts.verbose)

    if head and head.startswith("!"):  # war-room form: one argument, or split across several
        from integration.engine.arguments import parse_warroom

        name, args = parse_warroom(" ".join(rest) if len(rest) > 1 else head)
        return run_command(name, args, config=opts.config, output=opts.output, flow=opts.flow, out=out,
                           quiet=opts.quiet)
    if head == "help":
        if rest[1:2] in (["-h"], ["--help"]):
            out("usage: msteams help [COMMAND]: a command's arguments, flows, permissions and an example; "
                "without COMMAND, the list of commands")
            return 0
        return help_command(_registry(), rest[1] if len(rest) > 1 else None, out)
    if head in GROUP_USAGE and rest[1:2] in (["-h"], ["--help"]):
        out(GROUP_USAGE[head]() + "\n  (each action takes --help too)")
        return 0
    if head == "auth":
        action = rest[1] if len(rest) > 1 else None
        if action not in AUTH_ACTIONS:
            from integration.engine.errors import InputError

            raise InputError(AUTH_USAGE)
        rest = [AUTH_ACTIONS[action]] + rest[2:]
        head = rest[0]
    if head == "emulator":
        if rest[1:2] in (["user-says"], ["user-clicks"], ["install-bot"], ["uninstall-bot"], ["forget-conversations"],
                         ["answer-call"]):  # a simulated Teams user acts (a running emulator)
            from fake_tenant.drive import main as drive_main

            return drive_main(rest[1:], out=out, err=err, config=opts.config,
                              activity_of_ref=_activity_of_message_ref)
        if rest[1:2] != ["serve"]:
            from integration.engine.errors import InputError

            raise InputError(EMULATOR_USAGE)
        from fake_tenant.serve import main as serve_main

        return serve_main(rest[2:])
    if head == "demo":
        from .demo import main as demo_main

        return demo_main(rest[1:], out=out)
    if head == "playbook":
        if rest[1:2] in (["validate"], ["run"], ["resume"]):
            _registry()  # a broken registry is its own error, not "the playbook has problems"
        from integration.playbooks.tool import main as playbook_main

        return playbook_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output)
    if head == "bot":
        from integration.frontends.bot.tool import main as bot_main

        return bot_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output)
    if head == "serve":
        _registry()
        from integration.frontends.service.tool import serve as serve_main

        return serve_main(rest[1:], out=out, err=err, config=opts.config)
    if head == "tenants" or (head in ("integration-health", "microsoft-teams-integration-health")
                             and "--all-tenants" in rest[1:]):
        from .tenants import main as tenants_main

        return tenants_main([a for a in rest[1:] if a != "--all-tenants"], out=out, config=opts.config,
                            output=opts.output)
    if head == "api-key":
        from integration.frontends.service.tool import api_key

        return api_key(rest[1:], out=out, config=opts.config, output=opts.output)
    if head == "store":
        from integration.store.tool import main as store_main

        return store_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output)
    if head == "webhook":
        from integration.delivery.webhook_tool import main as webhook_main

        return webhook_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output)
    if head == "worker":
        _registry()
        from .worker import main as worker_main

        return worker_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output)
    if head == "shell":
        _registry()
        from .shell import main as shell_main

        return shell_main(rest[1:], out=out, err=err, config=opts.config, output=opts.output, flow=opts.flow)

    if head in ("permissions", "docs"):
        return _doc_tool(head, rest[1:], out, output=opts.output)
    if head == "pack":
        import importlib

        from .packs import PLATFORMS

        module = PLATFORMS.get(rest[1] if len(rest) > 1 else "")
        if module is None:
            from integration.engine.errors import InputError

            raise InputError(_pack_usage())
        _registry()  # a broken registry is its own error (file and line)
        return importlib.import_module(f"{__package__}.packs.{module}").main(rest[2:], out=out)
    if head == "app-package":
        from .app_package import main as package_main

        return package_main(rest[1:], config=opts.config, out=out)

    reg = _registry()
    if head and not head.startswith("-"):
        spec = reg.get(head)
        if spec is None:
            import difflib

            from integration.engine.errors import InputError
            from integration.engine.untrusted import quote

            close = difflib.get_close_matches(head, reg.all_names() + list(TOOLS), n=3)
            raise InputError(f"unknown command {quote(head)}", hint=f"did you mean: {', '.join(close)}?" if close
                             else "`msteams --help` lists the commands")
        rest[0] = spec.name  # aliases (XSOAR's names) run the command they name
    # Flags are built for the command given only (any word naming one, to be safe).
    full = {spec.name for word in rest if not word.startswith("-") and (spec := reg.get(word))}
    parser = _auth_parser(reg) if head and head.startswith("auth-") else build_parser(reg, full)
    ns = parser.parse_args(rest)
    if not getattr(ns, "command", None):
        parser.print_help()
        return 0 if not rest else 2
    args: dict = {}
    if getattr(ns, "pairs", None):
        from integration.engine.arguments import to_argv_pairs

        args.update(to_argv_pairs(ns.pairs))
    for key, value in vars(ns).items():
        if key.startswith("arg_"):
            args[key[4:]] = value
    return run_command(ns.command, args, config=getattr(ns, "config", None) or opts.config,
                       output=getattr(ns, "output", None) or opts.output, flow=getattr(ns, "flow", None) or opts.flow, out=out,
                       quiet=opts.quiet or getattr(ns, "quiet", False))


def _activity_of_message_ref(config: str | None, ref: str) -> str | None:
    """The activity id of the bot message a messageRef names, from the config's context store,
    or None: `msteams emulator user-clicks --message-ref` hands it to the fake tenant, which
    imports nothing of the product and so cannot read the store itself."""
    from integration.engine.config import load
    from integration.store.open import open_store

    store = open_store(load(config))  # no config path: load reads $MSTEAMS_CONFIG
    try:
        found = store.get_message_ref(ref)
    finally:
        store.close()
    return (found or {}).get("activityId") or None


def _doc_tool(tool: str, argv: list[str], out, output: str | None = None) -> int:
    from . import docs

    p = argparse.ArgumentParser(prog=f"msteams {tool}", formatter_class=_Help)
    if tool == "docs":
        p.add_argument("--write", metavar="PATH", nargs="?", const="", default=None,
                       help="write the file instead of printing (docs/commands.md, or with --xsoar docs/xsoar-migration.md)")
        p.add_argument("--xsoar", action="store_true",
                       help="the migration table from Cortex XSOAR's Teams integrations instead of the command reference")
    ns = p.parse_args(argv)
    reg = _registry()
    if tool == "permissions":
        if output == "json":  # per flow: each command's permissions, and the total to grant
            import json

            out(json.dumps({flow: {"total": sorted({p for perms in cmds.values() for p in perms}), "commands": cmds}
                            for flow, cmds in reg.permissions_by_flow().items()}, indent=2))
        else:
            out(docs.permissions_markdown(reg))
        return 0
    text = docs.xsoar_markdown(reg) if ns.xsoar else docs.commands_markdown(reg)
    if ns.write == "":
        ns.write = "docs/xsoar-migration.md" if ns.xsoar else "docs/commands.md"
    if ns.write:
        try:
            with open(ns.write, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            from integration.engine.errors import FileError

            raise FileError(ns.write, f"cannot write: {exc.strerror}") from None
        out(f"wrote {ns.write}")
    else:
        out(text)
    return 0


def _auth_parser(reg) -> argparse.ArgumentParser:
    """`msteams auth login|status|reset`: the auth-* registry commands under their short names."""
    p = argparse.ArgumentParser(prog="msteams auth", formatter_class=_Help)
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="ACTION")
    for spec in reg:
        if spec.name.startswith("auth-"):
            _add_spec_parser(sub, spec)
    return p


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
