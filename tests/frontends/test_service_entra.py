"""Entra ID bearer tokens for the HTTP API (issue 25, item 2, for enterprises): a live
`msteams serve` with `api_entra_audience`, a SOAR platform's own app registration in the fake
tenant with app roles on the integration's API, its token got with real MSAL (client
credentials, `api://<client id>/.default`). Roles are scopes; a token of another audience,
tenant or key is refused; without the setting only API keys are taken."""
from __future__ import annotations

import json

import jwt
import msal
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

import msal_helpers as mh
from engine_fixtures import store_settings
from service_helpers import Service, cli
from tenant_helpers import write_tenants_config

SOC = "Security Operations"


def entra_token(emu, client: dict, *, tenant: str | None = None) -> str:
    authority = emu.config(tenant=tenant)["authority"] if tenant else emu.config()["authority"]
    app = msal.ConfidentialClientApplication(client["client_id"], client_credential=client["client_secret"],
                                             authority=authority, instance_discovery=False,
                                             http_client=mh.http_session(emu.ca_bundle))
    result = app.acquire_token_for_client(scopes=[f"api://{client['resource']}/.default"])
    assert "access_token" in result, result
    return result["access_token"]


@pytest.fixture
def cfg_file(emu, tmp_path):
    data = dict(emu.config(), **store_settings(tmp_path), api_entra_audience=emu.config()["client_id"])
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def call(svc, command: str, token: str, body=None, headers=None):
    return svc.post(command, body or {}, headers={"Authorization": f"Bearer {token}", **(headers or {})})


def test_an_entra_token_runs_what_its_app_roles_allow(emu, cfg_file, tmp_path):
    tines = emu.register_api_client("tines", ["channel-list", "team-*"])
    token = entra_token(emu, tines)
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["channel-list", "team-*"]
    with Service(cfg_file, tmp_path) as svc:
        r = call(svc, "channel-list", token, {"team": SOC})
        assert r.status_code == 200, r.text
        assert "Incident Response" in [c["displayName"] for c in r.json()["outputs"]]
        assert call(svc, "team-list", token).status_code == 200  # team-* allows it
        r = call(svc, "user-list", token)
        assert r.status_code == 403 and r.json()["code"] == "scope"
        r = call(svc, "team-delete", token, {"team": SOC})  # destructive: a glob never allows it
        assert r.status_code == 403 and "destructive" in r.json()["detail"]
    code, out, err = cli(cfg_file, "-o", "json", "bot", "audit")
    assert code == 0 and {a["sender_name"] for a in json.loads(out[0])} == {f"entra:{tines['client_id']}"}


def test_tokens_of_another_audience_key_or_time_are_refused(emu, cfg_file, tmp_path):
    tines = emu.register_api_client("tines", ["team-list"])
    graph_token = mh.app_token(emu)  # a real token of the tenant, for Graph: another audience
    app = emu.state.app(tines["client_id"])
    expired = emu.tokens.issue_app_token(app, tines["resource"], lifetime=-3600, roles=["team-list"])
    forged = jwt.encode(dict(jwt.decode(entra_token(emu, tines), options={"verify_signature": False})),
                        rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256",
                        headers={"kid": emu.tokens.kid})
    with Service(cfg_file, tmp_path) as svc:
        for token, why in ((graph_token, "audience"), (expired, "expired"), (forged, "signature")):
            r = call(svc, "team-list", token)
            assert r.status_code == 401, (why, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer") and "Entra ID token refused" in r.json()["detail"]
            assert token not in r.text
        assert call(svc, "team-list", entra_token(emu, tines)).status_code == 200


def test_without_the_setting_only_api_keys_are_taken(emu, tmp_path):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(dict(emu.config(), **store_settings(tmp_path))))
    tines = emu.register_api_client("tines", ["team-list"])
    with Service(path, tmp_path) as svc:
        r = call(svc, "team-list", entra_token(emu, tines))
        assert r.status_code == 401 and "not an API key" in r.json()["detail"]


def test_with_tenant_profiles_a_token_acts_for_its_own_tenant_only(tenants3, tmp_path):
    emu = tenants3
    path = write_tenants_config(emu, tmp_path, api_entra_audience=emu.config()["client_id"])
    fab = emu.register_api_client("tines", ["team-list"], tenant="fabrikam")
    token = entra_token(emu, fab, tenant="fabrikam")
    with Service(path, tmp_path) as svc:
        r = call(svc, "team-list", token, headers={"X-Msteams-Tenant": "fabrikam"})
        assert r.status_code == 200, r.text
        r = call(svc, "team-list", token, headers={"X-Msteams-Tenant": "contoso"})
        assert r.status_code == 403 and r.json()["code"] == "tenant"


def test_a_tenant_configured_by_its_domain_name_is_learned_from_its_metadata(emu, tmp_path):
    data = dict(emu.config(), **store_settings(tmp_path), api_entra_audience=emu.config()["client_id"],
                tenant_id=emu.state.domain)  # contoso.example: the tokens' tid is the tenant's id
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    tines = emu.register_api_client("tines", ["team-list"])
    with Service(path, tmp_path) as svc:
        r = call(svc, "team-list", entra_token(emu, tines))
        assert r.status_code == 200, r.text
