"""Playbook runs over HTTP, over the run store the CLI uses (``playbooks/runs.py``):

    POST /v1/playbooks/{name}/runs   start a shipped playbook: {"inputs": {...}, "run_key": "..."}
                                     -> 202, Location: /v1/runs/{id} (a run_key already used: that run)
    GET  /v1/runs/{id}               the run: status (running, waiting, ok, failed), what it waits
                                     for, its steps and context
    GET  /v1/runs?status=waiting     the runs (newest first) this key may see
    POST /v1/runs/{id}/resume        continue a run after a crash or a failed step -> 202

Only shipped playbooks (``msteams playbook list``) run over HTTP, by name: never a path. A
key needs the scope ``playbook:NAME`` (or a glob over playbooks, ``playbook:*``; a glob over
commands such as ``*`` never grants one): a playbook's steps run whatever commands it names.
The same scope lets the key see and resume that playbook's runs. An ``Idempotency-Key`` on a
start is the run's run_key when the body gives none, so a retried start never starts twice.

A run goes on in a thread of its own; the answer comes as soon as it is recorded (its id
known) or refused (bad inputs: 422/400). A run waiting on a question is resumed by the
process that receives the answer (``msteams serve --bot``, ``bot serve`` or a worker).
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .problems import Problem

_STARTED = re.compile(r"^run (\w+) (started|resumed|already finished)")
STATUSES = ("running", "waiting", "failed", "ok")


def scope_of(playbook: str) -> str:
    return f"playbook:{playbook}"


def _iso(t) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


class Runs:
    def __init__(self, runtime, *, workers: int, wait: float):
        self.runtime = runtime
        self.wait = wait
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msteams-api-run")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ---- starting and resuming: in a thread of their own, answered once the run has an id ----
    def _background(self, work) -> str:
        """Run ``work(out)`` in the runs pool; the run's id once it printed it, or the problem it
        raised before (its inputs refused, another process holding it)."""
        got: dict = {}
        ready = threading.Event()

        def out(line: str) -> None:
            m = _STARTED.match(line)
            if m and "id" not in got:
                got["id"] = m.group(1)
                ready.set()

        def run() -> None:
            try:
                result = work(out)
                if "id" not in got and getattr(result, "run_id", None):
                    got["id"] = result.run_id
            except BaseException as exc:  # noqa: BLE001 - handed to the request that waits
                got["error"] = exc
            finally:
                ready.set()

        self.pool.submit(run)
        if not ready.wait(self.wait):
            raise Problem(504, "timeout", "the run did not start within the service's time limit")
        if "id" in got:
            return got["id"]
        if "error" in got:
            raise got["error"]
        raise Problem(500, "internal", "the run ended without an id")

    def start(self, name: str, body: dict, run_key: str | None) -> dict:
        from integration.playbooks.loader import shipped
        from integration.playbooks.runner import run_playbook

        path = shipped()[name]
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise Problem(422, "input", "'inputs' must be a JSON object of the playbook's inputs",
                          details={"argument": "inputs"})
        key = body.get("run_key", run_key)
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= 200):
            raise Problem(422, "input", "'run_key' must be a string of 1 to 200 characters",
                          details={"argument": "run_key"})
        unknown = sorted(set(body) - {"inputs", "run_key"})
        if unknown:
            raise Problem(422, "input", f"unknown field {unknown[0]!r} (give 'inputs' and, optionally, 'run_key')",
                          details={"argument": unknown[0]})
        run_id = self._background(lambda out: run_playbook(str(path), inputs, self.runtime, out=out, run_key=key))
        return self.get(run_id)

    def resume(self, run_id: str) -> dict:
        from integration.playbooks.runner import resume_playbook

        row = self.runtime.store.run_get(run_id)
        if row is not None and row["status"] == "ok":
            return self.get(run_id)
        return self.get(self._background(lambda out: resume_playbook(run_id, self.runtime, out=out)))

    # ---- reading ----
    def row(self, run_id: str) -> dict:
        row = self.runtime.store.run_get(run_id) if re.fullmatch(r"\w{1,64}", run_id) else None
        if row is None:
            raise Problem(404, "not_found", "no such playbook run", hint="GET /v1/runs lists them")
        return row

    def get(self, run_id: str) -> dict:
        row = self.row(run_id)
        state = row.get("state") or {}
        steps = [{k: v for k, v in r.items() if k not in ("context", "readable") and not k.startswith("_")}
                 for r in state.get("records") or []]
        waiting = state.get("waiting") or {}
        return {"id": row["id"], "playbook": row["name"], "status": row["status"],
                "waiting_for": row.get("waiting_for") or waiting.get("question"), "run_key": row.get("run_key"),
                "created": _iso(row.get("created")), "updated": _iso(row.get("updated")),
                "inputs": state.get("inputs") or {}, "steps": steps, "context": state.get("context") or {}}

    def listing(self, status: str | None, limit: int, visible) -> list[dict]:
        rows = self.runtime.store.run_list(status, limit)
        return [{"id": r["id"], "playbook": r["name"], "status": r["status"], "waiting_for": r.get("waiting_for"),
                 "run_key": r.get("run_key"), "created": _iso(r.get("created")), "updated": _iso(r.get("updated")),
                 "location": f"/v1/runs/{r['id']}"} for r in rows if visible(r["name"])]
