"""``msteams emulator serve``: run the fake tenant as a long-lived server for demos, manual
runs of the CLI and benchmarks. Prints the URLs, optionally writes the client config the CLI
uses as is (``--write-config``, mode 0600, naming a context store of its own beside it), keeps
the tenant's state across restarts (``--state FILE``, see ``persist.py``), and runs until
Ctrl-C or SIGTERM.

Bad arguments, a bad tenant file or a bad state file end with one line on stderr and exit
status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .argtypes import port, positive_number, whole_number

PROG = "msteams emulator serve"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run the local fake Microsoft 365 tenant (Entra ID, Graph, Bot Connector).")
    p.add_argument("--port", type=port, default=0, help="port on 127.0.0.1 (default: any free port)")
    p.add_argument("--tenant", metavar="FILE", help="tenant seed YAML (default: the shipped organisation)")
    p.add_argument("--users", type=whole_number(1, 1_000_000), metavar="N", help="grow the directory to N users (e.g. 10000)")
    p.add_argument("--tenants", type=whole_number(1, 100), default=1, metavar="N",
                   help="host N customer tenants (default 1): the first is --tenant's (contoso), the others "
                        "generated (fabrikam, northwind, tenant4...), the same multi-tenant app consented in each; "
                        "--write-config then writes a profile per tenant under `tenants:`")
    p.add_argument("--speed", type=positive_number, default=1.0, metavar="X",
                   help="multiply every throttling limit by X (default 1)")
    p.add_argument("--throttling", dest="throttling", action="store_true", default=True,
                   help="enforce the published Graph and bot rate limits (default)")
    p.add_argument("--no-throttling", dest="throttling", action="store_false", help="never answer 429")
    p.add_argument("--no-retry-after", dest="retry_after", action="store_false", default=True,
                   help="send 429 without a Retry-After header")
    p.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS", help="access token lifetime")
    p.add_argument("--write-config", metavar="PATH",
                   help="write the client config YAML here (mode 0600); its store_path is a context store "
                        "of its own beside it (emu.yml: emu.store.sqlite3), not the default store")
    p.add_argument("--state", metavar="FILE",
                   help="keep the tenant's state (chats, messages, teams, channels, bot conversations, "
                        "refresh tokens...) in FILE across restarts: loaded at start if it exists, saved "
                        "after changes and on exit (JSON, mode 0600)")
    p.add_argument("--messaging-endpoint", metavar="URL",
                   help="the bot's messaging endpoint, where simulated Teams users' activities go "
                        "(`msteams bot serve` sets it itself)")
    return p


def main(argv: list[str] | None = None, stop_event: threading.Event | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.token_lifetime < 1:
        print(f"{PROG}: error: --token-lifetime must be at least 1 second", file=sys.stderr)
        return 2

    from .persist import StateFile, StateFileError
    from .server import Emulator
    from .teams_channel import ChannelError
    from .tenant import TenantFileError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        emu = Emulator(tenant=args.tenant, users=args.users, throttling=args.throttling, speed=args.speed,
                       port=args.port, token_lifetime=args.token_lifetime, retry_after=args.retry_after,
                       messaging_endpoint=args.messaging_endpoint, tenants=args.tenants)
    except (TenantFileError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if args.state and args.tenants > 1:
        print(f"{PROG}: error: --state keeps one tenant's state; it cannot be used with --tenants", file=sys.stderr)
        return 2
    state_file = StateFile(args.state, emu) if args.state else None
    try:
        loaded = state_file.load() if state_file else False  # before start: no request sees the bare seed
    except StateFileError as e:
        print(f"{PROG}: error: --state {e}", file=sys.stderr)
        return 2
    try:
        emu.start()
    except OSError as e:
        print(f"{PROG}: error: cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    except ChannelError as e:
        emu.stop()
        print(f"{PROG}: error: --messaging-endpoint: {e}", file=sys.stderr)
        return 2
    if state_file:
        state_file.started()
        try:  # now, so that a file that cannot be written is an error at start, not at exit
            state_file.save(force=True)
        except StateFileError as e:
            emu.stop()
            print(f"{PROG}: error: --state {e}", file=sys.stderr)
            return 2

    stop = stop_event or threading.Event()
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            restore[sig] = signal.signal(sig, lambda *_: stop.set())
    rc = 0
    try:
        rc = _run(emu, args, stop, state_file, loaded)
    except KeyboardInterrupt:
        rc = 0
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
        emu.stop()
        if state_file:
            try:  # after stop: no request can change the state once it is written
                state_file.save()
            except StateFileError as e:
                print(f"{PROG}: error: {e}", file=sys.stderr)
                rc = rc or 1  # what ran was fine; what is kept of it is not
    return rc


def _run(emu, args, stop: threading.Event, state_file, loaded: bool) -> int:
    """Write the config, print where everything is, and serve until ``stop``."""
    from .persist import StateFileError

    config_path = store_path = None
    if args.write_config:
        store_path = store_beside(args.write_config)
        try:
            config_path = emu.write_config(args.write_config, store_path=store_path, tenants=args.tenants > 1)
        except OSError as e:
            print(f"{PROG}: error: cannot write config {args.write_config}: {e.strerror or e}", file=sys.stderr)
            return 2
    throttle = (f"on (speed x{args.speed:g}{', no Retry-After' if not args.retry_after else ''})"
                if args.throttling else "off")
    print(f"Emulator running: tenant {emu.state.domain} ({emu.state.tenant_id}), {len(emu.state.users)} users, "
          f"throttling {throttle}")
    print(f"  authority        {emu.authority}")
    for h in emu._hosted[1:]:
        print(f"  tenant {h.name:<9} {h.domain} ({h.tenant_id}), {len(h.state.users)} users: {h.authority}")
    print(f"  graph            {emu.graph_url}")
    print(f"  bot service      {emu.bot_service_url}")
    print(f"  CA bundle        {emu.ca_bundle}")
    print(f"  admin            {emu.base_url}/_emulator/state")
    print(f"  bot token keys   {emu.teams.metadata_url}")
    print(f"  bot endpoint     {emu.teams.messaging_endpoint or '(none yet: msteams bot serve registers it)'}")
    print(f"  config           {config_path or '(not written; pass --write-config PATH)'}")
    if store_path:
        print(f"  context store    {store_path}")
    if state_file:
        print(f"  state            {state_file.path} ({'loaded' if loaded else 'new'})")
    print("Press Ctrl-C to stop.", flush=True)
    failed = None
    while not stop.wait(0.5):
        if state_file:
            try:
                state_file.tick()
            except StateFileError as e:  # keep serving; say so once per distinct problem
                if str(e) != failed:
                    failed = str(e)
                    print(f"{PROG}: warning: {e}", file=sys.stderr, flush=True)
    print("Stopping emulator.", flush=True)
    return 0


def store_beside(config_path: str) -> str:
    """The context store of the config at ``config_path``: same directory and name, extension
    ``.store.sqlite3`` (emu.yml -> emu.store.sqlite3), absolute. Each emulator config gets its
    own store, so the fake tenant's tokens, runs and audit never mix with a real configuration's
    (the default store) nor with another emulator's."""
    stem = os.path.splitext(os.path.abspath(config_path))[0]
    return stem + ".store.sqlite3"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
