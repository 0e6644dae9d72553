"""Refresh soak: N processes (default 8) share one context store and run delegated `msteams`
commands against the fake tenant, all starting at the same moment, for a while (default 30 s),
with access tokens that live under MSAL's five-minute margin, so every command must refresh
the one delegated token. Refresh tokens rotate and are single-use (the fake tenant enforces
it): without the store's lock, processes redeeming the same refresh token fail with
invalid_grant ("sign in again").

Each process runs the CLI's main() back to back, a fresh runtime (config, store, token cache
read from the store) per command, as a SOAR worker does; --spawn instead starts a new
`msteams` process per command (N at a time), fewer commands since each pays the start-up.

Prints commands run, failures (goal 0), refreshes redeemed and refresh tokens refused
(presented after another process had redeemed them: goal 0), from the fake tenant's count.

    .venv/bin/python benchmarks/refresh_soak.py [--processes 8] [--seconds 30] [--token-lifetime 60]
                                                [--spawn] [--unlocked]

--unlocked runs the same soak with the lock disabled in each process (a benchmark-only patch),
to show what the lock prevents. The fake tenant runs in its own process without throttling
(the soak is about tokens); every loop is bounded and the run stops by itself.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import requests  # noqa: E402
import yaml  # noqa: E402

_PATCH = """import sys, time
if sys.argv[1] == "unlocked":  # benchmark only: the token lock patched out
    import contextlib
    from integration.graph import auth
    auth.Auth.token_lock = lambda self, flow: contextlib.nullcontext()
from integration.graph import tokenlock
HOLDS = []  # (seconds waited for the lock, seconds held)
_enter, _exit = tokenlock.StoreLock.__enter__, tokenlock.StoreLock.__exit__
def _timed_enter(self):
    t0 = time.monotonic()
    _enter(self)
    self._t = time.monotonic()
    self._w = self._t - t0
    return self
def _timed_exit(self, *exc):
    _exit(self, *exc)
    HOLDS.append((self._w, time.monotonic() - self._t))
tokenlock.StoreLock.__enter__, tokenlock.StoreLock.__exit__ = _timed_enter, _timed_exit
from integration.frontends.cli import main
"""
# One command per process (--spawn).
BOOT = _PATCH + "sys.exit(main(sys.argv[2:]))\n"
# Commands back to back until the deadline read from stdin (sent once every worker is warm);
# a JSON summary at the end.
LOOP = _PATCH + """import json
import msal, requests  # warm: imports and the registry, so that the soak times commands
from integration import dispatch
from integration.engine import registry
from integration.graph import client as graph
registry.default_registry()
argv = sys.argv[2:]
print("ready", flush=True)
deadline = float(sys.stdin.readline())
runs = []
while time.time() < deadline:
    errs = []
    t0 = time.monotonic()
    rc = main(list(argv), out=lambda s: None, err=errs.append)
    runs.append([rc, errs[0] if errs else "", time.monotonic() - t0])
print(json.dumps({"runs": runs, "holds": HOLDS}))
"""


class Tenant:
    """`msteams emulator serve` in a subprocess, read through its admin endpoints."""

    def __init__(self, workdir: str, token_lifetime: int):
        self.cfg_path = os.path.join(workdir, "emu.yml")
        self.proc = subprocess.Popen([sys.executable, "-m", "fake_tenant", "serve", "--no-throttling",
                                      "--token-lifetime", str(token_lifetime), "--write-config", self.cfg_path],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while not (os.path.exists(self.cfg_path) and os.path.getsize(self.cfg_path)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the fake tenant did not start: {self.proc.stdout.read()}")
            time.sleep(0.05)
        cfg = yaml.safe_load(open(self.cfg_path, encoding="utf-8"))
        cfg["store_path"] = os.path.join(workdir, "store.sqlite3")
        fd = os.open(self.cfg_path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        self.admin = cfg["graph_url"].split("/v1.0")[0] + "/_emulator"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = cfg["ca_bundle"]

    def refresh_stats(self) -> dict:
        return self.http.get(f"{self.admin}/refresh-tokens", timeout=30).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def command(cfg_path: str, mode: str, argv: list[str], timeout: float) -> tuple[int, str, float]:
    env = dict(os.environ, MSTEAMS_CONFIG=cfg_path)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", BOOT, mode, *argv], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stderr.strip(), time.monotonic() - t0
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s", time.monotonic() - t0


def soak_spawn(tenant: "Tenant", processes: int, seconds: float, mode: str, argv: list[str]) -> tuple[list, float]:
    """N `msteams` processes at a time, a new one per command, until the time is up."""
    lock = threading.Lock()
    runs: list = []
    deadline = time.monotonic() + seconds

    def worker():
        while time.monotonic() < deadline:
            r = command(tenant.cfg_path, mode, argv, timeout=max(60.0, seconds))
            with lock:
                runs.append(r)

    threads = [threading.Thread(target=worker) for _ in range(processes)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs, time.monotonic() - t0


def soak_loop(tenant: "Tenant", processes: int, seconds: float, mode: str, argv: list[str]) -> tuple[list, float]:
    """N long-lived processes, each running commands back to back, all from the same moment."""
    env = dict(os.environ, MSTEAMS_CONFIG=tenant.cfg_path)
    procs = [subprocess.Popen([sys.executable, "-c", LOOP, mode, *argv], cwd=REPO, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"a worker did not start: {p.stderr.read()[-500:]}")
    t0 = time.monotonic()
    deadline = time.time() + seconds
    for p in procs:  # all go at once
        p.stdin.write(f"{deadline}\n")
        p.stdin.flush()
    runs: list = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 300)
        if p.returncode != 0:
            runs.append((-1, f"worker crashed: {err.strip()[-300:]}", 0.0))
            continue
        data = json.loads(out)
        runs.extend(tuple(r) for r in data["runs"])
        HOLDS.extend(tuple(h) for h in data["holds"])
    return runs, time.monotonic() - t0


HOLDS: list = []  # (waited, held) per lock taken, from the --loop workers


def summary(runs: list, wall: float) -> dict:
    failed = [r for r in runs if r[0] != 0]
    reasons = collections.Counter(_reason(err) for _, err, _ in failed)
    latencies = sorted(r[2] for r in runs)
    return {"commands": len(runs), "failures": len(failed), "wall": wall, "reasons": reasons,
            "p50": statistics.median(latencies) if latencies else 0.0,
            "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0}


def _reason(stderr: str) -> str:
    line = (stderr.splitlines() or ["(no message)"])[0]
    for key in ("invalid_grant", "could not take the lock", "timed out"):
        if key in line:
            return key
    return line[:120]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int, default=8, help="msteams processes at a time (default 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to keep starting commands (default 30)")
    p.add_argument("--token-lifetime", type=int, default=60,
                   help="access token lifetime in seconds (default 60: under MSAL's 300 s margin, so every "
                        "command refreshes)")
    p.add_argument("--spawn", action="store_true", help="a new msteams process per command (N at a time)")
    p.add_argument("--unlocked", action="store_true", help="disable the token lock (to see what it prevents)")
    args = p.parse_args(argv)
    cmd = ["--flow", "delegated", "channel-list", "--team", "IT Helpdesk"]
    with tempfile.TemporaryDirectory() as work:
        tenant = Tenant(work, args.token_lifetime)
        try:
            rc, err, _ = command(tenant.cfg_path, "locked", ["auth", "login"], timeout=120)
            if rc != 0:
                raise SystemExit(f"sign-in failed: {err}")
            rc, err, _ = command(tenant.cfg_path, "locked", cmd, timeout=120)  # the team's name into the store
            if rc != 0:
                raise SystemExit(f"the warm-up command failed: {err}")
            before = tenant.refresh_stats()
            mode = "unlocked" if args.unlocked else "locked"
            how = "a new process per command" if args.spawn else "commands back to back in each"
            print(f"refresh soak: {args.processes} processes ({how}), {args.seconds:.0f} s, access tokens live "
                  f"{args.token_lifetime} s, token lock {'DISABLED' if args.unlocked else 'on'}; "
                  f"each command: msteams {' '.join(cmd)}", flush=True)
            runs, wall = (soak_spawn if args.spawn else soak_loop)(tenant, args.processes, args.seconds, mode, cmd)
            r = summary(runs, wall)
            after = tenant.refresh_stats()
        finally:
            tenant.stop()
    redeemed = after["redeemed"] - before["redeemed"]
    refused = after["refused"] - before["refused"]
    print(f"  commands run          {r['commands']} in {r['wall']:.1f} s ({r['commands'] / r['wall']:.1f}/s; "
          f"per command p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms)")
    print(f"  failures              {r['failures']}  (goal 0)")
    for reason, n in r["reasons"].most_common(5):
        print(f"      {n} x {reason}")
    print(f"  refreshes redeemed    {redeemed}  ({redeemed / max(1, r['commands']):.2f} per command)")
    print(f"  refresh tokens refused {refused}  (presented after another process redeemed them; goal 0)")
    if HOLDS:
        waits, helds = sorted(h[0] for h in HOLDS), sorted(h[1] for h in HOLDS)
        print(f"  token lock            taken {len(HOLDS)} times; wait p50 {statistics.median(waits) * 1000:.0f} ms, "
              f"max {waits[-1] * 1000:.0f} ms; held p50 {statistics.median(helds) * 1000:.0f} ms, "
              f"max {helds[-1] * 1000:.0f} ms")
    return 0 if r["failures"] == 0 and refused == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
