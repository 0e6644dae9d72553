"""Playbook runs over the HTTP API (issue 25): the access-request playbook started with
`POST /v1/playbooks/access-request/runs` (202 and Location), waiting on its approval card, a
simulated click received by the bot endpoint `msteams serve --bot` mounts on the same port, and
the run finished; its scopes (playbook:NAME; a command glob never grants one); a retried start
under one Idempotency-Key is the same run."""
from __future__ import annotations

import json
import time

from service_helpers import Service, cli, make_key

GRACE = "grace.kim@contoso.example"
BOB = "bob.smith@contoso.example"
INPUTS = {"request_id": "REQ-7", "requester": BOB, "roles": ["prod-admin"], "reason": "hotfix",
          "role_to_recipients": {"prod-admin": [GRACE]}}


def _until(svc, path: str, key: str, status: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = svc.get(path, key=key).json()
        if run.get("status") == status or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_access_request_over_http_waits_for_the_click_and_finishes(emu, cfg_file, tmp_path):
    key = make_key(cfg_file, "approvals", "playbook:access-request")
    commands = make_key(cfg_file, "commands", "*")
    try:
        with Service(cfg_file, tmp_path, "--port", "0", "--bot") as svc:
            assert emu.teams.messaging_endpoint == svc.url + "/api/messages"  # registered with the tenant
            r = svc.http.post(
                f"{svc.url}/v1/playbooks/access-request/runs", json={"inputs": INPUTS}, timeout=60,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "req-7"})
            assert r.status_code == 202, r.text
            run = r.json()
            assert r.headers["location"] == f"/v1/runs/{run['id']}" and run["playbook"] == "access-request"
            waiting = _until(svc, r.headers["location"], key, "waiting")
            assert waiting["status"] == "waiting" and waiting["waiting_for"], waiting
            listed = svc.get("/v1/runs?status=waiting", key=key).json()["runs"]
            assert [x["id"] for x in listed] == [run["id"]] and listed[0]["location"] == r.headers["location"]
            # a retried start under the same Idempotency-Key is the same run
            again = svc.http.post(f"{svc.url}/v1/playbooks/access-request/runs", json={"inputs": INPUTS}, timeout=60,
                                  headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "req-7"})
            assert again.status_code == 202 and again.json()["id"] == run["id"]
            # scopes: a glob over commands grants no playbook; another playbook is another scope
            for path in (r.headers["location"], "/v1/runs"):
                got = svc.get(path, key=commands)
                assert got.status_code == (403 if path != "/v1/runs" else 200), got.text
            assert svc.get("/v1/runs", key=commands).json() == {"runs": []}
            refused = svc.http.post(f"{svc.url}/v1/playbooks/access-request/runs", json={"inputs": INPUTS},
                                    headers={"X-API-Key": commands}, timeout=60)
            assert refused.status_code == 403 and refused.json()["code"] == "scope"
            assert svc.http.post(f"{svc.url}/v1/playbooks/page-oncall/runs", json={}, timeout=60,
                                 headers={"X-API-Key": key}).status_code == 403
            missing = svc.http.post(f"{svc.url}/v1/playbooks/../etc/runs", json={}, timeout=60,
                                    headers={"X-API-Key": key})
            assert missing.status_code == 404
            bad = svc.http.post(f"{svc.url}/v1/playbooks/access-request/runs", json={"inputs": {"roles": 5}},
                                headers={"X-API-Key": key}, timeout=60)
            assert bad.status_code in (400, 422) and bad.headers["content-type"].startswith("application/problem+json")
            assert svc.get("/v1/runs/nope", key=key).status_code == 404

            # Grace approves on her card: the bot endpoint (the same port) resumes the run
            code, out, err = cli(cfg_file, "emulator", "user-clicks", "--user", GRACE, "--question",
                                 waiting["waiting_for"], "--choice", "Approve", "--reason", "ok")
            assert code == 0, err
            done = _until(svc, r.headers["location"], key, "ok")
            assert done["status"] == "ok", done
            assert [s["id"] for s in done["steps"]][:1] == ["route"]
            resumed = svc.http.post(f"{svc.url}{r.headers['location']}/resume", headers={"X-API-Key": key}, timeout=60)
            assert resumed.status_code == 202 and resumed.json()["status"] == "ok"
    finally:
        emu.teams.register(None)
    code, out, err = cli(cfg_file, "-o", "json", "bot", "audit", "--sender", "api-key:approvals")
    assert "playbook:access-request" in {row["command"] for row in json.loads(out[0])}


def test_a_run_whose_inputs_or_key_hold_half_a_surrogate_pair_is_refused_at_once(emu, cfg_file, tmp_path):
    """Half of a UTF-16 pair (JSON's lone "\\ud800" escape) has no UTF-8 form: nothing could store
    the run. Refused 422 naming where it is, at once (it used to hang the call until the time
    limit, the run's thread failing to store it), and no run is made."""
    key = make_key(cfg_file, "starter", "playbook:access-request")
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        url = f"{svc.url}/v1/playbooks/access-request/runs"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        bodies = {"inputs.reason": json.dumps({"inputs": dict(INPUTS, reason="x")}).replace('"x"', '"x\\ud800"'),
                  "inputs.roles[0]": json.dumps({"inputs": INPUTS}).replace('"prod-admin"]', '"\\udc00"]'),
                  "run_key": json.dumps({"inputs": INPUTS, "run_key": "k"}).replace('"k"', '"k\\udfff"')}
        for where, body in bodies.items():
            r = svc.http.post(url, data=body.encode(), headers=headers, timeout=10)
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (where, r.text)
            problem = r.json()
            assert problem["detail"].startswith(f"'{where}' is not valid text"), problem
            assert problem["details"] == {"argument": where.split(".")[0].split("[")[0]}
        assert svc.get("/v1/runs", key=key).json() == {"runs": []}
