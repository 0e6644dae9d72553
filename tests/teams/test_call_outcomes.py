"""Call outcomes (issue 11, part 5): `ring-user` gives Graph the bot endpoint's /api/calls as the
call's callback (bot_public_url), the fake tenant's calling service posts signed
commsNotifications there when the simulated user accepts, declines, is busy or lets it ring, the
endpoint verifies and records them, and `ring-user wait=` reports the outcome. No real waiting:
the runtime's sleep is where the user answers. page-oncall escalates on anything but answered."""
from __future__ import annotations

import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from engine_fixtures import make_config
from integration.frontends.bot import server as bot_server
from integration.teams.calls import CALL_ISSUERS, outcome, parse
from integration.dispatch import Runtime, execute
from integration.engine.errors import ConfigError
from integration.playbooks import run_playbook
from integration.playbooks.loader import LIBRARY_DIR

PRIYA = "priya.patel@contoso.example"
PAGE = LIBRARY_DIR / "page-oncall.yml"


class Answering(list):
    """The runtime's sleep: on its first call the rung user answers (as the call rings while
    ring-user waits), then it records like Sleeps."""

    def __init__(self, emu, user: str | None = None, answer: str | None = None):
        super().__init__()
        self.emu, self.user, self.answer, self.record = emu, user, answer, None

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if self.answer and self.record is None:
            self.record = self.emu.calling.answer(self.user, self.answer)


@pytest.fixture
def calls_rig(emu, tmp_path):
    """The bot endpoint over HTTPS on loopback (the emulator's own certificate, so its calling
    service trusts it) and a runtime whose bot_public_url is that endpoint."""
    made = []

    def make(answer: str | None = None, user: str = PRIYA):
        sleep = Answering(emu, user, answer)
        cfg = make_config(emu, tmp_path)
        runtime = Runtime(cfg, sleep=sleep)
        runtime.echo = lambda s: None
        endpoint = bot_server.build(runtime, workers=1)
        server = bot_server.BotServer(endpoint, tls_cert=emu.tls.cert_path, tls_key=emu.tls.key_path).start()
        cfg.bot_public_url = server.url
        made.append((server, runtime))
        return runtime, endpoint, server, sleep

    yield make
    for server, runtime in made:
        server.stop()
        runtime.close()


@pytest.mark.parametrize("answer,expected,code", [("accept", "answered", None), ("decline", "declined", 603),
                                                  ("busy", "busy", 486), ("ignore", "no answer", 408)])
def test_ring_user_waits_for_the_outcome(emu, calls_rig, answer, expected, code):
    runtime, endpoint, server, sleep = calls_rig(answer)
    r = execute("ring-user", {"username": PRIYA, "wait": 30}, runtime)
    [call] = emu.state.calls.values()
    assert call["callbackUri"] == server.url + "/api/calls"
    assert sleep.record["status"] == 202 and sleep.record["endpoint"] == server.url + "/api/calls"
    out = r.outputs[0]
    assert (out["outcome"], out["resultCode"], out["callId"]) == (expected, code, call["id"])
    assert out["state"] == ("established" if answer == "accept" else "terminated")
    assert sum(sleep) <= 1.0  # answered during the first poll interval; nothing waited for real
    events = runtime.store.call_events(call["id"])
    assert [e["state"] for e in events] == [out["state"]] and events[0]["time"] > 0
    assert endpoint.calls.recorded == 1


def test_nobody_answers_within_the_wait(emu, calls_rig):
    runtime, _, _, sleep = calls_rig(None)  # the call rings; nobody acts
    r = execute("ring-user", {"username": PRIYA, "wait": 5}, runtime)
    assert r.outputs[0]["outcome"] == "no answer" and sum(sleep) == 5
    [call] = emu.state.calls.values()
    assert call["state"] == "terminated"  # the integration hung up
    assert "did not answer" in r.message


def test_without_wait_ring_user_returns_at_once(emu, calls_rig):
    runtime, _, server, sleep = calls_rig("accept")
    r = execute("ring-user", {"username": PRIYA}, runtime)
    assert r.outputs[0]["state"] == "establishing" and r.outputs[0]["outcome"] is None and not sleep


def test_wait_needs_a_public_url(emu, runtime):
    with pytest.raises(ConfigError, match="bot_public_url|callback"):
        execute("ring-user", {"username": PRIYA, "wait": 10}, runtime)
    assert not emu.state.calls
    execute("ring-user", {"username": PRIYA}, runtime)  # without waiting the call is still placed
    [call] = emu.state.calls.values()
    assert call["callbackUri"] == "https://localhost/msteams/calls/callback"


def test_call_callback_uri_overrides_the_public_url(emu, tmp_path):
    cfg = make_config(emu, tmp_path, bot_public_url="https://bot.example.com/",
                      call_callback_uri="https://hooks.example.com/calls")
    rt = Runtime(cfg)
    try:
        execute("ring-user", {"username": PRIYA}, rt)
    finally:
        rt.close()
    [call] = emu.state.calls.values()
    assert call["callbackUri"] == "https://hooks.example.com/calls"
    assert make_config(emu, tmp_path, bot_public_url="https://bot.example.com/").call_callback_url == \
        "https://bot.example.com/api/calls"


# ---- forged notifications: 401/4xx, nothing recorded ----

def _doc(call_id: str, state: str = "established") -> dict:
    return {"@odata.type": "#microsoft.graph.commsNotifications",
            "value": [{"@odata.type": "#microsoft.graph.commsNotification", "changeType": "updated",
                       "resourceUrl": f"/communications/calls/{call_id}",
                       "resourceData": {"@odata.type": "#microsoft.graph.call", "state": state}}]}


def _claims(emu, **over) -> dict:
    now = int(time.time())
    c = {"iss": "https://graph.microsoft.com", "aud": emu.config()["client_id"], "tid": emu.state.tenant_id,
         "iat": now, "nbf": now, "exp": now + 300}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("case", ["none", "other-key", "bot-framework-key", "issuer", "audience", "tenant", "expired",
                                  "not-yet", "alg-none", "hs256"])
def test_forged_notifications_are_refused(emu, calls_rig, case):
    runtime, endpoint, server, _ = calls_rig()
    execute("ring-user", {"username": PRIYA}, runtime)
    [call] = emu.state.calls.values()
    key, kid = emu.calling._key, emu.calling.kid
    claims, alg = _claims(emu), "RS256"
    if case == "other-key":
        key = OTHER_KEY
    elif case == "bot-framework-key":  # the Teams channel's key is not the calling service's
        key, kid = emu.teams._key, emu.teams.kid
    elif case == "issuer":
        claims["iss"] = "https://sts.windows.net/evil/"
    elif case == "audience":
        claims["aud"] = emu.config()["bot_id"] + "x"
    elif case == "tenant":
        claims["tid"] = "00000000-0000-0000-0000-000000000000"
    elif case == "expired":
        claims.update(iat=claims["iat"] - 7200, nbf=claims["nbf"] - 7200, exp=claims["exp"] - 3600)
    elif case == "not-yet":
        claims.update(nbf=claims["nbf"] + 3600)
    if case == "none":
        token = ""
    elif case == "alg-none":
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    elif case == "hs256":
        import base64
        import hashlib
        import hmac

        pub = json.dumps(emu.calling._jwk).encode()
        h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=")
        p = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.new(pub, h + b"." + p, hashlib.sha256).digest()).rstrip(b"=")
        token = (h + b"." + p + b"." + sig).decode()
    else:
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    rec = emu.calling.deliver(server.url + "/api/calls", _doc(call["id"]), "", call["id"], token=token)
    assert rec["status"] == 401, (case, rec)
    assert runtime.store.call_events(call["id"]) == [] and endpoint.calls.recorded == 0


def test_bad_bodies(emu, calls_rig):
    runtime, endpoint, server, _ = calls_rig()
    app = emu.config()["client_id"]
    url = server.url + "/api/calls"
    s = requests.Session()
    s.trust_env = False
    hdr = {"Authorization": f"Bearer {emu.calling.sign(app)}", "Content-Type": "application/json"}
    assert s.post(url, data=b"{not json", headers=hdr, verify=emu.ca_bundle).status_code == 400
    assert s.post(url, json={"value": []}, headers=hdr, verify=emu.ca_bundle).status_code == 400
    assert s.post(url, data=b"x" * (bot_server.MAX_BODY + 10), headers=hdr, verify=emu.ca_bundle).status_code == 413
    r = s.post(url, json=_doc("not-a-call-id"), headers=hdr, verify=emu.ca_bundle)
    assert r.status_code == 202 and endpoint.calls.recorded == 0  # nothing about a call: nothing recorded
    s.close()


def test_outcome_rules():
    assert parse(_doc("57DAB8B1-894C-409A-B240-BD8BEAE78896"))[0]["call_id"] == "57dab8b1-894c-409a-b240-bd8beae78896"
    ev = lambda state, code=None: {"state": state, "code": code}  # noqa: E731
    assert outcome([ev("establishing")]) is None
    assert outcome([ev("establishing"), ev("established"), ev("terminated", 200)]) == "answered"
    assert outcome([ev("terminated", 603)]) == "declined"
    assert outcome([ev("terminated", 486)]) == "busy"
    assert outcome([ev("terminated", 480)]) == outcome([ev("terminated", 408)]) == "no answer"
    assert set(CALL_ISSUERS) == {"https://graph.microsoft.com", "https://api.botframework.com"}


# ---- page-oncall escalates on anything but answered ----

@pytest.mark.parametrize("answer,escalated", [("decline", True), ("ignore", True), ("accept", False)])
def test_page_oncall_escalates_unless_answered(emu, calls_rig, answer, escalated):
    runtime, _, _, _ = calls_rig(answer)
    r = run_playbook(PAGE, {"oncall": PRIYA, "reason": "IR-7: ransomware", "wait": 30}, runtime, out=lambda s: None)
    assert r.status == "ok"
    assert r.outputs["call"] == "ok"
    assert r.outputs["outcome"] == {"decline": "declined", "ignore": "no answer", "accept": "answered"}[answer]
    assert r.outputs["message"] == ("ok" if escalated else "skipped")
    sent = [a["activity"] for a in emu.state.activities.values()]
    if escalated:
        assert r.outputs["message_ref"] and any("IR-7: ransomware" in (a.get("text") or "") for a in sent)
    else:
        assert not sent


def test_emulator_answer_call_command(emu, calls_rig, tmp_path):
    from fake_tenant.drive import main as drive

    runtime, _, server, _ = calls_rig()
    execute("ring-user", {"username": PRIYA}, runtime)
    out, err = [], []
    code = drive(["answer-call", "--user", PRIYA, "decline", "--emulator", emu.base_url, "--ca-bundle",
                  emu.ca_bundle], out=out.append, err=err.append)
    assert code == 0, err
    assert "HTTP 202" in out[0] and "/api/calls" in out[0]
    [call] = emu.state.calls.values()
    assert runtime.store.call_events(call["id"])[0]["code"] == 603
    code = drive(["answer-call", "--user", PRIYA, "accept", "--emulator", emu.base_url, "--ca-bundle",
                  emu.ca_bundle], out=out.append, err=err.append)
    assert code == 2 and "no call is ringing" in err[-1]
