"""WarmPool (frontends/pool.py): the thread idle last takes the next work; otherwise the
ThreadPoolExecutor the services used (threads up to a bound, waiting work in order, futures,
shutdown, and work finished at the interpreter's exit)."""
import subprocess
import sys
import threading
import time

import pytest

from integration.frontends.pool import WarmPool


def _burst(pool, n):
    """n works at once, each holding its thread until all n have started: n threads busy."""
    gate = threading.Barrier(n)
    futures = [pool.submit(gate.wait, 10) for _ in range(n)]
    for f in futures:
        f.result(10)


def test_one_at_a_time_after_a_burst_runs_on_one_thread():
    pool = WarmPool(8, thread_name_prefix="t")
    try:
        _burst(pool, 8)
        assert pool.threads == 8
        names = {pool.submit(lambda: threading.current_thread().name).result(5) for _ in range(50)}
        assert len(names) == 1  # the stdlib's pool spreads these over its idle threads
        # ... and it is the thread that finished last
        last = pool.submit(lambda: threading.current_thread().name).result(5)
        assert names == {last}
    finally:
        pool.shutdown()


def test_work_beyond_the_bound_waits_for_a_thread():
    pool = WarmPool(2)
    running, peak = [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def work(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return i * i

    futures = [pool.submit(work, i) for i in range(6)]
    time.sleep(0.1)
    assert pool.threads == 2 and running[0] == 2
    release.set()
    assert [f.result(10) for f in futures] == [i * i for i in range(6)]
    assert peak[0] == 2
    pool.shutdown()
    assert pool.threads == 0


def test_waiting_work_runs_first_come_first_served():
    pool = WarmPool(1)
    release, order = threading.Event(), []
    pool.submit(release.wait, 10)
    futures = [pool.submit(order.append, i) for i in range(5)]
    release.set()
    for f in futures:
        f.result(10)
    assert order == [0, 1, 2, 3, 4]
    pool.shutdown()


def test_an_exception_reaches_the_caller_and_the_thread_goes_on():
    pool = WarmPool(1)
    try:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(5)
        assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(5) == 5
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_shutdown_ends_the_threads_cancels_what_waits_and_refuses_more():
    pool = WarmPool(1)
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)
        return "done"

    running = pool.submit(hold)
    started.wait(5)
    waiting = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    release.set()
    assert running.result(5) == "done"  # the work given before the shutdown is finished
    deadline = time.monotonic() + 5
    while pool.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.threads == 0


def test_shutdown_without_cancel_runs_what_waits():
    pool = WarmPool(1)
    release = threading.Event()
    first = pool.submit(release.wait, 10)
    second = pool.submit(lambda: "ran")
    threading.Timer(0.1, release.set).start()
    pool.shutdown(wait=True)
    assert first.result(0) is True and second.result(0) == "ran"
    assert pool.threads == 0


def test_idle_threads_end_at_shutdown():
    pool = WarmPool(4)
    _burst(pool, 4)
    assert pool.threads == 4
    pool.shutdown(wait=True)
    assert pool.threads == 0


def test_the_work_given_is_finished_when_the_interpreter_exits(tmp_path):
    # A service stopping (its pool not shut down, or shut down without waiting) still finishes
    # the commands it was running, as with ThreadPoolExecutor: an audit entry is not cut off.
    out = tmp_path / "done"
    code = (
        "import sys, threading, time\n"
        "from integration.frontends.pool import WarmPool\n"
        "pool = WarmPool(2)\n"
        "started = threading.Event()\n"
        "def work():\n"
        "    started.set(); time.sleep(0.3)\n"
        f"    open({str(out)!r}, 'w').write('done')\n"
        "pool.submit(work)\n"
        "WarmPool(2).submit(lambda: None).result()\n"  # an idle thread of another pool must not hold the exit
        "started.wait(5)\n"
        "sys.exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "done"
