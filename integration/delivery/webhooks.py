"""Webhooks out, on the Standard Webhooks spec (https://www.standardwebhooks.com): events of the
integration POSTed to the SOAR platform's endpoints, signed, once each, in order, retried.

    msteams webhook add URL --event run.waiting --event run.finished [--name NAME]

Events: ``run.waiting`` and ``run.finished`` (playbooks/runner.py), ``question.answered``
(teams/questions.py), ``mirror.entry`` (teams/mirror.py), ``command.received`` (the bot
endpoint's audit record). The body is ``{"type", "timestamp", "data"}``; the headers are
``webhook-id`` (``msg_<event id>``: one per event, the same on every retry and for every
endpoint, so a receiver drops a delivery it has seen), ``webhook-timestamp`` (this attempt's
Unix time) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` under
the endpoint's ``whsec_`` secret; the ``standardwebhooks`` library signs, imported only here).

The store keeps, all as state (kinds that cache-reset never removes):

- ``webhook``: a subscription per name {id, name, url, events, created}; its signing secret
  is one of the store's secrets (``Store.secret``: encrypted under store_key on Redis),
  printed once by ``webhook add`` and forgotten by ``webhook remove``;
- ``webhook_event``: an event's body, written once (a retry sends the very same bytes);
- ``webhook_queue``: a delivery (endpoint, event) not settled yet: pending or failed, with
  its attempts, last status and the time of its next attempt;
- ``webhook_done``: a settled delivery: sent (kept 7 days) or dead (kept 30 days).

An emit records the event and a delivery per subscribed endpoint first, then sends (``pump``).
Each send goes through the outbox under a key per (endpoint, event): two processes, a crash
or a resumed run never send one event twice, nor under two ids. Per endpoint, deliveries go
out oldest first and stop at the first failure (the order holds). A failure (5xx, 408, 429, a
timeout, a refused or broken connection) is retried with exponential backoff, on the next emit
that finds it due, by ``msteams webhook deliveries --retry`` (at once) or by the worker pool;
after MAX_ATTEMPTS attempts or MAX_AGE seconds it is dead, as is a delivery the receiver
refused for good (another 4xx, a redirect): dead letters are listed and can be retried by hand.
An emit never raises: a webhook that fails is logged and left for the retry.

The mirror's old setting (``mirror_webhook_url``, ``mirror_webhook_secret``) is a subscription
of its own, to ``mirror.entry``, named ``mirror_webhook_url`` (read from the config, not stored).
"""
from __future__ import annotations

import json
import logging
import random
import secrets as _secrets
import threading
import time
import uuid
from typing import Any

from integration.engine.errors import InputError, IntegrationError, NotFound
from .backoff import retry_after_seconds
from .outbox import Outbox, delivery_key

log = logging.getLogger("msteams.webhooks")

EVENTS = ("run.waiting", "run.finished", "question.answered", "mirror.entry", "command.received")
SUBS, EVENT_BODIES, QUEUE, DONE = "webhook", "webhook_event", "webhook_queue", "webhook_done"
STATES = ("pending", "failed", "dead", "sent")
MAX_ATTEMPTS = 8
MAX_AGE = 24 * 3600.0
BACKOFF_BASE, BACKOFF_FACTOR, MAX_BACKOFF = 15.0, 4.0, 6 * 3600.0  # 15 s, 1 min, 4 min, ... 6 h
KEEP_SENT, KEEP_DEAD = 7 * 86400.0, 30 * 86400.0
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 15.0
CONFIG_ID, CONFIG_NAME = "config-mirror", "mirror_webhook_url"
SECRET_PREFIX = "whsec_"
_RETRY_4XX = (408, 425, 429)
_rng = random.Random()
_mutex = threading.Lock()
_pumps: dict[str, "_PumpState"] = {}
_housekept: dict[str, float] = {}
_last_created = [0.0]


# ------------------------------------------------------------------ subscriptions

def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: ``whsec_`` and 32 random bytes in base64."""
    import base64

    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _secret_name(sub_id: str) -> str:
    return f"webhook:{sub_id}"


def _config_sub(cfg) -> dict | None:
    if cfg is None or not getattr(cfg, "mirror_webhook_url", None):
        return None
    return {"id": CONFIG_ID, "name": CONFIG_NAME, "url": cfg.mirror_webhook_url, "events": ["mirror.entry"],
            "source": "config", "signed": bool(cfg.mirror_webhook_secret)}


def subscriptions(store, cfg=None) -> list[dict]:
    """Every endpoint: those added with ``webhook add``, then the config's mirror webhook."""
    subs = [dict(e["value"], source="store", signed=True) for e in store.entries(SUBS)
            if not e["expired"] and isinstance(e["value"], dict)]
    subs.sort(key=lambda s: (s.get("created") or 0, s["name"]))
    own = _config_sub(cfg)
    if own is not None:
        subs.append(own)
    return subs


def subscribed(store, cfg, event: str) -> list[dict]:
    return [s for s in subscriptions(store, cfg) if event in s.get("events") or ()]


def check_events(events) -> list[str]:
    out = []
    for e in events or ():
        e = str(e).strip()
        if e not in EVENTS:
            raise InputError(f"unknown event {e[:60]!r}", hint="events: " + ", ".join(EVENTS))
        if e not in out:
            out.append(e)
    if not out:
        raise InputError("name at least one event (--event)", hint="events: " + ", ".join(EVENTS))
    return out


def add(store, url: str, events, *, name: str | None = None, cfg=None) -> tuple[dict, str]:
    """Subscribe ``url`` to ``events``: (the subscription, its signing secret: show it once)."""
    from urllib.parse import urlsplit

    from integration.engine.config import url_problem

    problem = url_problem(url) if isinstance(url, str) else "must be a URL"
    if problem:
        raise InputError(f"the webhook URL {problem}")
    events = check_events(events)
    taken = {s["name"].casefold() for s in subscriptions(store, cfg)}
    if name is not None:
        name = name.strip()
        if not name or len(name) > 100 or "/" in name or any(not c.isprintable() for c in name):
            raise InputError("a webhook name is 1 to 100 printable characters, without '/'")
        if name.casefold() in taken:
            raise InputError(f"a webhook named {name!r} exists", hint="choose another --name, or "
                             "`msteams webhook remove` it first")
    else:
        host = (urlsplit(url).hostname or "webhook")[:90]
        name, n = host, 1
        while name.casefold() in taken:
            n += 1
            name = f"{host}-{n}"
    sub = {"id": "wh_" + uuid.uuid4().hex[:20], "name": name, "url": url, "events": events, "created": store.now()}
    secret = store.secret(_secret_name(sub["id"]), new_secret)
    store.put(SUBS, name, sub, ttl=None)
    return sub, secret


def _stored(store, name: str) -> dict:
    sub = store.get(SUBS, name) if isinstance(name, str) and name.strip() else None
    if sub is None:
        if isinstance(name, str) and name.strip().casefold() == CONFIG_NAME:
            raise InputError("the mirror webhook is set in the config (mirror_webhook_url)",
                             hint="remove mirror_webhook_url from the config to stop it")
        raise NotFound(f"no webhook named {str(name)[:100]!r}", hint="`msteams webhook list` lists them")
    return sub


def remove(store, name: str) -> dict:
    """Forget a webhook: its subscription, its secret and its deliveries (queued or settled)."""
    sub = _stored(store, name)
    store.delete(SUBS, sub["name"])
    store.forget_secret(_secret_name(sub["id"]))
    prefix = sub["id"] + "/"
    dropped = store.prune(QUEUE, before=float("inf"), prefix=prefix)
    store.prune(DONE, before=float("inf"), prefix=prefix)
    return {"name": sub["name"], "url": sub["url"], "dropped": dropped}


def _secret_of(store, sub: dict, cfg) -> str | bytes | None:
    if sub["id"] == CONFIG_ID:
        secret = cfg.mirror_webhook_secret if cfg is not None else None
        if not secret:
            return None
        # A whsec_ secret is used as Standard Webhooks means it; any other text is the key's bytes.
        return secret if secret.startswith(SECRET_PREFIX) else secret.encode("utf-8")

    def missing() -> str:
        raise IntegrationError(f"webhook {sub['name']!r} has lost its signing secret",
                               hint="remove it and add it again (a new secret)")

    return store.secret(_secret_name(sub["id"]), missing)


# ------------------------------------------------------------------ events

def event_id(event: str, *key: Any) -> str:
    """An event's id from what identifies it (a run and its outcome, a question, a journal
    entry, an audit record): the same event emitted again (a resumed run, a retry) has the
    same id, so it is queued once; ``webhook-id`` is ``msg_`` and this."""
    return delivery_key("webhook-event", event, *key)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def _created(store) -> float:
    """Now, strictly after the previous event of this process (their order is kept)."""
    with _mutex:
        now = max(store.now(), _last_created[0] + 1e-6)
        _last_created[0] = now
        return now


def enqueue(store, cfg, event: str, data: dict, *, key: tuple | list | None = None) -> list[str]:
    """Record ``event`` once and a delivery for each endpoint subscribed to it; the webhook-ids
    queued now ([] when nobody subscribes, or when it was queued before)."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    subs = subscribed(store, cfg, event)
    if not subs:
        return []
    eid = event_id(event, *(key if key is not None else (uuid.uuid4().hex,)))
    fresh = [s for s in subs if store.get(QUEUE, f"{s['id']}/{eid}") is None
             and store.get(DONE, f"{s['id']}/{eid}") is None]
    if not fresh:
        return []
    created = _created(store)
    if store.get(EVENT_BODIES, eid) is None:
        tenant = getattr(cfg, "tenant", None)
        if tenant and "tenant" not in data:  # one receiver for every customer tells whose event it is
            data = {**data, "tenant": tenant}
        body = json.dumps({"type": event, "timestamp": _iso(created), "data": data}, ensure_ascii=False,
                          separators=(",", ":"), default=str)
        store.put(EVENT_BODIES, eid, {"type": event, "body": body, "created": created}, ttl=KEEP_DEAD)
    for s in fresh:
        store.put(QUEUE, f"{s['id']}/{eid}", {"eventId": eid, "webhookId": "msg_" + eid, "event": event,
                                              "sub": s["id"], "created": created, "updated": created,
                                              "state": "pending", "attempts": 0, "lastStatus": None,
                                              "reason": None, "nextAt": 0.0}, ttl=None)
    return ["msg_" + eid] * len(fresh)


def emit(store, cfg, event: str, data: dict, *, key: tuple | list | None = None, send: bool = True) -> bool:
    """Queue ``event`` for its subscribers and (``send``) deliver what is due now. Never raises:
    whatever fails is logged, and a delivery that failed is retried later. True when queued."""
    try:
        queued = enqueue(store, cfg, event, data, key=key)
    except Exception as exc:  # noqa: BLE001 - an emit never fails the operation that emits
        _warn(f"could not record the {event} event", exc)
        return False
    if queued and send:
        pump_quietly(store, cfg)
    return bool(queued)


def pump_quietly(store, cfg, **kw) -> dict | None:
    """``pump``, logging instead of raising (for emitters and background loops)."""
    try:
        return pump(store, cfg, **kw)
    except Exception as exc:  # noqa: BLE001 - logged; the deliveries stay queued for the next pump
        _warn("could not deliver webhooks", exc)
        return None


def _warn(what: str, exc: BaseException) -> None:
    from integration.engine.redact import redact

    text = exc.message if isinstance(exc, IntegrationError) else f"{type(exc).__name__}: {exc}"
    log.warning("%s: %s", what, redact(text.splitlines()[0] if text else type(exc).__name__))


# ------------------------------------------------------------------ sending

class _Refused(IntegrationError):
    """One attempt that did not deliver: ``retry`` (worth trying again later), the HTTP status or
    what went wrong (timeout, refused, ...), and the receiver's Retry-After."""

    def __init__(self, message: str, *, status: Any, retry: bool, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry, self.retry_after = status, retry, retry_after


def signature_headers(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the library signs)."""
    from datetime import datetime, timezone

    from standardwebhooks import Webhook

    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body)}


def _post(cfg, sub: dict, secret, rec: dict, body: bytes, info: dict):
    import requests

    from integration import __version__

    ts = int(time.time())  # the receiver checks it against its own clock: the wall clock, always
    headers = {"Content-Type": "application/json", "User-Agent": f"msteams-soar/{__version__} (webhooks)"}
    if secret:
        try:
            headers.update(signature_headers(secret, rec["webhookId"], ts, body))
        except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError: a whsec_ that is not base64
            raise _Refused(f"webhook {sub['name']!r}: its secret cannot sign ({type(exc).__name__}): it must be "
                           "whsec_ and base64", status="error", retry=True) from None
    else:  # the config's mirror webhook without mirror_webhook_secret: unsigned, as before
        headers.update({"webhook-id": rec["webhookId"], "webhook-timestamp": str(ts)})
    timeout = float(getattr(cfg, "timeout", None) or READ_TIMEOUT) if cfg is not None else READ_TIMEOUT
    ca_bundle = getattr(cfg, "ca_bundle", None) if cfg is not None else None
    info["attempted"] = True
    name = sub["name"]
    try:
        with requests.Session() as s:
            s.trust_env = not ca_bundle  # REQUESTS_CA_BUNDLE must not override the configured CA
            resp = s.post(sub["url"], data=body, headers=headers, verify=ca_bundle or True, allow_redirects=False,
                          timeout=(min(CONNECT_TIMEOUT, timeout), min(READ_TIMEOUT, timeout)))
            resp.close()
    except requests.Timeout:
        raise _Refused(f"webhook {name!r} did not answer in time", status="timeout", retry=True) from None
    except requests.ConnectionError as exc:
        what = "refused" if "refused" in str(exc).lower() else "unreachable"
        raise _Refused(f"webhook {name!r} could not be reached ({what})", status=what, retry=True) from None
    except requests.RequestException as exc:
        raise _Refused(f"webhook {name!r}: {type(exc).__name__}", status="error", retry=True) from None
    code = resp.status_code
    info["status"] = code
    if 200 <= code < 300:
        return rec["webhookId"], code
    retry = code >= 500 or code in _RETRY_4XX
    why = "redirected (webhooks do not follow redirects)" if 300 <= code < 400 else "refused it"
    raise _Refused(f"webhook {name!r} {why} (HTTP {code})", status=code, retry=retry,
                   retry_after=retry_after_seconds(resp.headers.get("Retry-After")) if retry else None)


def backoff_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 15 s, 1 min, 4 min, 16 min,
    64 min, 4.3 h, then 6 h, each plus up to 10 % jitter."""
    delay = min(MAX_BACKOFF, BACKOFF_BASE * BACKOFF_FACTOR ** max(0, attempts - 1))
    return delay + _rng.uniform(0, delay * 0.1)


class _PumpState:
    def __init__(self):
        self.lock = threading.Lock()
        self.again = False
        self.force = False


def _settle(store, qkey: str, rec: dict, state: str) -> None:
    rec = dict(rec, state=state)
    store.put(DONE, qkey, rec, ttl=KEEP_SENT if state == "sent" else KEEP_DEAD)
    store.delete(QUEUE, qkey)


def _attempt(store, cfg, sub: dict, qkey: str, rec: dict) -> str:
    """One delivery, once, through the outbox: sent, failed, dead or held (another sender has it)."""
    now = store.now()
    ev = store.get(EVENT_BODIES, rec["eventId"])
    if ev is None:
        _settle(store, qkey, dict(rec, updated=now, reason="its event is no longer kept"), "dead")
        return "dead"
    info: dict = {}
    rec = dict(rec)
    okey = delivery_key("webhook", sub["id"], rec["eventId"])
    try:
        secret = _secret_of(store, sub, cfg)
        d = Outbox(store).deliver(okey, lambda: _post(cfg, sub, secret, rec, ev["body"].encode("utf-8"), info),
                                  target=f"webhook {sub['name']}", resend_unknown=True)
    except IntegrationError as exc:
        failure = exc
    except Exception as exc:  # noqa: BLE001 - a bug (or a library's surprise): a failed attempt, not a stuck one
        failure = _Refused(f"webhook {sub['name']!r}: internal error: {type(exc).__name__}", status="error",
                           retry=True)
        store.outbox_set(okey, "failed", reason=failure.message)
    else:
        if d.state == "pending":
            return "held"
        if d.ok:
            rec.update(attempts=rec["attempts"] + (0 if d.reused else 1), updated=store.now(), reason=None,
                       lastStatus=info.get("status", rec.get("lastStatus")), nextAt=None)
            _settle(store, qkey, rec, "sent")
            return "sent"
        failure = IntegrationError(d.reason or d.state)
    attempted = bool(info.get("attempted"))
    rec.update(attempts=rec["attempts"] + attempted, updated=store.now(),
               lastStatus=getattr(failure, "status", info.get("status", "error")),
               reason=failure.message.splitlines()[0][:300])
    retry = getattr(failure, "retry", True)
    if not retry:
        _settle(store, qkey, dict(rec, nextAt=None), "dead")
    elif rec["attempts"] >= MAX_ATTEMPTS or now - rec["created"] >= MAX_AGE:
        why = f"{rec['attempts']} attempts" if rec["attempts"] >= MAX_ATTEMPTS else "24 hours"
        _settle(store, qkey, dict(rec, nextAt=None, reason=f"{rec['reason']} (gave up after {why})"), "dead")
    else:
        delay = backoff_delay(rec["attempts"])
        after = getattr(failure, "retry_after", None)
        if after is not None:
            delay = min(MAX_BACKOFF, max(delay, after))
        store.put(QUEUE, qkey, dict(rec, state="failed", nextAt=store.now() + delay), ttl=None)
        _warn(f"webhook delivery {rec['webhookId']} ({rec['event']}) failed; retried in {delay:.0f} s", failure)
        return "failed"
    _warn(f"webhook delivery {rec['webhookId']} ({rec['event']}) is dead", failure)
    return "dead"


def _queued(store, sub_id: str) -> list[tuple[str, dict]]:
    prefix = sub_id.casefold() + "/"
    rows = [(e["key"], e["value"]) for e in store.entries(QUEUE) if e["key"].startswith(prefix)]
    rows.sort(key=lambda kv: (kv[1].get("created") or 0, kv[0]))
    return rows


def _pass(store, cfg, sub: dict, force: bool, tried: set, totals: dict) -> bool:
    """Deliver one endpoint's queue, oldest first, up to the first failure or one not due yet;
    True when something was settled (the caller looks again for what arrived meanwhile)."""
    progressed = False
    for qkey, rec in _queued(store, sub["id"]):
        if rec.get("state") in ("sent", "dead"):
            store.delete(QUEUE, qkey)
            continue
        if qkey in tried or (not force and (rec.get("nextAt") or 0) > store.now()):
            break  # not due yet (or failed already in this pump): what came after it waits
        tried.add(qkey)
        outcome = _attempt(store, cfg, sub, qkey, rec)
        totals[outcome] = totals.get(outcome, 0) + 1
        if outcome == "sent":
            totals["events"][rec["event"]] = totals["events"].get(rec["event"], 0) + 1
        if outcome in ("held", "failed"):
            if outcome == "failed" and totals.get("error") is None:
                totals["error"] = (store.get(QUEUE, qkey) or {}).get("reason")
            break
        progressed = True
    return progressed


def pump(store, cfg, *, force: bool = False, webhook: str | None = None) -> dict:
    """Send every due delivery, per endpoint oldest first (``force``: every one not dead,
    due or not). {"sent", "failed", "dead", "held", "error", "events": sent per event}: what
    this pump did."""
    totals: dict = {"sent": 0, "failed": 0, "dead": 0, "held": 0, "error": None, "events": {}}
    _housekeep(store)
    queue = store.entries(QUEUE)
    if not queue:
        return totals
    subs = {s["id"].casefold(): s for s in subscriptions(store, cfg)}
    waiting = {e["key"].split("/", 1)[0] for e in queue}
    for sid in sorted(waiting):
        sub = subs.get(sid)
        if sub is None:  # its webhook was removed (or the config's mirror webhook unset)
            for e in queue:
                if e["key"].startswith(sid + "/"):
                    store.delete(QUEUE, e["key"])
            continue
        if webhook is not None and sub["name"].casefold() != webhook.casefold():
            continue
        _pump_one(store, cfg, sub, force, totals)
    return totals


def _pump_one(store, cfg, sub: dict, force: bool, totals: dict) -> None:
    """One endpoint's queue, by one thread of this process at a time; a thread that finds it
    busy leaves word (``again``) so the holder looks once more before it lets go."""
    ident = f"{store.path}|{sub['id']}"
    with _mutex:
        st = _pumps.setdefault(ident, _PumpState())
    tried: set = set()
    while True:
        st.again = True  # before trying the lock: a holder about to let go sees it
        st.force = st.force or force
        if not st.lock.acquire(blocking=False):
            return
        try:
            while True:
                st.again, run_force, st.force = False, st.force, False
                if not (_pass(store, cfg, sub, run_force, tried, totals) or st.again):
                    break
        finally:
            st.lock.release()
        if not st.again:
            return


def _housekeep(store) -> None:
    """Drop settled deliveries and event bodies past their keeping time, once an hour per process."""
    ident = str(store.path)
    now = store.now()
    if now - _housekept.get(ident, 0.0) < 3600:
        return
    _housekept[ident] = now
    for kind in (DONE, EVENT_BODIES):
        store.prune(kind, before=now - KEEP_DEAD)


# ------------------------------------------------------------------ what is queued and settled

def deliveries(store, cfg=None, *, state: str | None = None, webhook: str | None = None,
               limit: int = 100) -> list[dict]:
    """Deliveries newest first, each with its webhook-id, event, endpoint, attempts, last
    status and state (and, for a failed one, when it is tried next)."""
    if state is not None and state not in STATES:
        raise InputError(f"unknown delivery state {state!r}", hint="states: " + ", ".join(STATES))
    names = {s["id"].casefold(): s["name"] for s in subscriptions(store, cfg)}
    rows = []
    for kind in (QUEUE, DONE):
        for e in store.entries(kind):
            v = e["value"]
            if e["expired"] or not isinstance(v, dict):
                continue
            if kind == DONE and store.get(QUEUE, e["key"]) is not None:
                continue  # settled and queued again by hand: the queue's row is the news
            name = names.get(e["key"].split("/", 1)[0], "(removed)")
            if webhook is not None and name.casefold() != webhook.casefold():
                continue
            if state is not None and v.get("state") != state:
                continue
            rows.append({"webhookId": v["webhookId"], "event": v["event"], "webhook": name,
                         "state": v.get("state"), "attempts": v.get("attempts", 0),
                         "lastStatus": v.get("lastStatus"), "reason": v.get("reason"),
                         "created": _iso(v["created"]), "updated": _iso(v.get("updated") or v["created"]),
                         "nextAttempt": _iso(v["nextAt"]) if v.get("state") == "failed" and v.get("nextAt") else None})
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows[:limit]


def waiting(store, event: str | None = None) -> int:
    """Deliveries not settled yet (pending or failed), of one event or all."""
    return sum(1 for e in store.entries(QUEUE) if not e["expired"] and isinstance(e["value"], dict)
               and (event is None or e["value"].get("event") == event))


def counts(store, cfg=None) -> dict[str, dict[str, int]]:
    """Per webhook name: its deliveries per state."""
    names = {s["id"].casefold(): s["name"] for s in subscriptions(store, cfg)}
    out = {n: dict.fromkeys(STATES, 0) for n in names.values()}
    for kind in (QUEUE, DONE):
        for e in store.entries(kind):
            name = names.get(e["key"].split("/", 1)[0])
            v = e["value"]
            if name is None or e["expired"] or not isinstance(v, dict) or v.get("state") not in STATES:
                continue
            if kind == DONE and store.get(QUEUE, e["key"]) is not None:
                continue
            out[name][v["state"]] += 1
    return out


def requeue_dead(store, cfg=None, *, webhook: str | None = None) -> int:
    """Put dead deliveries (whose event is still kept) back in their queue for one more try each."""
    names = {s["id"].casefold(): s["name"] for s in subscriptions(store, cfg)}
    n = 0
    for e in store.entries(DONE):
        v = e["value"]
        name = names.get(e["key"].split("/", 1)[0])
        if e["expired"] or name is None or not isinstance(v, dict) or v.get("state") != "dead":
            continue
        if webhook is not None and name.casefold() != webhook.casefold():
            continue
        if store.get(EVENT_BODIES, v["eventId"]) is None:
            continue
        store.put(QUEUE, e["key"], dict(v, state="failed", nextAt=0.0), ttl=None)
        n += 1
    return n


def retry(store, cfg=None, *, dead: bool = False, webhook: str | None = None) -> dict:
    """Try every pending and failed delivery now, whatever its backoff (``dead``: the dead ones
    too, one more attempt each); what the pump did, with ``requeued``."""
    if webhook is not None:
        names = {s["name"].casefold() for s in subscriptions(store, cfg)}
        if webhook.casefold() not in names:
            raise NotFound(f"no webhook named {webhook[:100]!r}", hint="`msteams webhook list` lists them")
    requeued = requeue_dead(store, cfg, webhook=webhook) if dead else 0
    out = pump(store, cfg, force=True, webhook=webhook)
    out["requeued"] = requeued
    return out
