"""benchmarks/api.py runs end to end with tiny bounds (issue 25): it starts the fake tenant,
`msteams serve --bot` and the echo app, prints every row of its table and the goals, stops what
it started and exits 0. Its figures are never asserted here: times belong to the benchmark's
own run, not to a test on a shared machine."""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_api_benchmark_runs_and_prints_its_table():
    r = subprocess.run([sys.executable, "benchmarks/api.py", "-n", "3", "--clients", "4", "--seconds", "0.2",
                        "--graph-pause", "0"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    for row in ("a. cache-show: Python API", "a. cache-show: HTTP (kept alive)", "a. cache-show: HTTP, http.client",
                "a. team-list", "a. channel-list",
                "b. 4 clients, cache-show", "c. echo ({} body)", "c. service cache-show", "c. echo (activity body)",
                "c. bot endpoint !help", "goals:"):
        assert row in out, out
    assert "4 concurrent clients: 0 errors (0)" in out, out  # errors are counted, not times


def test_the_api_benchmark_runs_on_a_redis_store_and_leaves_nothing_there(redis_server):
    import redis

    r = subprocess.run([sys.executable, "benchmarks/api.py", "-n", "3", "--clients", "4", "--seconds", "0.2",
                        "--graph-pause", "0", "--store-url", redis_server.url],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "c. the event loop's lane: service cache-show: no lane (the pool)" in out, out  # the store was Redis
    assert "goals (the SQLite store's; this run's store was Redis" in out and "[-] 4 concurrent clients" in out, out
    client = redis.Redis.from_url(redis_server.url)
    assert not list(client.scan_iter(match="msteams-api-bench-*")), "the run's namespace is left in Redis"


def test_a_store_url_that_no_redis_answers_is_a_usage_error_before_anything_starts():
    for url in ("redis://127.0.0.1:1/0", "http://example.invalid/"):
        r = subprocess.run([sys.executable, "benchmarks/api.py", "-n", "3", "--store-url", url],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--store-url: no Redis answers at that URL" in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and r.stdout == ""
