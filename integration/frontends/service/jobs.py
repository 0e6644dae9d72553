"""Commands run as jobs: ``POST /v1/commands/{name}`` with ``Prefer: respond-async`` (RFC 7240)
answers 202 at once (``Location: /v1/jobs/{id}``, ``Preference-Applied: respond-async``) and the
command goes on in a thread of the jobs pool; ``GET /v1/jobs/{id}`` answers

    {"id", "command", "status": "running" | "done" | "failed" | "interrupted",
     "result": <the body the synchronous call answers>  (done)
     "problem": <the problem+json body>                  (failed, interrupted),
     "created", "finished"}

The key, its scopes and the body are checked before the 202 (a refused request is answered
at once, as without the header); what the command itself answers lands in the job.

A job lives in the store (key/value kind ``http_job``: state, so ``cache-reset`` never removes
it), so any process sharing the store answers for it and a restarted service still can: 48 h
while it runs, 24 h after it finished. Its record names its owner (host:pid, as outbox leases
do): a "running" job whose owner is dead was interrupted (its process was killed), and is
reported so, with the hint to run it again under the same ``Idempotency-Key``.

With an ``Idempotency-Key`` the job's id is derived from (API key, Idempotency-Key): the same
key gets the same job back (another body: 422), and a job that was interrupted starts again
under the same id. The command runs under the same idempotency record and outbox dedupe_key
as a synchronous call with that key, so a send that went out before the kill is not sent again.

Two processes sharing the store that get the same key at the same instant start one job: the
look for a prior record and the writing of the running one happen under the store's named lock
``http-job:<id>`` (tokenlock.StoreLock: a short lease, a bounded wait, taken over from a holder
that died), held for those two steps only, never for the work. Each start's record carries a
``run`` token of its own; a job whose work meets another start's job under the same key (409
``idempotency_in_progress``) leaves that job's record as it is instead of writing its refusal
over it.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from integration.delivery.owners import alive, owner_id
from integration.graph.tokenlock import StoreLock
from .problems import Problem

KIND = "http_job"
RUNNING_TTL = 48 * 3600.0  # a job that never finishes (its process killed) is forgotten at last
FINISHED_TTL = 24 * 3600.0
PREFERENCE = "respond-async"
_ID = re.compile(r"[0-9a-f]{32}")
START_LOCK_LEASE = 5.0  # seconds: the lock covers a read and a write of the store, never the work
START_LOCK_WAIT = 10.0  # how long a start waits for another process's start of the same job
IN_PROGRESS = "idempotency_in_progress"

log = logging.getLogger("msteams.service")


def prefers_async(value: str | None) -> bool:
    """Whether a ``Prefer`` header (RFC 7240: preferences separated by commas, parameters by
    semicolons, names case-insensitive) asks for ``respond-async``."""
    if not value:
        return False
    return any(p.split(";", 1)[0].split("=", 1)[0].strip().lower() == PREFERENCE for p in value.split(","))


def job_id(scope: str | None) -> str:
    """A new job's id: random, or derived from the scoped Idempotency-Key (the same key, the same job)."""
    return scope[:32] if scope else uuid.uuid4().hex


def _iso(t) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def interrupted_problem(jid: str) -> dict:
    return Problem(503, "interrupted", "the process running this job stopped before it finished",
                   hint="run it again with the same Idempotency-Key and body: a send that already went out "
                        "is not sent twice (the outbox knows it)").body(f"/v1/jobs/{jid}")


def _start_busy(holder: dict, timeout: float) -> Problem:
    """What a start that could not take the job's lock in time answers (StoreLock's timeout_error)."""
    return Problem(409, IN_PROGRESS, f"another process has been starting the job of this Idempotency-Key for "
                   f"more than {timeout:.0f} s", headers={"Retry-After": "1"},
                   hint="retry with the same key and body: once it has started, its job comes back")


class Jobs:
    def __init__(self, store, *, workers: int):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msteams-api-job")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def record(self, jid: str) -> dict | None:
        value = self.store.get(KIND, jid) if _ID.fullmatch(jid or "") else None
        return value if isinstance(value, dict) else None

    def status(self, record: dict) -> str:
        if record["status"] == "running" and not alive(record.get("owner")):
            return "interrupted"
        return record["status"]

    def start(self, *, command: str, key_name: str, fingerprint: str, scope: str | None, work,
              tenant: str | None = None) -> tuple[dict, bool]:
        """Start ``work()`` (-> (status, body bytes)) as a job; (its record, whether it started
        now). Under an Idempotency-Key an existing job that is not interrupted is answered instead."""
        jid = job_id(scope)
        if scope is None:  # a random id: no other start can meet it
            record = self._create(jid, command, key_name, fingerprint, tenant)
        else:
            # One start per job id among all processes sharing the store: look, else create,
            # as one step. The lock is held for these two store calls only, never for the work.
            with StoreLock(self.store, f"http-job:{jid}", lease=START_LOCK_LEASE, timeout=START_LOCK_WAIT,
                           what=f"the start of job {jid}", timeout_error=_start_busy):
                prior = self.record(jid)
                if prior is not None:
                    if prior.get("fingerprint") != fingerprint or prior.get("key") != key_name:
                        raise Problem(422, "idempotency_mismatch", "this Idempotency-Key was used with another "
                                      "body (or command)", hint="use a new key for a new request")
                    if self.status(prior) != "interrupted":
                        return prior, False
                record = self._create(jid, command, key_name, fingerprint, tenant)
        self.pool.submit(self._run, record, work)
        return record, True

    def _create(self, jid: str, command: str, key_name: str, fingerprint: str, tenant: str | None) -> dict:
        # tenant: the profile it runs for (tenancy.py): another tenant's key may not read it
        record = {"id": jid, "command": command, "status": "running", "key": key_name, "tenant": tenant,
                  "fingerprint": fingerprint, "owner": owner_id(), "run": uuid.uuid4().hex,
                  "created": self.store.now(), "finished": None}
        self.store.put(KIND, jid, record, ttl=RUNNING_TTL)
        return record

    def _run(self, record: dict, work) -> None:
        try:
            status, body = work()
        except BaseException as exc:  # noqa: BLE001 - work never raises; should it, the job says so
            status = 500
            body = json.dumps(Problem(500, "internal", f"the job failed: {type(exc).__name__}").body()).encode()
        try:
            value = json.loads(body)
        except ValueError:
            value = {"body": body.decode("utf-8", "replace")}
        if status == 409 and isinstance(value, dict) and value.get("code") == IN_PROGRESS:
            current = self.record(record["id"])
            if current is not None and current.get("run") != record.get("run"):
                # Another start's job holds this key (it ran or runs the command): its record
                # answers for the job, not this start's refusal.
                log.warning("job %s: another start of it holds its Idempotency-Key; its record is kept",
                            record["id"])
                return
        done = dict(record, finished=self.store.now())
        if 200 <= status < 300:
            done.update(status="done", result=value)
        else:
            done.update(status="failed", problem=value)
        self.store.put(KIND, record["id"], done, ttl=FINISHED_TTL)

    def view(self, record: dict) -> dict:
        """A job as ``GET /v1/jobs/{id}`` answers it (never its key or owner)."""
        status = self.status(record)
        out = {"id": record["id"], "command": record["command"], "status": status,
               "created": _iso(record.get("created")), "finished": _iso(record.get("finished"))}
        if status == "done":
            out["result"] = record.get("result")
        elif status == "failed":
            out["problem"] = record.get("problem")
        elif status == "interrupted":
            out["problem"] = interrupted_problem(record["id"])
        return out
