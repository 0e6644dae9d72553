"""The CLI face of the HTTP API: ``msteams serve`` (the service) and ``msteams api-key
create|list|revoke`` (its keys). Imported only when one of them runs; the service's app and
uvicorn only when ``serve`` starts."""
from __future__ import annotations

import json
import os
import logging
import time
from typing import Callable

from integration.engine.argtypes import positive_number, whole_number

log = logging.getLogger("msteams.service")

SERVE_USAGE = ("usage: msteams serve [--host H] [--port N] [--tls-cert F --tls-key F] [--write-url FILE] [--bot] "
               "[--workers N] [--time-limit S] [--rate R] [--burst N] [--max-body BYTES] [--log-json]")
KEY_USAGE = ("usage: msteams api-key create --name NAME --scope GLOB [--scope ...] [--expires 90d] | "
             "api-key list | api-key revoke NAME")


def _parser(prog: str):
    import argparse

    from integration.engine.errors import InputError

    class P(argparse.ArgumentParser):
        def error(self, message):  # one line, exit 2 like every input error
            raise InputError(f"{self.prog}: {message}")

    return P(prog=prog)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- msteams serve ----
def serve(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None) -> int:
    from integration.frontends.bot.tool import listen_options

    p = _parser("msteams serve")
    listen_options(p, default_port=8080, url_is="the service's base URL")
    p.add_argument("--bot", action="store_true",
                   help="also serve the bot's messaging endpoint (/api/messages) on the same port")
    p.add_argument("--no-register", action="store_true",
                   help="with --bot: do not set the emulator's messaging endpoint (when the config points at one)")
    p.add_argument("--workers", type=whole_number(1, 256), default=8, help="commands run in parallel (default 8)")
    p.add_argument("--time-limit", type=positive_number, default=60.0,
                   help="seconds a request may take before it answers 504 (default 60; the command goes on)")
    p.add_argument("--rate", type=positive_number, default=20.0, help="requests a second per API key (default 20)")
    p.add_argument("--burst", type=whole_number(1), default=40, help="requests at once per API key (default 40)")
    p.add_argument("--max-body", type=whole_number(1024), default=256 * 1024,
                   help="largest request body in bytes (default 262144)")
    p.add_argument("--log-json", action="store_true", help="log one JSON object a line (for a log shipper)")
    ns = p.parse_args(argv)
    from integration.engine.errors import ConfigError
    from integration.frontends.bot.tool import check_tls, listening, write_url

    check_tls("msteams serve", ns.tls_cert, ns.tls_key)

    from integration.dispatch import Runtime

    from integration.engine.config import selected_tenant

    if selected_tenant() or os.environ.get("MSTEAMS_TENANT"):
        from integration.engine.errors import InputError

        raise InputError("msteams serve serves every tenant profile: drop --tenant (and MSTEAMS_TENANT); each call "
                         "names its tenant with the X-Msteams-Tenant header")
    runtime = Runtime(config_path=config, provider=True)  # keys and jobs are the provider's; commands name a tenant
    runtime.echo = out
    runtime.quiet = True
    service = endpoint = None
    try:
        cfg = runtime.cfg
        runtime.registry  # a broken registry fails here (exit 2), not on the first request
        if ns.bot and not cfg.bot_configured:
            raise ConfigError("--bot needs bot_id and bot_secret (the bot answers through the Bot Connector)")
        from integration.engine import metrics

        if ns.log_json:
            metrics.json_logging()
        metrics.enable()
        from integration.frontends.tenants import watch_stores

        watch_stores(runtime)
        from . import app as app_mod
        from .keys import Keys
        from .server import ServiceServer

        loopback = _loopback(ns.host)
        service = app_mod.Service(runtime, loopback=loopback, workers=ns.workers, max_body=ns.max_body,
                                  time_limit=ns.time_limit, rate=ns.rate, burst=ns.burst)
        if ns.bot:
            from integration.frontends.bot import server as bot_server

            endpoint = bot_server.build(runtime, workers=ns.workers)
            from integration.frontends.bot import tenants

            tenants.install(endpoint, runtime, workers=ns.workers)
        server = listening(lambda: ServiceServer(app_mod.create_app(service, endpoint), host=ns.host, port=ns.port,
                                                 tls_cert=ns.tls_cert, tls_key=ns.tls_key), ns.host, ns.port)
        url = server.url
        out(f"HTTP API listening: {url} (OpenAPI: {url}/v1/openapi.json)")
        active = [k for k in Keys(runtime.store).list() if k["status"] == "active"]
        out(f"  API keys         {len(active)} active" + ("" if active else
            " (every call is refused until one is made: msteams api-key create --name NAME --scope GLOB)"))
        out(f"  metrics          {url}/metrics" + (" (no key on loopback)" if loopback else " (scope 'metrics')"))
        if not loopback and not ns.tls_cert:
            err("warning: plain HTTP on a non-loopback address: API keys would cross the network in clear; "
                "use --tls-cert/--tls-key or a TLS reverse proxy (docs/http-api.md)")
        if endpoint is not None:
            from integration.frontends.bot.tool import _emulator_origin, register_with_emulator

            messages = url + "/api/messages"
            out(f"  bot endpoint     {messages}")
            if not ns.no_register and _emulator_origin(cfg):
                if register_with_emulator(cfg, messages):
                    out(f"  emulator         messaging endpoint set to {messages}")
                else:
                    err("warning: the emulator did not take the messaging endpoint (is it running?)")
        write_url(ns.write_url, url)
        out("Press Ctrl-C to stop.")
        server.run()
        out("HTTP API stopped.")
        return 0
    finally:
        if service is not None:
            service.close()
        if endpoint is not None:
            endpoint.processor.close(10)
        runtime.close()


# ---- msteams api-key ----
def _when(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def _key_tenants(given: list[str], names: tuple) -> list[str]:
    """The tenants a new key may act for, checked: with tenant profiles at least one (deny by
    default), each a profile's name or a glob matching one; without profiles, none."""
    from fnmatch import fnmatchcase

    from integration.engine.errors import InputError
    from integration.engine.untrusted import quote

    given = [g.strip() for g in given if g.strip()]
    if not names:
        if given:
            raise InputError("--tenants: this config has no tenant profiles (docs/tenants.md)")
        return []
    if not given:
        raise InputError(f"give --tenants NAME (repeat, or a glob such as '*'): the tenants this key may act for "
                         f"({', '.join(names)}); a key with none could act for none")
    for g in given:
        if not any(fnmatchcase(n, g) for n in names):
            raise InputError(f"--tenants {quote(g, 40)}: no tenant profile matches it", hint=f"the profiles: "
                             f"{', '.join(names)}")
    return given


def api_key(argv: list[str], *, out: Callable[[str], None], config: str | None, output: str | None) -> int:
    from integration.engine.errors import InputError, NotFound

    action = argv[0] if argv else None
    if action not in ("create", "list", "revoke"):
        raise InputError(KEY_USAGE)
    p = _parser(f"msteams api-key {action}")
    if action == "create":
        p.add_argument("--name", required=True, help="what the key is for (shown in the audit log): tines, n8n-prod")
        p.add_argument("--scope", action="append", default=[], metavar="GLOB",
                       help="a command it may run, or a glob such as 'chat-*' (repeat); destructive commands only "
                            "by name; 'metrics' for /metrics off loopback")
        p.add_argument("--expires", default="never", metavar="DURATION", help="30m, 12h, 90d, 2w, 1y or never (default)")
        p.add_argument("--tenants", action="append", default=[], metavar="GLOB",
                       help="with tenant profiles: a tenant it may act for, or a glob ('*': every one) (repeat)")
    elif action == "revoke":
        p.add_argument("name", help="the key's name")
    p.add_argument("-o", "--output", choices=("table", "json"), default=None, help="table (default) or json")
    ns = p.parse_args(argv[1:])
    fmt = ns.output or (output if output in ("table", "json") else "table")
    from integration.engine.config import load
    from integration.store.open import open_store

    from .keys import Keys, check_scopes, is_glob, parse_duration

    from integration.engine.config import selected_tenant

    if selected_tenant():
        raise InputError("API keys are the provider's, not one tenant's: drop --tenant (a key's tenants are given "
                         "to `api-key create` with --tenants NAME)")
    cfg = load(config, provider=True)
    store = open_store(cfg)
    try:
        keys = Keys(store)
        if action == "create":
            from integration.engine.registry import default_registry

            reg = default_registry()
            expires_in = parse_duration(ns.expires)
            scopes = check_scopes(ns.scope, reg)
            tenants = _key_tenants(ns.tenants, cfg.tenant_names)
            token, record = keys.create(ns.name, scopes, expires_in=expires_in, tenants=tenants)
            if fmt == "json":
                out(json.dumps({"name": record["name"], "key": token, "scopes": record["scopes"],
                                "tenants": record["tenants"], "created": _when(record["created"]),
                                "expires": _when(record["expires"])}))
                return 0
            out(f"API key {record['name']!r}, shown once (keep it in your platform's secret store):")
            out(token)
            out(f"  scopes   {', '.join(scopes)}")
            if tenants:
                out(f"  tenants  {', '.join(tenants)}")
            out(f"  expires  {_when(record['expires']) or 'never'}")
            from fnmatch import fnmatchcase

            globbed = sorted({s.name for s in reg if s.destructive and s.name not in scopes
                              and any(is_glob(g) and fnmatchcase(s.name, g) for g in scopes)})
            if globbed:
                out(f"  note     globs never allow destructive commands ({', '.join(globbed)}): name each with --scope")
            return 0
        if action == "list":
            listed = keys.list()
            rows = [{"name": k["name"], "scopes": ", ".join(k.get("scopes") or ()),
                     **({"tenants": ", ".join(k.get("tenants") or ()) or "none"} if cfg.tenant_names else {}),
                     "created": _when(k.get("created")),
                     "expires": _when(k.get("expires")) or "never", "last_used": _when(k.get("last_used")),
                     "status": k["status"], "key": k.get("shown")} for k in listed]
            if fmt == "json":
                out(json.dumps([dict(r, scopes=r["scopes"].split(", ") if r["scopes"] else [],
                                     **({"tenants": k.get("tenants") or []} if cfg.tenant_names else {}))
                                for r, k in zip(rows, listed)], indent=2, ensure_ascii=False))
                return 0
            from integration.engine.results import markdown_table
            from integration.engine.untrusted import escape_controls

            columns = ["name", "scopes", *(["tenants"] if cfg.tenant_names else []), "created", "expires",
                       "last_used", "status", "key"]
            out(escape_controls(markdown_table(rows, columns, "API keys of the HTTP API")))
            return 0
        gone = keys.revoke(ns.name)
        if not gone:
            from integration.engine.untrusted import quote

            raise NotFound(f"no API key named {quote(ns.name)}", hint="`msteams api-key list` lists them")
        if fmt == "json":
            out(json.dumps({"revoked": ns.name, "keys": gone}))
        else:
            out(f"Revoked API key {ns.name!r}: refused from the next request on, by every service sharing the store.")
        return 0
    finally:
        store.close()
