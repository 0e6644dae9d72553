"""The job queue of the worker pool: one Redis stream of jobs (fan-out deliveries, run
resumptions) read by a consumer group, so that any number of `msteams worker` processes on any
host share the work and each job is handed to one of them at a time.

    enqueue ──XADD──> {ns}:jobs ──XREADGROUP──> a worker ──XACK+XDEL──> gone
                          │ taken, never acked (the worker died): pending; idle past the
                          │ visibility timeout, another worker takes it over (XAUTOCLAIM)
                          └─ delivered too often, or refused for good ──> {ns}:jobs:dead

Nothing is trimmed by length: an entry leaves the stream only once a worker acked it (or it
was moved to the dead letters, which `msteams worker status` lists), so no job is dropped
unseen. A job is a kind and a JSON body; what makes running a job twice harmless is the job's
own business (the outbox's delivery key, a run's atomic claim), not the queue's.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from integration.engine.errors import ConfigError, IntegrationError

log = logging.getLogger("msteams.queue")

GROUP = "workers"
KINDS = ("notify", "resume")
MAX_DELIVERIES = 20       # a job handed out this often is dead-lettered instead of tried again
VISIBILITY_SECONDS = 60.0  # a taken job idle this long belongs to a worker presumed dead
ACTIVE_SECONDS = 10.0     # a worker that asked for jobs this recently is taken to be running


@dataclass
class Job:
    id: str
    kind: str
    body: dict
    deliveries: int = 1   # how many times the group handed this entry out (this time included)
    fields: dict = field(default_factory=dict, repr=False)


class QueueError(IntegrationError):
    """Redis could not be reached or refused (exit 1); the message names the store, never its password."""


def connect(cfg):
    """A Redis client for ``cfg.store_url`` (redis_conn.redis_client), replies as text."""
    if not cfg.store_url:
        raise ConfigError("the worker queue needs store_url (a Redis the producers and the workers share)",
                          hint="set store_url: redis://HOST:6379/0 (or rediss://) in the config of every engine")
    from integration.store.redis_conn import redis_client

    # A Redis that stops answering must not hang a worker for ever: the request timeout, plus
    # the longest a blocking read waits for a job.
    return redis_client(cfg, decode=True, name="msteams-queue", wait=5)


def _where(url: str) -> str:
    """The store's address without anything secret (the URL carries none: config refuses it)."""
    return url.split("@")[-1]


class JobQueue:
    def __init__(self, client, namespace: str = "msteams", *, max_deliveries: int = MAX_DELIVERIES,
                 where: str = "the Redis store"):
        self.r = client
        self.stream = f"{namespace}:jobs"
        self.dead = f"{namespace}:jobs:dead"
        self.notes = f"{namespace}:jobs:notes"  # entry id -> why its last attempt did not finish
        self.max_deliveries = max_deliveries
        self.where = where
        self._cursor = "0-0"
        self._cursor_lock = threading.Lock()
        self._group_ready = False

    @classmethod
    def from_config(cls, cfg, **kw) -> "JobQueue":
        return cls(connect(cfg), cfg.store_namespace or "msteams", where=_where(cfg.store_url), **kw)

    def _call(self, what: str, fn, *args, **kw):
        import redis

        try:
            return fn(*args, **kw)
        except redis.exceptions.ResponseError as exc:
            raise QueueError(f"{self.where} refused {what}: {str(exc).splitlines()[0][:200]}") from None
        except redis.exceptions.RedisError as exc:
            raise QueueError(f"cannot reach {self.where} for {what}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}",
                             hint="check store_url, store_username/store_password and that Redis is up") from None

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._call("creating the consumer group", self.r.xgroup_create, self.stream, GROUP, id="0", mkstream=True)
        except QueueError as exc:
            if "BUSYGROUP" not in exc.message:
                raise
        self._group_ready = True

    # ---- producing ----
    def enqueue(self, kind: str, body: dict) -> str:
        return self.enqueue_many([(kind, body)])[0]

    def enqueue_many(self, jobs: list[tuple[str, dict]]) -> list[str]:
        """XADD every job in one round trip; their entry ids in order. No MAXLEN: a bound would
        drop entries no worker has taken yet."""
        for kind, _ in jobs:
            if kind not in KINDS:
                raise ValueError(f"unknown job kind {kind!r}")
        self.ensure_group()
        pipe = self.r.pipeline(transaction=False)
        for kind, body in jobs:
            pipe.xadd(self.stream, {"kind": kind, "body": json.dumps(body, ensure_ascii=False, sort_keys=True)})
        return list(self._call("adding jobs", pipe.execute))

    # ---- consuming ----
    def _job(self, entry_id: str, fields: dict, deliveries: int = 1) -> Job | None:
        try:
            return Job(entry_id, fields["kind"], json.loads(fields["body"]), deliveries, fields)
        except (KeyError, TypeError, ValueError):
            self._bury(entry_id, fields, deliveries, "not a job (kind and JSON body expected)")
            return None

    def take(self, consumer: str, *, block_ms: int = 1000, count: int = 1) -> list[Job]:
        """Up to ``count`` jobs no worker has taken yet, waiting up to ``block_ms`` for one."""
        self.ensure_group()
        reply = self._call("reading jobs", self.r.xreadgroup, GROUP, consumer, {self.stream: ">"},
                           count=count, block=block_ms)
        jobs = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields is None:
                    continue
                job = self._job(entry_id, fields)
                if job is not None:
                    jobs.append(job)
        return jobs

    def own_pending(self, consumer: str, *, count: int = 100) -> list[Job]:
        """Jobs handed to ``consumer`` and not acked (a worker restarted under its old name)."""
        self.ensure_group()
        reply = self._call("reading own jobs", self.r.xreadgroup, GROUP, consumer, {self.stream: "0"}, count=count)
        ids = [e[0] for _s, entries in reply or [] for e in entries if e[1]]
        counts = self._deliveries(ids) if ids else {}
        jobs = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields:
                    job = self._job(entry_id, fields, counts.get(entry_id, 1))
                    if job is not None:
                        jobs.append(job)
        return jobs

    def claim_stale(self, consumer: str, *, min_idle_seconds: float = VISIBILITY_SECONDS, count: int = 10) -> list[Job]:
        """Take over jobs another worker took and left idle past ``min_idle_seconds`` (it died,
        or was cut off). One handed out more than ``max_deliveries`` times is dead-lettered."""
        self.ensure_group()
        with self._cursor_lock:
            start = self._cursor
        reply = self._call("claiming stale jobs", self.r.xautoclaim, self.stream, GROUP, consumer,
                           int(min_idle_seconds * 1000), start_id=start, count=count)
        nxt, entries = reply[0], reply[1]
        with self._cursor_lock:
            self._cursor = nxt or "0-0"
        if not entries:
            return []
        counts = self._deliveries([e[0] for e in entries])
        jobs = []
        for entry_id, fields in entries:
            if fields is None:  # deleted under us: nothing to run
                self._call("acking a deleted entry", self.r.xack, self.stream, GROUP, entry_id)
                continue
            n = counts.get(entry_id, 1)
            if n > self.max_deliveries:
                self._bury(entry_id, fields, n, f"handed out {n} times without being done")
                continue
            job = self._job(entry_id, fields, n)
            if job is not None:
                log.info("took over job %s (%s), delivery %d", entry_id, job.kind, n)
                jobs.append(job)
        return jobs

    def _deliveries(self, ids: list[str]) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.xpending_range(self.stream, GROUP, min=i, max=i, count=1)
        out = {}
        for rows in self._call("reading delivery counts", pipe.execute):
            for row in rows or []:
                out[row["message_id"]] = int(row["times_delivered"])
        return out

    def touch(self, consumer: str, ids: list[str]) -> None:
        """Keep jobs this worker is still running from looking abandoned (their idle time is
        reset; the delivery count is not)."""
        if ids:
            self._call("renewing jobs", self.r.xclaim, self.stream, GROUP, consumer, 0, ids, justid=True)

    def ack(self, entry_id: str) -> None:
        """Done: acked and deleted in one transaction, so the stream holds only unfinished jobs."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.hdel(self.notes, entry_id)
        self._call("acking a job", pipe.execute)

    def note(self, entry_id: str, text: str) -> None:
        """Why a job's attempt did not finish (it stays pending and is tried again): shown with
        the job if it ends in the dead letters."""
        self._call("noting a job's error", self.r.hset, self.notes, entry_id, text[:500])

    def bury(self, job: Job, reason: str) -> None:
        """Move a job to the dead letters with the reason (a job refused for good)."""
        self._bury(job.id, job.fields or {"kind": job.kind, "body": json.dumps(job.body)}, job.deliveries, reason)

    def _bury(self, entry_id: str, fields: dict, deliveries: int, reason: str) -> None:
        last = self._call("reading a job's note", self.r.hget, self.notes, entry_id)
        if last:
            reason = f"{reason}; last error: {last}"
        log.warning("job %s dead-lettered: %s", entry_id, reason)
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.notes, entry_id)
        pipe.xadd(self.dead, {"entry": entry_id, "kind": str(fields.get("kind", "")), "body": str(fields.get("body", "")),
                              "deliveries": str(deliveries), "reason": reason[:500], "at": f"{time.time():.3f}"})
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        self._call("dead-lettering a job", pipe.execute)
        try:
            from integration.engine import metrics  # optional: the metrics module (helper "metrics")
        except ImportError:
            return
        counter = getattr(metrics, "command_done", None)
        if counter is not None:
            counter("worker-job", "dead-letter")

    # ---- looking ----
    def dead_letters(self, limit: int = 20) -> list[dict]:
        rows = self._call("reading dead letters", self.r.xrevrange, self.dead, count=limit)
        out = []
        for entry_id, f in rows or []:
            out.append({"id": entry_id, "entry": f.get("entry"), "kind": f.get("kind"), "reason": f.get("reason"),
                        "deliveries": int(f.get("deliveries") or 0), "at": float(f.get("at") or 0),
                        "body": f.get("body")})
        return out

    def active_workers(self, within: float = ACTIVE_SECONDS) -> int:
        """Workers that asked for jobs in the last ``within`` seconds (a running worker asks at
        least every second, blocked or not): 0 when no pool is there to take a job."""
        self.ensure_group()
        consumers = self._call("reading the workers", self.r.xinfo_consumers, self.stream, GROUP)
        return sum(1 for c in consumers if int(c.get("idle") or 0) < within * 1000)

    def status(self) -> dict:
        """Jobs waiting (never taken), taken and not yet done per worker, dead letters."""
        self.ensure_group()
        length = self._call("reading the stream", self.r.xlen, self.stream)
        groups = self._call("reading the group", self.r.xinfo_groups, self.stream)
        group = next((g for g in groups if g.get("name") == GROUP), {})
        consumers = self._call("reading the workers", self.r.xinfo_consumers, self.stream, GROUP)
        pending = int(group.get("pending") or 0)
        return {"stream": self.stream, "length": int(length), "pending": pending,
                "waiting": max(0, int(length) - pending),
                "consumers": [{"name": c["name"], "pending": int(c.get("pending") or 0),
                               "idle_s": round(int(c.get("idle") or 0) / 1000, 1)} for c in consumers],
                "dead": int(self._call("counting dead letters", self.r.xlen, self.dead))}
