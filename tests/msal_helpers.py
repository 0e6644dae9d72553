"""Helpers for tests against the emulator. Mostly getting real tokens with MSAL, unattended:
client credentials, the authorization-code flow driven without a browser, device code, and a
bot token; also ``bearer()`` and ``stub_route()`` (a temporary Graph route ahead of the real
ones, to test the pipeline without depending on a handler). Shared by the fixtures in
``conftest.py`` and by tests that need more than one flavour of token."""
from __future__ import annotations

import contextlib
import urllib.parse
import warnings

import msal
import requests

GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]
BOT_DEFAULT = ["https://api.botframework.com/.default"]
REDIRECT_URI = "http://localhost:8400/callback"


def http_session(ca_bundle: str) -> requests.Session:
    """A session that trusts only the emulator CA (REQUESTS_CA_BUNDLE would override verify)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = ca_bundle
    return s


def confidential_app(emu, client_id: str | None = None, secret: str | None = None,
                     http: requests.Session | None = None) -> msal.ConfidentialClientApplication:
    cfg = emu.config()
    return msal.ConfidentialClientApplication(
        client_id or cfg["client_id"], client_credential=secret if secret is not None else cfg["client_secret"],
        authority=cfg["authority"], instance_discovery=False, http_client=http or http_session(emu.ca_bundle))


def public_app(emu, client_id: str | None = None, http: requests.Session | None = None) -> msal.PublicClientApplication:
    cfg = emu.config()
    return msal.PublicClientApplication(client_id or cfg["client_id"], authority=cfg["authority"],
                                        instance_discovery=False, http_client=http or http_session(emu.ca_bundle))


def app_token(emu, scopes=GRAPH_DEFAULT) -> str:
    res = confidential_app(emu).acquire_token_for_client(list(scopes))
    assert "access_token" in res, res
    return res["access_token"]


def bot_token(emu) -> str:
    cfg = emu.config()
    res = confidential_app(emu, cfg["bot_id"], cfg["bot_secret"]).acquire_token_for_client(BOT_DEFAULT)
    assert "access_token" in res, res
    return res["access_token"]


def auth_code_response(emu, flow: dict, http: requests.Session | None = None) -> dict:
    """Do what the browser would: follow auth_uri once and read code/state off the redirect."""
    http = http or http_session(emu.ca_bundle)
    r = http.get(flow["auth_uri"], allow_redirects=False)
    assert r.status_code == 302, (r.status_code, r.text)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["Location"]).query))


def auth_code_flow(app, emu, scopes=GRAPH_DEFAULT, redirect_uri: str = REDIRECT_URI, **kwargs) -> dict:
    """The full MSAL authorization-code flow against the emulator; returns MSAL's result dict."""
    with warnings.catch_warnings():  # MSAL nudges towards form_post; the query mode is what we drive here
        warnings.simplefilter("ignore", UserWarning)
        flow = app.initiate_auth_code_flow(list(scopes), redirect_uri=redirect_uri, **kwargs)
    return app.acquire_token_by_auth_code_flow(flow, auth_code_response(emu, flow))


def delegated_result(emu, scopes=GRAPH_DEFAULT, public: bool = False, **kwargs) -> dict:
    app = public_app(emu) if public else confidential_app(emu)
    res = auth_code_flow(app, emu, scopes, **kwargs)
    assert "access_token" in res, res
    return res


def delegated_token(emu, scopes=GRAPH_DEFAULT, **kwargs) -> str:
    return delegated_result(emu, scopes, **kwargs)["access_token"]


def bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


@contextlib.contextmanager
def stub_route(method: str, pattern: str, handler, permission_key: str | None = None):
    """A temporary Graph route placed ahead of the real ones, removed afterwards."""
    from fake_tenant import core
    regex, key = core._compile(pattern)
    route = core.Route(method.upper(), pattern, handler, regex, permission_key or key)
    core.ROUTES.insert(0, route)
    try:
        yield route
    finally:
        core.ROUTES.remove(route)
