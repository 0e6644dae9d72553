"""``msteams bot serve`` (the messaging endpoint) and ``msteams bot audit`` (the commands
received from Teams)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import time
from typing import Callable
from urllib.parse import urlsplit

log = logging.getLogger("msteams.bot")

from integration.engine.argtypes import port, whole_number

USAGE = ("usage: msteams bot serve [--host H] [--port N] [--tls-cert F --tls-key F] [--write-url FILE] "
         "[--metrics-port P] [--log-json] | msteams bot audit")


def _parser(prog: str) -> argparse.ArgumentParser:
    from integration.engine.errors import InputError

    class P(argparse.ArgumentParser):
        def error(self, message):  # one line, exit 2 like every input error
            raise InputError(f"{self.prog}: {message}")

    return P(prog=prog)


def main(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None = None,
         output: str | None = None) -> int:
    from integration.engine.errors import InputError

    action = argv[0] if argv else None
    if action == "serve":
        return serve(argv[1:], out=out, err=err, config=config)
    if action == "audit":
        return audit(argv[1:], out=out, config=config, output=output)
    raise InputError(USAGE)


# ---- serve ----
def listen_options(p: argparse.ArgumentParser, *, default_port: int, url_is: str) -> None:
    """The options of a server that listens (`bot serve`, `serve`): address, port, TLS, and
    where to write its URL (``url_is``: what that URL is)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=port, default=default_port,
                   help=f"port (default {default_port}; 0 picks a free one)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--write-url", metavar="FILE", help=f"write {url_is} here once listening")


def listening(make, host: str, port: int):
    """``make()`` a server, its failures to listen named as configuration problems (exit 3)."""
    from integration.engine.errors import ConfigError

    try:
        return make()
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except (ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS certificate or key: {exc}") from None


def write_url(path: str | None, url: str) -> None:
    """--write-url: the URL in ``path`` once listening (a script waits for it)."""
    if not path:
        return
    from integration.engine.errors import ConfigError

    try:
        _write_url(path, url)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_tls(prog: str, cert: str | None, key: str | None) -> None:
    """--tls-cert and --tls-key of a server command: both or neither, each a file."""
    from integration.engine.errors import InputError

    if bool(cert) != bool(key):
        raise InputError(f"{prog}: --tls-cert and --tls-key go together")
    for f in (cert, key):
        if f and not os.path.isfile(f):
            raise InputError(f"{prog}: no such file: {f}")


def _write_url(path: str, url: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(url + "\n")
    os.replace(tmp, path)  # a reader never sees half a URL


def _emulator_origin(cfg) -> str | None:
    """The fake tenant's origin when the config points at one (a loopback authority)."""
    if not cfg.authority:
        return None
    parts = urlsplit(cfg.authority)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def register_with_emulator(cfg, url: str) -> bool:
    """Set the fake tenant's messaging endpoint for the bot, as the Azure Bot setting is set on a
    real tenant. False when the configured tenant is not a reachable fake one."""
    origin = _emulator_origin(cfg)
    if origin is None:
        return False
    import requests

    try:
        with requests.Session() as s:
            s.trust_env = False
            r = s.post(f"{origin}/_emulator/messaging-endpoint", json={"url": url}, verify=cfg.verify, timeout=10)
        return r.status_code == 200
    except requests.RequestException as exc:
        log.warning("could not register the messaging endpoint with the emulator at %s: %s", origin,
                    type(exc).__name__)
        return False


def serve(argv: list[str], *, out, err, config: str | None) -> int:
    p = _parser("msteams bot serve")
    listen_options(p, default_port=3978, url_is="the messaging endpoint URL")
    p.add_argument("--workers", type=whole_number(1), default=4, help="commands run in parallel (default 4)")
    p.add_argument("--no-register", action="store_true",
                   help="do not set the emulator's messaging endpoint (when the config points at one)")
    p.add_argument("--metrics-port", type=port, default=None,
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (a port of its own, not Teams')")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port (default 127.0.0.1)")
    p.add_argument("--log-json", action="store_true", help="log one JSON object a line (for a log shipper)")
    p.add_argument("--log-bodies", action="store_true", help="with --log-json: include message texts in the log")
    ns = p.parse_args(argv)
    from integration.engine.errors import ConfigError

    check_tls("msteams bot serve", ns.tls_cert, ns.tls_key)

    from integration.dispatch import Runtime
    from . import server as srv

    runtime = Runtime(config_path=config, provider=True)  # with tenant profiles: one bot for all of them
    runtime.echo = out
    runtime.quiet = True
    try:
        cfg = runtime.cfg
        if not cfg.bot_configured:
            raise ConfigError("the bot endpoint needs bot_id and bot_secret (it answers through the Bot Connector)")
        if ns.log_json:
            from integration.engine import metrics

            metrics.json_logging(bodies=ns.log_bodies)
        endpoint = srv.build(runtime, workers=ns.workers)
        from . import tenants

        tenants.install(endpoint, runtime, workers=ns.workers)
        if ns.metrics_port is not None:
            from integration.engine import metrics

            from integration.frontends.tenants import watch_stores

            watch_stores(runtime)
            metrics.serve(ns.metrics_port, ns.metrics_host)
            out(f"  metrics          http://{ns.metrics_host}:{ns.metrics_port}/metrics")
        server = listening(lambda: srv.BotServer(endpoint, host=ns.host, port=ns.port, tls_cert=ns.tls_cert,
                                                 tls_key=ns.tls_key), ns.host, ns.port)
        url = server.messaging_endpoint
        out(f"Bot endpoint listening: {url} (health: {server.url}/healthz)")
        out(f"  bot id           {cfg.bot_id}")
        if tenants.routes_by_tenant(runtime):
            out(f"  tenants          {', '.join(cfg.tenant_names)} (each activity to its tenant's profile)")
        out(f"  token keys       {endpoint.verifier.botframework.metadata_url}")
        if not (ns.no_register) and _emulator_origin(cfg):
            if register_with_emulator(cfg, url):
                out(f"  emulator         messaging endpoint set to {url}")
            else:
                err("warning: the emulator did not take the messaging endpoint (is it running?)")
        write_url(ns.write_url, url)
        out("Press Ctrl-C to stop.")
        try:
            server.run()
        finally:
            endpoint.processor.close(10)
        out("Bot endpoint stopped.")
        return 0
    finally:
        runtime.close()


# ---- audit ----
COLUMNS = ["time", "sender", "place", "command", "decision", "outcome", "detail"]


def audit(argv: list[str], *, out, config: str | None, output: str | None) -> int:
    p = _parser("msteams bot audit")
    p.add_argument("--limit", type=whole_number(1), default=50, help="newest entries shown (default 50)")
    p.add_argument("--sender", help="only this sender (object id or display name)")
    p.add_argument("-o", "--output", choices=("table", "json"), default=None, help="table (default) or json")
    ns = p.parse_args(argv)
    from integration.engine.config import load
    from integration.store.open import open_store

    cfg = load(config)
    store = open_store(cfg)
    try:
        rows = store.audit_list(limit=ns.limit, sender=ns.sender)
    finally:
        store.close()
    fmt = ns.output or (output if output in ("table", "json") else "table")
    for r in rows:
        r["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["time"]))
        r["sender"] = f"{r['sender_name']} ({r['sender_id']})" if r.get("sender_name") else r.get("sender_id")
    if fmt == "json":
        out(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    from integration.engine.results import markdown_table
    from integration.engine.untrusted import escape_controls

    out(escape_controls(markdown_table(rows, COLUMNS, "Commands received from Teams (newest first)")))
    return 0
