"""Who holds a lease (an outbox delivery, a playbook run): this host and process, and whether a
holder recorded earlier is still alive, so work left by a killed process is taken over at once
instead of after its lease runs out."""
from __future__ import annotations

import os
import socket


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(owner: str | None) -> bool:
    """Whether the process holding a lease still lives (unknowable for another host: assume so)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True
