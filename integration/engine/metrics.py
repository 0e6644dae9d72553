"""What the long-running services (`msteams bot serve`, `msteams worker`) tell operators:
Prometheus metrics (with Prometheus's own client library) and one JSON log line per event.

Nothing here runs in an ordinary CLI command: the services set ``enabled``, and the hooks in
the request path (`note_*`) look this module up in ``sys.modules`` first, so a command that
never started a service neither imports it nor prometheus_client.

Metrics (a registry of this module's own, not the library's global one); ``tenant`` is the
tenant profile (docs/tenants.md), empty for a config without profiles:
  msteams_commands_total{command,outcome,tenant} commands run (outcome: ok, or the error's kind)
  msteams_throttled_total{service}                429s answered by Microsoft and waited out
  msteams_throttle_wait_seconds_total{service}    seconds spent waiting them out
  msteams_pacer_wait_seconds_total                seconds the client pacer held requests back
  msteams_inbound_activities_total{kind,decision} requests to the bot endpoint, by what became of them
  msteams_lane_groups_total{outcome}              groups of store work the event loop ran itself
                                                  (committed) or gave to the pool (pool: another writer
                                                  held the store, or a statement failed), frontends/lane.py
  msteams_lane_works_total{outcome}               the requests in them
  msteams_outbox_deliveries{state,tenant}         deliveries in the store's outbox, by state (at scrape)
  msteams_runs{status,tenant}                     playbook runs waiting on a question (at scrape)
  msteams_questions_open{tenant}                  questions not answered yet (at scrape)
  msteams_channel_messages_today{channel,sender}  messages sent today (UTC) to the busiest channels, per
                                                  sending app and tenant (graph, bot), against Microsoft's cap of
                                                  3,000 per app per day to one channel (at scrape)
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time

enabled = False
_lock = threading.Lock()
_made: dict = {}
# Store gauges read at most this often: a scrape every few seconds must not walk the outbox each time.
GAUGE_CACHE_SECONDS = 5.0
OUTBOX_SCAN_LIMIT = 100_000


def _metrics() -> dict:
    with _lock:
        if not _made:
            from prometheus_client import CollectorRegistry, Counter

            reg = CollectorRegistry(auto_describe=True)
            _made.update(
                registry=reg,
                commands=Counter("msteams_commands_total", "Commands run, by outcome (and tenant profile)",
                                 ["command", "outcome", "tenant"], registry=reg),
                throttled=Counter("msteams_throttled_total", "429 answers waited out", ["service"], registry=reg),
                throttle_wait=Counter("msteams_throttle_wait_seconds_total", "Seconds spent waiting out 429s",
                                      ["service"], registry=reg),
                paced=Counter("msteams_pacer_wait_seconds_total", "Seconds the pacer held requests back",
                              registry=reg),
                inbound=Counter("msteams_inbound_activities_total", "Requests to the bot endpoint, by decision",
                                ["kind", "decision"], registry=reg),
                lane_groups=Counter("msteams_lane_groups_total", "Groups of store work run by the event loop "
                                    "(committed) or given to the pool", ["outcome"], registry=reg),
                lane_works=Counter("msteams_lane_works_total", "Requests in those groups", ["outcome"],
                                   registry=reg),
            )
        return _made


def _child(metric: str, *values: str):
    """The counter of ``metric`` for its label ``values`` (in the order the metric names its
    labels), kept: prometheus_client's ``labels()`` checks and locks on every call, on every
    request of a busy service. The values are few (commands, outcomes, decisions, tenants)."""
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = _metrics()[metric].labels(*values)
    return child


_children: dict = {}


def enable() -> None:
    """Turn the counters on for this process (a service starting)."""
    global enabled
    _metrics()
    enabled = True


# ---- counters (no-ops until enabled) ----
def command_done(command: str, outcome: str, tenant: str | None = None) -> None:
    if enabled:
        _child("commands", command, outcome, tenant or "").inc()


def throttled(seconds: float, service: str = "graph") -> None:
    if enabled:
        m = _metrics()
        m["throttled"].labels(service=service).inc()
        m["throttle_wait"].labels(service=service).inc(max(0.0, seconds))


def paced(seconds: float) -> None:
    if enabled and seconds > 0:
        _metrics()["paced"].inc(seconds)


def inbound(decision: str, kind: str = "message") -> None:
    if enabled:
        _child("inbound", kind, decision).inc()


def lane_group(outcome: str, works: int) -> None:
    if enabled:
        _child("lane_groups", outcome).inc()
        _child("lane_works", outcome).inc(works)


# ---- hooks for modules on every command's path: free when no service enabled this module ----
def note_command(command: str, outcome: str, tenant: str | None = None) -> None:
    m = sys.modules.get(__name__)
    if m is not None and m.enabled:
        m.command_done(command, outcome, tenant)


# ---- gauges read from the store at scrape time ----
class _StoreCollector:
    """The stores reported, by tenant profile ("" for a config without profiles)."""

    def __init__(self):
        self.stores: dict[str, object] = {}
        self._cached: dict[str, tuple[float, list]] = {}

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        now = time.monotonic()
        g = GaugeMetricFamily("msteams_outbox_deliveries", "Deliveries in the outbox, by state",
                              labels=["state", "tenant"])
        r = GaugeMetricFamily("msteams_runs", "Playbook runs, by status (waiting: on a question)",
                              labels=["status", "tenant"])
        q = GaugeMetricFamily("msteams_questions_open", "Questions not answered yet", labels=["tenant"])
        for tenant, store in sorted(self.stores.items()):
            cached = self._cached.get(tenant)
            if cached is None or now - cached[0] > GAUGE_CACHE_SECONDS:
                cached = self._cached[tenant] = (now, self._read(store))
            outbox, waiting, questions = cached[1]
            for state in ("claimed", "pending", "sent", "failed", "unknown"):  # as delivery/outbox.py's STATES
                g.add_metric([state, tenant], outbox.get(state, 0))
            r.add_metric(["waiting", tenant], waiting)
            q.add_metric([tenant], questions)
        yield g
        yield r
        yield q

    @staticmethod
    def _read(store) -> list:
        try:
            counts: dict = {}
            for row in store.outbox_list(None, OUTBOX_SCAN_LIMIT):
                counts[row["state"]] = counts.get(row["state"], 0) + 1
            waiting = len(store.run_list("waiting", 100_000))
            questions = len(store.question_list("open", 100_000))
            return [counts, waiting, questions]
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the store hiccups
            logging.getLogger("msteams.metrics").warning("could not read the store for metrics: %s", exc)
            return [{}, 0, 0]


def register_store(store, tenant: str | None = None) -> None:
    """Report the store's outbox, waiting runs and open questions on every scrape, labelled
    with its tenant profile (one store a tenant: a later one, from a restarted runtime,
    replaces it)."""
    m = _metrics()
    with _lock:
        if "store" not in m:
            m["store"] = _StoreCollector()
            m["registry"].register(m["store"])
        m["store"].stores[tenant or ""] = store
        m["store"]._cached.pop(tenant or "", None)


# ---- the busiest channels' messages of the day, read from the pacers at scrape time ----
CHANNELS_REPORTED = 10  # per pacer (one per tenant's runtime)


class _ChannelCollector:
    def __init__(self):
        import weakref

        self.pacers = weakref.WeakSet()  # a runtime that goes away takes its pacer off the list

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        g = GaugeMetricFamily("msteams_channel_messages_today",
                              "Messages sent today (UTC) to the busiest channels, per sending app; Microsoft's cap "
                              "is 3,000 per app per day to one channel", labels=["channel", "sender"])
        counts: dict = {}
        for pacer in list(self.pacers):
            try:
                rows = pacer.busiest_channels(CHANNELS_REPORTED)
            except Exception as exc:  # noqa: BLE001 - a scrape must answer even when Redis hiccups
                logging.getLogger("msteams.metrics").warning("could not read the channels' counts: %s", exc)
                continue
            for r in rows:
                counts[(r["channel"], r["sender"])] = counts.get((r["channel"], r["sender"]), 0) + r["count"]
        for (channel, sender), n in counts.items():
            g.add_metric([channel, sender], n)
        yield g


def watch_channels(pacer) -> None:
    """Report ``pacer``'s busiest channels on every scrape (the pacer calls this itself, once,
    when it counts a message to a channel in a service that enabled metrics)."""
    m = _metrics()
    with _lock:
        if "channels" not in m:
            m["channels"] = _ChannelCollector()
            m["registry"].register(m["channels"])
        m["channels"].pacers.add(pacer)


# ---- exposing them ----
def render() -> tuple[bytes, str]:
    """The metrics in Prometheus's text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(_metrics()["registry"]), CONTENT_TYPE_LATEST


def serve(port: int, host: str = "127.0.0.1"):
    """A /metrics HTTP server of its own (bot serve's, a worker's), on loopback unless told
    otherwise; returns the server (``.shutdown()`` stops it)."""
    from prometheus_client import start_http_server

    enable()
    try:
        server, _thread = start_http_server(port, addr=host, registry=_metrics()["registry"])
        return server
    except OSError as exc:
        from .errors import ConfigError

        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


# ---- JSON log lines ----
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
BODY_FIELDS = {"text", "body", "message_text", "reply"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, msg and any fields passed
    with ``extra=``. Everything goes through redact (no secret or token leaves), control
    characters are escaped by JSON itself, and message bodies are dropped unless ``bodies``."""

    def __init__(self, bodies: bool = False):
        super().__init__()
        self.bodies = bodies

    def format(self, record: logging.LogRecord) -> str:
        from .redact import redact

        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": redact(record.getMessage())}
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") or (key in BODY_FIELDS and not self.bodies):
                continue
            out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.levelno >= logging.ERROR:
            out["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None  # no traceback text
        return json.dumps(out, ensure_ascii=False, default=str)


def json_logging(level: str = "INFO", stream=None, bodies: bool = False) -> logging.Handler:
    """Send the "msteams" loggers (and uvicorn's) to ``stream`` as JSON lines, replacing their
    text handlers. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(bodies=bodies))
    for name in ("msteams", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.setLevel(level)
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # each request is an event of ours already
    return handler
