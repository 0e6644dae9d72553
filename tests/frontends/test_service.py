"""`msteams serve`, the HTTP API (issue 25), over real HTTP against a live process on the fake
tenant: keys made with the CLI, deny by default, scopes (a glob never allows a destructive
command), a revoked key refused at once, every error class as its status and problem+json,
the per-key rate limit and the request time limit, Idempotency-Key (one send, the same answer,
another body 422, 20 concurrent requests sending once), the audit log, TLS and --bot."""
from __future__ import annotations

import concurrent.futures
import json
import uuid

import pytest
import requests
import yaml

from service_helpers import Service, cli, make_key

SOC = "Security Operations"
PROBLEM = "application/problem+json"


def problem(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"urn:msteams-soar:problem:{code}" and body["title"] and body["detail"]
    assert "Traceback" not in r.text
    return body


def channel_messages(emu, content: str) -> int:
    return sum(1 for t in emu.state.teams.values() for ch in t.channels.values() for m in ch.messages
               if (m.body or {}).get("content") == content)


def _set(cfg_file, **settings) -> None:
    data = yaml.safe_load(cfg_file.read_text())
    data.update(settings)
    cfg_file.write_text(yaml.safe_dump(data))


def test_a_key_runs_channel_list_over_https_and_everything_else_is_refused(emu, cfg_file, tmp_path):
    from integration import api

    reader = make_key(cfg_file, "reader", "channel-*", "team-*")
    deleter = make_key(cfg_file, "deleter", "team-delete")
    with Service(cfg_file, tmp_path, "--port", "0", "--tls-cert", emu.tls.cert_path, "--tls-key", emu.tls.key_path,
                 verify=emu.ca_bundle) as svc:
        assert svc.url.startswith("https://127.0.0.1:")
        # alive, and the OpenAPI document, need no key
        assert svc.get("/v1/health").json() == {"status": "ok"}
        assert svc.get("/v1/openapi.json").json()["openapi"] == "3.1.0"

        r = svc.post("channel-list", {"team": SOC}, key=reader)
        assert r.status_code == 200, r.text
        body = r.json()
        with api.Client(str(cfg_file)) as client:
            expected = client.execute("channel-list", {"team": SOC})
        assert body["context"] == json.loads(json.dumps(expected.context))
        assert body["readable"] == expected.readable and body["command"] == "channel-list"
        assert body["flow"] == "app" and body["exit_code"] == 0 and body["failed"] == 0
        assert [o["displayName"] for o in body["outputs"]] == [o["displayName"] for o in expected.outputs]
        # X-API-Key works as well as Bearer; XSOAR's names for the command and its arguments too
        r = svc.http.post(f"{svc.url}/v1/commands/microsoft-teams-channels-list", json={"team": SOC},
                          headers={"X-API-Key": reader}, timeout=30)
        assert r.status_code == 200 and r.json()["command"] == "channel-list", r.text
        r = svc.post("channel-list", {"team_name": SOC}, key=reader)  # an argument by XSOAR's name
        assert r.status_code in (200, 422), r.text

        # no key, a wrong key, a malformed header
        b = problem(svc.post("channel-list", {"team": SOC}), 401, "unauthorized")
        assert "api-key create" in b["hint"]
        r = svc.post("channel-list", {"team": SOC})
        assert r.headers["www-authenticate"] == 'Bearer realm="msteams"'
        r = svc.post("channel-list", {"team": SOC}, key="mst_" + "x" * 43)
        problem(r, 401, "unauthorized")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        problem(svc.post("channel-list", {}, headers={"Authorization": "Basic abc"}), 401, "unauthorized")
        problem(svc.get("/v1/commands"), 401, "unauthorized")

        # the errors of the request itself
        b = problem(svc.post("no-such-command", {}, key=reader), 404, "unknown_command")
        b = problem(svc.post("channel-lst", {}, key=reader), 404, "unknown_command")
        assert "channel-list" in b["hint"]
        b = problem(svc.post("channel-list", {"tem": SOC}, key=reader), 422, "input")
        assert b["details"]["argument"] == "tem" and "valid: team" in b["detail"] and b["exit_code"] == 2
        b = problem(svc.post("channel-list", {"team": 42}, key=reader), 422, "input")
        assert b["details"]["argument"] == "team"
        problem(svc.post("channel-list", data=b"{not json", key=reader), 400, "input")
        problem(svc.post("channel-list", data=b"[1, 2]", key=reader), 422, "input")
        # a lone surrogate (JSON's "\\ud800" escape): a problem naming the argument, never a 500
        b = problem(svc.post("channel-list", data=b'{"team": "x\\ud800"}', key=reader), 422, "input")
        assert b["details"]["argument"] == "team" and "U+D800" in b["detail"], b
        b = problem(svc.post("channel-list", data=b'{"team": "x\xed\xa0\x80"}', key=reader), 422, "input")
        assert b["details"]["argument"] == "team", b  # the same, as the 3 bytes json.loads reads it from
        b = problem(svc.post("channel-list", data=b'{"team": "x", "t\\udcffm": 1}', key=reader), 422, "input")
        assert b["detail"].startswith("a key of the body is not valid text"), b
        problem(svc.post("channel-list", data=b"x" * (300 * 1024), key=reader), 413, "too_large")
        # a body under the cap that comes in many chunks is read whole (else it would not be JSON)
        b = problem(svc.post("channel-list", data=json.dumps({"tem": "x" * 200_000}).encode(), key=reader), 422, "input")
        assert b["details"]["argument"] == "tem", b
        problem(svc.post("channel-list", {"team": SOC}, key=reader, params={"flow": "nope"}), 400, "input")
        problem(svc.http.get(f"{svc.url}/v1/commands/channel-list", timeout=30), 405, "method_not_allowed")
        problem(svc.get("/v1/nothing-here"), 404, "not_found")
        # what the command finds (not_found: the team does not exist)
        b = problem(svc.post("channel-list", {"team": "No Such Team"}, key=reader), 404, "not_found")
        assert b["exit_code"] == 5

        # scopes: not covered -> 403; a glob never allows a destructive command, a name does
        b = problem(svc.post("chat-list", {}, key=reader), 403, "scope")
        assert b["details"]["scope"] == "chat-list"
        b = problem(svc.post("team-delete", {"team": "IT Helpdesk"}, key=reader), 403, "scope")
        assert "glob" in b["detail"]
        b = problem(svc.post("team-delete", {"team": "No Such Team"}, key=deleter), 404, "not_found")
        assert any(t.display_name == "IT Helpdesk" for t in emu.state.teams.values())
        listing = {c["name"]: c for c in svc.get("/v1/commands", key=reader).json()["commands"]}
        assert listing["channel-list"]["allowed"] and not listing["chat-list"]["allowed"]
        assert listing["team-delete"]["destructive"] and not listing["team-delete"]["allowed"]
        assert not listing["channel-list"]["destructive"]

        # a revoked key is refused at once (the service reads the store on every request)
        assert svc.post("channel-list", {"team": SOC}, key=reader).status_code == 200
        code, out, err = cli(cfg_file, "api-key", "revoke", "reader")
        assert code == 0 and "Revoked" in out[0], err
        problem(svc.post("channel-list", {"team": SOC}, key=reader), 401, "unauthorized")
        # /v1/ready needs a key allowed integration-health; /metrics none on loopback
        problem(svc.get("/v1/ready", key=deleter), 403, "scope")
        metrics = svc.get("/metrics")
        assert metrics.status_code == 200 and 'msteams_commands_total{command="channel-list",outcome="ok",tenant=""}' in metrics.text
        assert 'msteams_inbound_activities_total{decision="refused-401",kind="http"}' in metrics.text

    # every call with a key is audited: key name, command, digest of the arguments, outcome
    code, out, err = cli(cfg_file, "-o", "json", "bot", "audit", "--limit", "100", "--sender", "api-key:reader")
    rows = json.loads(out[0])
    assert rows[0]["command"] == "channel-list" and rows[0]["outcome"] == "ok"  # the last before it was revoked
    ok = [r for r in rows if r["command"] == "channel-list" and r["outcome"] == "ok"]
    assert ok and ok[0]["text"].startswith("sha256:") and SOC not in json.dumps(rows)
    assert ok[0]["conversation_type"] == "http" and ok[0]["duration_ms"] >= 0
    assert {(r["command"], r["outcome"]) for r in rows} >= {("team-delete", "scope"), ("channel-list", "input"),
                                                            ("no-such-command", "unknown_command")}
    code, out, err = cli(cfg_file, "-o", "json", "bot", "audit", "--limit", "100", "--sender", "api-key:?")
    refused = json.loads(out[0])  # keys it does not know (revoked, wrong): by their first characters
    assert refused[0]["detail"] == f"HTTP 401 (key {reader[:8]}...)" and refused[0]["decision"] == "refused"
    code, out, err = cli(cfg_file, "-o", "json", "api-key", "list")
    listed = json.loads(out[0])
    assert [k["name"] for k in listed] == ["deleter"] and deleter not in out[0]
    assert listed[0]["scopes"] == ["team-delete"] and listed[0]["key"] == deleter[:8] + "..."


def test_idempotency_key_sends_once_and_answers_the_same(emu, cfg_file, tmp_path):
    assert cli(cfg_file, "auth", "login")[0] == 0  # posting to a channel needs the delegated flow
    key = make_key(cfg_file, "poster", "channel-message-send", "channel-list")
    other = make_key(cfg_file, "other", "channel-message-send")
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        content = f"idem-{uuid.uuid4().hex[:8]}"
        body = {"team": SOC, "channel": "General", "content": content}
        first = svc.post("channel-message-send", body, key=key, headers={"Idempotency-Key": "op-1"})
        assert first.status_code == 200, first.text
        again = svc.post("channel-message-send", body, key=key, headers={"Idempotency-Key": "op-1"})
        assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()
        assert channel_messages(emu, content) == 1
        # the same key with another body (or command) is refused
        b = problem(svc.post("channel-message-send", dict(body, content="changed"), key=key,
                             headers={"Idempotency-Key": "op-1"}), 422, "idempotency_mismatch")
        assert "another body" in b["detail"]
        problem(svc.post("channel-list", {"team": SOC}, key=key, headers={"Idempotency-Key": "op-1"}),
                422, "idempotency_mismatch")
        # keys are per API key: another caller's op-1 is its own
        mine = svc.post("channel-message-send", dict(body, content=content + "-b"), key=other,
                        headers={"Idempotency-Key": "op-1"})
        assert mine.status_code == 200 and "idempotent-replayed" not in mine.headers
        problem(svc.post("channel-message-send", body, key=key, headers={"Idempotency-Key": "\x7f"}), 400, "input")
        # without a key, the same body is another message
        assert svc.post("channel-message-send", body, key=key).status_code == 200
        assert channel_messages(emu, content) == 2

        # 20 concurrent identical requests under one Idempotency-Key: one send
        storm = f"storm-{uuid.uuid4().hex[:8]}"
        body = {"team": SOC, "channel": "General", "content": storm}
        emu.faults.add(method="POST", path=r"/channels/[^/]+/messages$", delay=0.5, count=1)  # keep it running

        def call(_):
            with requests.Session() as s:
                s.trust_env = False
                return s.post(f"{svc.url}/v1/commands/channel-message-send", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "storm-1"})

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(call, range(20)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) <= {200, 409} and 200 in statuses, [a.text for a in answers]
        assert channel_messages(emu, storm) == 1
        sent = [a.json() for a in answers if a.status_code == 200]
        assert all(s == sent[0] for s in sent)
        for a in answers:
            if a.status_code == 409:
                assert a.json()["code"] == "idempotency_in_progress" and a.headers["retry-after"]
        # a retry after the storm gets the answer, still one message
        late = svc.post("channel-message-send", body, key=key, headers={"Idempotency-Key": "storm-1"})
        assert late.status_code == 200 and late.json() == sent[0] and channel_messages(emu, storm) == 1


def test_each_error_class_has_its_status(emu, cfg_file, tmp_path):
    """Microsoft failing (502), not answering (504), throttling past the budget (429 with
    Retry-After), refusing a permission (403), a flow not signed in (503), the service's own
    time limit (504 timeout) and rate limit (429 rate_limited)."""
    _set(cfg_file, max_retries=0, retry_budget_seconds=0, timeout=1)
    key = make_key(cfg_file, "ops", "*")
    with Service(cfg_file, tmp_path, "--port", "0", "--time-limit", "3", "--rate", "50", "--burst", "50") as svc:
        assert svc.post("team-list", {}, key=key).status_code == 200
        emu.faults.add(method="GET", path=r"/teams$", status=500, count=1)
        b = problem(svc.post("team-list", {}, key=key), 502, "graph")
        assert b["details"]["status"] == 500
        emu.faults.add(method="GET", path=r"/teams$", status=429, retry_after=1, count=1)
        r = svc.post("team-list", {}, key=key)
        problem(r, 429, "throttled")
        assert int(r.headers["retry-after"]) > 0
        emu.faults.add(method="GET", path=r"/teams$", delay=2.0, count=1)  # over the config's 1 s timeout
        problem(svc.post("team-list", {}, key=key), 504, "graph")
        emu.faults.add(method="GET", path=r"/teams$", status=403, count=1,
                       body={"error": {"code": "Forbidden", "message": "Missing role permissions on the request. "
                                                                       "API requires one of 'Team.ReadBasic.All'."}})
        b = problem(svc.post("team-list", {}, key=key), 403, "permission")
        # the delegated flow is not signed in: auth is the service's configuration (503)
        r = svc.post("message-send-to-chat", {"chat": "19:abc@thread.v2", "content": "x"}, key=key)
        problem(r, 503, "auth")
    _set(cfg_file, max_retries=0, retry_budget_seconds=0, timeout=10)
    with Service(cfg_file, tmp_path, "--port", "0", "--time-limit", "0.5", "--rate", "0.2", "--burst", "2",
                 name="slow") as svc:
        # past the service's time limit: 504 timeout, the command goes on
        emu.faults.add(method="GET", path=r"/users", delay=1.5, count=1)
        b = problem(svc.post("user-list", {"limit": 1}, key=key), 504, "timeout")
        assert "Idempotency-Key" in b["hint"]
        # the key's rate: a burst of 2, then 429 with Retry-After
        assert svc.get("/v1/commands", key=key).status_code == 200
        r = svc.get("/v1/commands", key=key)
        problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1


def test_problem_mapping_is_one_table():
    from integration.delivery.outbox import UnknownDelivery
    from integration.engine import errors as E
    from integration.frontends.service.problems import from_error

    cases = [
        (E.ArgumentError("team", "is required"), 422, "input"),
        (E.InputError("bad"), 400, "input"),
        (E.AmbiguousError("user", "bob", ["a", "b"]), 400, "input"),
        (E.FileError("x.yml", "bad"), 400, "input"),
        (E.RequestRejected("no", status=400), 400, "graph"),
        (E.ConfigError("no"), 503, "config"),
        (E.ConfigFileError("c.yml", "bad", 3), 503, "config"),
        (E.AuthError("no"), 503, "auth"),
        (E.PermissionDenied("no", permissions=["X.Read"]), 403, "permission"),
        (E.NotFound("no"), 404, "not_found"),
        (E.ThrottledError("slow", status=429), 429, "throttled"),
        (E.GraphError("timed out"), 504, "graph"),
        (E.GraphError("boom", status=500), 502, "graph"),
        (E.NotSent("refused"), 502, "graph"),
        (E.PartialFailure("some"), 502, "partial"),
        (UnknownDelivery("maybe"), 502, "error"),
        (E.IntegrationError("the mirror is closed"), 409, "error"),
        (RuntimeError("a bug with a secret s3cr3t"), 500, "internal"),
    ]
    for exc, status, code in cases:
        p = from_error(exc)
        body = p.body("/v1/commands/x")
        assert (p.status, body["code"]) == (status, code), exc
        assert body["type"] == "urn:msteams-soar:problem:" + code and body["title"] and body["status"] == status
        assert "s3cr3t" not in json.dumps(body)
    assert from_error(E.ThrottledError("slow", status=429)).headers["Retry-After"]
    assert from_error(E.PermissionDenied("no", permissions=["X.Read"])).body()["details"]["permissions"] == ["X.Read"]
    assert from_error(E.ArgumentError("team", "is required")).body()["details"] == {"argument": "team"}


def test_api_key_cli(emu, cfg_file):
    code, out, err = cli(cfg_file, "api-key", "create", "--name", "tines", "--scope", "chat-*", "--scope",
                         "microsoft-teams-team-delete", "--expires", "90d")
    assert code == 0, err
    token = out[1]
    assert token.startswith("mst_") and len(token) == 47
    assert "team-delete" in out[2] and "microsoft-teams" not in out[2]  # an alias is kept as the command
    assert "expires  20" in out[3]
    code, out, err = cli(cfg_file, "api-key", "create", "--name", "tines", "--scope", "chat-list")
    assert code == 2 and "exists" in err[0]
    for scopes, why in [([], "at least one --scope"), (["nope"], "no such command"), (["zzz*"], "matches no command"),
                        (["Chat-*"], "lowercase"), (["playbook:nope"], "no shipped playbook is 'nope'"),
                        (["playbook:zz*"], "no shipped playbook matches")]:
        argv = ["api-key", "create", "--name", "x"] + [w for s in scopes for w in ("--scope", s)]
        code, out, err = cli(cfg_file, *argv)
        assert code == 2 and why in err[0], (scopes, err)
    code, out, err = cli(cfg_file, "api-key", "create", "--name", "x", "--scope", "team-*")
    assert code == 0 and "globs never allow destructive commands (team-archive, team-delete, team-member-remove)" \
        in out[-1]
    assert cli(cfg_file, "api-key", "create", "--name", "y", "--scope", "*", "--expires", "soon")[0] == 2
    assert cli(cfg_file, "api-key", "create", "--name", "bad name", "--scope", "*")[0] == 2
    code, out, err = cli(cfg_file, "api-key", "list")
    assert code == 0 and "| tines | chat-*, team-delete |" in out[0] and token not in out[0]
    code, out, err = cli(cfg_file, "api-key", "revoke", "nobody")
    assert code == 5 and "no API key named 'nobody'" in err[0]
    assert cli(cfg_file, "api-key")[0] == 2
    code, out, err = cli(cfg_file, "api-key", "--help")
    assert code == 0 and "api-key create" in out[0]
    # the store keeps a hash only
    from integration.engine.config import load
    from integration.store.open import open_store

    store = open_store(load(str(cfg_file)))
    try:
        assert token not in json.dumps(store.entries("api_key"))
    finally:
        store.close()
    # state, not cache: cache-reset keeps the keys
    assert cli(cfg_file, "cache-reset")[0] == 0
    assert "tines" in cli(cfg_file, "api-key", "list")[1][0]


def test_serve_usage_errors(emu, cfg_file, tmp_path):
    assert cli(cfg_file, "serve", "--tls-cert", "x.pem")[0] == 2
    assert cli(cfg_file, "serve", "--port", "70000")[0] == 2
    code, out, err = cli(cfg_file, "serve", "--help")
    assert code == 0
    _set(cfg_file, bot_id=None, bot_secret=None)
    code, out, err = cli(cfg_file, "serve", "--bot", "--port", "0")
    assert code == 3 and "bot_id" in err[0]


@pytest.mark.parametrize("key_kind", ["none", "other-scope"])
def test_every_operation_is_refused_without_a_key_or_its_scope(emu, cfg_file, tmp_path, key_kind):
    key = make_key(cfg_file, "narrow", "cache-show") if key_kind == "other-scope" else None
    with Service(cfg_file, tmp_path, "--port", "0", "--rate", "1000", "--burst", "1000") as svc:
        doc = svc.get("/v1/openapi.json").json()
        operations = [(path, method) for path, item in doc["paths"].items() for method in item
                      if item[method].get("security") != []]
        assert len(operations) > 50
        for path, method in operations:
            if key_kind == "other-scope" and path in ("/v1/commands/cache-show", "/v1/commands", "/v1/runs",
                                                      "/metrics"):
                continue  # allowed to it (/v1/commands, /v1/runs: any key, filtered; /metrics: no key on loopback)
            if key_kind == "none" and path == "/metrics":
                continue
            if key_kind == "other-scope" and ("{run_id}" in path or "{job_id}" in path):
                continue  # no such run or job: 404 before its scope is known (test_service_runs.py, test_service_jobs.py)
            path = path.replace("{name}", "access-request")
            r = svc.http.request(method.upper(), svc.url + path, json={} if method == "post" else None, timeout=30,
                                 headers={"X-API-Key": key} if key else {})
            assert r.status_code == (403 if key else 401), (path, r.status_code, r.text)
