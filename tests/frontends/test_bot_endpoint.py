"""The bot's messaging endpoint, end to end: a real uvicorn server on loopback, the fake tenant
playing Teams (its own Bot Framework signing key and OpenID metadata, signed activities, the Bot
Connector recording the bot's replies), real RS256 tokens. Commands from allowed and refused
senders, forged deliveries (each refused with nothing run, stored or sent), conversation
references, the audit log, the per-sender rate limit, TLS, and `msteams bot serve` as a process."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from urllib.parse import unquote

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from engine_fixtures import Sleeps, make_config
from integration.frontends.bot import server as bot_server
from integration.dispatch import Runtime, execute

from bot_helpers import ALICE, BOB, CONOR, FATIMA, FORGERIES, SOC, ZOE, Rig, access_yaml  # noqa: F401


@pytest.fixture
def rig(emu, tmp_path):
    access = tmp_path / "access.yml"
    access.write_text(access_yaml(emu))
    cfg = make_config(emu, tmp_path, bot_access_file=str(access))
    runtime = Runtime(cfg, sleep=Sleeps())
    runtime.echo = lambda s: None
    endpoint = bot_server.build(runtime, workers=2)
    server = bot_server.BotServer(endpoint).start()
    emu.teams.register(server.messaging_endpoint)
    yield Rig(emu, runtime, endpoint, server)
    emu.teams.register(None)
    server.stop()
    runtime.close()


# ---- commands from Teams ----

def test_allowed_user_runs_a_command_answered_in_the_thread_and_audited(rig):
    rec = rig.says(BOB, f'!channel-list team="{SOC}"')
    assert rec["status"] == 202 and rec["error"] is None
    text = rig.reply_text(rec)
    assert "Incident Response" in text and "Threat Intel" in text
    reply = rig.replies(rec)[0]
    assert reply["conversation"]["id"] == rec["conversationId"] and reply["from"]["id"] == f"28:{rig.bot_id}"
    card = reply["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert any(b["type"] == "Table" for b in card["content"]["body"])
    [row] = rig.audit()
    bob = rig.emu.state.user(BOB)
    assert (row["sender_id"], row["sender_name"], row["place"]) == (bob["id"], "Bob Smith", "personal chat")
    assert (row["command"], row["decision"], row["outcome"]) == ("channel-list", "allowed", "ok")
    assert row["text"] == f'!channel-list team="{SOC}"' and row["activity_id"] == rec["activityId"]
    assert row["duration_ms"] is not None and abs(row["time"] - time.time()) < 60


def test_user_without_a_role_is_refused_and_audited(rig):
    rec = rig.says(ZOE, f'!channel-list team="{SOC}"')
    assert rec["status"] == 202
    assert rig.reply_text(rec) == "Sorry, you may not run channel-list from Teams."
    [row] = rig.audit()
    assert (row["decision"], row["outcome"], row["command"]) == ("denied", "refused", "channel-list")
    assert not [e for e in rig.emu.request_log if "/channels" in e["path"]]  # it never ran


def test_roles_by_command_group_category_mail_object_id_and_group_membership(rig):
    assert "Sorry" in rig.reply_text(rig.says(BOB, "!cache-reset"))                      # analyst: read only
    assert "Sorry" in rig.reply_text(rig.says(BOB, f"!channel-create team=\"{SOC}\" channel_name=x"))
    ok = rig.says(ALICE, "!cache-reset")                                                  # admin by object id
    assert "Sorry" not in rig.reply_text(ok)
    conor = rig.says(CONOR, f'!team-member-list team="{SOC}"')                           # responder by mail
    assert "Bob Smith" in rig.reply_text(conor)
    fatima = rig.says(FATIMA, f"!user-get user={BOB}")                                   # group member: users
    assert "Bob Smith" in rig.reply_text(fatima)
    assert "Sorry" in rig.reply_text(rig.says(FATIMA, "!team-list"))
    checks = [e for e in rig.emu.request_log if e["path"].endswith("/checkMemberGroups")]
    assert len(checks) == 1  # the membership answer is cached
    decisions = [(r["sender_name"], r["command"], r["decision"]) for r in reversed(rig.audit())]
    assert decisions == [("Bob Smith", "cache-reset", "denied"), ("Bob Smith", "channel-create", "denied"),
                         ("Alice Johnson", "cache-reset", "allowed"), ("Conor O'Brien", "team-member-list", "allowed"),
                         ("Fatima Al-Sayed", "user-get", "allowed"), ("Fatima Al-Sayed", "team-list", "denied")]


def test_channel_message_must_mention_the_bot_and_the_reply_threads_under_it(rig):
    emu = rig.emu
    quiet = rig.says(CONOR, "!team-list", team=SOC, channel="Incident Response", mention_bot=False)
    assert quiet["status"] == 202 and rig.replies(quiet) == [] and rig.audit() == []
    # Teams' smart quotes and the <at> mention are undone before parsing.
    rec = rig.says(CONOR, "!team-member-list team=\u201cSecurity Operations\u201d", team=SOC, channel="Incident Response")
    assert "Alice Johnson" in rig.reply_text(rec)
    ch = next(c for t in emu.state.teams.values() for c in t.channels.values() if c.display_name == "Incident Response")
    root = next(m for m in ch.messages if m.id == rec["activityId"])
    assert root.sender["user"]["displayName"] == "Conor O'Brien"
    assert [r.sender["application"]["id"] for r in root.replies] == [rig.bot_id]
    [row] = rig.audit()
    assert row["place"] == "Security Operations / Incident Response" and row["conversation_type"] == "channel"
    assert row["text"] == '!team-member-list team="Security Operations"'


def test_group_chat_message_mentioning_the_bot(rig):
    from fake_tenant.state import Chat, Membership

    emu = rig.emu
    ids = [emu.state.user(u)["id"] for u in (BOB, CONOR)]
    chat = Chat("19:ir7group@thread.v2", "group", "IR 7", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z",
                [Membership(f"m{i}", uid) for i, uid in enumerate(ids)])
    emu.state.chats[chat.id] = chat
    rec = rig.says(CONOR, f"!user-get user={BOB}", chat=chat.id)
    assert "Bob Smith" in rig.reply_text(rec)
    assert [m.sender.get("user") and m.sender["user"]["displayName"] or m.sender["application"]["id"]
            for m in chat.messages] == ["Conor O'Brien", rig.bot_id]
    [row] = rig.audit()
    assert row["place"] == f"group chat {chat.id}" and row["conversation_type"] == "groupChat"
    ref = rig.runtime.store.conversation_get(f"chat/{rig.bot_id}/{chat.id}")
    assert ref["conversationId"] == chat.id and ids[1] in ref["userIds"]
    assert rig.says(BOB, "!team-list", chat=chat.id, mention_bot=False)["status"] == 202
    assert len(rig.audit()) == 1  # not addressed to the bot


def test_help_unknown_commands_bad_lines_and_escaping(rig):
    assert "channel-list" in rig.reply_text(rig.says(BOB, "help"))
    assert "cache-reset" not in rig.reply_text(rig.says(BOB, "help"))
    assert "war-room form" in rig.reply_text(rig.says(BOB, "hello bot"))
    rig.endpoint.processor.limiter._buckets.clear()  # three a sender at once
    assert "Unknown command" in rig.reply_text(rig.says(BOB, "!no-such-command"))
    assert "not a command line" in rig.reply_text(rig.says(ZOE, '!user-get user="unterminated'))
    rec = rig.says(BOB, "!user-get user=\"<b>x\x1b[31m\u202e\"")
    reply = rig.replies(rec)[0]
    dumped = json.dumps(reply, ensure_ascii=False)
    assert "\x1b" not in dumped and "\u202e" not in dumped
    assert "\\x1b" in rig.reply_text(rec)
    # Every text of a reply is a TextRun: Adaptive Cards never read it as markdown or markup.
    blocks = reply["attachments"][0]["content"]["body"]
    assert {b["type"] for b in blocks} <= {"RichTextBlock", "Table"}
    assert [r for r in rig.audit() if r["command"] == "user-get"][0]["outcome"] == "error"


def test_per_sender_rate_limit_answers_once_and_audits_every_message(rig):
    recs = [rig.says(BOB, f"!user-get user={BOB}") for _ in range(5)]
    assert [len(rig.replies(r)) for r in recs] == [1, 1, 1, 1, 0]
    assert "Slow down" in rig.reply_text(recs[3])
    decisions = [r["decision"] for r in reversed(rig.audit())]
    assert decisions == ["allowed"] * 3 + ["rate-limited"] * 2
    assert "Sorry" in rig.reply_text(rig.says(ZOE, f"!user-get user={BOB}"))  # another sender has their own bucket


def test_a_redelivered_activity_runs_once(rig):
    activity = rig.activity(BOB, f"!user-get user={BOB}")
    first, again = rig.deliver(activity), rig.deliver(activity)
    assert (first["status"], again["status"]) == (202, 200)
    assert len(rig.audit()) == 1 and len(rig.emu.state.activities) == 1


def test_message_from_another_tenant_is_refused(rig):
    activity = rig.activity(BOB, f"!user-get user={BOB}")
    activity["channelData"]["tenant"]["id"] = activity["conversation"]["tenantId"] = "11111111-2222-4333-8444-555555555555"
    rec = rig.deliver(activity)
    assert rec["status"] == 202
    [row] = rig.audit()
    assert row["decision"] == "denied" and "another tenant" in row["detail"]


# ---- conversation references ----

def test_installation_and_messages_teach_conversations_that_send_notification_uses(rig):
    emu, store, bot = rig.emu, rig.runtime.store, rig.bot_id
    zoe = emu.state.user(ZOE)
    assert rig.emu.teams.install_bot(user=ZOE)["status"] == 200
    ref = store.conversation_get(f"user/{bot}/{zoe['id']}")
    assert ref["serviceUrl"] == emu.bot_service_url and ref["tenantId"] == emu.state.tenant_id
    assert ref["conversationId"].startswith("a:")
    assert rig.emu.teams.install_bot(team="IT Helpdesk")["status"] == 200
    team = next(t for t in emu.state.teams.values() if t.display_name == "IT Helpdesk")
    tref = store.conversation_get(f"team/{bot}/{team.id}")
    assert tref["aadGroupId"] == team.id and set(tref["userIds"]) == {m.user_id for m in team.members}
    general = next(iter(team.channels.values()))
    assert store.conversation_get(f"channel/{bot}/{general.id}")["conversationId"] == general.id
    # send-notification writes into the learned conversation: no POST /v3/conversations.
    before = len(emu.request_log)
    out = execute("send-notification", {"user": ZOE, "message": "hello"}, rig.runtime).outputs[0]
    assert out["status"] == "sent" and out["conversationId"] == ref["conversationId"]
    posts = [unquote(e["path"]) for e in emu.request_log[before:]
             if e["method"] == "POST" and e["path"].startswith("/botframework/")]
    assert posts == [f"/botframework/v3/conversations/{ref['conversationId']}/activities"]
    assert rig.runtime.store.get_message_ref(out["messageRef"])["serviceUrl"] == emu.bot_service_url


def test_a_learned_service_url_on_another_host_gets_the_bot_token_only_once_learned(rig):
    from integration.teams import conversations

    base = rig.runtime.client("bot")
    other = "https://smba.example.net/emea/"
    assert conversations.bot_client_for(rig.runtime, other) is base  # never learned: refused by the base client
    activity = rig.activity(ZOE, "hello")
    activity["serviceUrl"] = other
    conversations.learn(rig.runtime.store, rig.bot_id, activity)
    client = conversations.bot_client_for(rig.runtime, other)
    assert client is not base and client.base_url == other.rstrip("/")


# ---- forged and malformed deliveries ----

@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_tokens_are_refused_before_anything_happens(rig, forgery, caplog):
    since = len(rig.emu.request_log)
    activity = rig.activity(BOB, f'!channel-list team="{SOC}"')
    token = FORGERIES[forgery](rig)
    with caplog.at_level(logging.WARNING, logger="msteams.bot"):
        rec = rig.deliver(activity, token=token)
    assert rec["status"] == 401, rec
    rig.assert_nothing_happened(since)
    lines = [r.getMessage() for r in caplog.records if r.name == "msteams.bot.server"]
    assert len(lines) == 1 and "refused POST /api/messages" in lines[0] and " 401 " in lines[0]
    assert "\n" not in lines[0]
    for part in token.split("."):
        if len(part) > 8:  # header, claims and signature of the token appear in no log line
            assert part not in caplog.text


def test_activity_serviceurl_and_channel_must_match_the_token(rig):
    since = len(rig.emu.request_log)
    activity = rig.activity()
    activity["serviceUrl"] = "https://evil.example/teams/"
    assert rig.deliver(activity)["status"] == 401  # a genuine token, for the emulator's service URL
    activity = rig.activity()
    activity["channelId"] = "webchat"  # the key is endorsed for msteams
    assert rig.deliver(activity)["status"] == 401
    rig.assert_nothing_happened(since)


def test_oversized_and_malformed_bodies(rig):
    since = len(rig.emu.request_log)
    big = rig.activity()
    big["text"] = "!user-get user=" + "x" * (300 * 1024)
    assert rig.deliver(big)["status"] == 413
    assert rig.deliver(big, token="")["status"] == 401  # no token: refused before the body is read
    assert rig.deliver(body=b'{"type": "message", ')["status"] == 400
    assert rig.deliver(body=b"[1, 2]")["status"] == 400
    assert rig.deliver(body=b"\xff\xfe")["status"] == 400
    # Chunked, with no Content-Length: the cap still holds while reading.
    sess = requests.Session()
    gen = (b"x" * 65536 for _ in range(8))
    r = sess.post(rig.server.messaging_endpoint, data=gen,
                  headers={"Authorization": f"Bearer {rig.emu.teams.sign(rig.bot_id)}", "Content-Type": "application/json"})
    assert r.status_code == 413 and "Traceback" not in r.text
    rig.assert_nothing_happened(since)


def test_half_a_surrogate_pair_in_an_activity_is_read_as_a_replacement_character(rig):
    """A lone "\ud800" escape (no UTF-8 form: nothing could audit or store it) is read as U+FFFD,
    as a lenient decoder reads it: the command runs and is audited (it was a 500, unaudited)."""
    body = json.dumps(rig.activity()).replace('"text": "', '"text": "\\ud800', 1).encode()
    assert b"\\ud800" in body
    rec = rig.deliver(body=body)
    assert rec["status"] in (200, 202), rec
    rig.endpoint.processor.drain(10)
    raw = json.dumps(rig.activity()).replace('"text": "', '"text": "@@', 1).encode().replace(b"@@", b"\xed\xa0\x80")
    assert rig.deliver(body=raw)["status"] in (200, 202)  # its three bytes, read by json.loads as U+D800
    rig.endpoint.processor.drain(10)
    assert [r["text"][:1] for r in rig.audit()] == ["\ufffd", "\ufffd"]


def test_clock_skew_of_five_minutes_is_accepted(rig):
    now = int(time.time())
    late = rig.sign(rig.claims(iat=now - 600, nbf=now - 600, exp=now - 120))
    early = rig.sign(rig.claims(nbf=now + 120, exp=now + 600))
    assert rig.deliver(rig.activity(BOB, "help"), token=late)["status"] == 202
    assert rig.deliver(rig.activity(BOB, "help"), token=early)["status"] == 202
    assert len(rig.audit()) == 2


def test_a_single_tenant_bot_accepts_its_own_entra_tenant_tokens(rig):
    emu = rig.emu
    now = int(time.time())
    base = {"iss": emu.tokens.issuer, "aud": rig.bot_id, "iat": now, "nbf": now, "exp": now + 300,
            "tid": emu.state.tenant_id, "serviceurl": emu.bot_service_url}
    assert rig.deliver(rig.activity(BOB, "help"), token=emu.tokens._sign(base))["status"] == 202
    other = emu.tokens._sign(dict(base, tid="11111111-2222-4333-8444-555555555555"))
    assert rig.deliver(rig.activity(BOB, "help"), token=other)["status"] == 401


def test_unknown_kid_refetches_keys_at_most_once_a_minute(rig):
    keys = rig.endpoint.verifier.botframework
    clock = [1000.0]
    keys._clock = lambda: clock[0]
    assert rig.deliver(rig.activity(BOB, "help"))["status"] == 202
    fetched = keys.fetches
    assert fetched == 1

    def rotated():
        return rig.deliver(rig.activity(BOB, "help"), token=rig.sign(rig.claims(), kid="rotated"))["status"]

    assert [rotated() for _ in range(3)] == [401] * 3
    assert keys.fetches == fetched  # fetched less than a minute ago: not again
    clock[0] += 61
    assert [rotated() for _ in range(3)] == [401] * 3
    assert keys.fetches == fetched + 1  # once for the three
    metadata = [e for e in rig.emu.request_log if e["path"].endswith("/openidconfiguration")]
    assert len(metadata) == 2


def test_health_unknown_routes_and_internal_errors_have_no_traceback(rig, monkeypatch):
    base = rig.server.url
    assert requests.get(base + "/healthz").json() == {"status": "ok"}
    assert requests.get(base + "/api/messages").status_code == 405
    assert requests.get(base + "/nope").status_code == 404

    def boom(activity):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rig.endpoint.processor, "accept", boom)
    rec = rig.deliver(rig.activity(BOB, "help"))
    assert rec["status"] == 500
    r = requests.post(rig.server.messaging_endpoint, data=json.dumps(rig.activity(BOB, "help")),
                      headers={"Authorization": f"Bearer {rig.emu.teams.sign(rig.bot_id)}"})
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text


# ---- verifier units (keys without the network) ----

def _jwk(key, kid: str, **extra) -> dict:
    from jwt.algorithms import RSAAlgorithm

    return dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), kid=kid, use="sig", **extra)


def test_verifier_key_endorsements_and_refresh_limit():
    from integration.teams.verify import InboundVerifier, Rejected

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = {"keys": [_jwk(key, "teams", endorsements=["msteams"]), _jwk(key, "webchat", endorsements=["webchat"]),
                     _jwk(key, "plain")]}
    docs = {"https://meta.example/openid": {"issuer": "https://api.botframework.com",
                                            "jwks_uri": "https://meta.example/keys"},
            "https://meta.example/keys": keys}
    fetched = []
    clock = [1000.0]

    def fetch(url):
        fetched.append(url)
        return docs[url]

    v = InboundVerifier("bot-app", metadata_url="https://meta.example/openid", fetch=fetch, clock=lambda: clock[0])
    now = int(time.time())
    claims = {"iss": "https://api.botframework.com", "aud": "bot-app", "nbf": now, "exp": now + 60,
              "serviceurl": "https://svc.example/"}

    def token(kid):
        return "Bearer " + jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    assert v.verify(token("teams")).service_url == "https://svc.example/"
    assert v.verify(token("plain")).issuer == "https://api.botframework.com"  # no endorsements: any channel
    with pytest.raises(Rejected, match="not endorsed for msteams"):
        v.verify(token("webchat"))
    assert len(fetched) == 2
    with pytest.raises(Rejected, match="unknown signing key"):
        v.verify(token("new"))
    assert len(fetched) == 2  # within a minute of the last fetch: not fetched again
    clock[0] += 61
    keys["keys"].append(_jwk(key, "new"))
    assert v.verify(token("new"))
    assert len(fetched) == 4
    with pytest.raises(Rejected, match="no bearer token"):
        v.verify("Basic abc")
    with pytest.raises(Rejected, match="too long"):
        v.verify("Bearer " + "a" * 20000)


def test_access_policy_file_is_validated(tmp_path):
    from integration.engine import registry
    from integration.teams.access import command_groups, load_policy
    from integration.engine.errors import ConfigError

    reg = registry.default_registry()
    p = tmp_path / "access.yml"
    for text, problem in [("roles: {a: {users: [x]}}\nallow: {b: [read]}", "does not define"),
                          ("roles: {a: {users: [x], teams: [y]}}", "unknown key 'teams'"),
                          ("roles: {a: {groups: [not-a-guid]}}", "not a group object id"),
                          ("roles: {a: {users: [x]}}\nallow: {a: [chnnel-list]}", "unknown command or group"),
                          ("rate_limit: {per_minute: 0}", "at least"),
                          ("rate_limit: {burst: 1.5}", "whole number"),
                          ("roles: [a]", "mappings"),
                          ("admins: [x]", "unknown setting 'admins'")]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=problem):
            load_policy(str(p), reg)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(str(tmp_path / "missing.yml"), reg)
    assert load_policy(None, reg).empty
    groups = {s.name: command_groups(s) for s in reg}
    assert groups["channel-list"] == groups["user-get"] == groups["message-list"] == {"read"}
    assert groups["send-notification"] == groups["channel-create"] == groups["ring-user"] == {"write"}
    assert groups["cache-reset"] == groups["cache-preload"] == {"admin"}


# ---- TLS, and `msteams bot serve` as a process ----

def test_tls_endpoint_with_the_tenant_trusting_its_ca(emu, tmp_path):
    from fake_tenant.tls import TlsMaterial

    (tmp_path / "tls").mkdir()
    tls = TlsMaterial(directory=str(tmp_path / "tls"))
    access = tmp_path / "access.yml"
    access.write_text(access_yaml(emu))
    runtime = Runtime(make_config(emu, tmp_path, bot_access_file=str(access)), sleep=Sleeps())
    endpoint = bot_server.build(runtime, workers=1)
    with bot_server.BotServer(endpoint, tls_cert=tls.cert_path, tls_key=tls.key_path) as server:
        assert server.messaging_endpoint.startswith("https://127.0.0.1:")
        emu.teams.register(server.messaging_endpoint, ca_bundle=tls.ca_path)
        try:
            rec = emu.teams.user_says(BOB, f"!user-get user={BOB}")
            assert rec["status"] == 202
            assert endpoint.processor.drain(20)
            assert len(emu.state.activities) == 1
            emu.teams.register(server.messaging_endpoint, ca_bundle="")  # an untrusted certificate
            assert "could not be reached" in emu.teams.user_says(BOB, "help")["error"]
        finally:
            emu.teams.register(None)
            emu.teams.reset()  # the tenant's kept-alive TLS connection closes: the server stops at once
    runtime.close()


def test_msteams_bot_serve_process_registers_answers_and_audits(emu, cfg_file, tmp_path, monkeypatch):
    import yaml

    from integration.frontends import cli

    access = tmp_path / "access.yml"
    access.write_text(access_yaml(emu))
    data = yaml.safe_load(cfg_file.read_text())
    data["bot_access_file"] = str(access)
    cfg_file.write_text(yaml.safe_dump(data))
    url_file = tmp_path / "url.txt"
    env = dict(os.environ, MSTEAMS_CONFIG=str(cfg_file))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "bot", "serve", "--port", "0",
                             "--write-url", str(url_file)], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not url_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the endpoint did not start"
            time.sleep(0.02)
        url = url_file.read_text().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/messages")
        assert emu.teams.messaging_endpoint == url  # registered itself with the fake tenant
        monkeypatch.setenv("MSTEAMS_CONFIG", str(cfg_file))
        out, err = [], []
        code = cli.main(["emulator", "user-says", "--user", BOB, "--wait", "20", f"!user-get user={CONOR}"],
                        out=out.append, err=err.append)
        assert code == 0, err
        assert "HTTP 202" in out[0] and "Conor O'Brien" in "\n".join(out[1:])
        code = cli.main(["emulator", "user-says", "--user", ZOE, "--team", SOC, "--channel", "Incident Response",
                         "--wait", "20", "!team-list"], out=out.append, err=err.append)
        assert code == 0 and "Sorry, you may not run team-list" in out[-1]
        assert cli.main(["emulator", "install-bot", "--user", ZOE], out=out.append, err=err.append) == 0
        out.clear()
        assert cli.main(["-o", "json", "bot", "audit"], out=out.append, err=err.append) == 0
        rows = json.loads(out[0])
        assert [(r["sender_name"], r["command"], r["decision"]) for r in rows] == [
            ("Zoë Müller", "team-list", "denied"), ("Bob Smith", "user-get", "allowed")]
        out.clear()
        assert cli.main(["bot", "audit", "--limit", "1"], out=out.append, err=err.append) == 0
        assert "team-list" in out[0] and "user-get" not in out[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        emu.teams.register(None)
    assert proc.returncode == 0, stderr
    assert "Bot endpoint stopped." in stdout


def test_bot_serve_usage_errors(emu, cfg_file, monkeypatch, tmp_path):
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_CONFIG", str(cfg_file))
    err = []
    assert cli.main(["bot"], out=lambda s: None, err=err.append) == 2
    assert cli.main(["bot", "serve", "--tls-cert", "x.pem"], out=lambda s: None, err=err.append) == 2
    assert "go together" in err[-1]
    assert cli.main(["bot", "serve", "--port", "70000"], out=lambda s: None, err=err.append) == 2
    bad = tmp_path / "bad.yml"
    bad.write_text("roles: {a: {users: [x]}}\nallow: {a: [nope]}\n")
    monkeypatch.setenv("MSTEAMS_BOT_ACCESS_FILE", str(bad))
    assert cli.main(["bot", "serve", "--port", "0"], out=lambda s: None, err=err.append) == 3
    assert "unknown command or group 'nope'" in err[-1]
    assert cli.main(["emulator", "user-says", "--user", BOB], out=lambda s: None, err=err.append) == 2
    emu.teams.register(None)
    assert cli.main(["emulator", "user-says", "--user", BOB, "hi"], out=lambda s: None, err=err.append) == 3
    assert "no messaging endpoint" in err[-1]


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "!!!.e30.sig", "e30.bm90IGpzb24.sig", "W10.e30.sig",
                                   "eyJhbGciOiJSUzI1NiJ9.W10.sig"])
def test_a_token_that_is_not_three_parts_of_json_objects_is_malformed(token):
    from integration.teams.verify import InboundVerifier, Rejected

    v = InboundVerifier("bot-app", metadata_url="https://meta.example/openid", fetch=lambda url: {})
    with pytest.raises(Rejected) as e:
        v.verify(f"Bearer {token}")
    assert str(e.value) == "malformed token"


def test_key_objects_are_built_once_per_key_set(emu):
    """Parsing the RSA key is the costly part of a check: built once per key set, rebuilt when
    the key set is fetched again."""
    from integration.engine import config as config_mod
    from integration.teams.verify import InboundVerifier

    cfg = config_mod.Config(**{k: v for k, v in emu.config().items() if k in config_mod._KEYS}, source="test")
    v = InboundVerifier.from_config(cfg)
    for _ in range(3):
        v.verify(f"Bearer {emu.teams.sign(cfg.bot_id)}")
    objects = dict(v.botframework._objects)
    assert len(objects) == 1
    v.verify(f"Bearer {emu.teams.sign(cfg.bot_id)}")
    assert v.botframework._objects == objects  # the same key object, not a new one
