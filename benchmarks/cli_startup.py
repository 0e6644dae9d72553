"""How long the CLI takes to start, as ratios to `python -c pass` measured in the same run.

Each command runs N times as a subprocess (rounds interleave the commands, so that a machine
getting busier or quieter affects them alike) after warm-up runs that fill the registry cache
and the bytecode cache, as on any installed system. Goals:

    msteams --help              <= 2.0 x python -c pass
    msteams help chat-create    <= 2.0 x
    msteams cache-show          <= 2.5 x   (registry + config + store; no network request)

The registry cache lives in a temporary XDG_CACHE_HOME (so the run neither reads nor writes
the user's), and cache-show gets a minimal config whose store is in the same directory. The
modules a path should never import (yaml, jsonschema, requests, msal on the help paths) are
checked with `python -X importtime` and listed.

Run: .venv/bin/python benchmarks/cli_startup.py [-n RUNS] [--check]
(--check: exit 1 when a goal is not met.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("yaml", "jsonschema", "requests", "msal")


def msteams() -> list[str]:
    script = Path(sys.executable).with_name("msteams")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "integration.frontends.cli"]


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def imported(cmd: list[str], env: dict) -> set[str]:
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=env, text=True)
    names = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=21, help="timed runs per command (default 21)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per command first (default 3)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    ns = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="msteams-startup-"))
    try:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
        env.pop("MSTEAMS_REGISTRY", None)
        env.update(XDG_CACHE_HOME=str(tmp / "cache"), XDG_DATA_HOME=str(tmp / "data"))
        config = tmp / "config.yml"
        config.write_text(f"store_path: {tmp / 'store.sqlite3'}\n", encoding="utf-8")
        ms = msteams()
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"], None),
            ("msteams --help", ms + ["--help"], 2.0),
            ("msteams help chat-create", ms + ["help", "chat-create"], 2.0),
            ("msteams cache-show", ms + ["--config", str(config), "cache-show"], 2.5),
        ]
        for _ in range(ns.warmup):
            for _, cmd, _ in cases:
                run(cmd, env)
        cached = sorted(p.name for p in (tmp / "cache" / "msteams-soar").glob("registry-*.json"))
        samples: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        for _ in range(ns.runs):
            for label, cmd, _ in cases:
                samples[label].append(run(cmd, env))
        base = statistics.median(samples["python -c pass"])
        print(f"{ns.runs} runs each, median wall time; registry cache warm: {'yes' if cached else 'NO'}")
        met_all = True
        for label, cmd, goal in cases:
            med = statistics.median(samples[label])
            line = f"{label:26} {med * 1000:7.1f} ms   {med / base:5.2f}x"
            if goal is not None:
                ok = med / base <= goal
                met_all &= ok
                heavy = sorted(imported(cmd, env) & set(HEAVY))
                line += f"   goal <= {goal:.1f}x: {'met' if ok else 'NOT met'}"
                line += f"   heavy imports: {', '.join(heavy) or 'none'}"
            print(line)
        print("all goals met" if met_all else "some goals NOT met")
        return 1 if ns.check and not met_all else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
