"""`emulator serve` (fake_tenant/serve.py) run in a thread for the tests of the fake tenant's own
command line: started with its arguments, its written config read once it exists, stopped
(and its exit code kept) when the block ends."""
from __future__ import annotations

import contextlib
import threading

import yaml


@contextlib.contextmanager
def serving(args: list[str], cfg_path, *, timeout: float = 10.0):
    """``with serving([...], path) as run:`` — ``run["config"]`` is the config it wrote; after
    the block, ``run["rc"]`` is serve's exit code (``--write-config PATH`` is added)."""
    from fake_tenant import serve

    stop = threading.Event()
    run: dict = {}
    t = threading.Thread(target=lambda: run.update(rc=serve.main([*args, "--write-config", str(cfg_path)],
                                                                  stop_event=stop)))
    t.start()
    try:
        for _ in range(int(timeout / 0.05)):
            if cfg_path.exists() and cfg_path.stat().st_size:
                break
            stop.wait(0.05)
        run["config"] = yaml.safe_load(cfg_path.read_text())
        yield run
    finally:
        stop.set()
        t.join(20)
