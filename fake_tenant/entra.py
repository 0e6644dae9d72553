"""Entra ID (v2.0 endpoints) for the emulator: OpenID discovery, JWKS, the authorize endpoint
(signs in the seeded service account unattended), the device-code endpoint and the token
endpoint (client credentials, authorization code with PKCE, rotating refresh tokens, device
code). Errors come in Entra's AADSTS shape so clients see what they would see in production.

Deliberate emulator choices (documented so nobody mistakes them for Entra facts):
- An app registration that lists a loopback redirect URI (``http://localhost`` or
  ``http://127.0.0.1``) is treated as a native app with public client flows allowed: the
  authorization-code (with PKCE), refresh-token and device-code grants then work without a
  client secret. A secret that *is* sent is always checked.
- The device code is approved for the service account after the first poll.
- ``response_mode=form_post`` answers with the auto-submitting HTML form Entra sends; any
  other response mode redirects (302) with ``code`` and ``state`` in the query.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from .core import Response, new_guid
from .tokens import BOT_AUDIENCE, GRAPH_AUDIENCE, TokenService

OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
RESOURCES = {GRAPH_AUDIENCE: GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/": GRAPH_AUDIENCE,
             "00000003-0000-0000-c000-000000000000": GRAPH_AUDIENCE,
             BOT_AUDIENCE: BOT_AUDIENCE, BOT_AUDIENCE + "/": BOT_AUDIENCE}
CODE_LIFETIME = 600  # Entra's authorization codes live about ten minutes
DEVICE_CODE_LIFETIME = 900
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class EntraError(Exception):
    """An OAuth error answered as ``{error, error_description: "AADSTSnnn: ...", error_codes, ...}``."""

    def __init__(self, error: str, code: int, message: str, status: int | None = None):
        super().__init__(f"{error} AADSTS{code}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status or (401 if error == "invalid_client" else 400)


@dataclass
class _AuthCode:
    app_id: str
    user_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    challenge_method: str
    nonce: str | None
    expires: float


@dataclass
class _DeviceCode:
    app_id: str
    scope: str
    user_code: str
    expires: float
    polls: int = 0
    user_id: str | None = None
    done: bool = False
    extra: dict = field(default_factory=dict)


def _is_loopback_registration(uri: str) -> bool:
    p = urllib.parse.urlsplit(uri)
    return p.scheme == "http" and p.hostname in ("localhost", "127.0.0.1") and p.port is None


def redirect_uri_allowed(registered: list[str], uri: str) -> bool:
    """Exact match, or Entra's loopback rule for native apps: a loopback URI registered without
    a port accepts any port (and, when registered without a path, any path)."""
    if not uri:
        return False
    if uri in registered:
        return True
    try:
        p = urllib.parse.urlsplit(uri)
        p.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if p.scheme != "http" or p.hostname not in ("localhost", "127.0.0.1") or p.fragment:
        return False
    for r in registered:
        if not _is_loopback_registration(r):
            continue
        rp = urllib.parse.urlsplit(r)
        if rp.hostname != p.hostname:
            continue
        if rp.path in ("", "/") or rp.path == p.path:
            return True
    return False


def _b64url_json(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


class Entra:
    def __init__(self, state, tokens: TokenService, base_url: str, clock: Callable[[], float] = time.time,
                 device_interval: int = 1, registration: Callable[[str], object] | None = None):
        self.state = state
        # Several hosted tenants: the app registrations of the multi-tenant apps (app id -> App or
        # None). An app registered there but not in this tenant's ``state.apps`` is one this
        # tenant has not consented to (no service principal here): refused as Entra refuses it.
        self.registration = registration
        self.tokens = tokens
        self.base_url = base_url
        self.clock = clock
        # Entra says 5 s; one second keeps unattended device logins against the emulator quick.
        self.device_interval = device_interval
        self._lock = threading.Lock()
        self._codes: dict[str, _AuthCode] = {}
        self._devices: dict[str, _DeviceCode] = {}

    # ---- dispatch ----
    def handle(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        """Answer ``/{tenant}/...`` (path relative to the server root). Returns None for paths
        that are not Entra's."""
        segs = path.strip("/").split("/")
        if segs == ["devicelogin"]:
            return Response(200, b"The emulator approves device codes automatically; nothing to do here.\n",
                            {"Content-Type": "text/plain; charset=utf-8"})
        if len(segs) < 3:
            return None
        tenant, rest = segs[0], "/".join(segs[1:])
        known = {"v2.0/.well-known/openid-configuration", "discovery/v2.0/keys", "oauth2/v2.0/token",
                 "oauth2/v2.0/authorize", "oauth2/v2.0/devicecode", "discovery/keys"}
        if rest not in known:
            return None
        correlation = headers.get("client-request-id") or new_guid()
        try:
            tenant_key = self._tenant(tenant)
            if rest == "v2.0/.well-known/openid-configuration":
                self._method(method, "GET")
                return Response(200, self.openid_configuration(tenant_key), {"Cache-Control": "max-age=86400"})
            if rest in ("discovery/v2.0/keys", "discovery/keys"):
                self._method(method, "GET")
                return Response(200, self.tokens.jwks(), {"Cache-Control": "max-age=86400"})
            if rest == "oauth2/v2.0/authorize":
                self._method(method, "GET")
                return self.authorize(query)
            form = self._form(headers, body)
            self._method(method, "POST")
            if rest == "oauth2/v2.0/devicecode":
                return self.devicecode(form, headers)
            return self.token(form, headers, tenant_key)
        except EntraError as e:
            return self.error_response(e, correlation)

    @staticmethod
    def _method(method: str, want: str) -> None:
        if method != want:
            raise EntraError("invalid_request", 900561, f"The endpoint only accepts {want} requests.", 405)

    @staticmethod
    def _form(headers: dict, body: bytes) -> dict:
        ctype = headers.get("content-type", "")
        if body and "application/x-www-form-urlencoded" not in ctype:
            raise EntraError("invalid_request", 900144, "The request body must be application/x-www-form-urlencoded.")
        try:
            pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise EntraError("invalid_request", 900144, "The request body is not valid UTF-8.") from None
        return dict(pairs)

    def _tenant(self, tenant: str) -> str:
        t = tenant.lower()
        if t in ("common", "organizations"):
            return t
        if t in (self.state.tenant_id.lower(), (self.state.domain or "").lower()):
            return self.state.tenant_id
        raise EntraError("invalid_tenant", 90002,
                         f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                         f"signing into the correct cloud.")

    def error_response(self, e: EntraError, correlation: str) -> Response:
        trace = new_guid()
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        desc = f"AADSTS{e.code}: {e.message} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"
        return Response(e.status, {"error": e.error, "error_description": desc, "error_codes": [e.code],
                                   "timestamp": ts, "trace_id": trace, "correlation_id": correlation,
                                   "error_uri": f"{self.base_url}/error?code={e.code}"},
                        {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    # ---- discovery ----
    def openid_configuration(self, tenant: str) -> dict:
        b = f"{self.base_url}/{tenant}"
        issuer = self.tokens.issuer if tenant not in ("common", "organizations") else f"{self.base_url}/{{tenantid}}/v2.0"
        return {
            "token_endpoint": f"{b}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{b}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{b}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{b}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{b}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", DEVICE_GRANT],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "emulator.invalid",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    # ---- helpers ----
    def _app(self, client_id: str | None, app_only: bool = False, secret: str | None = None):
        if not client_id:
            raise EntraError("invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
        app = self.state.app(client_id)
        registered = self.registration(client_id) if app is None and self.registration is not None else None
        if registered is not None:
            self._not_consented(registered, app_only, secret)
        if app is None:
            raise EntraError("unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory "
                             f"'{self.state.domain}'. This can happen if the application has not been installed by "
                             f"the administrator of the tenant or consented to by any user in the tenant. You may "
                             f"have sent your authentication request to the wrong tenant.")
        return app

    def _not_consented(self, app, app_only: bool, secret: str | None) -> None:
        """A multi-tenant app registered elsewhere that this tenant never consented to: app-only
        sign-in finds no service principal here (AADSTS7000229, after the secret is checked
        against the registration, as Entra authenticates the client first); a user sign-in is
        asked for consent (AADSTS65001)."""
        if app_only:
            if secret and not secrets.compare_digest(secret.encode(), app.secret.encode()):
                raise EntraError("invalid_client", 7000215,
                                 f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                                 f"client secret value, not the client secret ID, for a secret added to app '{app.app_id}'.")
            raise EntraError("invalid_client", 7000229,
                             f"The client application {app.app_id} is missing service principal in the tenant "
                             f"{self.state.tenant_id}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119")
        raise EntraError("invalid_grant", 65001,
                         f"The user or administrator has not consented to use the application with ID "
                         f"'{app.app_id}' named '{app.name}'. Send an interactive authorization request for this "
                         f"user and resource.")

    @staticmethod
    def _client_credentials_from(form: dict, headers: dict) -> tuple[str | None, str | None]:
        auth = headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(auth[6:].strip()).decode("utf-8")
                cid, _, sec = raw.partition(":")
                return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
            except (ValueError, UnicodeDecodeError):
                raise EntraError("invalid_client", 7000215, "Invalid client secret provided.") from None
        return form.get("client_id"), form.get("client_secret")

    def _authenticate(self, form: dict, headers: dict, public_allowed: bool):
        cid, secret = self._client_credentials_from(form, headers)
        app = self._app(cid, app_only=form.get("grant_type") == "client_credentials", secret=secret)
        if secret is not None and secret != "":
            if not secrets.compare_digest(secret.encode(), app.secret.encode()):
                raise EntraError("invalid_client", 7000215,
                                 f"Invalid client secret provided. Ensure the secret being sent in the request is the "
                                 f"client secret value, not the client secret ID, for a secret added to app '{app.app_id}'.")
        elif form.get("client_assertion"):
            self._verify_assertion(app, form)
        elif not (public_allowed and self._is_public_client(app)):
            raise EntraError("invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        return app

    def _verify_assertion(self, app, form: dict) -> None:
        """Certificate credentials (private_key_jwt): an RS256/PS256 JWT signed by a key whose
        certificate the app registered, naming the app as iss and sub and the token endpoint as aud."""
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise EntraError("invalid_client", 50027, "Invalid JWT token. client_assertion_type is not supported.")
        assertion = form["client_assertion"]
        fail = EntraError("invalid_client", 700027, "Client assertion failed signature validation.")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise fail from None
        for pem in getattr(app, "certificates", []):
            cert = x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
            prints = {"x5t": cert.fingerprint(hashes.SHA1()), "x5t#S256": cert.fingerprint(hashes.SHA256())}
            # Thumbprints are base64url; some clients (MSAL) keep the padding.
            if not any(str(header.get(k, "")).rstrip("=") == base64.urlsafe_b64encode(v).rstrip(b"=").decode()
                       for k, v in prints.items()):
                continue
            try:
                claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256", "PS256"],
                                    options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]})
            except jwt.PyJWTError:
                raise fail from None
            aud = claims.get("aud")
            if (claims["iss"] != app.app_id or claims["sub"] != app.app_id or not isinstance(aud, str)
                    or not aud.startswith(self.base_url + "/") or not aud.endswith("/oauth2/v2.0/token")):
                raise EntraError("invalid_client", 700024, "Client assertion is not within its valid time range "
                                 "or names the wrong issuer, subject or audience.")
            return
        raise EntraError("invalid_client", 700027, "Client assertion contains an invalid signature. "
                         "The key was not found (no registered certificate matches the thumbprint).")

    @staticmethod
    def _is_public_client(app) -> bool:
        return any(_is_loopback_registration(u) for u in app.redirect_uris)

    def _delegated_scopes(self, app, scope: str) -> tuple[list[str], list[str]]:
        """(scp for the access token, resource scopes as the caller asked for them).

        Raises 65001 when a requested Graph permission was never consented for the app."""
        granted = {p.lower(): p for p in app.delegated_permissions}
        asked_resource: list[str] = []
        missing: list[str] = []
        for s in scope.split():
            low = s.lower()
            if low in OIDC_SCOPES:
                continue
            if low.startswith(GRAPH_AUDIENCE + "/"):
                perm = s[len(GRAPH_AUDIENCE) + 1:]
            elif low.startswith("00000003-0000-0000-c000-000000000000/"):
                perm = s.split("/", 1)[1]
            elif "://" in s or low.startswith("api:") or "/" in s:
                raise EntraError("invalid_resource", 500011,
                                 f"The resource principal named {s.rsplit('/', 1)[0]} was not found in the tenant "
                                 f"named {self.state.domain}. This can happen if the application has not been "
                                 f"installed by the administrator of the tenant or consented to by any user in the tenant.")
            else:
                perm = s  # a bare permission name means Graph
            asked_resource.append(s)
            if perm != ".default" and perm.lower() not in granted:
                missing.append(perm)
        if missing:
            raise EntraError("invalid_grant", 65001,
                             f"The user or administrator has not consented to use the application with ID "
                             f"'{app.app_id}' named '{app.name}'. Send an interactive authorization request for this "
                             f"user and resource. Missing: {' '.join(missing)}.")
        return sorted(app.delegated_permissions, key=str.lower), asked_resource

    def _user_tokens(self, app, user_id: str, scope: str, nonce: str | None = None,
                     family: str | None = None) -> dict:
        scp, asked = self._delegated_scopes(app, scope)
        user = self.state.users.get(user_id)
        if user is None:
            raise EntraError("invalid_grant", 50034, "The user account does not exist in the directory.")
        requested = {s.lower() for s in scope.split()}
        at = self.tokens.issue_delegated_token(app, user, scp)
        # Echo the caller's own spelling of the resource scopes so MSAL's cache finds the token again.
        scope_out = list(dict.fromkeys(asked + [f"{GRAPH_AUDIENCE}/{p}" for p in scp if p.lower() not in OIDC_SCOPES]
                                       + [s for s in scope.split() if s.lower() in OIDC_SCOPES]))
        out = {"token_type": "Bearer", "scope": " ".join(scope_out), "expires_in": self.tokens.lifetime,
               "ext_expires_in": self.tokens.lifetime, "access_token": at,
               "client_info": _b64url_json({"uid": user["id"], "utid": self.state.tenant_id})}
        if "offline_access" in requested:
            out["refresh_token"] = self.tokens.issue_refresh_token(app.app_id, user["id"], scope.split(), family)
        if "openid" in requested:
            out["id_token"] = self.tokens.issue_id_token(app, user, nonce)
        return out

    @staticmethod
    def _ok(body: dict) -> Response:
        return Response(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    # ---- authorize ----
    def authorize(self, q: dict) -> Response:
        app = self._app(q.get("client_id"))
        redirect_uri = q.get("redirect_uri", "")
        if not redirect_uri_allowed(app.redirect_uris, redirect_uri):
            raise EntraError("invalid_request", 50011,
                             f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
                             f"URIs configured for the application '{app.app_id}'. Make sure the redirect URI sent in "
                             f"the request matches one added to your application in the Azure portal.")
        state = q.get("state")
        mode = q.get("response_mode", "query")

        def reply(params: dict) -> Response:
            if state is not None:
                params["state"] = state
            if mode == "form_post":
                inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                                 for k, v in params.items())
                page = (f'<html><head><title>Working...</title></head><body onload="document.forms[0].submit()">'
                        f'<form method="POST" name="hiddenform" action="{html.escape(redirect_uri)}">{inputs}'
                        f'<noscript><input type="submit" value="Continue"/></noscript></form></body></html>')
                return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8",
                                                     "Cache-Control": "no-store, no-cache"})
            sep = "&" if "?" in redirect_uri else "?"
            if mode == "fragment":
                sep = "#"
            return Response(302, None, {"Location": redirect_uri + sep + urllib.parse.urlencode(params),
                                        "Cache-Control": "no-store, no-cache"})

        if "code" not in (q.get("response_type") or "").split():
            return reply({"error": "unsupported_response_type",
                          "error_description": "AADSTS700054: response_type 'code' is required by the emulator."})
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method") or ("plain" if challenge else "")
        if challenge and method not in ("plain", "S256"):
            return reply({"error": "invalid_request",
                          "error_description": "AADSTS501491: Invalid code_challenge_method."})
        user_id = self.state.service_account
        hint = q.get("login_hint")
        if hint:
            u = self.state.user(hint)
            if u is not None:
                user_id = u["id"]
        if not user_id:
            return reply({"error": "login_required", "error_description": "AADSTS50058: No service account is seeded."})
        code = "1.emu." + secrets.token_urlsafe(48)
        with self._lock:
            self._purge()
            self._codes[code] = _AuthCode(app.app_id, user_id, redirect_uri, q.get("scope", ""), challenge, method,
                                          q.get("nonce"), self.clock() + CODE_LIFETIME)
        params = {"code": code}
        if "session_state" not in params:
            params["session_state"] = new_guid()
        return reply(params)

    def _purge(self) -> None:
        now = self.clock()
        for k in [k for k, c in self._codes.items() if c.expires < now - 60]:
            del self._codes[k]
        for k in [k for k, d in self._devices.items() if d.expires < now - 60]:
            del self._devices[k]

    # ---- device code ----
    def devicecode(self, form: dict, headers: dict) -> Response:
        app = self._app(form.get("client_id"))
        scope = form.get("scope", "")
        device_code = "2.emu." + secrets.token_urlsafe(48)
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        user_code = "".join(secrets.choice(alphabet) for _ in range(9))
        with self._lock:
            self._purge()
            self._devices[device_code] = _DeviceCode(app.app_id, scope, user_code, self.clock() + DEVICE_CODE_LIFETIME)
        uri = f"{self.base_url}/devicelogin"
        return self._ok({"user_code": user_code, "device_code": device_code, "verification_uri": uri,
                         "expires_in": DEVICE_CODE_LIFETIME, "interval": self.device_interval,
                         "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                                    f"{user_code} to authenticate."})

    # ---- token ----
    def token(self, form: dict, headers: dict, tenant: str) -> Response:
        grant = form.get("grant_type")
        if not grant:
            raise EntraError("invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
        if grant == "client_credentials":
            return self._client_credentials(form, headers, tenant)
        if grant == "authorization_code":
            return self._authorization_code(form, headers)
        if grant == "refresh_token":
            return self._refresh(form, headers)
        if grant == DEVICE_GRANT:
            return self._device(form, headers)
        raise EntraError("unsupported_grant_type", 70003,
                         f"The app requested an unsupported grant type '{grant}'.")

    def _client_credentials(self, form: dict, headers: dict, tenant: str) -> Response:
        app = self._authenticate(form, headers, public_allowed=False)
        if tenant in ("common", "organizations"):
            raise EntraError("invalid_request", 50059,
                             "No tenant-identifying information found in either the request or implied by any "
                             "provided credentials.")
        scope = (form.get("scope") or "").strip()
        if not scope:
            raise EntraError("invalid_request", 90014, "The required field 'scope' is missing from the credential.")
        parts = scope.split()
        if len(parts) != 1 or not parts[0].endswith("/.default"):
            raise EntraError("invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                             f"scope value with /.default suffixed to the resource identifier (application ID URI).")
        resource = parts[0][: -len("/.default")]
        aud = RESOURCES.get(resource) or RESOURCES.get(resource.lower())
        api = self.state.app(resource[len("api://"):] if resource.lower().startswith("api://") else resource)
        if aud is None and api is not None:
            # Another app's API (its Application ID URI api://{app id}, or its app id): a v2.0 token
            # for it names it by app id, with the app roles the caller was assigned on it.
            token = self.tokens.issue_app_token(app, api.app_id, roles=app.api_roles.get(api.app_id, ()))
            return self._ok({"token_type": "Bearer", "expires_in": self.tokens.lifetime,
                             "ext_expires_in": self.tokens.lifetime, "access_token": token})
        if aud is None:
            raise EntraError("invalid_resource", 500011,
                             f"The resource principal named {resource} was not found in the tenant named "
                             f"{self.state.domain}. This can happen if the application has not been installed by "
                             f"the administrator of the tenant or consented to by any user in the tenant.")
        token = self.tokens.issue_app_token(app, aud)
        return self._ok({"token_type": "Bearer", "expires_in": self.tokens.lifetime,
                         "ext_expires_in": self.tokens.lifetime, "access_token": token})

    def _authorization_code(self, form: dict, headers: dict) -> Response:
        app = self._authenticate(form, headers, public_allowed=True)
        code = form.get("code")
        if not code:
            raise EntraError("invalid_request", 900144, "The request body must contain the following parameter: 'code'.")
        with self._lock:
            rec = self._codes.pop(code, None)  # single use: a second redemption finds nothing
        if rec is None or self.clock() > rec.expires:
            raise EntraError("invalid_grant", 70008,
                             "The provided authorization code or refresh token has expired due to inactivity. Send a "
                             "new interactive authorization request for this user and resource.")
        if rec.app_id != app.app_id:
            raise EntraError("invalid_grant", 700005,
                             "Provided Authorization Code is intended to use against other tenant or app.")
        if form.get("redirect_uri", "") != rec.redirect_uri:
            raise EntraError("invalid_request", 50011,
                             f"The redirect URI '{form.get('redirect_uri', '')}' specified in the request does not "
                             f"match the redirect URI used to obtain the authorization code for the application "
                             f"'{app.app_id}'.")
        if rec.challenge:
            verifier = form.get("code_verifier")
            if not verifier:
                raise EntraError("invalid_grant", 50148,
                                 "The code_verifier does not match the code_challenge supplied in the authorization "
                                 "request for PKCE.")
            if rec.challenge_method == "S256":
                calc = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            else:
                calc = verifier
            if not secrets.compare_digest(calc, rec.challenge):
                raise EntraError("invalid_grant", 501481,
                                 "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
        scope = form.get("scope") or rec.scope
        return self._ok(self._user_tokens(app, rec.user_id, scope, rec.nonce))

    def _refresh(self, form: dict, headers: dict) -> Response:
        app = self._authenticate(form, headers, public_allowed=True)
        rt = form.get("refresh_token")
        if not rt:
            raise EntraError("invalid_request", 900144,
                             "The request body must contain the following parameter: 'refresh_token'.")
        grant = self.tokens.redeem_refresh_token(rt, app.app_id)
        if grant is None:
            raise EntraError("invalid_grant", 700082,
                             "The refresh token has expired due to inactivity. The token was issued or last used too "
                             "long ago, or it was revoked. Sign in again.")
        scope = form.get("scope") or " ".join(grant.scopes)
        if "offline_access" not in scope.split():
            scope += " offline_access"  # a refresh always yields the next refresh token
        return self._ok(self._user_tokens(app, grant.user_id, scope, family=grant.family))

    def _device(self, form: dict, headers: dict) -> Response:
        app = self._authenticate(form, headers, public_allowed=True)
        dc = form.get("device_code")
        with self._lock:
            rec = self._devices.get(dc or "")
            if rec is None or rec.done or self.clock() > rec.expires or rec.app_id != app.app_id:
                rec = None
            else:
                rec.polls += 1
                first = rec.polls == 1
                if not first:
                    rec.done = True
                    del self._devices[dc]
        if rec is None:
            raise EntraError("expired_token", 70020,
                             "The provided value for the input parameter 'device_code' is not valid. The device code "
                             "has expired or was already used.")
        if first:
            raise EntraError("authorization_pending", 70016,
                             "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
        user_id = self.state.service_account
        return self._ok(self._user_tokens(app, user_id, rec.scope))
