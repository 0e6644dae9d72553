"""Kills mid fan-out, then a re-run with the same run key: is anything lost, sent twice, or left
"unknown" that need not be? (issue 24, "Tests and figures").

A 200-recipient bot fan-out (a playbook step `send-notification` over the recipients, in
parallel) and a 200-recipient chat fan-out (`message-send-to-chat` to each recipient's 1:1
chat, delegated) each run as `msteams playbook run --run-key K` in a subprocess, killed with
SIGKILL at a random moment, then run again with the same key until the run ends. The fake
tenant (its own process, on loopback) is the judge: per recipient, how many messages of that
run arrived. It reports, over all kills:

- lost:       recipients without the message after the run ended ok;
- duplicated: messages beyond the first to one recipient;
- unknown:    items the finished run reports as of unknown outcome (at most the fan-out's
              concurrency per kill where nothing can be read back; 0 where it can: chats).

    .venv/bin/python benchmarks/kill_fanout.py [--kills 20] [--recipients 200] [--speed 4] [--parallel 8]

Not part of the test suite (minutes of wall time); every loop is bounded and it stops by itself.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
import yaml  # noqa: E402

PLAYBOOK = {
    "bot": """\
name: kill-bot
inputs:
  users: {type: array, required: true}
  text: {type: string, required: true}
steps:
  - id: notify
    command: send-notification
    foreach: ${inputs.users}
    parallel: %(parallel)d
    args: {user: "${item}", message: "${inputs.text}"}
""",
    "chat": """\
name: kill-chat
inputs:
  users: {type: array, required: true}
  text: {type: string, required: true}
steps:
  - id: post
    command: message-send-to-chat
    foreach: ${inputs.users}
    parallel: %(parallel)d
    args: {chat: "${item}", content: "${inputs.text}"}
""",
}


class Tenant:
    def __init__(self, users: int, speed: float, workdir: str):
        self.cfg_path = os.path.join(workdir, "emu.yml")
        self.proc = subprocess.Popen([sys.executable, "-m", "fake_tenant", "serve", "--users", str(users),
                                      "--speed", str(speed), "--write-config", self.cfg_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (os.path.exists(self.cfg_path) and os.path.getsize(self.cfg_path)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the fake tenant did not start")
            time.sleep(0.05)
        cfg = yaml.safe_load(open(self.cfg_path, encoding="utf-8"))
        cfg["store_path"] = os.path.join(workdir, "store.sqlite3")  # the client's own store, whatever it writes
        with open(self.cfg_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        self.admin = cfg["graph_url"].split("/v1.0")[0] + "/_emulator"
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = cfg.get("ca_bundle")

    def state(self) -> dict:
        return self.http.get(f"{self.admin}/state", timeout=60).json()

    def users(self, n: int, service_account: str) -> list[str]:
        env = dict(os.environ, MSTEAMS_CONFIG=self.cfg_path)
        r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "-o", "json", "user-list", "--limit",
                            str(n + 1), "--page-size", "999"], env=env, capture_output=True, text=True, timeout=120)
        mails = [u.get("mail") or u["userPrincipalName"] for u in json.loads(r.stdout)]
        mails = [m for m in mails if m.lower() != service_account.lower()][:n]
        if len(mails) < n:
            raise SystemExit(f"the tenant has {len(mails)} users, {n} needed")
        return mails

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def arrived(state: dict, kind: str, text: str) -> collections.Counter:
    """Messages of this run per conversation, as the tenant holds them."""
    if kind == "bot":
        return collections.Counter(a["conversationId"] for a in state["activities"]
                                   if a["activity"].get("text") == text)
    return collections.Counter(cid for cid, ch in state["chats"].items() for m in ch["messages"]
                               if text in ((m.get("body") or {}).get("content") or ""))


def run_once(cfg: str, pb: str, users: list[str], text: str, key: str, kill_after: float | None) -> dict | None:
    env = dict(os.environ, MSTEAMS_CONFIG=cfg)
    cmd = [sys.executable, "-m", "integration.frontends.cli", "-q", "-o", "json", "playbook", "run", pb,
           "--run-key", key, "--input", f"text={text}"] + [a for u in users for a in ("--input", f"users={u}")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return None
    out, _ = proc.communicate(timeout=900)
    try:
        return json.loads(out)
    except ValueError:
        return {"status": "error", "steps": [], "raw": out[-500:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--recipients", type=int, default=200)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--only", choices=("bot", "chat"))
    ap.add_argument("--seed", type=int, default=7)
    ns = ap.parse_args()
    rng = random.Random(ns.seed)
    totals = {}
    with tempfile.TemporaryDirectory() as work:
        tenant = Tenant(ns.recipients + 20, ns.speed, work)
        try:
            env = dict(os.environ, MSTEAMS_CONFIG=tenant.cfg_path)
            subprocess.run([sys.executable, "-m", "integration.frontends.cli", "auth", "login"], env=env,
                           check=True, capture_output=True, timeout=120)
            account = yaml.safe_load(open(tenant.cfg_path, encoding="utf-8"))["service_account"]
            users = tenant.users(ns.recipients, account)  # not the service account: no 1:1 chat with itself
            for kind in ("bot", "chat"):
                if ns.only and kind != ns.only:
                    continue
                pb = os.path.join(work, f"{kind}.yml")
                with open(pb, "w", encoding="utf-8") as f:
                    f.write(PLAYBOOK[kind] % {"parallel": ns.parallel})
                # How long an unkilled run takes, to kill at random moments inside it.
                t0 = time.perf_counter()
                run_once(tenant.cfg_path, pb, users, f"{kind} calibration", f"{kind}-cal", None)
                full = time.perf_counter() - t0
                lost = dup = unknown = reruns = 0
                for k in range(ns.kills):
                    text, key = f"{kind} kill {k} {rng.random():.6f}", f"{kind}-kill-{k}"
                    run_once(tenant.cfg_path, pb, users, text, key, rng.uniform(0.3, max(0.5, full * 0.9)))
                    result = None
                    for _ in range(5):  # resume until the run ends (ok, or failed with its items reported)
                        result = run_once(tenant.cfg_path, pb, users, text, key, None)
                        reruns += 1
                        if result and result.get("status") == "ok":
                            break
                    got = arrived(tenant.state(), kind, text)
                    lost += max(0, len(users) - len(got))
                    dup += sum(n - 1 for n in got.values() if n > 1)
                    step = (result or {}).get("steps", [{}])[0]
                    unknown += sum(1 for i in step.get("items") or [] if "outcome unknown" in (i.get("error") or ""))
                totals[kind] = {"kills": ns.kills, "recipients": len(users), "full_run_s": round(full, 1),
                                "lost": lost, "duplicated": dup, "unknown": unknown, "reruns": reruns,
                                "unknown_bound": ns.parallel * ns.kills if kind == "bot" else 0}
                print(json.dumps({kind: totals[kind]}), flush=True)
        finally:
            tenant.stop()
    ok = all(t["lost"] == 0 and t["duplicated"] == 0 and t["unknown"] <= t["unknown_bound"] for t in totals.values())
    print("goals: 0 lost, 0 duplicated, unknown <= concurrency x kills (bot), 0 (chat):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
