"""Fault injection: failing the next N matching requests with a status, a delay or a dropped
connection, on Graph, the Bot Connector and (on request) the sign-in endpoints."""
from __future__ import annotations

import time

import msal
import pytest
import requests

import msal_helpers as mh
from fake_tenant.core import Response
from msal_helpers import bearer, stub_route


def test_status_fault_hits_the_next_n_matching_requests(emu, http, app_token):
    emu.faults.add(method="GET", path=r"^/users$", status=503, count=2, retry_after=7)
    me = emu.state.service_account
    # Not matching: another path and another method.
    assert http.get(f"{emu.graph_url}/users/{me}", headers=bearer(app_token)).status_code == 200
    r = http.get(emu.graph_url + "/users", headers=bearer(app_token))
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    err = r.json()["error"]
    assert err["code"] == "ServiceUnavailable" and "request-id" in err["innerError"]
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 503
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 200
    assert len(emu.faults) == 0


def test_fault_applies_after_auth_and_permission(emu, http, app_token):
    emu.faults.add(path=r"/users", status=500)
    assert http.get(emu.graph_url + "/users").status_code == 401  # no token: refused before the fault
    assert len(emu.faults) == 1
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 500


def test_fault_matches_full_path_and_custom_body(emu, http, app_token):
    emu.faults.add(path=r"^/v1\.0/users$", status=429, body={"error": {"code": "TooManyRequests", "message": "x"}})
    r = http.get(emu.graph_url + "/users", headers=bearer(app_token))
    assert r.status_code == 429 and r.json() == {"error": {"code": "TooManyRequests", "message": "x"}}
    assert "Retry-After" not in r.headers


def test_dropped_connection(emu, http, app_token):
    emu.faults.add(method="GET", path=r"^/users$", drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(emu.graph_url + "/users", headers=bearer(app_token))
    # The server carries on; a new connection works.
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 200
    assert [e["status"] for e in emu.request_log if e["path"] == "/v1.0/users"] == [0, 200]


def test_delay_then_normal_or_status(emu, http, app_token):
    emu.faults.add(path=r"^/users$", delay=0.2)
    t = time.perf_counter()
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 200
    assert time.perf_counter() - t >= 0.2
    emu.faults.add(path=r"^/users$", delay=0.3, status=504)
    with pytest.raises(requests.exceptions.Timeout):
        http.get(emu.graph_url + "/users", headers=bearer(app_token), timeout=0.1)
    time.sleep(0.25)  # let the delayed request finish before the next test resets the emulator


def test_batch_item_faults_are_per_item(emu, http, app_token):
    me = emu.state.service_account
    emu.faults.add(path=r"^/users/", status=503, count=1)
    emu.faults.add(path=r"^/teams$", drop=True)

    def handler(ctx, req):
        rs = [ctx.dispatch("GET", f"/users/{me}", {}, None, req.token),
              ctx.dispatch("GET", f"/users/{me}", {}, None, req.token),
              ctx.dispatch("GET", "/teams", {}, None, req.token)]
        return Response(200, {"statuses": [r.status for r in rs]})

    with stub_route("POST", "/$batch", handler, permission_key="none"):
        r = http.post(emu.graph_url + "/$batch", headers=bearer(app_token), json={})
    assert r.json()["statuses"] == [503, 200, 504]


def test_entra_faults_need_the_entra_target(emu, http):
    emu.faults.add(path=r"oauth2/v2.0/token", status=503)  # target "api": sign-in is untouched
    token = mh.app_token(emu)
    emu.faults.clear()
    emu.faults.add(path=r"oauth2/v2.0/token", status=503, target="entra")
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):  # MSAL raises on a 5xx from Entra
        mh.confidential_app(emu).acquire_token_for_client(mh.GRAPH_DEFAULT)
    assert http.get(emu.graph_url + "/users", headers=bearer(token)).status_code == 200


def test_bot_connector_faults(emu, http, bot_token):
    emu.faults.add(method="POST", path=r"/v3/conversations$", status=502)
    cfg = emu.config()
    body = {"bot": {"id": cfg["bot_id"]}, "members": [{"id": "29:" + emu.state.service_account}],
            "tenantId": cfg["tenant_id"]}
    r = http.post(emu.bot_service_url + "v3/conversations", headers=bearer(bot_token), json=body)
    assert r.status_code == 502 and "error" in r.json()
    r = http.post(emu.bot_service_url + "v3/conversations", headers=bearer(bot_token), json=body)
    assert r.status_code == 201


def test_bad_fault_arguments():
    from fake_tenant.faults import Faults
    f = Faults()
    with pytest.raises(ValueError):
        f.add(status=42)
    with pytest.raises(ValueError):
        f.add(count=0)
    with pytest.raises(ValueError):
        f.add(target="somewhere")
    assert f.add(path="x").status == 503
    assert f.add(path="x", delay=1).status is None
