"""The three auth flows over MSAL: `app` (client credentials, secret or certificate),
`delegated` (authorization code with PKCE through a local redirect listener, or device code;
refresh token kept, silent refresh) and `bot` (Bot Framework token). MSAL's serializable
token caches live in the context store.

Several processes share the store, and refresh tokens are single-use, so every call to the
token endpoint happens under the store's lock for that flow's cache (tokenlock.py): take it,
re-read the cache from the store (another process may have got a token meanwhile), call MSAL
only if still needed, write the cache back, release. A token still valid in the store is
served without the lock and without MSAL. MSAL's HTTP goes through tokenhttp.RetryingHttp:
429/503/504 retried like Graph's. `check()` asks the token endpoint for a fresh token,
bypassing every cache (integration-health).
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the protocol is for type checkers
    from integration.store.base import Store

import base64
import json
import re
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from integration.engine import redact
from integration.engine.config import BOT_SCOPE, Config, full_path
from integration.engine.errors import AuthError, ConfigError, IntegrationError
from integration.engine.untrusted import quote

log = logging.getLogger("msteams.auth")

FLOWS = ("app", "delegated", "bot")
PENDING_LOGIN = "pending-login"
# A device-code sign-in started by `auth-start`, waiting for `auth-complete`: MSAL's flow dict.
# Its device code can redeem the sign-in once the person approves, so it is kept as a token
# cache is (0600 on disk, encrypted in a shared store; auth-reset forgets it, cache-reset does
# not) and trusted only until the code expires.
DEVICE_FLOW = "delegated-device-flow"
DEVICE_PENDING = ("authorization_pending", "slow_down")  # the person has not finished yet
FLOW_SETUP = {
    "app": "set client_id, tenant_id and client_secret (or certificate_path + certificate_thumbprint) in the config",
    "delegated": "set client_id and tenant_id in the config, then run `msteams auth login`",
    "bot": "set bot_id and bot_secret in the config",
}
LOGIN_AGAIN = "sign in again with `msteams auth login` (`msteams auth login --device-code` on a host without a browser)"
# An access token with less than this left is not served from the cache: MSAL's own margin
# (it refreshes tokens within five minutes of expiry), so MSAL is never asked for one we
# would have served.
FRESH_MARGIN = 300


_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def jwt_claims(token: str) -> dict:
    """The unverified claims of a JWT, for display (expiry, roles/scp): never for trust decisions."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


@dataclass
class TokenInfo:
    token: str
    expires_on: float
    permissions: list
    account: str | None = None


class _Provider:
    """A flow's token source, as the Graph client sees it."""

    def __init__(self, auth: "Auth", flow: str):
        self.auth = auth
        self.flow = flow

    def token(self, force_refresh: bool = False) -> str:
        return self.auth.acquire(self.flow, force_refresh=force_refresh).token


class Auth:
    def __init__(self, cfg: Config, store: Store, *, session_factory: Callable | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.cfg = cfg
        self.store = store
        self._session_factory = session_factory
        self.sleep = sleep  # sign-in retries wait through it (tests inject one that does not)
        self._apps: dict = {}
        self._caches: dict = {}
        self._memo: dict[str, TokenInfo] = {}
        self._lock = threading.RLock()

    # ---- plumbing ----
    def http_session(self):
        if self._session_factory:
            return self._session_factory()
        import requests

        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE must not override the configured CA
        s.verify = self.cfg.verify
        return s

    def http_client(self):
        """What MSAL sends its requests through: retries 429/503/504 like the Graph client."""
        from .tokenhttp import RetryingHttp

        cfg = self.cfg
        return RetryingHttp(self.http_session(), timeout=cfg.timeout, max_retries=cfg.max_retries,
                            budget=cfg.retry_budget_seconds, sleep=self.sleep)

    def _cache(self, flow: str):
        """The flow's token cache, loaded from the store before any other thread can see it
        (a cache seen empty while loading reads as "not signed in": items of a parallel
        playbook step failed that way)."""
        cache = self._caches.get(flow)
        if cache is not None:
            return cache
        import msal

        with self._lock:
            cache = self._caches.get(flow)
            if cache is None:
                cache = msal.SerializableTokenCache()
                self._load_into(cache, flow)
                self._caches[flow] = cache  # published only once loaded
        return cache

    def _reload(self, flow: str) -> None:
        """Replace the in-memory cache (in place: MSAL apps hold it) with the store's copy."""
        with self._lock:
            cache = self._caches.get(flow)
            if cache is None:
                self._cache(flow)
            else:
                self._load_into(cache, flow)

    def _load_into(self, cache, flow: str) -> None:
        blob = self.store.load_tokens(flow)
        try:
            cache.deserialize(blob)
        except ValueError:
            log.warning("ignoring an unreadable %s token cache", flow)
            cache.deserialize(None)

    def _save(self, flow: str) -> None:
        """Write the cache back: only while holding the flow's token lock (see token_lock)."""
        cache = self._caches.get(flow)
        if cache is not None and cache.has_state_changed:
            self.store.save_tokens(flow, cache.serialize())
            cache.has_state_changed = False

    def lock_seconds(self) -> float:
        """The longest a token request may take with all its retries: the lock's lease, and how
        long a process waits for another's before giving up."""
        cfg = self.cfg
        return cfg.retry_budget_seconds + (cfg.max_retries + 2) * cfg.timeout + 30

    def token_lock(self, flow: str):
        """The cross-process lock on ``flow``'s token cache (one token request at a time)."""
        from .tokenlock import StoreLock

        seconds = self.lock_seconds()
        return StoreLock(self.store, f"tokens:{flow}", lease=seconds, timeout=seconds,
                         what=f"the {flow} token cache in {self.store.path}")

    def _credential(self, flow: str):
        cfg = self.cfg
        if flow == "bot":
            return cfg.bot_secret
        if cfg.client_secret:
            return cfg.client_secret
        if cfg.certificate_path:
            where = full_path(cfg.certificate_path)  # the full path tried
            try:
                with open(where, encoding="utf-8") as f:
                    key = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"certificate_path {quote(where)}: cannot read ({getattr(exc, 'strerror', None) or exc})",
                                  hint="a relative certificate_path in a config file is taken from the config "
                                       "file's directory") from None
            if not cfg.certificate_thumbprint:
                raise ConfigError("certificate_path is set but certificate_thumbprint is not")
            return {"private_key": key, "thumbprint": cfg.certificate_thumbprint}
        return None

    def _new_app(self, flow: str, cache, *, public: bool = False):
        import msal

        cfg = self.cfg
        authority = cfg.bot_authority_url if flow == "bot" else cfg.authority_url
        client_id = cfg.bot_id if flow == "bot" else cfg.client_id
        kwargs = dict(authority=authority, token_cache=cache, http_client=self.http_client())
        if cfg.authority:
            kwargs["instance_discovery"] = False  # a custom authority (emulator, sovereign cloud) is not in Microsoft's list
        credential = None if public else self._credential(flow)
        try:
            if credential is not None:
                return msal.ConfidentialClientApplication(client_id, client_credential=credential, **kwargs)
            return msal.PublicClientApplication(client_id, **kwargs)
        except ValueError as exc:
            raise ConfigError(f"{flow} flow: invalid authority or credential: {redact.redact(str(exc))}") from None
        except IntegrationError:  # the authority's metadata still throttled/unavailable after retries
            raise
        except Exception as exc:  # network errors while MSAL reads the authority's metadata
            raise AuthError(f"{flow} flow: cannot reach the authority {authority}: {redact.redact(type(exc).__name__)}",
                            hint="check authority / tenant_id and network access") from None

    def msal_app(self, flow: str):
        """The flow's MSAL app, sharing its token cache with the store (see acquire)."""
        if flow not in self._apps:
            self._apps[flow] = self._new_app(flow, self._cache(flow))
        return self._apps[flow]

    # ---- state ----
    def configured(self, flow: str) -> bool:
        return {"app": self.cfg.app_configured, "delegated": self.cfg.delegated_configured,
                "bot": self.cfg.bot_configured}[flow]

    def signed_in(self) -> bool:
        """Whether the delegated flow has an account in its cache (no network)."""
        import msal

        cache = self._cache("delegated")
        with self._lock:  # a reload in another thread replaces the cache's content under it
            return any(True for _ in cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))

    def ready(self, flow: str) -> bool:
        if not self.configured(flow):
            return False
        return self.signed_in() if flow == "delegated" else True

    def provider(self, flow: str) -> _Provider:
        return _Provider(self, flow)

    def why_not_ready(self, flow: str) -> str:
        if not self.configured(flow):
            return FLOW_SETUP[flow]
        if flow == "delegated":
            return "not signed in: run `msteams auth login`"
        return "ready"

    # ---- acquiring ----
    def _scopes(self, flow: str) -> list[str]:
        return [BOT_SCOPE] if flow == "bot" else [self.cfg.graph_scope]

    def acquire(self, flow: str, *, force_refresh: bool = False) -> TokenInfo:
        """A token for ``flow``: this process's copy, else one valid in the store's cache, else
        from the token endpoint under the flow's lock. ``force_refresh``: the token last handed
        out was refused; another is fetched unless another process has just fetched one."""
        with self._lock:
            memo = self._memo.get(flow)
            if memo and not force_refresh and memo.expires_on - 60 > time.time():
                return memo
            if not self.configured(flow):
                raise AuthError(f"the {flow} flow is not configured", hint=FLOW_SETUP[flow])
            app = self.msal_app(flow)
            try:
                self._reload(flow)  # what other processes wrote since
                hit = self._cached(flow, app)
                if hit is not None and not force_refresh:
                    result = hit
                else:
                    stale = memo.token if memo else hit["access_token"] if hit else None
                    result = self._fetch(flow, app, stale)
            except IntegrationError:
                raise
            except Exception as exc:
                raise AuthError(f"{flow} flow: cannot reach the token endpoint ({type(exc).__name__})",
                                hint="check authority, ca_bundle and network access") from None
            info = self._result(flow, result)
            self._memo[flow] = info
            return info

    def _fetch(self, flow: str, app, stale: str | None) -> dict:
        """Under the flow's lock: the store's cache again, then MSAL only if it holds no valid
        token other than ``stale`` (the one being replaced); the cache written back before the
        lock is released."""
        with self.token_lock(flow):
            self._reload(flow)
            hit = self._cached(flow, app)
            if hit is not None and hit["access_token"] != stale:
                return hit  # another process got one while we waited
            try:
                if flow == "delegated":
                    result = app.acquire_token_silent_with_error(self._scopes(flow), account=self._account(app),
                                                                 force_refresh=True)
                    if result is None:
                        raise AuthError("the delegated sign-in has expired", hint=LOGIN_AGAIN)
                else:
                    cache = self._cache(flow)  # acquire_token_for_client serves its cache: drop it to force
                    for at in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                        cache.remove_at(at)
                    result = app.acquire_token_for_client(scopes=self._scopes(flow))
            finally:
                self._save(flow)
            return result

    def _account(self, app) -> dict:
        accounts = app.get_accounts(username=self.cfg.service_account) if self.cfg.service_account else []
        accounts = accounts or app.get_accounts()
        if not accounts:
            raise AuthError("the delegated flow is not signed in", hint="run `msteams auth login`")
        return accounts[0]

    def _cached(self, flow: str, app) -> dict | None:
        """A token response made from the in-memory cache, without MSAL or the network: an
        access token for the flow's scope (and account) with more than FRESH_MARGIN left."""
        cache = self._cache(flow)
        query = {"client_id": app.client_id, "environment": app.authority.instance, "realm": app.authority.tenant}
        if flow == "delegated":
            svc = self.cfg.service_account
            accounts = app.get_accounts(username=svc) if svc else []
            accounts = accounts or app.get_accounts()
            if not accounts:
                return None
            query["home_account_id"] = accounts[0].get("home_account_id")
        now = time.time()
        for entry in cache.search(cache.CredentialType.ACCESS_TOKEN, target=self._scopes(flow), query=query):
            left = int(entry["expires_on"]) - now
            if flow != "delegated" and entry.get("home_account_id"):
                continue  # an app-only token has no account
            if left < FRESH_MARGIN or ("refresh_on" in entry and int(entry["refresh_on"]) < now):
                continue
            return {"access_token": entry["secret"], "token_type": entry.get("token_type", "Bearer"),
                    "expires_in": int(left)}
        return None

    def check(self, flow: str) -> TokenInfo:
        """A token straight from the token endpoint, whatever is cached, so that a wrong or
        expired secret or a revoked sign-in shows even while a cached token is still valid:
        client credentials through a throwaway app with an empty cache (app, bot); a refresh
        with the stored refresh token, under the lock (delegated)."""
        import msal

        if not self.configured(flow):
            raise AuthError(f"the {flow} flow is not configured", hint=FLOW_SETUP[flow])
        if flow == "delegated":
            with self._lock:
                self._memo.pop(flow, None)
            return self.acquire(flow, force_refresh=True)
        app = self._new_app(flow, msal.SerializableTokenCache())
        try:
            result = app.acquire_token_for_client(scopes=self._scopes(flow))
        except IntegrationError:
            raise
        except Exception as exc:
            raise AuthError(f"{flow} flow: cannot reach the token endpoint ({type(exc).__name__})",
                            hint="check authority, ca_bundle and network access") from None
        return self._result(flow, result)

    def _result(self, flow: str, result: dict) -> TokenInfo:
        if "access_token" not in result:
            err = result.get("error", "error")
            desc = redact.redact((result.get("error_description") or "").split("\r\n")[0])
            raise AuthError(f"{flow} sign-in failed: {err}: {desc}", hint=self._hint(flow, err))
        token = result["access_token"]
        claims = jwt_claims(token)
        want = (self.cfg.tenant_id or "").lower()
        if flow != "bot" and _GUID.fullmatch(want) and str(claims.get("tid") or want).lower() != want:
            # A token of another tenant (an authority shared by mistake between tenant profiles)
            # is never used: what it reaches is another customer's.
            raise AuthError(f"{flow} sign-in returned a token for tenant {str(claims.get('tid'))[:36]!r}, not "
                            f"{want!r}" + (f" (tenant profile {self.cfg.tenant!r})" if self.cfg.tenant else ""),
                            hint="set the profile's own authority (or none: it is derived from tenant_id)")
        perms = claims.get("roles") or (claims.get("scp") or "").split()
        expires = float(claims.get("exp") or time.time() + float(result.get("expires_in", 3600)))
        account = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
        return TokenInfo(token, expires, sorted(perms), account)

    def _hint(self, flow: str, err: str) -> str | None:
        """What to do about a refused sign-in: which config key, which command."""
        cfg = self.cfg
        if err == "invalid_client":
            if flow == "bot":
                return ("the bot's secret was refused: check bot_secret (or bot_secret_file, or MSTEAMS_BOT_SECRET) "
                        "and bot_id in the config; an expired secret needs a new one on the bot's app registration")
            if cfg.client_secret:
                return ("the client secret was refused: check client_secret (or client_secret_file, or "
                        "MSTEAMS_CLIENT_SECRET) and client_id in the config; an expired secret needs a new one "
                        "(app registration, Certificates & secrets)")
            if cfg.certificate_path:
                return ("the certificate was refused: check certificate_path and certificate_thumbprint (the "
                        "certificate uploaded to the app registration) and client_id in the config")
            return ("the app registration wants a credential: set client_secret (or certificate_path and "
                    "certificate_thumbprint) in the config, or allow public client flows on the app registration")
        if err == "invalid_grant":
            return "the delegated sign-in has expired or was revoked: " + LOGIN_AGAIN
        if err == "unauthorized_client":
            return "check that the app registration allows this flow"
        return None

    # ---- delegated sign-in ----
    def public_app(self, cache=None):
        """A public client (device code needs one), on the delegated cache unless given another."""
        return self._new_app("delegated", cache if cache is not None else self._cache("delegated"), public=True)

    def _adopt(self, flow: str, fresh) -> None:
        """Merge a sign-in's tokens (made in a cache of their own) into the store's cache,
        under the flow's lock, so that no process's concurrent refresh is overwritten."""
        with self._lock, self.token_lock(flow):
            self._reload(flow)
            cache = self._cache(flow)
            merged = json.loads(cache.serialize() or "{}")
            for section, entries in json.loads(fresh.serialize() or "{}").items():
                if isinstance(entries, dict):
                    merged.setdefault(section, {}).update(entries)  # same account: its new tokens replace the old
            cache.deserialize(json.dumps(merged))
            self.store.save_tokens(flow, cache.serialize())

    def login(self, *, device_code: bool = False, port: int = 0, login_hint: str | None = None,
              redirect_url: str | None = None, out: Callable[[str], None] = print,
              timeout: float = 300.0) -> TokenInfo:
        if not self.cfg.delegated_configured:
            raise AuthError("the delegated flow is not configured", hint=FLOW_SETUP["delegated"])
        import msal

        # The sign-in's tokens go to a cache of their own, merged into the store's under the
        # lock once it succeeds: a device-code sign-in waits minutes, and must not hold the
        # lock (nor overwrite a refresh another process makes) meanwhile.
        fresh = msal.SerializableTokenCache()
        app = self._new_app("delegated", fresh)
        hint = login_hint or self.cfg.service_account
        scopes = self._scopes("delegated")
        try:
            if redirect_url:
                result = self._complete_pending(app, redirect_url)
            elif device_code:
                # Device code is a public-client flow ("Allow public client flows" on the app).
                app = self.public_app(fresh)
                flow = self._initiate_device_flow(app)
                out(flow["message"])
                result = app.acquire_token_by_device_flow(flow)
            else:
                result = self._auth_code_login(app, scopes, port, hint, out, timeout)
        except IntegrationError:
            raise
        except Exception as exc:
            raise AuthError(f"delegated sign-in failed: {redact.redact(str(exc))[:200]}") from None
        return self._finish_sign_in(fresh, result)

    def _finish_sign_in(self, fresh, result: dict) -> TokenInfo:
        """A sign-in's answer: its tokens (in ``fresh``) merged into the store's cache."""
        info = self._result("delegated", result)
        self._adopt("delegated", fresh)
        with self._lock:
            self._memo["delegated"] = info
        return info

    def _initiate_device_flow(self, app) -> dict:
        flow = app.initiate_device_flow(scopes=self._scopes("delegated"))
        if "user_code" not in flow:
            raise AuthError(f"device-code sign-in failed: {flow.get('error')}: "
                            f"{redact.redact(flow.get('error_description', ''))}",
                            hint="check that the app registration allows public client flows (device code)")
        return flow

    # ---- device code in two steps (auth-start, auth-complete) ----
    def device_start(self) -> dict:
        """Start a device-code sign-in and return at once: MSAL's flow (verification_uri,
        user_code, message, expires_in) is kept in the store, for `device_complete` to finish
        in another process, until the code expires. A sign-in already pending is replaced."""
        if not self.cfg.delegated_configured:
            raise AuthError("the delegated flow is not configured", hint=FLOW_SETUP["delegated"])
        import msal

        try:
            flow = self._initiate_device_flow(self.public_app(msal.SerializableTokenCache()))
        except IntegrationError:
            raise
        except Exception as exc:
            raise AuthError(f"device-code sign-in failed: {redact.redact(str(exc))[:200]}",
                            hint="check authority, ca_bundle and network access") from None
        self._keep_device_flow(flow)
        return flow

    def _keep_device_flow(self, flow: dict) -> None:
        import json

        self.store.save_tokens(DEVICE_FLOW, json.dumps(flow))

    def device_pending(self) -> dict | None:
        """The device-code sign-in `device_start` left waiting, unless it has expired."""
        import json

        blob = self.store.load_tokens(DEVICE_FLOW)
        try:
            flow = json.loads(blob) if blob else None
        except ValueError:
            flow = None
        if not isinstance(flow, dict) or float(flow.get("expires_at") or 0) <= time.time():
            return None
        return flow

    def device_complete(self, wait: float = 10.0) -> TokenInfo:
        """Finish the sign-in `device_start` began: ask the token endpoint for up to ``wait``
        seconds (0: once). Signed in: the tokens join the store's cache and the flow is dropped.
        Not finished yet: AuthError (exit 3) saying so, the flow kept for another try. Expired,
        declined or refused: AuthError, the flow dropped."""
        if not self.cfg.delegated_configured:
            raise AuthError("the delegated flow is not configured", hint=FLOW_SETUP["delegated"])
        flow = self.device_pending()
        if flow is None:
            raise AuthError("no device-code sign-in is pending (none was started, or its code has expired)",
                            hint="start one with `msteams auth-start` (`!microsoft-teams-auth-start`), sign in "
                                 "with the code it prints, then run auth-complete")
        import msal

        fresh = msal.SerializableTokenCache()
        deadline = time.monotonic() + max(0.0, wait)
        try:
            app = self.public_app(fresh)
            too_soon = float(flow.get("latest_attempt_at") or 0) + float(flow.get("interval") or 5) - time.time()
            if too_soon > 0 and wait > 0:  # the token endpoint answers slow_down to a poll this early
                self.sleep(min(too_soon, wait))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # MSAL's "Attempted too soon" (wait=0, a retry)
                result = app.acquire_token_by_device_flow(
                    flow, exit_condition=lambda f: time.monotonic() >= deadline or f.get("expires_at", 0) < time.time())
        except IntegrationError:
            raise
        except Exception as exc:  # the flow stays: the next auth-complete may get through
            raise AuthError(f"delegated sign-in failed: {redact.redact(str(exc))[:200]}",
                            hint="check authority, ca_bundle and network access, then run auth-complete again") from None
        err = result.get("error")
        if err in DEVICE_PENDING:
            left = float(flow["expires_at"]) - time.time()
            self._keep_device_flow(flow)  # MSAL noted the poll (and any slow_down)
            raise AuthError(f"the sign-in is not finished yet: nobody has entered the code {flow['user_code']} at "
                            f"{flow['verification_uri']} and signed in",
                            hint=f"sign in there with the code, then run auth-complete again (`msteams auth-complete`, "
                                 f"`!microsoft-teams-auth-complete`); the code expires in {max(0, int(left)) // 60} "
                                 f"min {max(0, int(left)) % 60} s")
        self.store.clear_tokens(DEVICE_FLOW)  # signed in, or it can never succeed
        if err == "expired_token":
            raise AuthError("the device code has expired before the sign-in was finished",
                            hint="start again with `msteams auth-start` (`!microsoft-teams-auth-start`)")
        if err in ("authorization_declined", "access_denied"):
            raise AuthError("the sign-in was declined", hint="start again with `msteams auth-start`")
        return self._finish_sign_in(fresh, result)

    def _auth_code_login(self, app, scopes, port, hint, out, timeout) -> dict:
        listener = _RedirectListener(port)
        try:
            redirect_uri = f"http://localhost:{listener.port}/callback"
            with warnings.catch_warnings():
                # MSAL prefers form_post; a loopback listener receiving the query is the native-app norm.
                warnings.simplefilter("ignore", UserWarning)
                flow = app.initiate_auth_code_flow(scopes, redirect_uri=redirect_uri, login_hint=hint)
            if _is_loopback(self.cfg.authority_url):
                # The emulator signs its service account in without a UI: play the browser's
                # part, following its redirect into our listener like a browser would.
                s = self.http_session()
                r = s.get(flow["auth_uri"], allow_redirects=False, timeout=self.cfg.timeout)
                location = r.headers.get("Location")
                if r.status_code not in (301, 302, 303) or not location:
                    raise AuthError(f"sign-in page answered HTTP {r.status_code} without a redirect")
                s.get(location, timeout=self.cfg.timeout)
            else:
                out("Open this URL in a browser to sign in:\n" + flow["auth_uri"])
                try:
                    import webbrowser

                    webbrowser.open(flow["auth_uri"])
                except Exception:
                    pass
            params = listener.wait(timeout)
            if params is None:
                raise AuthError(f"no sign-in redirect arrived within {int(timeout)} s")
            return app.acquire_token_by_auth_code_flow(flow, params)
        finally:
            listener.close()

    def login_url(self, redirect_uri: str) -> str:
        """Start a sign-in to finish later with `auth login --redirect-url URL`: the pending
        flow (state, PKCE verifier) waits in the store, which is private to this user."""
        app = self.msal_app("delegated")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            flow = app.initiate_auth_code_flow(self._scopes("delegated"), redirect_uri=redirect_uri,
                                               login_hint=self.cfg.service_account)
        self.store.save_tokens(PENDING_LOGIN, json.dumps(flow))
        return flow["auth_uri"]

    def _complete_pending(self, app, redirect_url: str) -> dict:
        blob = self.store.load_tokens(PENDING_LOGIN)
        if not blob:
            raise AuthError("no sign-in is pending", hint="run `msteams generate-login-url` first")
        params = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query or redirect_url).items()}
        if "code" not in params:
            raise AuthError("the redirect URL carries no authorization code",
                            hint="paste the whole URL the browser was sent to after sign-in")
        result = app.acquire_token_by_auth_code_flow(json.loads(blob), params)
        self.store.clear_tokens(PENDING_LOGIN)
        return result

    def reset(self) -> int:
        self._memo.clear()
        self._caches.clear()
        self._apps.clear()
        return self.store.clear_tokens()

    def device_cancel(self) -> None:
        """Forget the device-code sign-in auth-start left pending (auth-reset signs out: nothing
        left to complete; cache-reset keeps it, as all state)."""
        self.store.clear_tokens(DEVICE_FLOW)

    def status(self, check: bool = True) -> list[dict]:
        rows = []
        for flow in FLOWS:
            row = {"flow": flow, "configured": self.configured(flow), "signedIn": None, "account": None,
                   "expiresOn": None, "permissions": [], "detail": self.why_not_ready(flow)}
            if flow == "delegated" and row["configured"]:
                row["signedIn"] = self.signed_in()
            if check and self.ready(flow):
                try:
                    info = self.acquire(flow)
                    row.update(signedIn=True if flow == "delegated" else None, account=info.account,
                               expiresOn=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.expires_on)),
                               permissions=info.permissions, detail="ready")
                except IntegrationError as exc:
                    row["detail"] = exc.message
            rows.append(row)
        return rows


class _RedirectListener:
    """A one-shot HTTP listener on loopback that captures the authorization redirect's query."""

    def __init__(self, port: int):
        self.params: dict | None = None
        self._got = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                qs = parse_qs(urlsplit(self.path).query)
                listener.params = {k: v[0] for k, v in qs.items()}
                body = b"Sign-in complete. You can close this window."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                listener._got.set()

            def log_message(self, *args):  # the query carries the code: never log it
                pass

        try:
            self.server = HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise AuthError(f"cannot listen on 127.0.0.1:{port} for the sign-in redirect: {exc.strerror}",
                            hint="pass --port with a free port") from None
        self.server.timeout = 0.5  # so the loop notices close() without a request
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._got.is_set():
            self.server.handle_request()

    def wait(self, timeout: float) -> dict | None:
        self._got.wait(timeout)
        return self.params

    def close(self) -> None:
        self._got.set()
        self.server.server_close()
