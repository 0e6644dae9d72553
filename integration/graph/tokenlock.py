"""One token request at a time per token cache, across processes: a lease held in the
context store.

Refresh tokens rotate and are single-use: two processes redeeming the same one at the same
moment leave one of them with ``invalid_grant`` ("sign in again"). So a process about to call
the token endpoint first takes the lock for that token cache (the store's ``lock_try``: a row
of SQLite's ``locks`` table written in a ``BEGIN IMMEDIATE`` transaction, or a Redis key set in
a WATCH/MULTI transaction), re-reads the cache from the store
(another process may have refreshed while it waited), calls MSAL only if it still has to,
writes the cache back, and only then releases (see ``Auth.acquire``).

A holder that was killed does not hold the others up: its row names its host, pid and the
process's start time, so a waiter on the same host sees that the process is gone (or that its
pid now belongs to another process) and takes over at once. Where that cannot be told (another
host) the row's lease decides: it is longer than a token request with all its retries may
take. A waiter gives up after ``timeout`` seconds with an :class:`AuthError` naming the holder
(or what the lock's ``timeout_error`` makes of that holder, for a lock that guards no token).
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time

from integration.engine.errors import AuthError

log = logging.getLogger("msteams.auth")

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
    lock for the block. Not reentrant. ``timeout_error(holder, timeout)`` (holder: a dict of
    owner, host, pid, started, taken, expires) gives the exception a waiter that gave up raises,
    for a caller whose lock guards no token; without it, the AuthError about the token cache."""

    def __init__(self, store, name: str, *, lease: float, timeout: float, what: str | None = None,
                 poll: float = 0.02, timeout_error=None):
        self.store = store
        self.name = name
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.what = what or name
        self.poll = poll
        self.timeout_error = timeout_error
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
                if self.timeout_error is not None:
                    raise self.timeout_error(holder, self.timeout)
                host, pid, taken, expires = holder["host"], holder["pid"], holder["taken"], holder["expires"]
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
        holder (a dict: owner, host, pid, started, taken, expires)."""
        now = time.time()
        holder = {"owner": self.owner, "host": HOST, "pid": self.pid, "started": process_start(self.pid)}
        got = self.store.lock_try(self.name, holder, now=now, lease=self.lease, holder_alive=holder_alive)
        if got["held"] is not None:
            return got["held"]
        prev = got["previous"]
        if prev is not None and prev["owner"] != self.owner:
            log.warning("took over the lock on %s from process %s on %s (%s)", self.what, prev["pid"], prev["host"],
                        "its lease had run out" if prev["expires"] <= now else "the process is gone")
        return None

    def release(self) -> None:
        self.store.lock_release(self.name, self.owner)
