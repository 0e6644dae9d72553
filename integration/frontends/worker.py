"""`msteams worker`: one process of the worker pool. It takes jobs from the shared queue
(integration/delivery/queue.py), runs each (a queued notification through the outbox, a playbook run
resumed after its question was answered) and acks it; `msteams worker status` shows the queue.

Any number of workers on any hosts share one queue and, through the runtime's pacer, one
throttle budget. What makes a job safe to run twice is the job's own guard: a notification's
delivery key in the outbox (a key already sent is acked without sending), a waiting run's atomic
claim. SIGTERM (or Ctrl-C) stops taking jobs, lets the running ones finish, then exits 0; a
worker killed outright leaves its jobs pending, and another takes them over once they sat idle
for the visibility timeout. Every few seconds a worker also sends the webhook deliveries whose
retry is due (delivery/webhooks.py; the outbox keeps each to one sender).
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import signal
import socket
import threading
import time
from typing import Callable

from integration.dispatch import Runtime
from integration.engine.errors import AuthError, ConfigError, GraphError, IntegrationError, ThrottledError

log = logging.getLogger("msteams.worker")
WEBHOOK_TICK = 5.0  # seconds between two looks for webhook deliveries due for a retry

USAGE = ("usage: msteams worker [--name NAME] [--concurrency N] [--visibility-timeout S] [--metrics-port P] "
         "[--until-empty] | worker status [--output json]")


class PrepaidPacer:
    """The runtime's pacer, with one slot taken ahead on this thread: a worker takes the slot of
    its send before the outbox marks the delivery pending, so a worker killed while it waits for
    room leaves nothing half-sent behind (its job is simply taken over and sent)."""

    def __init__(self, real):
        object.__setattr__(self, "real", real)
        object.__setattr__(self, "_local", threading.local())

    def prepay(self, windows) -> None:
        windows = list(windows)
        self.release()
        self._local.paid = (tuple(w.key for w in windows), self.real.acquire(windows))

    def acquire(self, windows):
        windows = list(windows)
        paid = getattr(self._local, "paid", None)
        if paid is not None and paid[0] == tuple(w.key for w in windows):
            self._local.paid = None
            return paid[1]
        return self.real.acquire(windows)

    def release(self) -> None:
        """A slot taken and not used (the delivery turned out sent already): counted as spent now."""
        paid = getattr(self._local, "paid", None)
        if paid is not None:
            self._local.paid = None
            self.real.done(paid[1])

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __setattr__(self, name, value):
        setattr(self.real, name, value)


class WorkerRuntime(Runtime):
    @property
    def pacer(self):
        if "_prepaid" not in self.__dict__:
            with self._lock:
                if "_prepaid" not in self.__dict__:
                    self.__dict__["_prepaid"] = PrepaidPacer(Runtime.pacer.fget(self))
        return self.__dict__["_prepaid"]


# What a job's failure means: try again later (the entry stays pending), or give up on it (dead letters).
RETRY, DEAD = "retry", "dead"
STATUS_CAP = 100_000  # outbox deliveries counted per state by `worker status` (more shows as this)


def verdict(exc: BaseException) -> str:
    from integration.handlers.notify import HeldElsewhere
    from integration.delivery.outbox import UnknownDelivery
    from integration.delivery.queue import QueueError

    if isinstance(exc, UnknownDelivery):
        return DEAD  # reported with its reason; resent only when asked (resend_unknown)
    if isinstance(exc, (HeldElsewhere, ThrottledError, QueueError, AuthError, ConfigError)):
        return RETRY  # another sender has it now, or this worker's own trouble: not the job's fault
    if isinstance(exc, GraphError):
        return RETRY if exc.status is None or exc.status >= 500 or exc.status in (408, 412) else DEAD
    if isinstance(exc, IntegrationError):
        return DEAD  # refused as asked (not found, bad request): another try changes nothing
    return RETRY  # a bug or a dropped connection: a few more tries, then the dead letters


class Worker:
    def __init__(self, runtime: Runtime, queue, *, name: str, concurrency: int = 4, visibility: float = 60.0,
                 block_ms: int = 1000, until_empty: bool = False, out: Callable[[str], None] = print):
        self.rt, self.q, self.name = runtime, queue, name
        self.concurrency = max(1, concurrency)
        self.visibility = visibility
        self.block_ms = block_ms
        self.until_empty = until_empty
        self.out = out
        self.stopping = threading.Event()
        self._inflight: set[str] = set()
        self._taken_over: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()

    # ---- one job ----
    def handle(self, job) -> str:
        """Run one job: "done" (ack), RETRY (leave pending) or DEAD (dead letters)."""
        try:
            if job.kind == "notify":
                self._notify(job.body)
            elif job.kind == "resume":
                self._resume(job.body)
            else:
                self.q.bury(job, f"unknown job kind {job.kind!r}")
                return DEAD
        except BaseException as exc:  # noqa: BLE001 - every outcome is classified, none lost
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            from integration.engine.redact import redact

            text = redact(exc.message if isinstance(exc, IntegrationError) else f"internal error: "
                          f"{type(exc).__name__}: {exc}").splitlines()[0]
            what = verdict(exc)
            if what == DEAD:
                self.q.bury(job, text)
            else:
                log.warning("job %s (%s) will be tried again: %s", job.id, job.kind, text)
                self.q.note(job.id, text)
            return what
        self.q.ack(job.id)
        return "done"

    def _notify(self, body: dict) -> None:
        from integration.handlers.notify import deliver_queued
        from integration.delivery.pacer import bot_windows

        pacer = self.rt.pacer
        prepay = (lambda url: pacer.prepay(bot_windows("POST", url))) if isinstance(pacer, PrepaidPacer) else None
        try:
            row = deliver_queued(self.rt, body, before_send=prepay)
        finally:
            if isinstance(pacer, PrepaidPacer):
                pacer.release()
        with self._lock:
            self.counts[row["status"]] += 1

    def _resume(self, body: dict) -> None:
        from integration.playbooks.runner import resume_waiting_on

        for result in resume_waiting_on(self.rt, body["question"], out=lambda line: log.info("%s", line)):
            self.out(f"run {result.run_id} ({result.name}): {result.status}"
                     + (f", waiting for question {result.waiting_for}" if result.waiting_for else ""))
            with self._lock:
                self.counts["resumed"] += 1

    # ---- the loops ----
    def _next(self):
        with self._lock:
            if self._taken_over:
                return self._taken_over.popleft()
        jobs = self.q.take(self.name, block_ms=self.block_ms, count=1)
        return jobs[0] if jobs else None

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self._next()
            except IntegrationError as exc:
                log.warning("%s", exc.message)
                self.stopping.wait(1.0)
                continue
            if job is None:
                continue
            with self._lock:
                self._inflight.add(job.id)
            started = time.monotonic()
            try:
                outcome = self.handle(job)
            except IntegrationError as exc:  # the queue itself failed to ack: the job is taken over later
                log.warning("job %s: %s", job.id, exc.message)
                outcome = RETRY
            finally:
                with self._lock:
                    self._inflight.discard(job.id)
            with self._lock:
                self.counts[f"job:{outcome}"] += 1
            from integration.engine import metrics

            metrics.command_done(f"worker-{job.kind}", "ok" if outcome == "done" else outcome, self.rt.cfg.tenant)
            log.debug("job %s (%s) %s in %.0f ms", job.id, job.kind, outcome, (time.monotonic() - started) * 1000)

    def _housekeeping(self) -> None:
        """Keep this worker's running jobs fresh, and take over jobs left idle by dead workers."""
        with self._lock:
            running = list(self._inflight)
            room = self.concurrency - len(self._taken_over)
        self.q.touch(self.name, running)
        if room > 0:
            claimed = self.q.claim_stale(self.name, min_idle_seconds=self.visibility, count=room)
            if claimed:
                with self._lock:
                    self._taken_over.extend(claimed)

    def run(self) -> int:
        self.q.ensure_group()
        self._taken_over.extend(self.q.own_pending(self.name))  # restarted under its old name
        threads = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
                   for i in range(self.concurrency)]
        threads.append(threading.Thread(target=self._webhooks, name="worker-webhooks", daemon=True))
        for t in threads:
            t.start()
        self.out(f"worker {self.name}: {self.concurrency} at a time, jobs idle {self.visibility:g} s are taken over")
        tick = max(0.05, min(self.visibility / 4, 5.0))
        try:
            while not self.stopping.is_set():
                try:
                    self._housekeeping()
                    if self.until_empty and self._empty():
                        break
                except IntegrationError as exc:
                    log.warning("%s", exc.message)
                self.stopping.wait(tick)
        finally:
            self.stopping.set()
            for t in threads:  # the jobs running now finish; none is started
                t.join()
            with self._lock:
                left = list(self._taken_over)
            if left:  # taken over but not started: they stay pending, another worker takes them
                log.info("%d taken-over jobs left for another worker", len(left))
        with self._lock:
            done = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        self.out(f"worker {self.name} stopped: {done or 'no jobs'}")
        return 0

    def _webhooks(self) -> None:
        """Send the webhook deliveries due for a retry, every WEBHOOK_TICK seconds until stopped."""
        from integration.delivery import webhooks

        while not self.stopping.wait(WEBHOOK_TICK):
            webhooks.pump_quietly(self.rt.store, self.rt.cfg)

    def _empty(self) -> bool:
        with self._lock:
            if self._inflight or self._taken_over:
                return False
        return self.q.status()["length"] == 0


def _name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def main(argv: list[str], *, out, err, config: str | None = None, output: str | None = None) -> int:
    if argv[:1] == ["status"]:
        return status(argv[1:], out=out, config=config, output=output)
    from integration.engine.argtypes import port, positive_number, whole_number

    p = argparse.ArgumentParser(prog="msteams worker", description="Take queued jobs (notifications, run "
                                "resumptions) from the shared Redis and run them. `msteams worker status` shows the queue.")
    p.add_argument("--name", default=None, help="this worker's name in the consumer group (default HOST:PID); "
                                                 "a restarted worker given its old name takes its jobs back at once")
    p.add_argument("--concurrency", type=whole_number(1, 64), default=None,
                   help="jobs run at once (default fanout_workers)")
    p.add_argument("--visibility-timeout", type=positive_number, default=60.0,
                   help="seconds a taken job may sit idle before another worker takes it over (default 60)")
    p.add_argument("--max-deliveries", type=whole_number(1, 1000), default=None,
                   help="hand-outs of one job before it goes to the dead letters (default 20)")
    p.add_argument("--metrics-port", type=port, default=None, help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics port (default 127.0.0.1)")
    p.add_argument("--log-json", action="store_true", help="log one JSON object a line (for a log shipper)")
    p.add_argument("--log-bodies", action="store_true", help="with --log-json: include message texts in the log")
    p.add_argument("--until-empty", action="store_true", help="exit once the queue is empty (batch runs, tests)")
    ns = p.parse_args(argv)

    from integration.delivery.queue import MAX_DELIVERIES, JobQueue

    provider = Runtime(config_path=config, provider=True)
    # With tenant profiles and none named: a worker for each tenant in this process, each on
    # its tenant's own queue, store and budget (a job never runs in another tenant's runtime).
    names = provider.cfg.tenant_names if provider.cfg.tenant is None else ()
    runtimes = [WorkerRuntime(config_path=config, tenant=n) for n in names] or [WorkerRuntime(config_path=config)]
    from integration.engine import metrics

    if ns.log_json:
        metrics.json_logging(bodies=ns.log_bodies)
    workers = []
    for rt in runtimes:
        rt.echo = err
        rt.quiet = True
        queue = JobQueue.from_config(rt.cfg, max_deliveries=ns.max_deliveries or MAX_DELIVERIES)
        name = (ns.name or _name()) + (f"/{rt.cfg.tenant}" if names else "")
        workers.append(Worker(rt, queue, name=name, concurrency=ns.concurrency or rt.cfg.fanout_workers,
                              visibility=ns.visibility_timeout, until_empty=ns.until_empty, out=out))
    if ns.metrics_port is not None:
        for rt in runtimes:  # outbox depth by state, waiting runs, at scrape time, by tenant
            metrics.register_store(rt.store, rt.cfg.tenant)
        metrics.serve(ns.metrics_port, ns.metrics_host)

    def stop(signum, frame):  # finish what runs, take nothing new
        log.info("signal %d: finishing the running jobs", signum)
        for w in workers:
            w.stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if len(workers) == 1:
            return workers[0].run()
        codes: list[int] = []
        threads = [threading.Thread(target=_run_one, args=(w, codes), name=f"tenant-{w.name}", daemon=True)
                   for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # a bounded join: signals reach the main thread between waits
                t.join(0.5)
        return max(codes) if len(codes) == len(workers) else 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for rt in runtimes:
            rt.close()
        provider.close()


def _run_one(worker: Worker, codes: list) -> None:
    """One tenant's worker in a thread of its own: its exit code, or its failure's (logged, named
    by the worker: never a traceback, and never an exit 0 for the process)."""
    try:
        codes.append(worker.run())
    except IntegrationError as exc:
        log.error("worker %s stopped: %s", worker.name, exc.message)
        codes.append(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the other tenants' workers go on; the exit code says it
        log.error("worker %s stopped: %s", worker.name, type(exc).__name__)
        codes.append(1)


def status(argv: list[str], *, out, config: str | None, output: str | None) -> int:
    """The queue (jobs waiting, running per worker, dead letters with their reasons) and the
    outbox's deliveries by state."""
    p = argparse.ArgumentParser(prog="msteams worker status")
    p.add_argument("--dead", type=int, default=10, help="dead letters to list (newest first; default 10)")
    ns = p.parse_args(argv)
    from integration.delivery.outbox import STATES
    from integration.delivery.queue import JobQueue
    from integration.engine.results import markdown_table

    rt = Runtime(config_path=config)
    try:
        q = JobQueue.from_config(rt.cfg)
        st = q.status()
        dead = q.dead_letters(ns.dead)
        outbox = {}
        lister = getattr(rt.store, "outbox_list", None)
        if lister is not None:  # counted up to a bound: a status must stay cheap on a big store
            outbox = {s: min(len(lister(s, STATUS_CAP + 1)), STATUS_CAP) for s in STATES}
    finally:
        rt.close()
    for d in dead:
        d.pop("body", None)
    if output == "json":
        out(json.dumps(dict(st, outbox=outbox, dead_letters=dead), indent=2))
        return 0
    lines = [f"### Queue {st['stream']}", "",
             f"{st['waiting']} waiting, {st['pending']} running or left by a stopped worker, {st['dead']} dead letters", ""]
    if st["consumers"]:
        lines += [markdown_table(st["consumers"], ["name", "pending", "idle_s"], "Workers"), ""]
    if outbox:
        lines += [markdown_table([{"state": k, "deliveries": v} for k, v in outbox.items()], ["state", "deliveries"],
                                 "Outbox"), ""]
    if dead:
        for d in dead:
            d["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["at"]))
        lines += [markdown_table(dead, ["at", "kind", "entry", "deliveries", "reason"], "Dead letters")]
    out("\n".join(lines).rstrip())
    return 0
