"""The HTTPS server and the Graph pipeline: token checks (401), /me rules, permissions (403),
404/405, 500 handling, request ids, batch re-entry, admin endpoints, the request log, config
output and ``msteams emulator serve``'s argument handling."""
from __future__ import annotations

import logging
import os
import stat

import jwt
import pytest
import requests
import yaml

import msal_helpers as mh
from msal_helpers import bearer, stub_route
from fake_tenant import core, permissions
from fake_tenant.core import GraphError, Response
from fake_tenant.permissions import required_permissions


def _graph_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert {"date", "request-id", "client-request-id"} <= set(err["innerError"])
    assert r.headers["request-id"] == err["innerError"]["request-id"]
    return err


# ---- transport ----

def test_tls_with_emulator_ca_only(emu):
    with pytest.raises(requests.exceptions.SSLError):
        s = requests.Session()
        s.trust_env = False
        s.get(emu.graph_url + "/users", verify=True)
    assert requests.get(emu.graph_url + "/users", verify=emu.ca_bundle).status_code == 401
    s = requests.Session()
    s.trust_env = False
    assert s.get(f"https://localhost:{emu.port}/v1.0/users", verify=emu.ca_bundle).status_code == 401


def test_keep_alive_and_request_ids(emu, http, app_token):
    r1 = http.get(emu.graph_url + "/users", headers=dict(bearer(app_token), **{"client-request-id": "abc-1"}))
    assert r1.status_code == 200
    assert r1.headers["client-request-id"] == "abc-1"
    r0 = http.get(emu.authority + "/v2.0/.well-known/openid-configuration", headers={"client-request-id": "abc-0"})
    assert r0.headers["client-request-id"] == "abc-0" and r0.headers["request-id"]
    assert r1.headers["request-id"]
    assert r1.headers.get("Connection", "").lower() != "close"
    assert int(r1.headers["Content-Length"]) == len(r1.content)
    r2 = http.get(emu.graph_url + "/users", headers=bearer(app_token))
    assert r2.headers["client-request-id"] and r2.headers["request-id"] != r1.headers["request-id"]
    pool = next(iter(http.adapters["https://"].poolmanager.pools._container.values()))
    assert pool.num_connections == 1  # both requests travelled over one kept-alive connection


def test_emulator_attributes(emu):
    assert emu.base_url.startswith("https://127.0.0.1:")
    assert emu.authority == f"{emu.base_url}/{emu.state.tenant_id}"
    assert emu.graph_url == emu.base_url + "/v1.0"
    assert emu.bot_service_url == emu.base_url + "/botframework/"
    assert os.path.isfile(emu.ca_bundle)
    cfg = emu.config()
    assert set(cfg) == {"tenant_id", "client_id", "client_secret", "bot_id", "bot_secret", "authority",
                        "graph_url", "bot_service_url", "ca_bundle", "service_account", "bot_openid_metadata_url",
                        "call_openid_metadata_url"}
    assert cfg["bot_openid_metadata_url"] == emu.base_url + "/botframework-login/v1/.well-known/openidconfiguration"
    assert cfg["call_openid_metadata_url"] == emu.base_url + "/calling-login/v1/.well-known/OpenIdConfiguration"
    assert cfg["service_account"] == "soar-svc@contoso.example"


def test_write_config_is_private_yaml(emu, tmp_path):
    path = tmp_path / "emu.yml"
    path.write_text("old")
    os.chmod(path, 0o644)
    emu.write_config(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == emu.config()


# ---- authentication ----

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer not.a.jwt"},
                                     {"Authorization": "Basic Zm9vOmJhcg=="}])
def test_missing_or_garbage_token_is_401(emu, http, headers):
    r = http.get(emu.graph_url + "/users", headers=headers)
    _graph_error(r, 401, "InvalidAuthenticationToken")
    assert "WWW-Authenticate" in r.headers


def test_expired_tokens_are_401(emu, http, app_token):
    assert http.get(emu.graph_url + "/users", headers=bearer(app_token)).status_code == 200
    emu.expire_tokens()
    err = _graph_error(http.get(emu.graph_url + "/users", headers=bearer(app_token)), 401,
                       "InvalidAuthenticationToken")
    assert "expired" in err["message"]
    fresh = mh.app_token(emu)
    assert http.get(emu.graph_url + "/users", headers=bearer(fresh)).status_code == 200
    # A token past its exp is refused too.
    short = emu.tokens.issue_app_token(emu.state.app(emu.config()["client_id"]), lifetime=-1)
    _graph_error(http.get(emu.graph_url + "/users", headers=bearer(short)), 401, "InvalidAuthenticationToken")


def test_short_lived_tokens_via_clock(emu, http, app_token):
    import time
    emu.tokens.clock = lambda: time.time() + 3601
    _graph_error(http.get(emu.graph_url + "/users", headers=bearer(app_token)), 401, "InvalidAuthenticationToken")


def test_wrong_audience_issuer_or_tenant_is_401(emu, http, bot_token):
    err = _graph_error(http.get(emu.graph_url + "/users", headers=bearer(bot_token)), 401, "InvalidAuthenticationToken")
    assert "audience" in err["message"].lower()
    payload = jwt.decode(mh.app_token(emu), options={"verify_signature": False})
    other_tenant = emu.tokens._sign(dict(payload, tid="00000000-0000-0000-0000-000000000001"))
    _graph_error(http.get(emu.graph_url + "/users", headers=bearer(other_tenant)), 401, "InvalidAuthenticationToken")
    other_iss = emu.tokens._sign(dict(payload, iss="https://login.microsoftonline.com/x/v2.0"))
    _graph_error(http.get(emu.graph_url + "/users", headers=bearer(other_iss)), 401, "InvalidAuthenticationToken")
    # Signed by somebody else's key.
    from cryptography.hazmat.primitives.asymmetric import rsa
    forged = jwt.encode(payload, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": emu.tokens.kid})
    _graph_error(http.get(emu.graph_url + "/users", headers=bearer(forged)), 401, "InvalidAuthenticationToken")


def test_me_needs_a_delegated_token(emu, http, app_token, delegated_token):
    err = _graph_error(http.get(emu.graph_url + "/me", headers=bearer(app_token)), 400, "BadRequest")
    assert err["message"] == "/me request is only valid with delegated authentication flow."
    r = http.get(emu.graph_url + "/me", headers=bearer(delegated_token))
    assert r.status_code == 200 and r.json()["userPrincipalName"] == "soar-svc@contoso.example"


# ---- routing ----

def test_unknown_path_is_400_and_wrong_method_405(emu, http, app_token):
    # Graph answers an unknown segment with 400 BadRequest
    err = _graph_error(http.get(emu.graph_url + "/users/abc/nonsense", headers=bearer(app_token)), 400, "BadRequest")
    assert err["message"] == "Resource not found for the segment 'nonsense'."
    err = _graph_error(http.get(emu.graph_url + "/widgets", headers=bearer(app_token)), 400, "BadRequest")
    assert "'widgets'" in err["message"]
    r = http.put(emu.graph_url + "/users", headers=bearer(app_token), json={})
    assert r.status_code == 405


def test_percent_encoded_path_is_decoded(emu, http, app_token):
    seen = {}

    def handler(ctx, req):
        seen.update(params=req.params, path=req.path, query=req.query)
        return Response(200, {"ok": True})

    with stub_route("GET", "/chats/{chat_id}/messages", handler):
        r = http.get(emu.graph_url + "/chats/19%3Aabc%40thread.v2/messages?$top=5&$filter=x%20eq%20'O''B'",
                     headers=bearer(app_token))
    assert r.status_code == 200, r.text
    assert seen["params"] == {"chat_id": "19:abc@thread.v2"}
    assert seen["query"] == {"$top": "5", "$filter": "x eq 'O''B'"}


def test_duplicate_query_option_is_400(emu, http, app_token):
    r = http.get(emu.graph_url + "/users?$top=1&$top=2", headers=bearer(app_token))
    _graph_error(r, 400, "BadRequest")


def test_handler_crash_is_500_without_traceback(emu, http, app_token, caplog):
    def boom(ctx, req):
        raise RuntimeError("secret internals")

    with stub_route("GET", "/chats/{chat_id}/messages", boom), caplog.at_level(logging.ERROR, "fake_tenant"):
        r = http.get(emu.graph_url + "/chats/x/messages", headers=bearer(app_token))
    _graph_error(r, 500, "InternalServerError")
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert "secret internals" in caplog.text


def test_graph_error_from_handler_keeps_headers(emu, http, app_token):
    def handler(ctx, req):
        raise GraphError(409, "Conflict", "already there", {"X-Extra": "1"})

    with stub_route("GET", "/chats/{chat_id}/messages", handler):
        r = http.get(emu.graph_url + "/chats/x/messages", headers=bearer(app_token))
    _graph_error(r, 409, "Conflict")
    assert r.headers["X-Extra"] == "1"


# ---- permissions ----

def test_app_token_cannot_post_chat_message_but_delegated_can(emu, http, app_token, delegated_token):
    svc = emu.state.users[emu.state.service_account]
    bob = emu.state.user("bob.smith@contoso.example")
    body = {"chatType": "oneOnOne", "members": [
        {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
         "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{u['id']}')"} for u in (svc, bob)]}
    r = http.post(emu.graph_url + "/chats", headers=bearer(delegated_token), json=body)
    assert r.status_code == 201, r.text
    chat_id = r.json()["id"]
    msg = {"body": {"contentType": "text", "content": "Incident 42: please look"}}
    r = http.post(f"{emu.graph_url}/chats/{chat_id}/messages", headers=bearer(app_token), json=msg)
    err = _graph_error(r, 403, "Forbidden")
    assert err["message"].startswith("Missing role permissions on the request. API requires one of 'Teamwork.Migrate.All'.")
    assert "Roles on the request '" in err["message"] and "Chat.ReadWrite.All" in err["message"]
    r = http.post(f"{emu.graph_url}/chats/{chat_id}/messages", headers=bearer(delegated_token), json=msg)
    assert r.status_code == 201, r.text
    assert emu.state.snapshot()["chats"][chat_id]["messages"][0]["body"]["content"] == "Incident 42: please look"


def test_permission_messages_for_delegated_and_app_only_apis(emu, http, delegated_token):
    cfg = emu.config()
    emu.set_permissions(cfg["client_id"], delegated=["User.Read", "openid", "offline_access"])
    token = mh.delegated_token(emu)
    err = _graph_error(http.get(emu.graph_url + "/users", headers=bearer(token)), 403, "Forbidden")
    assert err["message"].startswith("Missing scope permissions on the request. API requires one of "
                                     "'User.Read.All, User.ReadBasic.All, User.ReadWrite.All'. Scopes on the request '")
    # Calls are application-only: a delegated token is refused whatever it carries.
    r = http.post(emu.graph_url + "/communications/calls", headers=bearer(delegated_token), json={})
    err = _graph_error(r, 403, "Forbidden")
    assert "Calls.Initiate.All" in err["message"]


def test_required_permissions_and_overrides():
    req = required_permissions("POST", "/chats/19:abc@thread.v2/messages")
    assert req["application"] == ["Teamwork.Migrate.All"]
    assert "ChatMessage.Send" in req["delegated"]
    req = required_permissions("POST", "/teams/{id}/channels/{id}/messages")
    assert req["application"] == ["Teamwork.Migrate.All"] and "ChannelMessage.Send" in req["delegated"]
    assert required_permissions("POST", "/communications/calls")["delegated"] == []
    assert "User.Read.All" in required_permissions("GET", "/users/bob@contoso.example")["application"]
    with pytest.raises(KeyError):
        required_permissions("GET", "/nothing/here")


def test_every_route_has_a_permission_entry():
    permissions.check_routes(core.ROUTES)
    regex, key = core._compile("/widgets/{id}")
    with pytest.raises(RuntimeError, match="widgets"):
        permissions.check_routes([core.Route("GET", "/widgets/{id}", lambda c, r: None, regex, key)])


def test_batch_items_go_through_the_pipeline(emu, http, app_token):
    def handler(ctx, req):
        out = [ctx.dispatch("GET", "/users?$top=1", {}, None, req.token),
               ctx.dispatch("GET", "users/" + emu.state.service_account, {}, None, req.token),
               ctx.dispatch("POST", "/chats/x/messages", {"content-type": "application/json"},
                            {"body": {"content": "x"}}, req.token),
               ctx.dispatch("GET", "/v1.0/nothing", {}, None, req.token)]
        return Response(200, {"statuses": [r.status for r in out],
                              "codes": [(r.body or {}).get("error", {}).get("code") for r in out]})

    with stub_route("POST", "/$batch", handler, permission_key="none"):
        r = http.post(emu.graph_url + "/$batch", headers=bearer(app_token), json={})
    assert r.json()["statuses"] == [200, 200, 403, 400]
    items = [e for e in emu.request_log if e["batch_item"]]
    assert [e["status"] for e in items] == [200, 200, 403, 400]
    assert all(e["token_kind"] == "app" for e in items)


def test_real_batch_20_and_21(emu, http, app_token):
    reqs = [{"id": str(i), "method": "GET", "url": "/users?$top=1"} for i in range(21)]
    r = http.post(emu.graph_url + "/$batch", headers=bearer(app_token), json={"requests": reqs})
    assert r.status_code == 400
    r = http.post(emu.graph_url + "/$batch", headers=bearer(app_token), json={"requests": reqs[:20]})
    assert r.status_code == 200
    assert sorted(int(x["id"]) for x in r.json()["responses"]) == list(range(20))


# ---- request log ----

def test_request_log_has_no_secrets(emu, http, app_token, delegated_token):
    emu.request_log.clear()
    http.get(emu.graph_url + "/users?$top=2", headers=bearer(app_token))
    http.get(emu.graph_url + "/me", headers=bearer(delegated_token))
    http.get(emu.graph_url + "/users")
    mh.app_token(emu)
    log = list(emu.request_log)
    graph = [e for e in log if e["path"].startswith("/v1.0")]
    assert [(e["method"], e["path"], e["status"], e["token_kind"]) for e in graph] == [
        ("GET", "/v1.0/users", 200, "app"), ("GET", "/v1.0/me", 200, "delegated"), ("GET", "/v1.0/users", 401, None)]
    assert graph[0]["app_id"] == emu.config()["client_id"]
    for e in log:
        assert set(e) == {"method", "path", "status", "token_kind", "app_id", "tenant", "time", "duration_ms",
                          "batch_item"}
    text = repr(log)
    cfg = emu.config()
    for secret in (app_token, delegated_token, cfg["client_secret"], cfg["bot_secret"]):
        assert secret not in text
    assert any(e["path"].endswith("/oauth2/v2.0/token") and e["app_id"] == cfg["client_id"] for e in log)


# ---- admin ----

def test_admin_endpoints(emu, http, delegated_token):
    adm = emu.base_url + "/_emulator"
    info = http.get(adm + "/info").json()
    assert info["graph_url"] == emu.graph_url and "client_secret" not in info and "bot_secret" not in info
    text = http.get(adm + "/info").text + http.get(adm + "/state").text + http.get(adm + "/requests").text
    cfg = emu.config()
    assert cfg["client_secret"] not in text and cfg["bot_secret"] not in text
    assert http.get(adm + "/state").json()["chats"] == {}
    assert "requests" in http.get(adm + "/requests").json()

    r = http.post(adm + "/throttling", json={"enabled": True, "speed": 5, "retry_after": False})
    assert r.json() == {"enabled": True, "speed": 5.0, "retry_after": False}
    assert emu.throttling is True
    http.post(adm + "/throttling", json={"enabled": False, "speed": 1, "retry_after": True})

    r = http.post(adm + "/faults", json={"method": "GET", "path": "/me$", "status": 503, "count": 1})
    assert r.status_code == 201 and r.json()["remaining"] == 1
    assert len(http.get(adm + "/faults").json()["faults"]) == 1
    assert http.get(emu.graph_url + "/me", headers=bearer(delegated_token)).status_code == 503
    assert http.get(emu.graph_url + "/me", headers=bearer(delegated_token)).status_code == 200
    assert http.post(adm + "/faults", json={"bogus": 1}).status_code == 400
    http.post(adm + "/faults", json={"path": "x"})
    assert http.post(adm + "/faults", json={"clear": True}).json() == {"faults": []}

    r = http.post(adm + "/permissions", json={"app_id": cfg["client_id"], "application": ["User.Read.All"]})
    assert r.json()["application"] == ["User.Read.All"]
    assert emu.state.app(cfg["client_id"]).application_permissions == {"User.Read.All"}
    assert http.post(adm + "/permissions", json={"app_id": "nope"}).status_code == 404

    assert http.post(adm + "/expire").json() == {"expired": True}
    assert http.get(emu.graph_url + "/me", headers=bearer(delegated_token)).status_code == 401

    emu.request_log.append({"method": "GET", "path": "/x"})
    assert http.post(adm + "/reset").json() == {"reset": True}
    assert emu.request_log == [] or all(e["path"] != "/x" for e in emu.request_log)
    assert http.get(adm + "/nothing").status_code == 404


def test_reset_restores_seed_but_keeps_tokens(emu, http, delegated_token):
    svc = emu.state.users[emu.state.service_account]
    bob = emu.state.user("bob.smith@contoso.example")
    body = {"chatType": "oneOnOne", "members": [
        {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
         "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{u['id']}')"} for u in (svc, bob)]}
    assert http.post(emu.graph_url + "/chats", headers=bearer(delegated_token), json=body).status_code == 201
    emu.faults.add(path="/never")
    emu.reset()
    assert emu.state.snapshot()["chats"] == {} and len(emu.faults) == 0
    assert http.get(emu.graph_url + "/me", headers=bearer(delegated_token)).status_code == 200


# ---- serve ----

def test_serve_rejects_bad_tenant_file(tmp_path, capsys):
    from fake_tenant.serve import main
    bad = tmp_path / "tenant.yaml"
    bad.write_text("tenant_id: [unclosed\n")
    assert main(["--tenant", str(bad), "--write-config", str(tmp_path / "c.yml")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    missing = tmp_path / "missing.yaml"
    missing.write_text("users: []\n")
    assert main(["--tenant", str(missing)]) == 2
    assert "tenant_id" in capsys.readouterr().err


def test_serve_rejects_bad_arguments(capsys):
    from fake_tenant.serve import main
    assert main(["--users", "lots"]) == 2
    assert main(["--speed", "-1"]) == 2
    assert main(["--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_serve_runs_and_writes_config(tmp_path, capsys):
    from emulator_helpers import serving

    cfg_path = tmp_path / "emu.yml"
    with serving(["--no-throttling"], cfg_path) as run:
        cfg = run["config"]
        s = mh.http_session(cfg["ca_bundle"])
        r = s.get(cfg["authority"] + "/v2.0/.well-known/openid-configuration")
        assert r.status_code == 200
    assert run["rc"] == 0
    out = capsys.readouterr().out
    assert cfg["graph_url"] in out and str(cfg_path) in out
    assert cfg["client_secret"] not in out
