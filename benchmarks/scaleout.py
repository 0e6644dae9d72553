"""Scale-out of the worker pool: 2,000 bot notifications queued with send-notification
queue=true and sent by 1, 2 and 4 `msteams worker` processes through one fake tenant that
throttles at Microsoft's published limits (times --speed), one Redis for the queue and the
shared pacing budget; in the 4-worker run one worker is SIGKILLed halfway and the others take
its jobs over after the visibility timeout.

Per run it prints the aggregate rate of the bot's requests over the limit they share (50 a
second per app, x speed): the throttle lower bound of the requests the tenant answered
(benchmarks/fanout.py's) over the span from the first to the last of them; 429s the tenant
answered and 429s that reached a caller (a worker's job failing on one); recipients never
reached (lost; those reported `unknown` by the outbox are shown apart) and recipients reached
twice (duplicated), all read from the fake tenant's own state. Goals: >= 0.9x the limit with 2
and 4 workers, 0 surfaced 429s, 0 lost, 0 duplicated.

    .venv/bin/python benchmarks/scaleout.py [--notifications 2000] [--speed 1] [--workers 1,2,4]

The fake tenant, Redis and every worker run in processes of their own; every wait is bounded.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import yaml  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from fanout import Tenant, lower_bound  # noqa: E402
from integration.engine import config as config_mod  # noqa: E402
from integration.dispatch import Runtime, execute  # noqa: E402
from integration.delivery.limits import BOT_PER_APP  # noqa: E402
from integration.delivery.queue import JobQueue  # noqa: E402


class Redis:
    def __init__(self, workdir: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", workdir,
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def recipients(tenant: Tenant, n: int, work: str) -> list[str]:
    cfg = config_mod.load(tenant.cfg_path)
    cfg.store_path = os.path.join(work, "dir.sqlite3")
    rt = Runtime(cfg)
    rt.pacer.enabled = False
    try:
        page = rt.client("app").paged("/users", params={"$select": "id,mail"}, page_size=999, limit=n + 50)
    finally:
        rt.close()
    ids = sorted(u["id"] for u in page.items if u.get("mail") != cfg.service_account)
    if len(ids) < n:
        raise SystemExit(f"the tenant has {len(ids)} users, {n} needed")
    return ids[:n]


def one_run(tenant: Tenant, redis: Redis, work: str, ids: list[str], workers: int, ns) -> dict:
    n = len(ids)
    text = f"scale-out run with {workers} worker(s)"
    cfg_path = os.path.join(work, f"workers{workers}.yml")
    data = yaml.safe_load(open(tenant.cfg_path, encoding="utf-8"))
    data.update(store_path=os.path.join(work, f"store{workers}.sqlite3"), store_url=redis.url,
                store_namespace=f"bench{workers}", pacing_speed=ns.speed, fanout_workers=ns.concurrency,
                store_key=Fernet.generate_key().decode())  # the shared store (when in Redis) is encrypted
    with open(cfg_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    cfg = config_mod.load(cfg_path)
    rt = Runtime(cfg)
    rt.echo = lambda s: None
    rt.quiet = True
    try:
        queued = execute("send-notification", {"user": ids, "message": text, "message_format": "text",
                                               "queue": True}, rt).outputs
    finally:
        rt.close()
    assert sum(r["status"] == "queued" for r in queued) == n, "not every notification was queued"
    q = JobQueue.from_config(cfg)
    before = len(tenant.get("requests")["requests"])
    env = dict(os.environ, MSTEAMS_CONFIG=cfg_path, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "worker", "--name", f"w{i}",
                               "--concurrency", str(ns.concurrency), "--visibility-timeout", str(ns.visibility),
                               "--until-empty"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(workers)]
    t0 = time.monotonic()
    killed, held = None, 0
    if workers >= 4:  # one worker dies halfway, holding jobs
        deadline = time.monotonic() + 1200
        while q.status()["length"] > n // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        killed = "w0"
        held = next((c["pending"] for c in q.status()["consumers"] if c["name"] == "w0"), 0)
    outs = [p.communicate(timeout=1800) for p in procs]
    wall = time.monotonic() - t0
    codes = [p.returncode for p in procs]
    log = tenant.requests_since(before)
    bot = [e for e in log if e["path"].startswith("/botframework") and "/v3/conversations" in e["path"]]
    answered = [e for e in bot if e["status"] != 429]
    span = _t(answered[-1]["time"]) - _t(answered[0]["time"]) if len(answered) > 1 else 0.0
    bound = lower_bound(answered, ns.speed)
    state = tenant.get("state")
    per = collections.Counter(a["conversationId"] for a in state["activities"] if a["activity"].get("text") == text)
    store_rt = Runtime(cfg)
    try:
        unknown = len(store_rt.store.outbox_list("unknown", 100_000))
    finally:
        store_rt.close()
    st = q.status()
    surfaced = sum(line.count("throttled") for _, err in outs for line in err.splitlines() if "tried again" in line)
    surfaced += sum(1 for d in q.dead_letters(1000) if "429" in (d["reason"] or "") or "throttl" in (d["reason"] or ""))
    limit = BOT_PER_APP[0][0] / BOT_PER_APP[0][1] * ns.speed
    return {"workers": workers, "wall_s": round(wall, 2), "span_s": round(span, 2),
            "bot_requests": len(answered), "rate_per_s": round((len(answered) - 1) / span, 2) if span else None,
            "limit_per_s": limit, "ratio": round(bound / span, 3) if span else None,
            "429s_seen_by_service": sum(1 for e in bot if e["status"] == 429), "429s_surfaced": surfaced,
            "lost": n - len(per), "unknown": unknown, "duplicated": sum(c - 1 for c in per.values() if c > 1),
            "killed": killed, "jobs_held_by_the_killed": held, "exit_codes": codes, "queue_left": st["length"], "dead_letters": st["dead"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notifications", type=int, default=2000)
    ap.add_argument("--speed", type=float, default=1.0, help="the fake tenant's limits x this (and the pacer's)")
    ap.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated")
    ap.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    ap.add_argument("--visibility", type=float, default=10.0, help="worker --visibility-timeout (s)")
    ns = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as work:
        tenant = Tenant(ns.notifications + 60, ns.speed, work)
        redis = Redis(work)
        try:
            ids = recipients(tenant, ns.notifications, work)
            for k in (int(x) for x in ns.workers.split(",")):
                results.append(one_run(tenant, redis, work, ids, k, ns))
                r = results[-1]
                print(f"  {k} worker(s): {r['ratio']}x the limit, {r['wall_s']} s", file=sys.stderr, flush=True)
        finally:
            redis.stop()
            tenant.stop()
    print(f"{ns.notifications} bot notifications through the worker pool; fake tenant throttling at the "
          f"published limits x{ns.speed:g} (bot: {BOT_PER_APP[0][0]}/s per app -> {BOT_PER_APP[0][0] * ns.speed:g}/s); "
          f"{ns.concurrency} jobs at once per worker; visibility timeout {ns.visibility:g} s")
    print(f"{'workers':>7} {'wall s':>7} {'span s':>7} {'bot req':>7} {'req/s':>7} {'ratio':>6} {'429 svc':>7} "
          f"{'429 out':>7} {'lost':>5} {'unknown':>7} {'dup':>4}  note")
    for r in results:
        note = (f"one worker SIGKILLed halfway holding {r['jobs_held_by_the_killed']} jobs, taken over"
                if r["killed"] else "")
        print(f"{r['workers']:7d} {r['wall_s']:7.2f} {r['span_s']:7.2f} {r['bot_requests']:7d} "
              f"{r['rate_per_s'] or 0:7.2f} {r['ratio'] or 0:6.3f} {r['429s_seen_by_service']:7d} "
              f"{r['429s_surfaced']:7d} {r['lost']:5d} {r['unknown']:7d} {r['duplicated']:4d}  {note}")
    for r in results:
        if r["workers"] >= 2:
            met = (r["ratio"] or 0) >= 0.9 and r["429s_surfaced"] == 0 and r["lost"] == 0 and r["duplicated"] == 0
            print(f"goal {r['workers']} workers: {'met' if met else 'NOT met'}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
