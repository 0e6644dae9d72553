"""The README's walkthrough "From another platform, over HTTP" (issue 25, "Done when") runs as
written and does what it says, step by step: the fake tenant started writing its config,
`msteams serve --bot` in the background, a key made with the CLI, `channel-list` over HTTP
answering the default fake tenant's channels, a webhook receiver registered, the access-request
playbook started over HTTP (202 and Location), `run.waiting` delivered, a simulated click,
`run.finished` delivered for the same run, and the run read back finished.

The section's ```sh block is read from README.md and its lines are run by a small interpreter of
the shell they use (`;`, `&&`, `&`, `|`, `until ...; do ...; done`, `export`, `VAR=$(...)`,
`[ -s FILE ]`, `cat`, `sleep`, `cd`, `mktemp -d`, `jobs -p`, `kill`), so the test breaks when the
README drifts: `msteams` and the
README's `python3 -c` receiver run as real processes, `curl` as real HTTP (requests, sending what
curl sends) and `jq` as the few filters the README uses (an unknown one fails the test). Three
values are changed, where a fixed one could collide with another test or program: `--port 8080`
becomes `--port 0` (the URL is read from `--write-url` as the README does), the README's receiver
listens on a free port instead of 9000, and the webhook is registered to the test's own receiver,
which verifies every delivery with the `standardwebhooks` library. The README's receiver is then
shown a verified delivery and must answer 204 and print it."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from test_readme_examples import BIN, ROOT, SKIPPED, _env, _key

HEADING = "## From another platform, over HTTP"
WAIT = 30.0  # the longest any one step may take (an `until` loop, a server starting, a webhook)


def walkthrough() -> list[str]:
    """The logical lines of the section's ```sh block: a backslash-newline joined, a line whose
    quotes are still open joined with the next (as the shell reads them), comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert HEADING + "\n" in text, f"README.md has no section {HEADING!r}"
    section = text[text.index(HEADING + "\n"):]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else len(section)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1, "the section has one ```sh block"
    lines, pending = [], ""
    for physical in re.sub(r"\\\n\s*", "", blocks[0]).splitlines():
        pending = f"{pending}\n{physical}" if pending else physical
        if _open_quote(_key(pending)):  # a comment's apostrophe opens nothing
            continue
        lines.append(_key(pending.strip()))
        pending = ""
    assert not pending, f"an unclosed quote in the walkthrough: {pending!r}"
    return [ln for ln in lines if ln]


def _open_quote(text: str) -> bool:
    try:
        shlex.split(text)
    except ValueError:
        return True
    return False


def _split(text: str) -> list[tuple[str, str]]:
    """``text`` cut at the top-level operators ; && & | (not inside quotes or $( )), as
    [(command, the operator after it)]."""
    parts, stack, start, i = [], [], 0, 0
    while i < len(text):
        c = text[i]
        if stack and stack[-1] == '"':
            if c == "\\":
                i += 2
                continue
            if c == '"':
                stack.pop()
            elif text.startswith("$(", i):
                stack.append("(")
                i += 1
            i += 1
            continue
        if c == "'":
            i = text.index("'", i + 1) + 1
            continue
        if c == '"':
            stack.append('"')
        elif text.startswith("$(", i) or (c == "(" and stack):
            stack.append("(")
            i += 1 if c == "$" else 0
        elif c == ")" and stack:
            stack.pop()
        elif not stack:
            for op in ("&&", ";", "&", "|"):
                if text.startswith(op, i):
                    parts.append((text[start:i].strip(), op))
                    start = i + len(op)
                    i = start - 1
                    break
        i += 1
    parts.append((text[start:].strip(), ""))
    return [(cmd, op) for cmd, op in parts if cmd or op]


def _jq(argv: list[str], stdin: str) -> tuple[int, str]:
    """The jq filters the walkthrough uses: a path (.a.b, .a[].b), and select(COND).field with
    COND one or more `.field == "value"` joined by `or`. -r and -e as jq has them."""
    flags = "".join(a[1:] for a in argv[:-1] if a.startswith("-") and not a.startswith("--"))
    assert set(flags) <= {"r", "e"}, f"jq options the test does not know: {argv}"
    program, doc = argv[-1], json.loads(stdin)
    if re.fullmatch(r"(\.\w+(\[\])?)+", program):
        outs = [doc]
        for name, each in re.findall(r"\.(\w+)(\[\])?", program):
            outs = [o.get(name) if isinstance(o, dict) else None for o in outs]
            if each:
                outs = [x for o in outs for x in (o or [])]
    elif m := re.fullmatch(r"select\((.+)\)\.(\w+)", program):
        conds = [re.fullmatch(r'\s*\.(\w+) == "([^"]*)"\s*', c) for c in m.group(1).split(" or ")]
        assert all(conds), f"a jq select the test does not know: {program}"
        outs = [doc[m.group(2)]] if any(doc.get(c.group(1)) == c.group(2) for c in conds) else []
    else:
        raise AssertionError(f"a jq filter the test does not know: {program}")
    text = "".join((o if "r" in flags and isinstance(o, str) else json.dumps(o)) + "\n" for o in outs)
    if "e" in flags:
        return (4 if not outs else 1 if outs[-1] in (None, False) else 0), text
    return 0, text


class Shell:
    """Runs the walkthrough's lines in ``cwd``, remembering what it started and answered."""

    def __init__(self, cwd: Path, rewrite):
        self.base = self.cwd = cwd  # mktemp makes its directories under base
        self.rewrite = rewrite
        self.env = {k: v for k, v in _env(cwd / "unset.yml").items() if k != "MSTEAMS_CONFIG"}
        self.vars: dict[str, str] = {"PWD": str(cwd)}
        self.background: list[tuple[list[str], subprocess.Popen, Path]] = []
        self.commands: list[tuple[list[str], subprocess.CompletedProcess]] = []
        self.http: list[requests.Response] = []
        self.session = requests.Session()
        self.session.trust_env = False

    # ---- a line: lists, pipelines, until loops ----
    def run(self, line: str) -> tuple[int, str]:
        parts, status, out, i = _split(line), 0, "", 0
        while i < len(parts):
            cmd, op = parts[i]
            if cmd.startswith("until "):
                k = next((j for j in range(i, len(parts)) if parts[j][0].startswith("do ")), len(parts))
                assert k + 1 < len(parts) and parts[k + 1][0] == "done", f"an until loop: {line}"
                cond = " ".join(c + (f" {o}" if j < k - 1 else "") for j, (c, o) in enumerate(parts[i:k], i))
                deadline = time.monotonic() + WAIT
                while True:
                    status, text = self.run(cond[len("until "):])
                    out += text  # what the condition printed, each time (as the shell shows it)
                    if status == 0:
                        break
                    assert time.monotonic() < deadline, f"still waiting after {WAIT:.0f} s: {cmd}"
                    out += self.run(parts[k][0][len("do "):])[1]
                status, op, i = 0, parts[k + 1][1], k + 2
            else:
                pipeline = [cmd]
                while op == "|":
                    i += 1
                    cmd, op = parts[i]
                    pipeline.append(cmd)
                if op == "&":
                    assert len(pipeline) == 1, f"a pipeline in the background: {line}"
                    self.start(pipeline[0])
                    status = 0
                else:
                    status, text = 0, ""
                    for stage in pipeline:
                        status, text = self.simple(stage, text)
                    out += text
                i += 1
            if op == "&&" and status != 0:
                break
        return status, out

    # ---- a simple command: words expanded as sh does for these lines ----
    def expand(self, text: str) -> str:
        """$(...) and $NAME replaced by their values (quoted for the shell words they land in)."""
        res, quote, i = [], None, 0
        while i < len(text):
            c = text[i]
            if quote != '"' and c == "'":
                j = text.index("'", i + 1)
                res.append(text[i:j + 1])
                i = j + 1
                continue
            if c == '"':
                quote = None if quote else '"'
            if text.startswith("$(", i):
                depth, j = 1, i + 2
                while depth:  # the walkthrough's substitutions hold no parenthesis of their own
                    depth += {"(": 1, ")": -1}.get(text[j], 0)
                    j += 1
                value, i = self.run(text[i + 2:j - 1])[1].rstrip("\n"), j
            elif m := re.match(r"\$(\w+)|\$\{(\w+)\}", text[i:]):
                name = m.group(1) or m.group(2)
                assert name in self.vars, f"${name} is used before the walkthrough sets it"
                value, i = self.vars[name], i + m.end()
            else:
                res.append(c)
                i += 1
                continue
            res.append(re.sub(r'(["\\$`])', r"\\\1", value) if quote else shlex.quote(value))
        return "".join(res)

    def simple(self, cmd: str, stdin: str) -> tuple[int, str]:
        exported = cmd.startswith("export ")
        m = re.fullmatch(r"(?:export )?([A-Za-z_]\w*)=(.*)", cmd, flags=re.S)
        if m:  # NAME=VALUE: the status of its command substitution, if any
            status = 0
            if m.group(2).startswith("$("):
                status, value = self.run(m.group(2)[2:-1])
                value = value.rstrip("\n")
            else:
                value = " ".join(shlex.split(self.expand(m.group(2))))
            self.vars[m.group(1)] = value
            if exported:
                self.env[m.group(1)] = value
            return status, ""
        argv = shlex.split(self.expand(cmd))
        prog = argv[0]
        if argv[:2] == ["[", "-s"] and argv[3:] == ["]"]:
            return (0 if (self.cwd / argv[2]).is_file() and (self.cwd / argv[2]).stat().st_size else 1), ""
        if prog == "sleep":
            time.sleep(float(argv[1]))
            return 0, ""
        if prog == "cat":
            return 0, (self.cwd / argv[1]).read_text(encoding="utf-8")
        if argv == ["mktemp", "-d"]:
            return 0, tempfile.mkdtemp(dir=self.base) + "\n"
        if prog == "cd":
            self.cwd = self.cwd / argv[1]
            assert self.cwd.is_dir(), f"cd into {self.cwd}: no such directory"
            self.vars["PWD"] = str(self.cwd)
            return 0, ""
        if argv == ["jobs", "-p"]:
            return 0, "".join(f"{proc.pid}\n" for _, proc, _ in self.background if proc.poll() is None)
        if prog == "kill":
            pids = [int(p) for a in argv[1:] for p in a.split()]  # $(jobs -p): one word a job, as sh splits it
            ours = {proc.pid for _, proc, _ in self.background}
            assert pids and set(pids) <= ours, f"kill of what the walkthrough did not start: {cmd}"
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
            return 0, ""
        if prog == "jq":
            return _jq(argv[1:], stdin)
        if prog == "curl":
            return self.curl(argv[1:])
        if prog == "msteams":
            argv = self.rewrite(argv)
            r = subprocess.run([str(BIN / "msteams"), *argv[1:]], cwd=self.cwd, env=self.env, capture_output=True,
                               text=True, encoding="utf-8", timeout=60)
            self.commands.append((argv, r))
            assert r.returncode == 0, f"{cmd}\n  exit {r.returncode}: {(r.stderr or r.stdout)[-600:]}"
            return r.returncode, r.stdout
        raise AssertionError(f"a command the test does not run: {cmd}")

    def start(self, cmd: str) -> None:
        """CMD &: msteams or python3 in the background, its output in a file of its own."""
        argv = self.rewrite(shlex.split(self.expand(cmd)))
        assert argv[0] in ("msteams", "python3"), f"a background command the test does not run: {cmd}"
        exe = str(BIN / argv[0])  # the venv's msteams, or its python3
        log = self.cwd / f"background-{len(self.background)}.log"
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.Popen([exe, *argv[1:]], cwd=self.cwd, env=dict(self.env, PYTHONUNBUFFERED="1"),
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((argv, proc, log))

    def curl(self, argv: list[str]) -> tuple[int, str]:
        """curl -s [-i] [-H H]... [-d DATA] URL, as real HTTP: what curl sends (-d: a POST, and
        form-urlencoded unless a header says otherwise), the body it prints."""
        headers, data, url, include, it = {"Accept": "*/*"}, None, None, False, iter(argv)
        for a in it:
            if a == "-H":
                name, _, value = next(it).partition(":")
                headers[name.strip()] = value.strip()
            elif a in ("-d", "--data"):
                data = next(it)
            elif re.fullmatch(r"-[si]+", a):
                include = include or "i" in a
            elif not a.startswith("-") and url is None:
                url = a
            else:
                raise AssertionError(f"a curl option the test does not know: {a}")
        if data is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        r = self.session.request("POST" if data is not None else "GET", url, data=data, headers=headers, timeout=60)
        self.http.append(r)
        head = f"HTTP/1.1 {r.status_code}\n" + "".join(f"{k}: {v}\n" for k, v in r.headers.items()) + "\n"
        return 0, (head if include else "") + r.text

    def stop(self) -> dict[str, int]:
        """SIGTERM to everything started in the background, newest first; their exit statuses."""
        codes = {}
        for argv, proc, _ in reversed(self.background):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=WAIT)
            codes[" ".join(argv[:2])] = proc.returncode
        self.session.close()
        return codes


class Receiver:
    """A webhook endpoint on a free loopback port: every delivery verified with the
    `standardwebhooks` library (the secret `msteams webhook add` printed) and recorded."""

    def __init__(self):
        self.secret: str | None = None
        self.events: list[dict] = []
        self.refused: list[str] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                from standardwebhooks import Webhook, WebhookVerificationError

                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = Webhook(receiver.secret).verify(body, headers)
                except (WebhookVerificationError, TypeError, ValueError) as exc:
                    with receiver.changed:
                        receiver.refused.append(f"{headers.get('webhook-id')}: {exc!r}")
                    self.send_response(401)
                else:
                    with receiver.changed:
                        receiver.events.append({"id": headers["webhook-id"], "body": body, "headers": headers,
                                                "type": event["type"], "data": event["data"]})
                        receiver.changed.notify_all()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/soar"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, type_: str, run_id: str) -> dict:
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                found = [e for e in self.events if e["type"] == type_ and e["data"].get("runId") == run_id]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                assert left > 0, f"no {type_} webhook for run {run_id} within {WAIT:.0f} s (refused: {self.refused})"
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _channels(team: str) -> set[str]:
    """The channels of ``team`` in the default fake tenant (General is every team's)."""
    tenant = yaml.safe_load((ROOT / "fake_tenant" / "default_tenant.yaml").read_text(encoding="utf-8"))
    teams = [t for t in tenant["teams"] if t["displayName"] == team]
    assert teams, f"the default fake tenant has no team {team!r}"
    return {"General"} | {c["displayName"] for c in teams[0].get("channels", [])}


def test_the_walkthrough_is_found():
    lines = walkthrough()
    # the fake tenant's line is the one tests/test_readme_examples.py leaves out (it runs until
    # stopped); every other line that starts with `msteams` it runs as written, so none may be a
    # server or need what an earlier line printed
    # a fresh directory first, so that a second run finds no config, store or URL of the first
    assert lines[0] == 'cd "$(mktemp -d)"', lines[0]
    assert lines[1] == "msteams emulator serve --write-config emu.yml &" and lines[1] in SKIPPED
    for line in lines[2:]:
        if line.startswith("msteams "):
            assert not line.endswith("&") and "$" not in line, line
    assert "--port 8080" in lines[2] and "--write-url api.url" in lines[2] and "--bot" in lines[2]
    assert lines[-1] == "kill $(jobs -p)", lines[-1]  # what it started in the background stops


def test_the_walkthrough_runs_as_written_step_by_step(tmp_path):
    receiver = Receiver()
    readme_receiver_port = _free_port()
    rewritten: list[str] = []

    def rewrite(argv: list[str]) -> list[str]:
        """The three values a fixed one could collide on; each must be found, once."""
        argv = list(argv)
        if argv[:2] == ["msteams", "serve"]:
            argv[argv.index("--port") + 1] = "0"
            rewritten.append("serve --port")
        elif argv[:2] == ["msteams", "webhook"] and argv[2] == "add":
            assert argv[3] == "http://127.0.0.1:9000/", argv  # the README's receiver, below
            argv[3] = receiver.url
            rewritten.append("webhook url")
        elif argv[0] == "python3":
            assert argv[1] == "-c" and '("127.0.0.1", 9000)' in argv[2], argv
            argv[2] = argv[2].replace('("127.0.0.1", 9000)', f'("127.0.0.1", {readme_receiver_port})')
            rewritten.append("receiver port")
        return argv

    sh = Shell(tmp_path, rewrite)
    lines = iter(walkthrough())
    started = time.monotonic()

    def step(*fragments: str) -> tuple[str, int, str]:
        line = next(lines, None)
        assert line is not None, f"the walkthrough ends before the line that holds {fragments}"
        assert all(f in line for f in fragments), f"the walkthrough's next line should hold {fragments}: {line}"
        status, out = sh.run(line)
        return line, status, out

    codes = {}
    try:
        # 0: a fresh, empty directory, where everything below writes its files
        step('cd "$(mktemp -d)"')
        here = sh.cwd
        assert here.parent == tmp_path and not any(here.iterdir())

        # 1-3: the fake tenant writing its config, `msteams serve --bot` on it, its URL
        step("msteams emulator serve --write-config emu.yml")
        step("export MSTEAMS_CONFIG=$PWD/emu.yml", "msteams serve")
        assert sh.env["MSTEAMS_CONFIG"] == str(here / "emu.yml")
        step("URL=$(cat api.url)")
        url = sh.vars["URL"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and url == (here / "api.url").read_text().strip()
        assert sh.session.get(f"{url}/v1/health", timeout=10).status_code == 200

        # 4: a key with the scopes the walkthrough needs, made by the CLI
        step("KEY=$(msteams api-key create")
        key = sh.vars["KEY"]
        assert re.fullmatch(r"mst_[A-Za-z0-9_-]{43}", key), key
        argv, created = sh.commands[-1]
        assert json.loads(created.stdout)["scopes"] == ["channel-list", "playbook:access-request"]

        # 5: channel-list over HTTP: the default fake tenant's channels of the team asked for
        _, status, out = step("/v1/commands/channel-list")
        listed = sh.http[-1]
        assert listed.status_code == 200, listed.text
        team = json.loads(listed.request.body)["team"]
        names = {c["displayName"] for c in listed.json()["outputs"]}
        assert names == _channels(team), names
        assert {json.loads(n) for n in out.splitlines()} == names  # what jq printed

        # 6-7: the README's receiver, and a webhook for the two run events (to the test's receiver)
        step("python3 -c", "HTTPServer")
        _, status, _ = step("msteams webhook add", "--event run.waiting", "--event run.finished")
        added = sh.commands[-1][1].stdout
        receiver.secret = re.search(r"whsec_\S+", added).group(0)

        # 8: access-request started over HTTP: 202 and Location, the run's id
        step("RUN=$(curl", "/v1/playbooks/access-request/runs")
        started_run = sh.http[-1]
        assert started_run.status_code == 202, started_run.text
        run_id = sh.vars["RUN"]
        assert run_id == started_run.json()["id"] and started_run.headers["location"] == f"/v1/runs/{run_id}"
        inputs = json.loads(started_run.request.body)["inputs"]

        # 9: waiting: run.waiting delivered; the question it waits on clicked by the reviewer
        _, status, out = step("until QID=$(curl", "msteams emulator user-clicks")
        waiting = receiver.wait_for("run.waiting", run_id)
        assert waiting["data"]["playbook"] == "access-request" and waiting["data"]["status"] == "waiting"
        assert sh.vars["QID"] == waiting["data"]["questionId"]
        clicked, result = sh.commands[-1]
        assert clicked[clicked.index("--question") + 1] == sh.vars["QID"]
        assert clicked[clicked.index("--user") + 1] in inputs["role_to_recipients"][inputs["roles"][0]]
        assert result.returncode == 0 and "HTTP 202" in result.stdout, result.stdout

        # 10: finished: run.finished delivered for the same run, and the run read back ok
        finished = receiver.wait_for("run.finished", run_id)
        _, status, out = step("until curl", "/v1/runs/$RUN")
        assert status == 0 and out == "ok\n", out
        run = sh.http[-1].json()
        assert run["id"] == run_id and run["status"] == "ok" and run["waiting_for"] is None, run
        assert [s["id"] for s in run["steps"]] == ["route", "decide", "update"]
        data = finished["data"]
        assert data["status"] == "ok" and data["error"] is None, data
        assert data["outputs"]["status"] == "approved" and data["outputs"]["reviewer"] == "Grace Kim"
        assert data["outputs"]["question"] == sh.vars["QID"]

        # each event once, in order, each verified (none refused), under ids of their own
        mine = [e for e in receiver.events if e["data"].get("runId") == run_id]
        assert [e["type"] for e in mine] == ["run.waiting", "run.finished"] and receiver.refused == []
        assert len({e["id"] for e in mine}) == 2
        assert sorted(rewritten) == ["receiver port", "serve --port", "webhook url"]

        # the README's receiver answers a delivery 204 and prints its body
        r = sh.session.post(f"http://127.0.0.1:{readme_receiver_port}/", data=finished["body"],
                            headers={k: v for k, v in finished["headers"].items() if k.startswith("webhook-")},
                            timeout=10)
        assert r.status_code == 204
        log = next(log for argv, _, log in sh.background if argv[0] == "python3")
        deadline = time.monotonic() + WAIT
        while finished["body"].decode() not in log.read_text(encoding="utf-8"):
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.05)

        # 11: what the walkthrough started in the background, stopped
        step("kill $(jobs -p)")
        for _, proc, _ in sh.background:
            proc.wait(timeout=WAIT)
        assert next(lines, None) is None, "the walkthrough has lines this test does not check"
    finally:
        codes = sh.stop()
        receiver.close()
    # `msteams serve` and the fake tenant stop cleanly on SIGTERM (kill, as the README's last line)
    assert codes["msteams serve"] == 0 and codes["msteams emulator"] == 0, codes
    assert "HTTP API stopped." in next(log for argv, _, log in sh.background if argv[1] == "serve").read_text()
    assert time.monotonic() - started < 60
