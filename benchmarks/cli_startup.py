"""How long `msteams --help` takes to start, against `python -c pass` in the same run.

Goal: under 0.3 s. Run: .venv/bin/python benchmarks/cli_startup.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def timed(cmd: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> int:
    base = timed([sys.executable, "-c", "pass"])
    cli = timed([sys.executable, "-m", "integration.cli", "--help"])
    helpc = timed([sys.executable, "-m", "integration.cli", "help", "chat-create"])
    print(f"python -c pass          median {base * 1000:7.1f} ms")
    print(f"msteams --help          median {cli * 1000:7.1f} ms   ratio {cli / base:5.2f}x   goal < 300 ms: "
          f"{'met' if cli < 0.3 else 'NOT met'}")
    print(f"msteams help chat-create median {helpc * 1000:7.1f} ms   ratio {helpc / base:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
