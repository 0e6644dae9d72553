"""What the context store costs: `cache-preload` of users next to plain paging of the same
pages (same page size, same client) in the same run, the peak memory of a process preloading a
large directory next to one only paging it, and lookups by mail from the store.

    .venv/bin/python benchmarks/store_bench.py [--users 10000] [--page-size 100]
        [--large-users 100000] [--large-page-size 999] [--lookups 10000] [--repeat 5]

Goals: preload <= 1.3x plain paging; the large preload's process <= 60 MB peak RSS; lookup by
mail p50 <= 40 us. For the ratio the fake tenant runs in a process of its own on loopback
(throttling off), as Graph is another machine: a tenant in this process would share the
client's interpreter lock and count its own work against the client's (`--in-process` does
that anyway). The large runs are child processes, each reporting its own peak RSS (VmHWM: the high-water mark
of the process image it exec'd; wait4's ru_maxrss would also count the pages it shared with
this process, which holds the fake tenant, between fork and exec). Every step is bounded:
children are killed after --child-timeout seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from integration.dispatch import Runtime, execute  # noqa: E402
from integration.graph.resolve import USER_SELECT  # noqa: E402

GOAL_RATIO, GOAL_RSS_MB, GOAL_P50_US = 1.3, 60.0, 40.0


def runtime(config_path: str) -> Runtime:
    rt = Runtime(config_path=config_path)
    rt.echo = lambda s: None
    rt.quiet = True
    rt.registry  # loaded (and validated) once per process, as any command does: not the preload's cost
    rt.client("app").get("/users", params={"$top": 1})  # the token is fetched before any timing
    return rt


def plain_paging(rt: Runtime, page_size: int) -> int:
    """The baseline: the same GETs a preload makes, each page dropped as it arrives."""
    n = 0
    for items in rt.client("app").pages("/users", params={"$select": USER_SELECT}, page_size=page_size):
        n += len(items)
    return n


def preload(rt: Runtime, page_size: int) -> int:
    r = execute("cache-preload", {"include": ["users"], "page_size": page_size}, rt, flow="app")
    return r.raw["users"]


def child(mode: str, config_path: str, page_size: int) -> None:
    """One large run in its own process, so its peak RSS is its own."""
    rt = runtime(config_path)
    t0 = time.perf_counter()
    n = preload(rt, page_size) if mode == "preload" else plain_paging(rt, page_size)
    print(json.dumps({"mode": mode, "users": n, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}))
    rt.close()


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource  # not Linux: the best the platform offers

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_config(emu, directory: str, name: str) -> str:
    import yaml

    path = os.path.join(directory, f"{name}.yml")
    emu.write_config(path)
    data = yaml.safe_load(open(path, encoding="utf-8"))
    data["store_path"] = os.path.join(directory, f"{name}.sqlite3")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return path


def run_child(mode: str, config_path: str, page_size: int, timeout: float) -> tuple[dict, float]:
    """(the child's report, its peak RSS in MB)."""
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, "--config", config_path,
                            "--page-size", str(page_size)], stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{mode} child still running after {timeout:.0f} s: killed") from None
    if p.returncode != 0:
        raise SystemExit(f"{mode} child failed with exit code {p.returncode}")
    report = json.loads(p.stdout.strip().splitlines()[-1])
    return report, report["peak_rss_mb"]


class TenantProcess:
    """`msteams emulator serve` in a child process; the parts of `Emulator` this script uses."""

    def __init__(self, users: int, directory: str):
        self.cfg = os.path.join(directory, "tenant.yml")
        self.proc = subprocess.Popen([sys.executable, "-m", "fake_tenant", "serve", "--users", str(users),
                                      "--no-throttling", "--write-config", self.cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=_REPO)
        deadline = time.monotonic() + 90
        while not (os.path.exists(self.cfg) and os.path.getsize(self.cfg)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SystemExit("the fake tenant did not start")
            time.sleep(0.05)

    def write_config(self, path: str) -> None:
        with open(self.cfg, encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
            dst.write(src.read())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--page-size", type=int, default=100, help="the cache-preload default")
    ap.add_argument("--large-users", type=int, default=100_000)
    ap.add_argument("--large-page-size", type=int, default=999, help="Graph's largest $top for users")
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child-timeout", type=float, default=75.0)
    ap.add_argument("--in-process", action="store_true", help="run the fake tenant for the ratio in this process")
    ap.add_argument("--child", choices=("preload", "paging"), help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child, a.config, a.page_size)

    from fake_tenant import Emulator

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        # ---- preload against plain paging, same pages, same client ----
        tenant = Emulator(users=a.users, throttling=False) if a.in_process else TenantProcess(a.users, tmp)
        with tenant as emu:
            if a.in_process:
                directory = list(emu.state.users.values())
            else:  # the directory as Graph lists it (the admin snapshot leaves users out)
                rt = runtime(write_config(emu, tmp, "directory"))
                directory = [u for items in rt.client("app").pages("/users", params={"$select": USER_SELECT},
                                                                   page_size=999) for u in items]
                rt.close()
            paging_s, preload_s = [], []
            for i in range(a.repeat):  # alternated, so drift on a shared machine hits both alike
                rt = runtime(write_config(emu, tmp, f"small{i}"))
                try:
                    t0 = time.perf_counter()
                    n_paged = plain_paging(rt, a.page_size)
                    paging_s.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    n_loaded = preload(rt, a.page_size)
                    preload_s.append(time.perf_counter() - t0)
                    assert n_paged == n_loaded == len(directory), (n_paged, n_loaded)
                    if i == a.repeat - 1:
                        store = rt.store
                finally:
                    pass
            ratio = statistics.median(preload_s) / statistics.median(paging_s)
            where = "in this process" if a.in_process else "in its own process"
            print(f"fake tenant {where}; preload of {a.users} users, page size {a.page_size}: "
                  f"{statistics.median(preload_s):.2f} s; "
                  f"plain paging: {statistics.median(paging_s):.2f} s (median of {a.repeat})")
            print(f"  ratio {ratio:.2f}x (goal <= {GOAL_RATIO}x): {verdict(ratio <= GOAL_RATIO)}")

            # ---- lookups by mail from the store the last preload filled ----
            mails = [u["mail"] for u in directory if u.get("mail")]
            rng = random.Random(0)
            keys = [rng.choice(mails) for _ in range(a.lookups)]
            for k in keys[:1000]:  # warm the page cache and the prepared statement
                store.get("user", k)
            ns, clock, get = [], time.perf_counter_ns, store.get
            for k in keys:
                t0 = clock()
                hit = get("user", k)
                ns.append(clock() - t0)
                if hit is None:
                    raise SystemExit(f"lookup of {k} missed")
            ns.sort()
            p50, p99 = ns[len(ns) // 2] / 1000, ns[int(len(ns) * 0.99)] / 1000
            print(f"lookup by mail over {a.lookups} lookups: p50 {p50:.1f} us, p99 {p99:.1f} us "
                  f"(goal p50 <= {GOAL_P50_US:.0f} us): {verdict(p50 <= GOAL_P50_US)}")
            with store._conn() as c:  # the plan, to show the primary key index serves it
                plan = c.execute("EXPLAIN QUERY PLAN SELECT value, expires FROM cache WHERE kind=? AND key=?",
                                 ("user", "x")).fetchall()
            print(f"  query plan: {plan[0][-1]}")

        # ---- peak RSS of a large preload against paging alone, each in its own process ----
        with Emulator(users=a.large_users, throttling=False) as emu:
            report, paging_rss = run_child("paging", write_config(emu, tmp, "large-paging"), a.large_page_size,
                                           a.child_timeout)
            report2, preload_rss = run_child("preload", write_config(emu, tmp, "large-preload"),
                                             a.large_page_size, a.child_timeout)
            assert report["users"] == report2["users"] == len(emu.state.users)
        print(f"{a.large_users} users, page size {a.large_page_size}: preload process peak RSS {preload_rss:.1f} MB "
              f"in {report2['seconds']:.1f} s; plain paging process {paging_rss:.1f} MB in {report['seconds']:.1f} s")
        print(f"  preload RSS {preload_rss:.1f} MB (goal <= {GOAL_RSS_MB:.0f} MB): {verdict(preload_rss <= GOAL_RSS_MB)}"
              f"; {preload_rss / paging_rss:.2f}x the paging process")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
