"""Several tenants in one fake Microsoft 365 (``Emulator(tenants=N)``, ``msteams emulator serve
--tenants N``), over real HTTPS with real MSAL: per-tenant authorities and tokens, Graph served
from the token's tenant (another tenant's ids are 404), consent per tenant, throttles per
tenant, Bot Connector conversations that belong to their tenant, Teams activities carrying the
user's tenant, and the config with a profile per tenant."""
from __future__ import annotations

import warnings

import jwt
import msal
import pytest
import yaml

import msal_helpers as mh
from emulator_helpers import serving
from fake_tenant import Emulator
from msal_helpers import BOT_DEFAULT, GRAPH_DEFAULT, bearer


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def multi():
    with Emulator(tenants=3, throttling=False) as emu:
        yield emu
    assert emu.conformance_total["invented"] == 0


@pytest.fixture
def emu3(multi):
    import time

    multi.reset()
    multi.set_throttling(False, speed=1.0, retry_after=True)
    yield multi
    multi.set_throttling(False, speed=1.0, retry_after=True)
    for name in multi.tenant_names():
        multi.tenant(name).throttle.clock = time.monotonic
    multi.teams.register(None)
    multi.reset()


@pytest.fixture
def http(multi):
    s = mh.http_session(multi.ca_bundle)
    yield s
    s.close()


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _app(emu, tenant: str, bot: bool = False, secret: str | None = None) -> msal.ConfidentialClientApplication:
    cfg = emu.config(tenant=tenant)
    cid, sec = (cfg["bot_id"], cfg["bot_secret"]) if bot else (cfg["client_id"], cfg["client_secret"])
    return msal.ConfidentialClientApplication(cid, client_credential=secret or sec, authority=cfg["authority"],
                                              instance_discovery=False, http_client=mh.http_session(emu.ca_bundle))


def app_token(emu, tenant: str) -> str:
    res = _app(emu, tenant).acquire_token_for_client(GRAPH_DEFAULT)
    assert "access_token" in res, res
    return res["access_token"]


def bot_token(emu, tenant: str) -> str:
    res = _app(emu, tenant, bot=True).acquire_token_for_client(BOT_DEFAULT)
    assert "access_token" in res, res
    return res["access_token"]


def delegated_token(emu, tenant: str) -> str:
    res = mh.auth_code_flow(_app(emu, tenant), emu, GRAPH_DEFAULT)
    assert "access_token" in res, res
    return res["access_token"]


def _team(emu, tenant: str, name: str = "Security Operations"):
    return next(t for t in emu.tenant(tenant).state.teams.values() if t.display_name == name)


# ---- the default is one tenant, as ever ----

def test_default_emulator_hosts_one_tenant_and_its_config_is_flat():
    emu = Emulator()
    assert emu.tenant_names() == ["contoso"]
    assert emu.tenant().state is emu.state and emu.tenant("contoso").throttle is emu.throttle
    cfg = emu.config()
    assert "tenants" not in cfg and cfg["tenant_id"] == emu.state.tenant_id
    assert emu.config(tenant="contoso") == cfg
    with pytest.raises(ValueError):
        emu.set_consent("contoso", False)
    with pytest.raises(ValueError):
        Emulator(tenants=0)


def test_hosted_tenants_are_distinct_small_organisations(emu3):
    assert emu3.tenant_names() == ["contoso", "fabrikam", "northwind"]
    ids = emu3.tenant_ids()
    assert len(set(ids.values())) == 3 and ids["contoso"] == emu3.state.tenant_id
    fab, north = emu3.tenant("fabrikam"), emu3.tenant("northwind")
    assert fab.domain == "fabrikam.example" and north.domain == "northwind.example"
    assert emu3.tenant(ids["fabrikam"]) is fab and emu3.tenant("FABRIKAM.example") is fab
    names = {n: {u["displayName"] for u in emu3.tenant(n).state.users.values()} - {"SOAR Service Account"}
             for n in ids}
    assert not names["contoso"] & names["fabrikam"] and not names["fabrikam"] & names["northwind"]
    secops = {n: _team(emu3, n) for n in ids}
    assert len({t.id for t in secops.values()}) == 3
    assert all(all(m.user_id in emu3.tenant(n).state.users for m in t.members) for n, t in secops.items())
    # The same app registration is consented in each.
    assert set(fab.state.apps) == set(emu3.state.apps)
    # Stable: the same tenants again.
    assert Emulator(tenants=3).tenant_ids() == ids


# ---- Entra: an authority per tenant ----

def test_each_authority_issues_tokens_of_its_tenant(emu3, http):
    for name, tid in emu3.tenant_ids().items():
        authority = emu3.config(tenant=name)["authority"]
        assert authority.endswith("/" + tid)
        c = _claims(app_token(emu3, name))
        assert c["tid"] == tid and tid in c["iss"]
        oidc = http.get(authority + "/v2.0/.well-known/openid-configuration").json()
        assert oidc["issuer"] == c["iss"] and oidc["token_endpoint"].startswith(authority + "/")
        assert http.get(oidc["jwks_uri"]).json()["keys"]
        # A user signs in at their tenant: its service account, its tenant in the token.
        d = _claims(delegated_token(emu3, name))
        assert d["tid"] == tid and d["upn"] == emu3.config(tenant=name)["service_account"]
    assert _claims(bot_token(emu3, "fabrikam"))["tid"] == emu3.tenant_ids()["fabrikam"]
    # The device code flow too: fabrikam's service account, at fabrikam's authority.
    cfg = emu3.config(tenant="fabrikam")
    public = msal.PublicClientApplication(cfg["client_id"], authority=cfg["authority"], instance_discovery=False,
                                          http_client=mh.http_session(emu3.ca_bundle))
    flow = public.initiate_device_flow(["User.Read"])
    res = public.acquire_token_by_device_flow(flow)
    assert _claims(res["access_token"])["upn"] == "soar-svc@fabrikam.example", res


def test_an_app_not_consented_in_a_tenant_is_refused_there(emu3):
    emu3.set_consent("northwind", False)
    try:
        res = _app(emu3, "northwind").acquire_token_for_client(GRAPH_DEFAULT)
        assert res.get("error") == "invalid_client" and 7000229 in res["error_codes"], res
        assert emu3.tenant_ids()["northwind"] in res["error_description"]
        wrong = _app(emu3, "northwind", secret="not-the-secret").acquire_token_for_client(GRAPH_DEFAULT)
        assert 7000215 in wrong["error_codes"], wrong
        cfg = emu3.config(tenant="northwind")
        public = msal.PublicClientApplication(cfg["client_id"], authority=cfg["authority"], instance_discovery=False,
                                              http_client=mh.http_session(emu3.ca_bundle))
        flow = public.initiate_device_flow(["User.Read"])
        assert 65001 in flow.get("error_codes", []), flow
        # The other tenants still have it.
        assert _claims(app_token(emu3, "fabrikam"))["tid"] == emu3.tenant_ids()["fabrikam"]
    finally:
        emu3.set_consent("northwind", True)
    assert _claims(app_token(emu3, "northwind"))["tid"] == emu3.tenant_ids()["northwind"]


# ---- Graph: served from the token's tenant ----

def test_graph_serves_the_tokens_tenant_and_another_tenants_ids_are_404(emu3, http):
    contoso, fabrikam = app_token(emu3, "contoso"), app_token(emu3, "fabrikam")
    users = http.get(emu3.graph_url + "/users", headers=bearer(fabrikam)).json()["value"]
    assert users and all(u["userPrincipalName"].endswith("@fabrikam.example") for u in users)
    mine, theirs = _team(emu3, "fabrikam"), _team(emu3, "contoso")
    r = http.get(f"{emu3.graph_url}/teams/{mine.id}", headers=bearer(fabrikam))
    assert r.status_code == 200 and r.json()["displayName"] == "Security Operations"
    assert r.json()["tenantId"] == emu3.tenant_ids()["fabrikam"]
    # fabrikam's token on contoso's resources, and contoso's on fabrikam's: not in the tenant.
    bob = emu3.state.user("bob.smith@contoso.example")["id"]
    for token, path in [(fabrikam, f"/teams/{theirs.id}"), (fabrikam, f"/users/{bob}"),
                        (fabrikam, f"/teams/{theirs.id}/channels"), (contoso, f"/teams/{mine.id}"),
                        (contoso, "/users/soar-svc@fabrikam.example")]:
        r = http.get(emu3.graph_url + path, headers=bearer(token))
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"]
    assert http.get(f"{emu3.graph_url}/teams/{theirs.id}", headers=bearer(contoso)).status_code == 200
    # A token whose tid is changed to another tenant's is not that tenant's token.
    head, payload, sig = contoso.split(".")
    import base64
    import json
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["tid"] = emu3.tenant_ids()["fabrikam"]
    forged = ".".join([head, base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode(), sig])
    r = http.get(f"{emu3.graph_url}/teams/{mine.id}", headers=bearer(forged))
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_each_tenant_has_its_own_graph_throttle(emu3, http):
    emu3.set_throttling(True)
    for name in ("contoso", "fabrikam"):
        emu3.tenant(name).throttle.clock = FakeClock()
    chats = {}
    tokens = {}
    for name in ("contoso", "fabrikam"):
        tokens[name] = delegated_token(emu3, name)
        st = emu3.tenant(name).state
        others = [u["userPrincipalName"] for u in st.users.values() if u["id"] != st.service_account][:2]
        r = http.post(emu3.graph_url + "/chats", headers=bearer(tokens[name]), json={
            "chatType": "group", "topic": f"war room {name}",
            "members": [{"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
                         "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{m}')"}
                        for m in [emu3.config(tenant=name)["service_account"], *others]]})
        assert r.status_code == 201, r.text
        chats[name] = r.json()["id"]

    def post(name):
        return http.post(f"{emu3.graph_url}/chats/{chats[name]}/messages", headers=bearer(tokens[name]),
                         json={"body": {"content": "status"}})

    statuses = [post("contoso").status_code for _ in range(21)]
    assert statuses == [201] * 20 + [429]
    assert post("fabrikam").status_code == 201  # fabrikam's bucket is its own
    assert post("contoso").status_code == 429
    # Each chat is in its own tenant only.
    assert chats["fabrikam"] in emu3.tenant("fabrikam").state.chats and chats["fabrikam"] not in emu3.state.chats
    r = http.get(f"{emu3.graph_url}/chats/{chats['contoso']}", headers=bearer(tokens["fabrikam"]))
    assert r.status_code == 404


# ---- the Bot Connector ----

def _open(http, emu, token, tenant: str, user: str):
    cfg = emu.config(tenant=tenant)
    uid = emu.tenant(tenant).state.user(user)["id"]
    return http.post(emu.bot_service_url + "v3/conversations", headers=bearer(token),
                     json={"bot": {"id": "28:" + cfg["bot_id"]}, "members": [{"id": "29:" + uid}],
                           "tenantId": cfg["tenant_id"], "isGroup": False})


def _say(http, emu, token, conv: str):
    return http.post(f"{emu.bot_service_url}v3/conversations/{conv}/activities", headers=bearer(token),
                     json={"type": "message", "text": "alert"})


def test_bot_conversations_belong_to_their_tenant(emu3, http):
    contoso, fabrikam = bot_token(emu3, "contoso"), bot_token(emu3, "fabrikam")
    r = _open(http, emu3, contoso, "contoso", "bob.smith@contoso.example")
    assert r.status_code == 201, r.text
    conv_a = r.json()["id"]
    r = _open(http, emu3, fabrikam, "fabrikam", "soar-svc@fabrikam.example")
    assert r.status_code == 201, r.text
    conv_b = r.json()["id"]
    fab_state = emu3.tenant("fabrikam").state
    assert fab_state.bot_conversations[conv_b]["tenantId"] == emu3.tenant_ids()["fabrikam"]
    assert conv_b not in emu3.state.bot_conversations
    assert _say(http, emu3, fabrikam, conv_b).status_code == 201
    assert _say(http, emu3, contoso, conv_a).status_code == 201
    # A tenant's bot token about another tenant's conversation: not found there.
    r = _say(http, emu3, contoso, conv_b)
    assert r.status_code == 404 and r.json()["error"]["code"] == "ConversationNotFound"
    r = http.get(f"{emu3.bot_service_url}v3/conversations/{conv_a}/members", headers=bearer(fabrikam))
    assert r.status_code == 404
    # Opening a conversation in another tenant with a tenant's token: refused.
    r = _open(http, emu3, contoso, "fabrikam", "soar-svc@fabrikam.example")
    assert r.status_code == 403, r.text
    # Channels too: fabrikam's Security Operations General channel with contoso's token.
    general = next(iter(_team(emu3, "fabrikam").channels.values()))
    assert _say(http, emu3, contoso, general.id).status_code == 404
    assert _say(http, emu3, fabrikam, general.id).status_code == 201
    assert any(m.body["content"] == "alert" for m in general.messages)
    # A multi-tenant bot's token (the botframework.com authority) is good in every tenant.
    cfg = emu3.config()
    app = msal.ConfidentialClientApplication(cfg["bot_id"], client_credential=cfg["bot_secret"],
                                             authority=emu3.base_url + "/botframework.com", instance_discovery=False,
                                             http_client=mh.http_session(emu3.ca_bundle))
    res = app.acquire_token_for_client(BOT_DEFAULT)
    assert "access_token" in res, res
    assert _say(http, emu3, res["access_token"], conv_a).status_code == 201
    assert _say(http, emu3, res["access_token"], conv_b).status_code == 201
    # ... and not a Graph token of any tenant.
    assert http.get(emu3.graph_url + "/users", headers=bearer(res["access_token"])).status_code == 401


def test_signed_activities_carry_the_users_tenant(emu3):
    ids = emu3.tenant_ids()
    fab_user = next(u for u in emu3.tenant("fabrikam").state.users.values()
                    if u["jobTitle"] == "Security Analyst")["userPrincipalName"]
    a = emu3.teams.message(fab_user, "help", team="Security Operations", channel="Incident Response")
    assert a["conversation"]["tenantId"] == ids["fabrikam"] and a["channelData"]["tenant"]["id"] == ids["fabrikam"]
    assert a["channelData"]["team"]["aadGroupId"] == _team(emu3, "fabrikam").id
    p = emu3.teams.message(fab_user, "hello")
    assert p["channelData"]["tenant"]["id"] == ids["fabrikam"]
    assert p["conversation"]["id"] in emu3.tenant("fabrikam").state.bot_conversations
    c = emu3.teams.message("bob.smith@contoso.example", "hi", team="Security Operations")
    assert c["conversation"]["tenantId"] == ids["contoso"]
    assert c["channelData"]["team"]["aadGroupId"] == _team(emu3, "contoso").id
    # One Bot Framework signing key for every tenant; one messaging endpoint, one delivery log.
    fab = emu3.tenant("fabrikam").teams
    assert jwt.get_unverified_header(fab.sign("x"))["kid"] == emu3.teams.kid
    emu3.teams.register("http://127.0.0.1:9/api/messages")  # nothing listens: the record says so
    rec = emu3.teams.user_says(fab_user, "anyone?")
    assert rec["endpoint"] == "http://127.0.0.1:9/api/messages" and rec in emu3.teams.deliveries


def test_admin_state_of_a_tenant(emu3, http):
    st = http.get(emu3.base_url + "/_emulator/state?tenant=fabrikam").json()
    fab_team = _team(emu3, "fabrikam")
    assert {c["teamId"] for c in st["channels"]} == set(emu3.tenant("fabrikam").state.teams)
    assert fab_team.id in {c["teamId"] for c in st["channels"]}
    assert http.get(emu3.base_url + "/_emulator/state?tenant=nowhere").status_code == 404
    by_user = http.get(emu3.base_url + "/_emulator/state", params={"user": "soar-svc@fabrikam.example"}).json()
    assert by_user["channels"] == st["channels"]
    home = http.get(emu3.base_url + "/_emulator/state", params={"user": "nobody@nowhere.example"}).json()
    assert {c["teamId"] for c in home["channels"]} == set(emu3.state.teams)
    # Permissions are granted per tenant.
    app_id = emu3.config()["client_id"]
    r = http.post(emu3.base_url + "/_emulator/permissions",
                  json={"app_id": app_id, "tenant": "fabrikam", "application": ["User.Read.All"]})
    assert r.status_code == 200 and r.json()["application"] == ["User.Read.All"]
    assert emu3.tenant("fabrikam").state.app(app_id).application_permissions == {"User.Read.All"}
    assert len(emu3.state.app(app_id).application_permissions) > 1
    assert http.get(f"{emu3.graph_url}/teams/{fab_team.id}",
                    headers=bearer(app_token(emu3, "fabrikam"))).status_code == 403
    emu3.restore_permissions()
    assert emu3.tenant("fabrikam").state.app(app_id).application_permissions == \
        emu3.state.app(app_id).application_permissions
    info = http.get(emu3.base_url + "/_emulator/info").json()
    assert list(info["tenants"]) == ["contoso", "fabrikam", "northwind"] and "client_secret" not in info


# ---- the config and the CLI ----

def test_write_config_with_a_profile_per_tenant(emu3, tmp_path):
    path = emu3.write_config(str(tmp_path / "emu.yml"), store_path=str(tmp_path / "emu.store.sqlite3"), tenants=True)
    cfg = yaml.safe_load(open(path, encoding="utf-8"))
    assert list(cfg["tenants"]) == ["contoso", "fabrikam", "northwind"]
    assert cfg["client_id"] and cfg["client_secret"] and cfg["bot_id"] and cfg["store_path"]
    for name, profile in cfg["tenants"].items():
        assert set(profile) == {"tenant_id", "authority", "service_account"}
        assert profile["tenant_id"] == emu3.tenant_ids()[name]
        assert {**cfg, **profile} == {**emu3.config(tenant=name), "tenants": cfg["tenants"],
                                      "store_path": cfg["store_path"]}
    # Without tenants=True: the flat config of tenant 1, as ever.
    flat = yaml.safe_load(open(emu3.write_config(str(tmp_path / "flat.yml")), encoding="utf-8"))
    assert "tenants" not in flat and flat["tenant_id"] == emu3.tenant_ids()["contoso"]


def test_emulator_serve_tenants_writes_the_profiles(tmp_path, capsys):
    with serving(["--tenants", "3", "--no-throttling"], tmp_path / "emu.yml") as run:
        cfg = run["config"]
        assert list(cfg["tenants"]) == ["contoso", "fabrikam", "northwind"]
        fab = {**cfg, **cfg["tenants"]["fabrikam"]}
        app = msal.ConfidentialClientApplication(fab["client_id"], client_credential=fab["client_secret"],
                                                 authority=fab["authority"], instance_discovery=False,
                                                 http_client=mh.http_session(cfg["ca_bundle"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = app.acquire_token_for_client(GRAPH_DEFAULT)
        assert _claims(res["access_token"])["tid"] == fab["tenant_id"]
    assert run["rc"] == 0
    out = capsys.readouterr().out
    assert "fabrikam.example" in out and "northwind.example" in out and cfg["client_secret"] not in out


def test_emulator_serve_tenants_bad_values(tmp_path, capsys):
    from fake_tenant import serve

    assert serve.main(["--tenants", "0"]) == 2
    assert "--tenants" in capsys.readouterr().err
    assert serve.main(["--tenants", "2", "--state", str(tmp_path / "s.json")]) == 2
    assert "--state" in capsys.readouterr().err
