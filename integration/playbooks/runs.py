"""Playbook runs as data: every run is persisted in the store step by step (and item by item
in a foreach), so that `msteams playbook resume RUN_ID` continues after a crash or a kill
without redoing finished steps, and the outbox (keyed by run, step and item) keeps messages
that were already delivered from being sent again.

A run is held by one process at a time (a lease, renewed at each checkpoint); a run whose
holder died is taken over at once when the holder ran on this host, after its lease otherwise.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from integration.engine.errors import InputError, NotFound
from integration.delivery.owners import alive, owner_id

LEASE_SECONDS = 120.0
FINISHED = ("ok",)


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Journal:
    """One run's record in the store; `save` is the checkpoint."""

    def __init__(self, store, run_id: str, playbook: str, name: str):
        self.store, self.id, self.playbook, self.name = store, run_id, playbook, name

    @classmethod
    def start(cls, store, playbook_path: str, name: str, inputs: dict, run_key: str | None) -> tuple["Journal", dict | None]:
        """A new run, or (with a run_key already used) the earlier run's saved row to resume."""
        path = str(Path(playbook_path).resolve())
        run_id = uuid.uuid4().hex[:12]
        state = {"inputs": inputs, "sha256": digest(path), "i": 0, "done": [], "records": [], "context": {}}
        row = store.run_create({"id": run_id, "run_key": run_key, "playbook": path, "name": name,
                                "status": "running", "owner": owner_id(), "state": state}, lease=LEASE_SECONDS)
        if row["id"] != run_id:
            return cls.claim(store, row["id"])
        return cls(store, run_id, path, name), None

    @classmethod
    def claim(cls, store, run_id: str) -> tuple["Journal", dict]:
        row = store.run_claim(run_id, owner_id(), lease=LEASE_SECONDS, holder_alive=alive)
        if row is None:
            existing = store.run_get(run_id)
            if existing is None:
                raise NotFound(f"no playbook run '{run_id}' in the context store",
                               hint="`msteams playbook runs` lists the runs")
            raise InputError(f"run {run_id} is being run by another process ({existing['owner']})",
                             hint="wait for it to finish, or stop that process first")
        if not Path(row["playbook"]).is_file():
            raise InputError(f"run {run_id}: its playbook {row['playbook']} is gone")
        if digest(row["playbook"]) != row["state"].get("sha256"):
            raise InputError(f"run {run_id}: {row['playbook']} changed since the run started; "
                             "resuming it could redo or skip the wrong steps",
                             hint="restore the file, or start a new run")
        return cls(store, run_id, row["playbook"], row["name"]), row

    def save(self, status: str, state: dict) -> None:
        self.store.run_save(self.id, status, state, lease=LEASE_SECONDS)
