"""The services' metrics and JSON logs: a real bot endpoint against the fake tenant scraped
over HTTP (accepted and forged requests, commands by outcome, the store's outbox by state), and
log lines that parse, carry no secret, and leave message texts out unless asked."""
from __future__ import annotations

import io
import json
import logging
import re
import socket

import pytest
import requests

from engine_fixtures import Sleeps, make_config
from integration.engine import metrics
from integration.frontends.bot import server as bot_server
from integration.dispatch import Runtime
from bot_helpers import BOB, FORGERIES, SOC, Rig, access_yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(emu, tmp_path):
    """A bot endpoint with metrics on, and the URL of its /metrics port."""
    access = tmp_path / "access.yml"
    access.write_text(access_yaml(emu))
    runtime = Runtime(make_config(emu, tmp_path, bot_access_file=str(access)), sleep=Sleeps())
    runtime.echo = lambda s: None
    endpoint = bot_server.build(runtime, workers=2)
    server = bot_server.BotServer(endpoint).start()
    emu.teams.register(server.messaging_endpoint)
    port = _free_port()
    metrics.register_store(runtime.store)
    http_server = metrics.serve(port)
    try:
        yield Rig(emu, runtime, endpoint, server), f"http://127.0.0.1:{port}/metrics"
    finally:
        http_server.shutdown()
        metrics.enabled = False
        emu.teams.register(None)
        server.stop()
        runtime.close()


def scrape(url: str) -> dict:
    text = requests.get(url, timeout=10).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_counters_move_for_accepted_and_forged_requests_and_commands(served):
    rig, url = served
    before = scrape(url)
    rec = rig.says(BOB, f'!channel-list team="{SOC}"')
    assert rec["status"] == 202
    forged = rig.deliver(rig.activity(BOB, "!user-list"), token=FORGERIES["another key"](rig))
    assert forged["status"] == 401
    after = scrape(url)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    assert delta('msteams_inbound_activities_total{decision="accepted",kind="activity"}') == 1
    assert delta('msteams_inbound_activities_total{decision="refused-auth",kind="activity"}') == 1
    assert delta('msteams_inbound_activities_total{decision="queued",kind="command"}') == 1
    assert delta('msteams_commands_total{command="channel-list",outcome="ok",tenant=""}') == 1


def test_the_outbox_and_waiting_runs_are_read_from_the_store_at_scrape(served, monkeypatch):
    rig, url = served
    monkeypatch.setattr(metrics, "GAUGE_CACHE_SECONDS", 0.0)
    store = rig.runtime.store
    store.outbox_claim("k1", lease=60)
    store.outbox_set("k1", "sent", message_id="m1")
    store.outbox_claim("k2", lease=60)
    store.outbox_claim("k3", lease=60)
    store.outbox_set("k3", "pending", attempt=True, lease=60)  # its request is being written
    got = scrape(url)
    assert got['msteams_outbox_deliveries{state="sent",tenant=""}'] == 1
    assert got['msteams_outbox_deliveries{state="claimed",tenant=""}'] == 1
    assert got['msteams_outbox_deliveries{state="pending",tenant=""}'] == 1
    assert got['msteams_runs{status="waiting",tenant=""}'] == 0 and got['msteams_questions_open{tenant=""}'] == 0


@pytest.fixture
def log_state():
    names = ("msteams", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).level, logging.getLogger(n).propagate,
                 logging.getLogger(n).disabled) for n in names}
    yield
    for n, (handlers, level, propagate, disabled) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


def test_json_log_lines_parse_and_carry_no_secret_and_no_body_unless_asked(served, log_state):
    rig, _ = served
    stream = io.StringIO()
    metrics.json_logging(stream=stream)
    secret = rig.runtime.cfg.bot_secret
    rig.deliver(rig.activity(BOB, "!user-list"), token=FORGERIES["wrong audience"](rig))  # a refusal is logged
    log = logging.getLogger("msteams.test")
    log.warning("a line that quotes the secret %s by mistake", secret, extra={"text": "incident body", "user": BOB})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any("refused POST /api/messages" in e["msg"] for e in lines)
    mine = next(e for e in lines if e["logger"] == "msteams.test")
    assert mine["level"] == "warning" and mine["user"] == BOB and "text" not in mine
    assert secret not in stream.getvalue() and "incident body" not in stream.getvalue()
    stream2 = io.StringIO()
    metrics.json_logging(stream=stream2, bodies=True)
    log.info("with bodies", extra={"text": "incident body"})
    assert json.loads(stream2.getvalue().splitlines()[-1])["text"] == "incident body"
