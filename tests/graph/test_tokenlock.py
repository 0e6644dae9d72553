"""StoreLock for a lock that guards no token: ``timeout_error`` gives the waiter that gave up an
exception fitting its caller (naming the holder), while a token lock's AuthError stays as it was."""
from __future__ import annotations

import os

import pytest

from integration.engine.errors import AuthError
from integration.graph.tokenlock import HOST, StoreLock


class Busy(Exception):
    pass


def test_a_lock_s_own_timeout_error_names_the_holder_and_the_default_stays_the_token_one(make_store):
    a, b = make_store(), make_store()
    seen: list = []

    def busy(holder: dict, timeout: float) -> Exception:
        seen.append((holder, timeout))
        return Busy(f"held by {holder['pid']} on {holder['host']}")

    with StoreLock(a, "job:1", lease=60, timeout=5, what="the job"):
        with pytest.raises(Busy) as e:
            StoreLock(b, "job:1", lease=60, timeout=0.2, what="the job", timeout_error=busy).acquire()
        assert str(e.value) == f"held by {os.getpid()} on {HOST}"
        (holder, timeout), = seen
        assert timeout == 0.2 and holder["pid"] == os.getpid() and holder["expires"] > holder["taken"]
        with pytest.raises(AuthError, match="could not take the lock on the job"):  # without it: as before
            StoreLock(b, "job:1", lease=60, timeout=0.1, what="the job").acquire()
    with StoreLock(b, "job:1", lease=60, timeout=0.2, timeout_error=busy):  # released: free at once
        pass
    assert len(seen) == 1
