"""Entra ID emulation driven by real MSAL and plain requests: discovery, client credentials,
authorization code with PKCE, refresh rotation and revocation, device code, AADSTS errors."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import urllib.parse

import jwt
from jwt.algorithms import RSAAlgorithm

import msal_helpers as mh

GRAPH = "https://graph.microsoft.com"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _token_url(emu) -> str:
    return f"{emu.authority}/oauth2/v2.0/token"


def _assert_aadsts(r, status: int, error: str, code: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    for k in ("timestamp", "trace_id", "correlation_id"):
        assert body[k]
    return body


def _authorize(http, emu, **params):
    cfg = emu.config()
    q = {"client_id": cfg["client_id"], "response_type": "code", "redirect_uri": mh.REDIRECT_URI,
         "scope": f"{GRAPH}/.default offline_access openid", "state": "st-1"}
    q.update(params)
    q = {k: v for k, v in q.items() if v is not None}
    return http.get(f"{emu.authority}/oauth2/v2.0/authorize", params=q, allow_redirects=False)


def _code(http, emu, **params) -> str:
    r = _authorize(http, emu, **params)
    assert r.status_code == 302, r.text
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))
    assert q["state"] == params.get("state", "st-1")
    return q["code"]


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(40)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


# ---- discovery ----

def test_openid_configuration_and_jwks(emu, http):
    for tenant in (emu.state.tenant_id, "common", "organizations", emu.state.domain):
        r = http.get(f"{emu.base_url}/{tenant}/v2.0/.well-known/openid-configuration")
        assert r.status_code == 200
        cfg = r.json()
        for k in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint", "jwks_uri",
                  "issuer", "response_types_supported"):
            assert k in cfg
        assert cfg["token_endpoint"].startswith(emu.base_url + "/")
    cfg = http.get(f"{emu.authority}/v2.0/.well-known/openid-configuration").json()
    assert cfg["issuer"] == emu.authority + "/v2.0"
    keys = http.get(cfg["jwks_uri"]).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA" and keys[0]["kid"]


def test_unknown_tenant_is_refused(emu, http):
    r = http.get(f"{emu.base_url}/not-a-tenant/v2.0/.well-known/openid-configuration")
    _assert_aadsts(r, 400, "invalid_tenant", 90002)


# ---- client credentials ----

def test_client_credentials_token_is_a_verifiable_rs256_jwt(emu, http):
    token = mh.app_token(emu)
    jwk = http.get(f"{emu.authority}/discovery/v2.0/keys").json()["keys"][0]
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    claims = jwt.decode(token, RSAAlgorithm.from_jwk(json.dumps(jwk)), algorithms=["RS256"], audience=GRAPH,
                        issuer=emu.authority + "/v2.0")
    app = emu.state.app(emu.config()["client_id"])
    assert claims["tid"] == emu.state.tenant_id
    assert claims["appid"] == claims["azp"] == app.app_id
    assert set(claims["roles"]) == app.application_permissions
    assert "scp" not in claims
    assert claims["exp"] - claims["iat"] == 3600
    assert "Teamwork.Migrate.All" not in claims["roles"]


def test_wrong_secret_gets_invalid_client_in_aadsts_shape(emu, http):
    res = mh.confidential_app(emu, secret="not-the-secret").acquire_token_for_client(mh.GRAPH_DEFAULT)
    assert res["error"] == "invalid_client"
    assert res["error_codes"] == [7000215]
    assert res["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    cfg = emu.config()
    r = http.post(_token_url(emu), data={"grant_type": "client_credentials", "client_id": cfg["client_id"],
                                         "client_secret": "nope", "scope": f"{GRAPH}/.default"},
                  headers={"client-request-id": "corr-123"})
    body = _assert_aadsts(r, 401, "invalid_client", 7000215)
    assert body["correlation_id"] == "corr-123"
    assert cfg["client_secret"] not in r.text


def test_basic_auth_and_missing_secret(emu, http):
    cfg = emu.config()
    r = http.post(_token_url(emu), data={"grant_type": "client_credentials", "scope": f"{GRAPH}/.default"},
                  auth=(cfg["client_id"], cfg["client_secret"]))
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    assert "refresh_token" not in r.json()
    r = http.post(_token_url(emu), data={"grant_type": "client_credentials", "client_id": cfg["client_id"],
                                         "scope": f"{GRAPH}/.default"})
    _assert_aadsts(r, 401, "invalid_client", 7000218)


def test_unknown_app_scope_and_grant_errors(emu, http):
    cfg = emu.config()
    base = {"grant_type": "client_credentials", "client_id": cfg["client_id"], "client_secret": cfg["client_secret"]}
    r = http.post(_token_url(emu), data=dict(base, client_id="11111111-2222-3333-4444-555555555555",
                                             scope=f"{GRAPH}/.default"))
    _assert_aadsts(r, 400, "unauthorized_client", 700016)
    r = http.post(_token_url(emu), data=dict(base, scope=f"{GRAPH}/User.Read.All"))
    _assert_aadsts(r, 400, "invalid_scope", 1002012)
    r = http.post(_token_url(emu), data=dict(base, scope="api://something-else/.default"))
    _assert_aadsts(r, 400, "invalid_resource", 500011)
    r = http.post(_token_url(emu), data=dict(base, grant_type="password", scope=f"{GRAPH}/.default"))
    _assert_aadsts(r, 400, "unsupported_grant_type", 70003)


def test_bot_scope_gives_bot_audience(emu):
    claims = _claims(mh.bot_token(emu))
    assert claims["aud"] == "https://api.botframework.com"
    assert claims["appid"] == emu.config()["bot_id"]


def test_withdrawn_permission_shows_in_the_next_token(emu, http):
    cfg = emu.config()
    before = mh.app_token(emu)
    assert http.get(emu.graph_url + "/users", headers={"Authorization": "Bearer " + before}).status_code == 200
    app = emu.state.app(cfg["client_id"])
    emu.set_permissions(cfg["client_id"], application=app.application_permissions - {"User.Read.All"})
    after = mh.app_token(emu)
    assert "User.Read.All" not in _claims(after)["roles"]
    r = http.get(emu.graph_url + "/users", headers={"Authorization": "Bearer " + after})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "Forbidden"
    assert "User.Read.All" in r.json()["error"]["message"]
    # The token issued before the change still carries what was granted then, as in Entra.
    assert http.get(emu.graph_url + "/users", headers={"Authorization": "Bearer " + before}).status_code == 200


# ---- authorization code ----

def test_auth_code_flow_with_msal_confidential(emu):
    res = mh.delegated_result(emu)
    claims = _claims(res["access_token"])
    sa = emu.state.users[emu.state.service_account]
    assert claims["oid"] == sa["id"] and claims["tid"] == emu.state.tenant_id
    assert "ChatMessage.Send" in claims["scp"].split()
    assert "roles" not in claims
    assert res["refresh_token"]
    assert res["id_token_claims"]["preferred_username"] == sa["userPrincipalName"]
    assert res["id_token_claims"]["aud"] == emu.config()["client_id"]


def test_auth_code_flow_public_client_and_cache(emu):
    app = mh.public_app(emu)
    res = mh.auth_code_flow(app, emu, [f"{GRAPH}/User.Read", f"{GRAPH}/ChatMessage.Send"])
    assert "access_token" in res, res
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == ["soar-svc@contoso.example"]
    silent = app.acquire_token_silent([f"{GRAPH}/User.Read"], account=accounts[0])
    assert silent and silent["access_token"] == res["access_token"]
    refreshed = app.acquire_token_silent([f"{GRAPH}/User.Read"], account=accounts[0], force_refresh=True)
    assert refreshed and refreshed["access_token"] != res["access_token"]


def test_login_hint_picks_the_user(emu):
    res = mh.delegated_result(emu, login_hint="bob.smith@contoso.example")
    assert res["id_token_claims"]["preferred_username"] == "bob.smith@contoso.example"


def test_used_code_fails_with_70008(emu, http):
    cfg = emu.config()
    verifier, challenge = _pkce()
    code = _code(http, emu, code_challenge=challenge, code_challenge_method="S256")
    data = {"grant_type": "authorization_code", "client_id": cfg["client_id"], "client_secret": cfg["client_secret"],
            "code": code, "redirect_uri": mh.REDIRECT_URI, "code_verifier": verifier}
    r = http.post(_token_url(emu), data=data)
    assert r.status_code == 200, r.text
    assert {"access_token", "refresh_token", "id_token", "client_info", "scope"} <= set(r.json())
    _assert_aadsts(http.post(_token_url(emu), data=data), 400, "invalid_grant", 70008)


def test_expired_code_fails(emu, http):
    cfg = emu.config()
    code = _code(http, emu)
    emu.entra.clock = lambda: __import__("time").time() + 601
    r = http.post(_token_url(emu), data={"grant_type": "authorization_code", "client_id": cfg["client_id"],
                                         "client_secret": cfg["client_secret"], "code": code,
                                         "redirect_uri": mh.REDIRECT_URI})
    _assert_aadsts(r, 400, "invalid_grant", 70008)


def test_pkce_mismatch_and_missing_verifier(emu, http):
    cfg = emu.config()
    _, challenge = _pkce()
    base = {"grant_type": "authorization_code", "client_id": cfg["client_id"], "client_secret": cfg["client_secret"],
            "redirect_uri": mh.REDIRECT_URI}
    code = _code(http, emu, code_challenge=challenge, code_challenge_method="S256")
    _assert_aadsts(http.post(_token_url(emu), data=dict(base, code=code, code_verifier="wrong-verifier")),
                   400, "invalid_grant", 501481)
    code = _code(http, emu, code_challenge=challenge, code_challenge_method="S256")
    _assert_aadsts(http.post(_token_url(emu), data=dict(base, code=code)), 400, "invalid_grant", 50148)


def test_redirect_uri_rules(emu, http):
    # Not registered: refused at the authorize endpoint, no redirect to the stranger.
    r = _authorize(http, emu, redirect_uri="https://evil.example/callback")
    _assert_aadsts(r, 400, "invalid_request", 50011)
    assert "Location" not in r.headers
    # Loopback on any port and path is accepted for the native registration.
    for uri in ("http://localhost:51234/", "http://127.0.0.1:8080/auth/done", "http://localhost"):
        assert _authorize(http, emu, redirect_uri=uri).status_code == 302, uri
    assert _authorize(http, emu, redirect_uri="https://localhost:8400/callback").status_code == 400
    # The token request must repeat the exact URI used at authorize.
    cfg = emu.config()
    code = _code(http, emu)
    r = http.post(_token_url(emu), data={"grant_type": "authorization_code", "client_id": cfg["client_id"],
                                         "client_secret": cfg["client_secret"], "code": code,
                                         "redirect_uri": "http://localhost:9999/other"})
    _assert_aadsts(r, 400, "invalid_request", 50011)


def test_authorize_unknown_client_and_form_post(emu, http):
    r = _authorize(http, emu, client_id="11111111-2222-3333-4444-555555555555")
    _assert_aadsts(r, 400, "unauthorized_client", 700016)
    r = _authorize(http, emu, response_mode="form_post", state="s&<x>")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'name="code"' in r.text and 'value="s&amp;&lt;x&gt;"' in r.text
    assert f'action="{mh.REDIRECT_URI}"' in r.text


def test_unconsented_scope_is_refused(emu):
    app = mh.confidential_app(emu)
    res = mh.auth_code_flow(app, emu, [f"{GRAPH}/Mail.Read"])
    assert res["error"] == "invalid_grant" and 65001 in res["error_codes"]


def test_secret_checked_when_sent_in_code_redemption(emu, http):
    cfg = emu.config()
    code = _code(http, emu)
    r = http.post(_token_url(emu), data={"grant_type": "authorization_code", "client_id": cfg["client_id"],
                                         "client_secret": "wrong", "code": code, "redirect_uri": mh.REDIRECT_URI})
    _assert_aadsts(r, 401, "invalid_client", 7000215)


# ---- refresh ----

def test_refresh_token_rotates(emu):
    app = mh.confidential_app(emu)
    first = mh.auth_code_flow(app, emu)
    second = app.acquire_token_by_refresh_token(first["refresh_token"], mh.GRAPH_DEFAULT)
    assert "access_token" in second, second
    assert second["refresh_token"] != first["refresh_token"]
    again = app.acquire_token_by_refresh_token(first["refresh_token"], mh.GRAPH_DEFAULT)
    assert again["error"] == "invalid_grant" and again["error_codes"] == [700082]
    third = app.acquire_token_by_refresh_token(second["refresh_token"], mh.GRAPH_DEFAULT)
    assert "access_token" in third, third


def test_revoked_refresh_token_fails(emu, http):
    app = mh.confidential_app(emu)
    first = mh.auth_code_flow(app, emu)
    assert emu.revoke_refresh_tokens() >= 1
    res = app.acquire_token_by_refresh_token(first["refresh_token"], mh.GRAPH_DEFAULT)
    assert res["error"] == "invalid_grant" and res["error_codes"] == [700082]
    # Revoking over the admin API works the same way.
    first = mh.auth_code_flow(app, emu)
    assert http.post(emu.base_url + "/_emulator/revoke", json={}).json()["revoked"] >= 1
    res = app.acquire_token_by_refresh_token(first["refresh_token"], mh.GRAPH_DEFAULT)
    assert res["error_codes"] == [700082]


# ---- device code ----

def test_device_code_flow(emu, recwarn):
    app = mh.public_app(emu)
    flow = app.initiate_device_flow(scopes=[f"{GRAPH}/User.Read"])
    assert {"user_code", "device_code", "verification_uri", "interval", "expires_in", "message"} <= set(flow)
    assert flow["user_code"] in flow["message"]
    flow["interval"] = 0  # the emulator approves after the first poll; no need to wait
    res = app.acquire_token_by_device_flow(flow)
    assert "access_token" in res, res
    assert res["id_token_claims"]["preferred_username"] == "soar-svc@contoso.example"
    again = app.acquire_token_by_device_flow(dict(flow), exit_condition=lambda f: True)
    assert again["error"] == "expired_token"


def test_first_device_poll_is_pending(emu, http):
    cfg = emu.config()
    flow = http.post(f"{emu.authority}/oauth2/v2.0/devicecode",
                     data={"client_id": cfg["client_id"], "scope": "openid offline_access"}).json()
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": cfg["client_id"],
            "device_code": flow["device_code"]}
    _assert_aadsts(http.post(_token_url(emu), data=data), 400, "authorization_pending", 70016)
    r = http.post(_token_url(emu), data=data)
    assert r.status_code == 200 and "refresh_token" in r.json()
