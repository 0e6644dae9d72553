"""The HTTP API (`msteams serve`) and the bot endpoint measured against baselines taken in the
same run, on loopback, on the fake tenant (issue 25, "Tests and figures"):

  a. what a command pays over HTTP on top of the Python API: p50 and p99 of `cache-show` (read
     from the store alone) and `team-list` (one Graph GET a call, paced under Graph's limits,
     timed over at most 100 calls) through
     `integration.api.Client.execute` beside `POST /v1/commands/...` over one kept-alive
     `requests.Session` (goal: p50 <= 1.5 ms more); and, shown without a goal, `channel-list`:
     its team's id comes from the cache after the first call, but the channels are read from
     Graph on every call, paced under Teams' per-team limit (~250 ms a call after the first
     two), so it is timed over a few calls only. Shown beside, without a goal: the same calls
     over a lean client (http.client, as in c), which tells the service's share from what
     `requests` costs the caller. The paths take turns (SLICES blocks of each), and a block
     of Graph calls is followed by a pause of a Graph window (--graph-pause), so no path is
     paced for another's calls. First, a burst of 2 x 8 concurrent `team-list` calls starts
     all the service's pool threads, as in a service that has been in use (one that has only
     ever seen one call at a time has a single thread);
  b. 200 concurrent clients (threads, a `requests.Session` each) on the cached read
     (`cache-show`) for a bounded time: requests per second, p50/p99, errors (goal: 0 errors);
  c. the service (`cache-show`) and the bot endpoint (`POST /api/messages`, a signed `!help`
     activity: it answers at once and works in the background) each against a plain Starlette
     echo app served by the same code with the same uvicorn settings (`ServiceServer`), at
     concurrency 8 over kept-alive connections, each and its echo taking turns (four each, a
     quarter of ``--seconds`` a turn: a change in a shared machine's load weighs on both alike):
     requests per second and the ratio to the echo
     (goal: >= 0.5 each), the server process's CPU time per request (Linux), which varies
     less than requests per second on a machine shared with other work, its thread switches
     per request, and how many requests its event loop ran per commit (the lane's metrics).

    .venv/bin/python benchmarks/api.py [-n 1000] [--clients 200] [--seconds 5] [--graph-pause 1.1]
        [--store-url redis://HOST:PORT/DB] [--check]

Ratios and differences only mean something within one run on one machine: nothing here is
asserted by a test. Prints a table and the goals met or not; exits 0 either way unless
``--check`` (then 1 when a goal is not met). The fake tenant runs in this process (its Teams
side signs the bot's tokens); the service and the echo app run in processes of their own.
Every phase is bounded in count and time, and everything started here is stopped. With
``--store-url`` everything runs on a Redis store (a namespace of the run's own, removed at the
end): the figures of a deployment of several hosts; the goals are the SQLite store's, shown
but not judged (a Redis store has no lane: each request goes to the pool).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

SOC = "Security Operations"
BOB = "bob.smith@contoso.example"
READS = (("cache-show", {}, None), ("team-list", {}, 100), ("channel-list", {"team": SOC}, 20))  # name, args, cap
CONCURRENCY = 8
SLICES = 4  # turns each path takes in (a), and each service and its echo in (c)
# Seconds after a block of Graph calls in (a) (--graph-pause): Teams' limits count by the second
# (limits.py), so the next block (another path, maybe in another process with a pacer of its
# own) starts afresh.
GRAPH_WINDOW = 1.1


# ---------------------------------------------------------------- the echo app (a process of its own)

def echo_server(url_file: str) -> None:
    """A Starlette app that answers each POST with its body, served as `msteams serve` serves
    (ServiceServer: the same socket, uvicorn settings and signal handling)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from integration.frontends.service.server import ServiceServer

    async def echo(request):
        return Response(await request.body(), media_type="application/json")

    server = ServiceServer(Starlette(routes=[Route("/echo", echo, methods=["POST"])]), port=0)
    with open(url_file + ".tmp", "w") as f:
        f.write(server.url)
    os.replace(url_file + ".tmp", url_file)
    server.run()


# ---------------------------------------------------------------- processes

class Process:
    """A server in a child process, its URL read from the file it writes; stopped with SIGTERM."""

    def __init__(self, argv: list[str], url_file: str, env: dict):
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(url_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{argv[2:4]} did not start: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        self.url = open(url_file).read().strip()

    def cpu_seconds(self) -> float | None:
        """User and system CPU time of the server's process so far (Linux: /proc; else None)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def settle(self, limit: float = 5.0) -> None:
        """Wait (up to ``limit`` seconds) until the server is idle: under a tenth of a CPU over
        50 ms. Nothing to wait for where its CPU time cannot be read."""
        deadline = time.monotonic() + limit
        before = self.cpu_seconds()
        while before is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.cpu_seconds()
            if now is None or now - before < 0.005:
                return
            before = now

    def context_switches(self) -> int | None:
        """Voluntary and involuntary context switches of the server's threads so far (Linux:
        /proc; else None). A thread gone since (a pool's) takes its count with it: a few."""
        try:
            tids = os.listdir(f"/proc/{self.proc.pid}/task")
        except OSError:
            return None
        total = 0
        for tid in tids:
            try:
                with open(f"/proc/{self.proc.pid}/task/{tid}/status") as f:
                    total += sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
            except (OSError, ValueError, IndexError):
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


# ---------------------------------------------------------------- measuring

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def latencies(call, n: int, warm: int = 50) -> list[float]:
    for _ in range(warm):
        call()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def in_turns(calls: list, n: int, warm: int, pause: float = 0.0) -> list[list[float]]:
    """The latencies of ``n`` calls of each of ``calls``, made in SLICES turns (a block of each,
    one after the other), so that a change in a shared machine's load weighs on all alike, not
    on whichever ran last; ``pause`` seconds after each block, so that the calls of one are not
    paced by what the other spent of Graph's limits (each process paces its own)."""
    for call in calls:
        for _ in range(warm):
            call()
        time.sleep(pause)
    out: list[list[float]] = [[] for _ in calls]
    for turn in range(SLICES):
        size = n // SLICES + (turn < n % SLICES)
        for call, lat in zip(calls, out):
            if size:
                lat += latencies(call, size, warm=0)
                time.sleep(pause)
    return out


def concurrent_clients(make_call, clients: int, seconds: float, per_client: int) -> dict:
    """``clients`` threads, each with its own call (its own connection), until ``seconds`` pass or
    each made ``per_client`` calls: requests/s, latencies, errors."""
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]
    results: list[tuple[list[float], int]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        call, close = make_call(i)
        lat, errors = [], 0
        try:
            start.wait(60)
            while len(lat) + errors < per_client and time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    ok = call()
                except Exception:  # noqa: BLE001 - counted, never fatal to the run
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            close()
            with lock:
                results.append((lat, errors))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600  # set for real once every client is connected and waiting
    start.wait(60)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join(seconds + 120)
    elapsed = time.perf_counter() - t0
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    return {"rps": len(lat) / elapsed, "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "errors": errors,
            "count": len(lat), "lat": lat, "elapsed": elapsed}


def raw_caller(url: str, path: str, body_for, headers: dict):
    """A cheap client (http.client, one kept-alive connection) so the client costs little beside
    the server it measures: a call answers whether the status was 2xx."""
    parts = urllib.parse.urlsplit(url)

    def make(i: int):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        n = [0]

        def call() -> bool:
            n[0] += 1
            conn.request("POST", path, body_for(i, n[0]), headers)
            r = conn.getresponse()
            r.read()
            return 200 <= r.status < 300

        return call, conn.close

    return make


# ---------------------------------------------------------------- the run

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="sequential calls per command and path in (a)")
    ap.add_argument("--clients", type=int, default=200, help="concurrent clients in (b)")
    ap.add_argument("--seconds", type=float, default=5.0, help="the length of each timed phase in (b) and (c)")
    ap.add_argument("--graph-pause", type=float, default=GRAPH_WINDOW, metavar="SECONDS",
                    help="the pause after each block of Graph calls in (a)")
    ap.add_argument("--store-url", metavar="URL",
                    help="a Redis (redis://...) to hold the store instead of a SQLite file: a namespace of the "
                         "run's own, removed at the end (the goals are the SQLite store's: shown, not judged)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    ap.add_argument("--echo-server", metavar="URL_FILE", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.echo_server:
        echo_server(ns.echo_server)
        return 0
    if ns.store_url:
        _check_redis(ap, ns.store_url)

    import requests
    import yaml

    from fake_tenant import Emulator
    from integration import api
    from integration.frontends import cli as cli_mod

    work = tempfile.mkdtemp(prefix="msteams-api-bench-")
    cfg = os.path.join(work, "config.yml")
    namespace = f"msteams-api-bench-{os.getpid()}"
    emu = Emulator().start()
    servers: list[Process] = []
    try:
        emu.write_config(cfg)
        data = yaml.safe_load(open(cfg))
        data["store_path"] = os.path.join(work, "store.sqlite3")
        if ns.store_url:
            data.update(store_url=ns.store_url, store_namespace=namespace, store_key_file=_key_file(work))
        with open(cfg, "w") as f:
            yaml.safe_dump(data, f)
        out, err = [], []
        code = cli_mod.main(["--config", cfg, "-o", "json", "api-key", "create", "--name", "bench",
                             "--scope", "cache-show", "--scope", "team-list", "--scope", "channel-list"], out=out.append, err=err.append)
        if code:
            raise SystemExit(f"api-key create failed: {err}")
        key = json.loads(out[0])["key"]
        env = dict(os.environ, MSTEAMS_CONFIG=cfg)
        env.pop("HTTP_PROXY", None), env.pop("HTTPS_PROXY", None)
        # the per-key rate limit is the service's guard, not what is measured here: lifted
        servers.append(Process([sys.executable, "-m", "integration.frontends.cli", "serve", "--port", "0", "--bot",
                                "--rate", "1000000", "--burst", "1000000", "--write-url",
                                os.path.join(work, "svc.url")], os.path.join(work, "svc.url"), env))
        servers.append(Process([sys.executable, os.path.abspath(__file__), "--echo-server",
                                os.path.join(work, "echo.url")], os.path.join(work, "echo.url"), env))
        svc, echo = servers[0].url, servers[1].url
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        rows: list[tuple[str, str, str]] = []
        goals: list[tuple[str, bool]] = []

        # (a) the Python API beside HTTP, one call at a time, on a service whose pool threads a
        # burst has started (a service in use)
        burst = concurrent_clients(raw_caller(svc, "/v1/commands/team-list", lambda i, n: b"{}", auth),
                                   2 * CONCURRENCY, 30.0, per_client=1)
        if burst["errors"]:
            raise SystemExit(f"the burst of team-list calls: {burst['errors']} refused")
        time.sleep(ns.graph_pause)
        http_s = requests.Session()
        http_s.trust_env = False
        with api.Client(cfg) as client:
            for name, args, cap in READS:
                client.execute(name, args)  # the team's id cached, the token got
                n = min(ns.n, cap or ns.n)
                body = json.dumps(args)

                def over_http(name=name, body=body):
                    r = http_s.post(f"{svc}/v1/commands/{name}", data=body, headers=auth, timeout=30)
                    if r.status_code != 200:
                        raise SystemExit(f"{name} over HTTP: {r.status_code} {r.text[:300]}")

                lean, close = raw_caller(svc, f"/v1/commands/{name}", lambda i, k, b=body.encode(): b, auth)(0)

                def over_lean(lean=lean, name=name):
                    if not lean():
                        raise SystemExit(f"{name} over HTTP (http.client): refused")

                try:
                    py, hp, hl = in_turns([lambda: client.execute(name, args), over_http, over_lean], n,
                                          warm=2 if cap else 50, pause=ns.graph_pause if cap else 0.0)
                finally:
                    close()
                extra = (pct(hp, 0.5) - pct(py, 0.5)) * 1e3
                name = f"{name} (x{n})" if n < ns.n else name
                rows.append((f"a. {name}: Python API", f"p50 {pct(py, .5) * 1e3:.3f} ms", f"p99 {pct(py, .99) * 1e3:.3f} ms"))
                rows.append((f"a. {name}: HTTP (kept alive)", f"p50 {pct(hp, .5) * 1e3:.3f} ms",
                             f"p99 {pct(hp, .99) * 1e3:.3f} ms; +{extra:.3f} ms at p50"))
                rows.append((f"a. {name}: HTTP, http.client", f"p50 {pct(hl, .5) * 1e3:.3f} ms",
                             f"p99 {pct(hl, .99) * 1e3:.3f} ms; +{(pct(hl, .5) - pct(py, .5)) * 1e3:.3f} ms at p50"))
                if name.startswith(("cache-show", "team-list")):
                    goals.append((f"{name}: HTTP p50 <= Python API p50 + 1.5 ms (+{extra:.2f} ms)", extra <= 1.5))
        http_s.close()

        # (b) 200 concurrent clients on cached reads
        def session_client(i: int):
            s = requests.Session()
            s.trust_env = False
            url, body = f"{svc}/v1/commands/cache-show", "{}"

            def call() -> bool:
                return s.post(url, data=body, headers=auth, timeout=30).status_code == 200

            return call, s.close

        b = concurrent_clients(session_client, ns.clients, ns.seconds, per_client=10_000)
        rows.append((f"b. {ns.clients} clients, cache-show", f"{b['rps']:.0f} req/s",
                     f"p50 {b['p50'] * 1e3:.1f} ms, p99 {b['p99'] * 1e3:.1f} ms, {b['errors']} errors "
                     f"({b['count']} answered)"))
        goals.append((f"{ns.clients} concurrent clients: 0 errors ({b['errors']})", b["errors"] == 0))

        # (c) each service against the echo, side by side, concurrency 8
        bot_id = emu.config()["bot_id"]
        template = emu.teams.message(BOB, "!help")
        token = emu.teams.sign(bot_id)  # valid for 5 minutes: longer than this phase

        def activity(i: int, n: int) -> bytes:
            return json.dumps(dict(template, id=f"bench-{i}-{n}")).encode()

        bot_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        json_headers = {"Content-Type": "application/json"}
        phases = [("echo ({} body)", echo, "/echo", lambda i, n: b"{}", json_headers),
                  ("service cache-show", svc, "/v1/commands/cache-show", lambda i, n: b"{}", auth),
                  ("echo (activity body)", echo, "/echo", activity, json_headers),
                  ("bot endpoint !help", svc, "/api/messages", activity, bot_headers)]
        c = {}
        by_url = {svc: servers[0], echo: servers[1]}

        def lane_counts() -> dict:
            """The service's lane counters (its /metrics, no key on loopback): how many requests
            its event loop ran per commit (frontends/lane.py)."""
            text = requests.get(f"{svc}/metrics", timeout=30, proxies={"http": None, "https": None}).text
            out = {}
            for line in text.splitlines():
                for name in ("groups", "works"):
                    for outcome in ("committed", "pool"):
                        if line.startswith(f'msteams_lane_{name}_total{{outcome="{outcome}"}} '):
                            out[(name, outcome)] = float(line.rsplit(" ", 1)[1])
            return out

        # Each service and its echo take turns, SLICES times a phase's length each, so that a
        # change in the machine's load during the run (it is shared) weighs on both alike.
        made = {}
        for label, url, path, body_for, headers in phases:
            make = made[label] = raw_caller(url, path, body_for, headers)
            call, close = make(-1)  # one call first: a refusal stops the run rather than being measured
            if not call():
                raise SystemExit(f"{label}: refused")
            close()
        slice_seconds = ns.seconds / SLICES
        for pair in (phases[:2], phases[2:]):
            for _ in range(SLICES):
                for label, url, *_ in pair:
                    lane0 = lane_counts() if url == svc else {}
                    cpu0, cs0 = by_url[url].cpu_seconds(), by_url[url].context_switches()
                    got = concurrent_clients(made[label], CONCURRENCY, slice_seconds, per_client=1_000_000)
                    # The bot answers in the background: its turn ends once that work is done,
                    # counted in its CPU, not left to run into the echo's next turn.
                    by_url[url].settle()
                    cpu1, cs1 = by_url[url].cpu_seconds(), by_url[url].context_switches()
                    lane1 = lane_counts() if url == svc else {}
                    acc = c.setdefault(label, {"lat": [], "errors": 0, "elapsed": 0.0, "cpu": 0.0, "switches": 0,
                                                "lane": {}, "measured": cpu0 is not None and cs0 is not None})
                    acc["lat"] += got["lat"]
                    acc["errors"] += got["errors"]
                    acc["elapsed"] += got["elapsed"]
                    if acc["measured"] and cpu1 is not None and cs1 is not None:
                        acc["cpu"] += cpu1 - cpu0
                        acc["switches"] += cs1 - cs0
                    for k in set(lane0) | set(lane1):
                        acc["lane"][k] = acc["lane"].get(k, 0.0) + lane1.get(k, 0.0) - lane0.get(k, 0.0)
        for label, url, *_ in phases:
            acc = c[label]
            n = len(acc["lat"])
            acc.update(count=n, rps=n / acc["elapsed"], p99=pct(acc["lat"], 0.99))
            acc["switches"] = acc["switches"] / n if acc["measured"] and n else None
            acc["cpu"] = f"; server CPU {acc['cpu'] / n * 1e6:.0f} us/request" if acc["measured"] and n else ""
            if url == svc:
                d = acc["lane"]
                groups = d.get(("groups", "committed"), 0.0)
                acc["lane"] = (f"{d.get(('works', 'committed'), 0.0) / groups:.1f} requests a commit, "
                               f"{d.get(('works', 'pool'), 0.0):.0f} given to the pool" if groups else
                               "no lane (the pool)")
            else:
                acc["lane"] = None
        for label, base in (("service cache-show", "echo ({} body)"), ("bot endpoint !help", "echo (activity body)")):
            ratio = c[label]["rps"] / c[base]["rps"]
            rows.append((f"c. {base}", f"{c[base]['rps']:.0f} req/s",
                         f"p99 {c[base]['p99'] * 1e3:.1f} ms, {c[base]['errors']} errors{c[base]['cpu']}"))
            rows.append((f"c. {label}", f"{c[label]['rps']:.0f} req/s",
                         f"p99 {c[label]['p99'] * 1e3:.1f} ms, {c[label]['errors']} errors; {ratio:.2f} of the echo"
                         f"{c[label]['cpu']}"))
            goals.append((f"{label}: >= 0.5 of a Starlette echo at concurrency {CONCURRENCY} ({ratio:.2f})",
                          ratio >= 0.5 and c[label]["errors"] == 0))
    finally:
        for p in servers:
            p.stop()
        emu.stop()
        if ns.store_url:
            _drop_namespace(ns.store_url, namespace)

    width = max(len(r[0]) for r in rows)
    print(f"benchmarks/api.py on {os.cpu_count()} CPUs, loopback, the fake tenant")
    for r in rows:
        print(f"  {r[0]:<{width}}  {r[1]:>14}  {r[2]}")
    switches = [f"{label} {c[label]['switches']:.1f}" for label in c if c[label].get("switches") is not None]
    if switches:  # each is a thread handoff (a GIL or a queue): what most of the CPU per request goes to
        print(f"  c. server context switches per request: {', '.join(switches)}")
    lanes = [f"{label}: {c[label]['lane']}" for label in c if c[label].get("lane")]
    if lanes:  # the event loop's groups (frontends/lane.py): one commit for this many requests
        print(f"  c. the event loop's lane: {'; '.join(lanes)}")
    if ns.store_url:
        print("goals (the SQLite store's; this run's store was Redis, so they are shown, not judged):")
        for text, _ in goals:
            print(f"  [-] {text}")
        return 0
    print("goals:")
    for text, ok in goals:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")
    return 1 if ns.check and not all(ok for _, ok in goals) else 0


def _key_file(work: str) -> str:
    """A store key (Fernet) for a Redis store, in a 0600 file of the run's own."""
    from cryptography.fernet import Fernet

    path = os.path.join(work, "store.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(Fernet.generate_key().decode())
    return path


def _check_redis(ap: argparse.ArgumentParser, url: str) -> None:
    """--store-url names a Redis that answers, before anything starts; else a usage error (exit 2)."""
    try:
        import redis
    except ImportError:
        ap.error("--store-url needs the redis package: pip install -e '.[redis]'")
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        r.ping()
        r.close()
    except (ValueError, redis.RedisError) as exc:
        ap.error(f"--store-url: no Redis answers at that URL ({type(exc).__name__}: {exc})")


def _drop_namespace(url: str, namespace: str) -> None:
    """The run's keys out of the Redis at ``url`` (what could not be removed is said, not raised:
    the run's figures stand)."""
    import redis

    try:
        r = redis.Redis.from_url(url)
        try:
            keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
            for i in range(0, len(keys), 500):
                r.delete(*keys[i:i + 500])
        finally:
            r.close()
    except redis.RedisError as exc:
        print(f"could not remove the run's keys ({namespace}:*) from the Redis: {type(exc).__name__}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
