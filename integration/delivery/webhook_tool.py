"""``msteams webhook``: the endpoints that receive the integration's events (delivery/webhooks.py).

    msteams webhook add URL --event EVENT [--event EVENT ...] [--name NAME]   prints the secret once
    msteams webhook list                                                       url, events, deliveries
    msteams webhook remove NAME
    msteams webhook deliveries [--state pending|failed|dead|sent] [--webhook NAME] [--limit N] [--retry]

A signing secret is printed by ``add`` and never again: the store keeps it among its secrets
(encrypted under store_key on a shared store), to sign with.
"""
from __future__ import annotations

import argparse
import functools
import json
from typing import Callable

USAGE = ("usage: msteams webhook {add URL --event EVENT [--event EVENT ...] [--name NAME] | list | remove NAME | "
         "deliveries [--state pending|failed|dead|sent] [--webhook NAME] [--limit N] [--retry]}")


def main(argv: list[str], *, out: Callable[[str], None], err: Callable[[str], None], config: str | None = None,
         output: str | None = None) -> int:
    from integration.engine.errors import InputError

    action = argv[0] if argv else None
    tools = {"add": functools.partial(add, err=err), "list": list_, "remove": remove, "deliveries": deliveries}
    if action not in tools:
        raise InputError(USAGE)
    return tools[action](argv[1:], out=out, config=config, as_json=output == "json")


def _open(config: str | None):
    from integration.engine.config import load
    from integration.store.open import open_store

    cfg = load(config)
    return cfg, open_store(cfg)


def add(argv: list[str], *, out, err, config: str | None, as_json: bool) -> int:
    from . import webhooks

    p = argparse.ArgumentParser(prog="msteams webhook add",
                                description="Send the integration's events to URL, signed per Standard Webhooks. "
                                            "The signing secret is printed once: give it to the receiver now.")
    p.add_argument("url", metavar="URL", help="the receiver (https; http only on loopback)")
    p.add_argument("--event", action="append", default=[], metavar="EVENT",
                   help="an event to send (repeat it): " + ", ".join(webhooks.EVENTS))
    p.add_argument("--name", help="the webhook's name (default: the URL's host)")
    ns = p.parse_args(argv)
    cfg, store = _open(config)
    try:
        sub, secret = webhooks.add(store, ns.url, ns.event, name=ns.name, cfg=cfg)
        # Another webhook to the same URL is allowed (two receivers behind one gateway), but an
        # event both send arrives twice, each under its own webhook-id: said, so a pasted
        # `webhook add` run twice is seen at once.
        twice = [{"webhook": s["name"], "events": [e for e in sub["events"] if e in s["events"]]}
                 for s in webhooks.subscriptions(store, cfg) if s["name"] != sub["name"] and s["url"] == sub["url"]]
        twice = [t for t in twice if t["events"]]
    finally:
        store.close()
    for t in twice:
        err(f"warning: webhook {t['webhook']!r} already sends {', '.join(t['events'])} to this URL: the receiver "
            f"will get each of them twice (`msteams webhook remove {t['webhook']}` if that is not meant)")
    if as_json:  # the same, for a script: which events this URL now gets twice, and from which webhook
        out(json.dumps({"name": sub["name"], "url": sub["url"], "events": sub["events"], "secret": secret,
                        "sent_twice": twice}, indent=2))
        return 0
    out(f"Webhook {sub['name']!r} added: {sub['url']}")
    out(f"  events: {', '.join(sub['events'])}")
    out("Signing secret (shown this once; the receiver verifies each delivery with it):")
    out(secret)
    return 0


def list_(argv: list[str], *, out, config: str | None, as_json: bool) -> int:
    from . import webhooks

    argparse.ArgumentParser(prog="msteams webhook list",
                            description="The webhooks, their events and their deliveries per state "
                                        "(never their secrets).").parse_args(argv)
    cfg, store = _open(config)
    try:
        subs = webhooks.subscriptions(store, cfg)
        per = webhooks.counts(store, cfg)
    finally:
        store.close()
    rows = [{"name": s["name"], "url": s["url"], "events": s["events"], "source": s["source"],
             "signed": s["signed"], "deliveries": per.get(s["name"], {})} for s in subs]
    if as_json:
        out(json.dumps(rows, indent=2))
        return 0
    if not rows:
        out("No webhooks. Add one: msteams webhook add URL --event run.finished")
        return 0
    for r in rows:
        c = r["deliveries"]
        extra = " (from the config" + ("" if r["signed"] else "; unsigned: set mirror_webhook_secret") + ")" \
            if r["source"] == "config" else ""
        out(f"{r['name']}: {r['url']}{extra}")
        out(f"  events: {', '.join(r['events'])}")
        out("  deliveries: " + ", ".join(f"{c.get(s, 0)} {s}" for s in webhooks.STATES))
    return 0


def remove(argv: list[str], *, out, config: str | None, as_json: bool) -> int:
    from . import webhooks

    p = argparse.ArgumentParser(prog="msteams webhook remove",
                                description="Stop sending to a webhook: its subscription, secret and queued "
                                            "deliveries are forgotten.")
    p.add_argument("name", metavar="NAME")
    ns = p.parse_args(argv)
    cfg, store = _open(config)
    try:
        gone = webhooks.remove(store, ns.name)
    finally:
        store.close()
    if as_json:
        out(json.dumps(gone, indent=2))
    else:
        out(f"Webhook {gone['name']!r} removed ({gone['url']}); {gone['dropped']} undelivered deliveries dropped.")
    return 0


def deliveries(argv: list[str], *, out, config: str | None, as_json: bool) -> int:
    from integration.engine.argtypes import whole_number

    from . import webhooks

    p = argparse.ArgumentParser(prog="msteams webhook deliveries",
                                description="Deliveries newest first: webhook-id, event, webhook, attempts, last "
                                            "status, state. --retry first tries the pending and failed ones now "
                                            "(with --state dead, the dead ones too: one more attempt each).")
    p.add_argument("--state", choices=webhooks.STATES)
    p.add_argument("--webhook", metavar="NAME", help="one webhook's deliveries")
    p.add_argument("--limit", type=whole_number(1, 10000), default=50, metavar="N")
    p.add_argument("--retry", action="store_true", help="deliver now what waits (backoff or not)")
    ns = p.parse_args(argv)
    cfg, store = _open(config)
    try:
        done = webhooks.retry(store, cfg, dead=ns.state == "dead", webhook=ns.webhook) if ns.retry else None
        rows = webhooks.deliveries(store, cfg, state=ns.state, webhook=ns.webhook, limit=ns.limit)
    finally:
        store.close()
    if as_json:
        out(json.dumps({"retried": done, "deliveries": rows} if done is not None else rows, indent=2))
        return 0
    if done is not None:
        out(f"Retried: {done['sent']} sent, {done['failed']} failed, {done['dead']} dead"
            + (f" ({done['requeued']} dead ones requeued)" if done.get("requeued") else "")
            + (f"; {done['error']}" if done.get("error") else ""))
    if not rows:
        out("No deliveries" + (f" in state {ns.state}" if ns.state else "") + ".")
        return 0
    for r in rows:
        status = r["lastStatus"] if r["lastStatus"] is not None else "-"
        line = (f"{r['webhookId']}  {r['event']:<17} {r['webhook']}  attempts {r['attempts']}  last {status}  "
                f"{r['state']}")
        if r["nextAttempt"]:
            line += f" (next {r['nextAttempt']})"
        if r["reason"] and r["state"] in ("failed", "dead"):
            line += f": {r['reason']}"
        out(line)
    return 0
