"""Mirrored incidents end to end (mirror-investigation): a real bot endpoint on loopback, the
fake tenant playing Teams (signed activities, the Bot Connector recording the bot's posts), a
small local webhook standing in for the SOAR platform (it verifies each delivery as a
Standard Webhooks receiver does, with the standardwebhooks library)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from engine_fixtures import Sleeps, make_config
from integration.frontends.bot import server as bot_server
from integration.dispatch import Runtime, execute
from bot_helpers import BOB, CONOR, SOC, access_yaml

SECRET = "mirror-hook-secret"


class Sink:
    """The SOAR platform's webhook: refuses (503) while ``down``, else records each delivery
    whose Standard Webhooks signature is valid (mirror_webhook_secret, not a whsec_ secret: its
    bytes are the key)."""

    def __init__(self):
        self.down = True
        self.refused = 0
        self.refused_ids: list[str] = []
        self.received: list[dict] = []
        self.bad: list[str] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if sink.down:
                    sink.refused += 1
                    sink.refused_ids.append(self.headers.get("webhook-id"))
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    payload = Webhook(SECRET.encode()).verify(body, dict(self.headers))
                except WebhookVerificationError as exc:
                    sink.bad.append(str(exc))
                    self.send_response(401)
                    self.end_headers()
                    return
                assert payload["type"] == "mirror.entry"
                sink.received.append(dict(payload["data"], _delivery=self.headers.get("webhook-id")))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class MirrorRig:
    def __init__(self, emu, runtime, endpoint):
        self.emu, self.runtime, self.endpoint = emu, runtime, endpoint
        self.bot_id = runtime.cfg.bot_id

    def run(self, name, **args):
        return execute(name, args, self.runtime)

    def says(self, user, text, **kw):
        kw.setdefault("mention_bot", False)
        rec = self.emu.teams.user_says(user, text, team=SOC, **kw)
        assert rec["status"] in (200, 202), rec
        assert self.endpoint.processor.drain(20)
        return rec

    def deliver(self, activity):
        rec = self.emu.teams.deliver(activity, self.bot_id)
        assert self.endpoint.processor.drain(20)
        return rec

    def channel(self, name):
        return next((c for t in self.emu.state.teams.values() if t.display_name == SOC
                     for c in t.channels.values() if c.display_name == name), None)

    def entries(self, incident="42", **kw):
        return self.run("mirror-entries", incident_id=incident, **kw).outputs


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def mrig(emu, tmp_path, sink):
    access = tmp_path / "access.yml"
    access.write_text(access_yaml(emu))
    cfg = make_config(emu, tmp_path, bot_access_file=str(access), mirror_webhook_url=sink.url,
                      mirror_webhook_secret=SECRET)
    runtime = Runtime(cfg, sleep=Sleeps())
    runtime.echo = lambda s: None
    endpoint = bot_server.build(runtime, workers=2)
    server = bot_server.BotServer(endpoint).start()
    emu.teams.register(server.messaging_endpoint)
    yield MirrorRig(emu, runtime, endpoint)
    emu.teams.register(None)
    server.stop()
    runtime.close()


def _bot_posts(ch):
    return [m for m in ch.messages if (m.sender or {}).get("application")]


def test_two_engines_mirroring_one_incident_at_once_make_one_channel(mrig, emu, tmp_path):
    """A second engine (its own runtime, the same store) asks while the first is still creating
    the channel: it waits for the first's lock and finds its channel, instead of failing."""
    emu.faults.add(method="POST", path=r"/teams/.*/channels$", delay=0.5, count=5)  # a slow create
    other = Runtime(make_config(emu, tmp_path, bot_access_file=mrig.runtime.cfg.bot_access_file), sleep=Sleeps())
    other.echo = lambda s: None
    results, errors = {}, []

    def mirror(name, rt):
        try:
            results[name] = execute("mirror-investigation", {"incident_id": "77", "team": SOC}, rt)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=mirror, args=(n, rt)) for n, rt in (("a", mrig.runtime), ("b", other))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
    finally:
        other.close()
    assert errors == [] and len(results) == 2
    assert results["a"].outputs[0]["channelId"] == results["b"].outputs[0]["channelId"]
    creates = [e for e in emu.request_log if e["method"] == "POST" and e["path"].endswith("/channels")]
    assert len(creates) == 1
    team = next(t for t in emu.state.teams.values() if t.display_name == SOC)
    assert [c.display_name for c in team.channels.values()].count("incident-77") == 1


def test_mirror_investigation_twice_gives_one_channel_and_one_welcome(mrig):
    r = mrig.run("mirror-investigation", incident_id="42", team=SOC)
    row = r.outputs[0]
    assert (row["incidentId"], row["kind"], row["status"], row["channelName"]) == ("42", "channel", "open",
                                                                                 "incident-42")
    assert (row["mirrorType"], row["direction"], row["autoclose"]) == ("all", "both", True)
    again = mrig.run("microsoft-teams-mirror-investigation", incident_id="42", team=SOC, direction="ToSOAR",
                     autoclose="false")
    assert again.outputs[0]["channelId"] == row["channelId"] and again.outputs[0]["direction"] == "ToSOAR"
    assert "updated" in again.message
    team = next(t for t in mrig.emu.state.teams.values() if t.display_name == SOC)
    assert [c.display_name for c in team.channels.values()].count("incident-42") == 1
    ch = mrig.channel("incident-42")
    [welcome] = _bot_posts(ch)  # posted once, not again on the update
    assert "Incident 42" in json.dumps(welcome.attachments or welcome.body)
    # a named channel that exists already is reused, not created
    mrig.run("mirror-investigation", incident_id="43", team=SOC, channel_name="Incident Response")
    assert [c.display_name for c in team.channels.values()].count("Incident Response") == 1
    assert mrig.runtime.store.mirror_get("43")["channelName"] == "Incident Response"


def test_inbound_messages_are_journaled_once_in_order_and_escaped(mrig, sink):
    mrig.run("mirror-investigation", incident_id="42", team=SOC)
    root = mrig.says(BOB, "Seeing beacons from WS-17", channel="incident-42")
    mrig.says(CONOR, "<p>Isolating <b>now</b> &amp; pulling the disk</p>", channel="incident-42", reply_to=root["activityId"])
    hostile = "<img src=x onerror=alert(1)>ok\x1b[2J<script>steal()</script>&lt;script&gt;x&lt;/script&gt;\u202e"
    mrig.says(BOB, hostile, channel="incident-42")
    # a command in the mirrored channel still runs, and is not journaled
    cmd = mrig.says(CONOR, f'!channel-list team="{SOC}"', channel="incident-42", mention_bot=True)
    # a message in another (unmirrored) channel is not journaled
    mrig.says(BOB, "unrelated", channel="Incident Response")
    # a redelivered activity is journaled once
    again = mrig.emu.teams.message(BOB, "sent twice", team=SOC, channel="incident-42", mention_bot=False)
    mrig.deliver(again)
    mrig.deliver(again)
    rows = mrig.entries()
    assert [r["author"] for r in rows] == ["Bob Smith", "Conor O'Brien", "Bob Smith", "Bob Smith"]
    assert rows[0]["text"] == "Seeing beacons from WS-17" and rows[0]["threadId"] == root["activityId"]
    assert rows[1]["text"] == "Isolating now & pulling the disk" and rows[1]["threadId"] == root["activityId"]
    assert rows[2]["text"] == "ok\\u001b[2Jx\\u202e"
    assert "<" not in rows[2]["text"] and "\x1b" not in rows[2]["text"]
    assert rows[3]["text"] == "sent twice"
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert all(r["time"] and r["attachments"] == [] for r in rows)
    ch = mrig.channel("incident-42")
    cmd_root = next(m for m in ch.messages if m.id == cmd["activityId"])
    assert cmd_root.replies and (cmd_root.replies[0].sender or {}).get("application")  # answered
    assert [a["command"] for a in mrig.runtime.store.audit_list()] == ["channel-list"]
    # since: nothing after the future
    assert mrig.entries(since="2999-01-01T00:00:00Z") == []
    assert len(mrig.entries(since="1970-01-01T00:00:00Z")) == 4
    # ToSOAR off: FromSOAR-only mirrors journal nothing
    mrig.run("mirror-investigation", incident_id="42", team=SOC, direction="FromSOAR")
    mrig.says(BOB, "not journaled", channel="incident-42")
    assert len(mrig.entries()) == 4


def test_webhook_refuses_for_a_while_then_receives_every_entry_once_signed(mrig, sink):
    """mirror_webhook_url is a subscription to mirror.entry: Standard Webhooks deliveries,
    oldest first, each refused one retried with the same webhook-id after its backoff."""
    mrig.run("mirror-investigation", incident_id="42", team=SOC)
    for i in range(3):
        mrig.says(BOB, f"message {i}", channel="incident-42")
    # The first entry was tried and refused; the next two wait behind it (the order holds)
    # until its backoff has passed.
    assert sink.refused == 1 and sink.received == []
    out = mrig.run("mirror-flush").outputs[0]  # at once, backoff or not
    assert out["sent"] == 0 and out["pending"] == 3 and "503" in out["error"]
    assert sink.refused == 2 and len(set(sink.refused_ids)) == 1  # the same entry, the same webhook-id
    sink.down = False
    mrig.says(CONOR, "message 3", channel="incident-42")  # not due yet: it waits too
    assert sink.received == []
    later = time.time() + 3600
    mrig.runtime.store._clock = lambda: later  # an hour on: the backoff has passed
    mrig.says(CONOR, "message 3b", channel="incident-42")  # the next inbound message flushes
    assert [e["text"] for e in sink.received] == ["message 0", "message 1", "message 2", "message 3", "message 3b"]
    assert sink.received[0]["_delivery"] == sink.refused_ids[0]
    again = mrig.run("mirror-flush").outputs[0]
    assert again["sent"] == 0 and again["pending"] == 0
    mrig.says(BOB, "message 4", channel="incident-42")
    mrig.run("mirror-flush")
    texts = [e["text"] for e in sink.received]
    assert texts == ["message 0", "message 1", "message 2", "message 3", "message 3b", "message 4"]
    assert sink.bad == []
    assert len({e["_delivery"] for e in sink.received}) == 6
    assert {e["incidentId"] for e in sink.received} == {"42"}


def test_outbound_entries_appear_in_the_channel_and_are_not_echoed_back(mrig):
    mrig.run("mirror-investigation", incident_id="42", team=SOC)
    r = mrig.run("mirror-entry", incident_id="42", text="Host **WS-17** isolated <b>by playbook</b>")
    assert r.outputs[0]["status"] == "sent"
    ch = mrig.channel("incident-42")
    posted = _bot_posts(ch)[-1]
    assert "WS-17" in posted.body["content"] and "<b>" not in posted.body["content"]
    again = mrig.run("mirror-entry", incident_id="42", text="same", dedupe_key="k1")
    same = mrig.run("mirror-entry", incident_id="42", text="same", dedupe_key="k1")
    assert again.outputs[0]["status"] == "sent" and same.outputs[0]["status"] == "already sent"
    assert sum("same" in (m.body or {}).get("content", "") for m in _bot_posts(ch)) == 1
    # Were Teams to deliver the bot's own post, it is not journaled.
    echo = mrig.emu.teams.message(BOB, "Host WS-17 isolated", team=SOC, channel="incident-42", mention_bot=False)
    echo["from"] = {"id": f"28:{mrig.bot_id}", "name": "SOAR Bot"}
    mrig.deliver(echo)
    assert mrig.entries() == []
    # ToSOAR only: entries are not posted
    mrig.run("mirror-investigation", incident_id="42", team=SOC, direction="ToSOAR")
    with pytest.raises(Exception, match="ToSOAR"):
        mrig.run("mirror-entry", incident_id="42", text="nope")


def test_mirror_close_with_autoclose_deletes_the_channel_and_stops_mirroring(mrig):
    mrig.run("mirror-investigation", incident_id="42", team=SOC)
    mrig.says(BOB, "before", channel="incident-42")
    r = mrig.run("mirror-close", incident_id="42")
    assert r.outputs[0]["status"] == "deleted" and mrig.channel("incident-42") is None
    assert [e["text"] for e in mrig.entries()] == ["before"]  # the journal is kept
    with pytest.raises(Exception, match="deleted"):
        mrig.run("mirror-entry", incident_id="42", text="after")
    # without autoclose the channel stays
    mrig.run("mirror-investigation", incident_id="44", team=SOC, autoclose="false")
    r = mrig.run("mirror-close", incident_id="44")
    assert r.outputs[0]["status"] == "closed" and mrig.channel("incident-44") is not None
    mrig.says(BOB, "after close", channel="incident-44")
    assert mrig.entries("44") == []


def test_app_package_declares_resource_specific_consent_for_unmentioned_messages():
    from integration.frontends.app_package import build_manifest

    m = build_manifest(bot_id="00000000-0000-0000-0000-000000000001", client_id="00000000-0000-0000-0000-000000000002")
    rsc = {p["name"]: p["type"] for p in m["authorization"]["permissions"]["resourceSpecific"]}
    assert rsc == {"ChannelMessage.Read.Group": "Application", "ChatMessage.Read.Chat": "Application"}
    assert m["webApplicationInfo"]["id"] == "00000000-0000-0000-0000-000000000002"


def test_safe_text_reduces_html_to_plain_text():
    from integration.teams.mirror import safe_text

    assert safe_text("<div>a<br>b</div><at>Bob</at> &lt;x&gt;") == "a\nb\n@Bob"
    assert safe_text("1 &lt; 2 and 3 &gt; 2") == "1 < 2 and 3 > 2"
    assert safe_text("&amp;lt;") == "&lt;"  # unescaped once
    assert safe_text("\x00\x07tab\tok") == "\\u0000\\u0007tab\tok"
    assert safe_text(None) == ""


def test_close_channel_without_a_channel_closes_the_incidents_mirror(mrig):
    mrig.run("mirror-investigation", incident_id="42", team=SOC)
    with pytest.raises(Exception, match="incident_id"):
        mrig.run("close-channel")
    r = mrig.run("close-channel", incident_id="42")
    assert "incident 42" in r.message and mrig.channel("incident-42") is None
    assert mrig.runtime.store.mirror_get("42")["status"] == "deleted"
    # deleting a mirrored channel by name marks its mirror deleted too
    mrig.run("mirror-investigation", incident_id="45", team=SOC)
    mrig.run("close-channel", team=SOC, channel="incident-45")
    assert mrig.runtime.store.mirror_get("45")["status"] == "deleted" and mrig.channel("incident-45") is None


def test_a_group_chat_is_mirrored_the_same_way(mrig):
    from fake_tenant.state import Chat, Membership

    emu = mrig.emu
    ids = [emu.state.user(u)["id"] for u in (BOB, CONOR)]
    chat = Chat("19:ir9group@thread.v2", "group", "IR 9", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z",
                [Membership(f"m{i}", uid) for i, uid in enumerate(ids)])
    emu.state.chats[chat.id] = chat
    row = mrig.run("mirror-investigation", incident_id="9", chat_id=chat.id).outputs[0]
    assert (row["kind"], row["chatId"], row["conversationId"]) == ("chat", chat.id, chat.id)
    rec = emu.teams.user_says(CONOR, "<b>on it</b>", chat=chat.id, mention_bot=False)
    assert rec["status"] == 202 and mrig.endpoint.processor.drain(20)
    assert [(e["author"], e["text"], e["kind"]) for e in mrig.entries("9")] == [("Conor O'Brien", "on it", "chat")]
    mrig.run("mirror-entry", incident_id="9", text="entry from the incident", format="text")
    assert any("entry from the incident" in (m.body or {}).get("content", "") for m in chat.messages)
    assert len(mrig.entries("9")) == 1
    assert mrig.run("mirror-close", incident_id="9").outputs[0]["status"] == "closed"
