"""One token request at a time per token cache, across processes: a lease held in the
context store.

Refresh tokens rotate and are single-use: two processes redeeming the same one at the same
moment leave one of them with ``invalid_grant`` ("sign in again"). So a process about to call
the token endpoint first takes the lock for that token cache (a row in the store's ``locks``
table, written in a ``BEGIN IMMEDIATE`` transaction), re-reads the cache from the store
(another process may have refreshed while it waited), calls MSAL only if it still has to,
writes the cache back, and only then releases (see ``Auth.acquire``).

A holder that was killed does not hold the others up: its row names its host, pid and the
process's start time, so a waiter on the same host sees that the process is gone (or that its
pid now belongs to another process) and takes over at once. Where that cannot be told (another
host) the row's lease decides: it is longer than a token request with all its retries may
take. A waiter gives up after ``timeout`` seconds with an :class:`AuthError` naming the holder.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time

from .errors import AuthError

log = logging.getLogger("msteams.auth")

_SCHEMA = ("CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, "
           "pid INTEGER NOT NULL, started TEXT, taken REAL NOT NULL, expires REAL NOT NULL)")

HOST = socket.gethostname()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a Linux process; None where /proc
    cannot tell (another OS, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()  # the name may hold spaces and parentheses
        return fields[0].decode(), fields[19].decode()
    except (OSError, ValueError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def holder_alive(host: str, pid: int, started: str | None) -> bool:
    """Whether the process that took a lock may still be running. Only a process on this host
    can be checked; elsewhere the answer is yes and the lease decides."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    except OSError:
        return True
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state == "Z":  # killed, not yet reaped
            return False
        if started and start != started:  # the pid was reused by another process
            return False
    return True


class StoreLock:
    """``with StoreLock(store, "tokens:delegated", lease=..., timeout=...):`` holds the named
    lock for the block. Not reentrant."""

    def __init__(self, store, name: str, *, lease: float, timeout: float, what: str | None = None,
                 poll: float = 0.02):
        self.store = store
        self.name = name
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.what = what or name
        self.poll = poll
        self.pid = os.getpid()
        self.owner = f"{HOST}:{self.pid}:{secrets.token_hex(6)}"
        self.waited = 0.0  # seconds spent waiting for the last acquire (for logs and benchmarks)

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        delay = self.poll
        while True:
            holder = self._try()
            if holder is None:
                self.waited = time.monotonic() - t0
                if self.waited > 1:
                    log.info("waited %.1f s for %s", self.waited, self.what)
                return
            now = time.monotonic()
            if now >= deadline:
                _, host, pid, _, taken, expires = holder
                raise AuthError(
                    f"could not take the lock on {self.what} within {self.timeout:.0f} s: process {pid} on {host} "
                    f"has held it for {max(0.0, time.time() - taken):.0f} s",
                    hint=f"another msteams process is getting a token; try again. If process {pid} is stuck, "
                         f"stop it (the lock lapses by itself at "
                         f"{time.strftime('%H:%M:%S', time.localtime(expires))})")
            # Jittered, growing polls: waiters do not wake in step.
            time.sleep(min(deadline - now, delay * random.uniform(0.5, 1.5)))
            delay = min(delay * 1.5, 0.25)

    def _try(self):
        """Take the lock if it is free, lapsed or held by a process that is gone; else the
        holder's row."""
        now = time.time()
        with self.store.transaction() as c:  # BEGIN IMMEDIATE: one writer decides at a time
            c.execute(_SCHEMA)
            row = c.execute("SELECT owner, host, pid, started, taken, expires FROM locks WHERE name=?",
                            (self.name,)).fetchone()
            if row is not None and row[0] != self.owner and row[5] > now and holder_alive(row[1], row[2], row[3]):
                return row
            c.execute("INSERT OR REPLACE INTO locks(name, owner, host, pid, started, taken, expires) "
                      "VALUES (?,?,?,?,?,?,?)",
                      (self.name, self.owner, HOST, self.pid, process_start(self.pid), now, now + self.lease))
        if row is not None and row[0] != self.owner:
            log.warning("took over the lock on %s from process %s on %s (%s)", self.what, row[2], row[1],
                        "its lease had run out" if row[5] <= now else "the process is gone")
        return None

    def release(self) -> None:
        with self.store.transaction() as c:
            c.execute(_SCHEMA)
            c.execute("DELETE FROM locks WHERE name=? AND owner=?", (self.name, self.owner))
