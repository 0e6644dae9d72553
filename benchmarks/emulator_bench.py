"""How fast the emulator starts and how many simple Graph GETs per second it serves, next to a
trivial loopback HTTPS server measured the same way in the same run (so the ratio says how
much the emulator's pipeline costs beyond Python's HTTP and TLS stack); and how many Bot
Connector sends per second it serves with throttling off and on (on at a speed so high that
nothing is refused, so the difference is the cost of the bot's limit windows).

    .venv/bin/python benchmarks/emulator_bench.py [--seconds 3] [--starts 5] [--max-requests 20000]

Loopback only; every measurement is bounded by both time and request count.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msal  # noqa: E402
import requests  # noqa: E402

from fake_tenant import Emulator  # noqa: E402
from fake_tenant.tls import TlsMaterial  # noqa: E402


def session(ca: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
    s.verify = ca
    return s


def rate(s: requests.Session, url: str, headers: dict, seconds: float, max_requests: int) -> tuple[float, int]:
    """GETs per second over one keep-alive connection (after a short warm-up)."""
    for _ in range(20):
        s.get(url, headers=headers).raise_for_status()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while n < max_requests and time.perf_counter() < deadline:
        r = s.get(url, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"unexpected {r.status_code} from {url}: {r.text[:200]}")
        n += 1
    return n / (time.perf_counter() - t0), n


def raw_rate(host: str, port: int, path: str, headers: dict, ca: str, seconds: float, max_requests: int) -> float:
    """The same with http.client (much less client overhead than requests)."""
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host, port, context=ctx)
    try:
        for _ in range(20):
            conn.request("GET", path, headers=headers)
            conn.getresponse().read()
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while n < max_requests and time.perf_counter() < deadline:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"unexpected {r.status} from {path}")
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


class _Trivial(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    body = json.dumps({"id": "0", "displayName": "Baseline"}).encode()

    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(self.body)).encode() + b"\r\n\r\n" + self.body)

    def log_message(self, *a):
        pass


def baseline(seconds: float, max_requests: int) -> tuple[float, float]:
    tls = TlsMaterial()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Trivial)
    srv.daemon_threads = True
    srv.socket = tls.server_context().wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        port = srv.server_address[1]
        with session(tls.ca_path) as s:
            rps, _ = rate(s, f"https://127.0.0.1:{port}/v1.0/users/0", {}, seconds, max_requests)
        raw = raw_rate("127.0.0.1", port, "/v1.0/users/0", {}, tls.ca_path, seconds, max_requests)
    finally:
        srv.shutdown()
        srv.server_close()
        tls.cleanup()
    return rps, raw


def app_token(emu: Emulator, s: requests.Session) -> str:
    cfg = emu.config()
    app = msal.ConfidentialClientApplication(cfg["client_id"], client_credential=cfg["client_secret"],
                                             authority=cfg["authority"], instance_discovery=False, http_client=s)
    return app.acquire_token_for_client(["https://graph.microsoft.com/.default"])["access_token"]


def bot_send_rate(emu: Emulator, s: requests.Session, seconds: float, max_requests: int) -> tuple[float, int]:
    """Bot activity POSTs per second, round robin over 1:1 conversations with every seeded user."""
    cfg = emu.config()
    app = msal.ConfidentialClientApplication(cfg["bot_id"], client_credential=cfg["bot_secret"],
                                             authority=cfg["authority"], instance_discovery=False, http_client=s)
    hdr = {"Authorization": "Bearer " + app.acquire_token_for_client(
        ["https://api.botframework.com/.default"])["access_token"]}
    url = emu.bot_service_url + "v3/conversations"
    convs = []
    for uid in list(emu.state.users)[:20]:
        body = {"bot": {"id": "28:" + cfg["bot_id"]}, "members": [{"id": "29:" + uid}],
                "tenantId": cfg["tenant_id"], "isGroup": False}
        r = s.post(url, headers=hdr, json=body)
        r.raise_for_status()
        convs.append(f"{url}/{r.json()['id']}/activities")
    activity = {"type": "message", "text": "benchmark"}
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while n < max_requests and time.perf_counter() < deadline:
        r = s.post(convs[n % len(convs)], headers=hdr, json=activity)
        if r.status_code != 201:
            raise SystemExit(f"unexpected {r.status_code} from a bot send: {r.text[:200]}")
        n += 1
    return n / (time.perf_counter() - t0), n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="length of each throughput run")
    p.add_argument("--starts", type=int, default=5, help="emulator starts to time")
    p.add_argument("--max-requests", type=int, default=20000, help="cap on requests per run")
    args = p.parse_args(argv)

    starts = []
    for _ in range(args.starts):
        t = time.perf_counter()
        emu = Emulator().start()
        starts.append(time.perf_counter() - t)
        emu.stop()
    print(f"emulator start (default tenant): median {statistics.median(starts) * 1000:.0f} ms "
          f"(min {min(starts) * 1000:.0f}, max {max(starts) * 1000:.0f}, n={len(starts)})")

    t = time.perf_counter()
    big = Emulator(users=10_000)
    load = time.perf_counter() - t
    t = time.perf_counter()
    big.start()
    print(f"emulator with 10,000 users: tenant build {load * 1000:.0f} ms + start {(time.perf_counter() - t) * 1000:.0f} ms")
    big.stop()

    base, base_raw = baseline(args.seconds, args.max_requests)
    print(f"baseline trivial loopback HTTPS handler: {base:,.0f} GETs/s with requests, "
          f"{base_raw:,.0f} GETs/s with http.client")

    for label, users in (("default tenant", None), ("10,000 users", 10_000)):
        with Emulator(users=users, throttling=False) as emu, session(emu.ca_bundle) as s:
            hdr = {"Authorization": "Bearer " + app_token(emu, s)}
            uid = emu.state.service_account
            upn = emu.state.users[uid]["userPrincipalName"]
            for key_label, key in (("id", uid), ("UPN", upn)):
                rps, n = rate(s, f"{emu.graph_url}/users/{key}", hdr, args.seconds, args.max_requests)
                print(f"emulator GET /v1.0/users/{{{key_label}}} ({label}): {rps:,.0f} GETs/s "
                      f"({n} requests, {rps / base:.2f}x baseline) with requests")
            raw = raw_rate("127.0.0.1", emu.port, f"/v1.0/users/{uid}", hdr, emu.ca_bundle, args.seconds,
                           args.max_requests)
            print(f"emulator GET /v1.0/users/{{id}} ({label}): {raw:,.0f} GETs/s "
                  f"({raw / base_raw:.2f}x baseline) with http.client")

    for throttling in (False, True):
        # speed 1e6: every window holds a million times its published size, so nothing is
        # refused and the run measures only what checking the windows costs.
        with Emulator(throttling=throttling, speed=1e6) as emu, session(emu.ca_bundle) as s:
            rps, n = bot_send_rate(emu, s, args.seconds, args.max_requests)
            print(f"emulator bot sends, throttling {'on' if throttling else 'off'}: {rps:,.0f} POSTs/s "
                  f"({n} requests, {rps / base:.2f}x baseline) with requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
