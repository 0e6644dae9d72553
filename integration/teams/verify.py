"""Inbound authentication for the bot's messaging endpoint, as Microsoft specifies for bots
(https://learn.microsoft.com/azure/bot-service/rest-api/bot-framework-rest-connector-authentication):

- ``Authorization: Bearer <JWT>``; the header's ``alg`` is RS256 (``none``, HMAC and anything
  else are refused before a key is looked up);
- the key is the one named by ``kid`` in the JWKS whose address the OpenID metadata document
  gives (``jwks_uri``): the Bot Framework's public document by default, another one for
  national clouds and the fake tenant (``bot_openid_metadata_url``);
- a key that lists ``endorsements`` must endorse ``msteams``;
- issuer ``https://api.botframework.com`` (and, for a single-tenant bot, the Entra issuers of
  its own tenant, keys from that tenant's metadata; then ``tid`` must be the tenant);
- audience equal to the bot's app id; ``exp``/``nbf`` with five minutes of clock skew;
- the token's ``serviceurl`` claim equal to the activity's ``serviceUrl`` (:meth:`check_activity`).

Keys are cached per metadata document and fetched again on an unknown ``kid`` at most once a
minute (and at least once a day). A refusal is a :class:`Rejected` whose text names the reason
and never the token.

The Bot Connector sends one token with every activity for as long as it is valid (about an
hour): a token PyJWT accepted is kept (up to :data:`VERIFIED_TOKENS`) with its claims, and
when it comes again it is not parsed, nor its signature checked, again: what could answer
differently is checked again every time, the same way (the issuer's key source and the key
the ``kid`` names, which must still be the very key that checked it; that key's type and
endorsements; ``iat``, ``nbf`` and ``exp`` against the clock with the same leeway, as PyJWT
does; the tenant and the ``serviceurl`` claim). Only a token signed by one of the keys gets
there.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from integration.engine.untrusted import quote

log = logging.getLogger("msteams.bot.verify")

PUBLIC_OPENID_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
CHANNEL = "msteams"
SKEW_SECONDS = 300
REFRESH_MIN_INTERVAL = 60.0  # an unknown kid fetches the keys again at most this often
KEYS_MAX_AGE = 24 * 3600.0
MAX_TOKEN_CHARS = 16 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
VERIFIED_TOKENS = 256  # tokens whose signature and claims were checked, kept (InboundVerifier._verified)


class Rejected(Exception):
    """The request is refused (401). ``str()`` is the reason, safe to log (no token)."""


# What KeySource.cached answers when the key can be known only by fetching the key set first.
FETCH = object()


def fetch_json(verify: str | bool = True, timeout: float = 10.0) -> Callable[[str], dict]:
    """A fetcher for metadata documents and key sets: HTTPS only, TLS verified (the config's
    CA bundle for the fake tenant), bounded in time and size."""
    import requests

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=

    def fetch(url: str) -> dict:
        if urlsplit(url).scheme != "https":
            raise ValueError(f"refusing to fetch keys over {urlsplit(url).scheme or 'no scheme'}: {url}")
        with session.get(url, timeout=timeout, verify=verify, stream=True,
                         headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"{url} answered {resp.status_code}")
            body = resp.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
        import json

        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError(f"{url}: not a JSON object")
        return data

    return fetch


class KeySource:
    """The signing keys of one OpenID metadata document, cached by ``kid``."""

    def __init__(self, metadata_url: str, fetch: Callable[[str], dict], *, clock: Callable[[], float] = time.monotonic,
                 min_refresh: float = REFRESH_MIN_INTERVAL, max_age: float = KEYS_MAX_AGE):
        self.metadata_url = metadata_url
        self._fetch = fetch
        self._clock = clock
        self.min_refresh = min_refresh
        self.max_age = max_age
        self._lock = threading.Lock()
        self._keys: dict[str, dict] = {}
        self._objects: dict[str, Any] = {}  # kid -> the key object PyJWT verifies with, built once
        self._fetched: float | None = None  # when the keys were last fetched successfully
        self._attempted: float | None = None  # when a fetch was last tried
        self.issuer: str | None = None
        self.fetches = 0  # how many times the key set was fetched (tests, health)

    def key(self, kid: str) -> dict | None:
        with self._lock:
            now = self._clock()
            if self._must_fetch(kid, now):
                self._refresh(now)
            return self._keys.get(kid)

    def cached(self, kid: str):
        """What :meth:`key` answers, when it can answer without fetching (no I/O: fit for an
        event loop); else :data:`FETCH`."""
        with self._lock:
            return FETCH if self._must_fetch(kid, self._clock()) else self._keys.get(kid)

    def _must_fetch(self, kid: str, now: float) -> bool:
        """Whether :meth:`key` fetches the key set before answering: the keys are stale, or
        ``kid`` is unknown and the last try is a minute old."""
        stale = self._fetched is None or now - self._fetched >= self.max_age
        if kid in self._keys and not stale:
            return False
        return self._attempted is None or now - self._attempted >= self.min_refresh or (
            stale and self._fetched is not None)

    def ensure_loaded(self) -> None:
        """Fetch the document and keys once if never fetched (to learn the issuer)."""
        with self._lock:
            if self._must_load():
                self._refresh(self._clock())

    def _must_load(self) -> bool:
        return self._fetched is None and (self._attempted is None or self._clock() - self._attempted >= self.min_refresh)

    @property
    def loaded(self) -> bool:
        """Whether :meth:`ensure_loaded` would answer without fetching."""
        with self._lock:
            return not self._must_load()

    def _refresh(self, now: float) -> None:
        self._attempted = now
        try:
            meta = self._fetch(self.metadata_url)
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise ValueError("the metadata document has no jwks_uri")
            keys = self._fetch(jwks_uri).get("keys")
            if not isinstance(keys, list):
                raise ValueError("the key set has no keys")
        except Exception as exc:  # noqa: BLE001 - keep the keys we have; the request is refused
            log.warning("cannot fetch the signing keys from %s: %s", self.metadata_url, exc)
            return
        self.fetches += 1
        self.issuer = meta.get("issuer") if isinstance(meta.get("issuer"), str) else None
        self._keys = {k["kid"]: k for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}
        self._objects = {}
        self._fetched = now

    def key_object(self, kid: str, jwk: dict):
        """The verifying key of ``jwk`` (which :meth:`key` returned for ``kid``), built once per
        key set: parsing an RSA key costs more than checking a signature with it."""
        obj = self._objects.get(kid)
        if obj is None or obj[0] is not jwk:
            obj = self._objects[kid] = (jwk, _key_object(jwk))
        return obj[1]


@dataclass
class Identity:
    """What a verified token says about the caller."""

    claims: dict
    issuer: str
    source: str  # "botframework" or "tenant"
    service_url: str | None = None
    extra: dict = field(default_factory=dict)


def _tenant_issuers(template: str | None, tenant: str, authority_host: str) -> set[str]:
    out = {f"https://sts.windows.net/{tenant}/"} if authority_host == "login.microsoftonline.com" else set()
    if template:
        out.add(template.replace("{tenantid}", tenant))
    else:
        out.add(f"https://{authority_host}/{tenant}/v2.0")
    return out


class InboundVerifier:
    """Checks the bearer token of an inbound activity (see the module docstring)."""

    def __init__(self, bot_id: str, *, metadata_url: str = PUBLIC_OPENID_METADATA, tenant_id: str | None = None,
                 tenant_metadata_url: str | None = None, verify: str | bool = True, timeout: float = 10.0,
                 fetch: Callable[[str], dict] | None = None, clock: Callable[[], float] = time.monotonic):
        if not bot_id:
            raise ValueError("bot_id is required")
        self.bot_id = bot_id
        fetch = fetch or fetch_json(verify, timeout)
        self.botframework = KeySource(metadata_url, fetch, clock=clock)
        self.tenant_id = tenant_id
        self.tenant = KeySource(tenant_metadata_url, fetch, clock=clock) if (tenant_id and tenant_metadata_url) else None
        self._authority_host = urlsplit(tenant_metadata_url or "").hostname or ""
        # token -> (kid, iss, the key (JWK) that verified it, the issuers accepted, claims, (iat, nbf, exp))
        self._verified: dict[str, tuple] = {}

    @classmethod
    def from_config(cls, cfg, **kw) -> "InboundVerifier":
        """Keys from ``bot_openid_metadata_url`` (default: the Bot Framework's); a bot whose token
        authority is its own tenant (``bot_tenant_id`` or ``tenant_id``) also accepts its
        tenant's Entra issuers."""
        from integration.engine.errors import ConfigError

        if not cfg.bot_id:
            raise ConfigError("the bot endpoint needs bot_id (the Azure Bot's app id) in the config")
        tenant = cfg.bot_tenant_id or cfg.tenant_id
        tenant_meta = None
        if tenant:
            authority = (cfg.authority or f"https://login.microsoftonline.com/{tenant}").rstrip("/")
            tenant_meta = f"{authority}/v2.0/.well-known/openid-configuration"
        return cls(cfg.bot_id, metadata_url=getattr(cfg, "bot_openid_metadata_url", None) or PUBLIC_OPENID_METADATA,
                   tenant_id=tenant, tenant_metadata_url=tenant_meta, verify=cfg.verify,
                   timeout=min(cfg.timeout, 10.0), **kw)

    # ---- the token ----
    def verify(self, authorization: str | None, *, fetch: bool = True) -> Identity | None:
        """The token's identity, or Rejected. With ``fetch=False`` (on an event loop): the same
        checks with the keys at hand, or None when they must be fetched first (then call again
        with ``fetch=True``, in a thread)."""
        token = bearer_token(authorization)
        known = self._verified.get(token)
        if known is not None:  # verified before: its kid and issuer as read then
            kid, iss = known[0], known[1]
        else:
            # Which key and issuer to check against, from an unverified look at the token (used
            # for nothing else); PyJWT then checks everything, signature first, in one decode.
            header, unverified = peek(token)
            kid = signing_key_id(header)
            iss = unverified.get("iss")
        found = self._source_for(iss, fetch)
        if found is None:
            return None
        source, name, issuers = found
        jwk = source.key(kid) if fetch else source.cached(kid)
        if jwk is FETCH:
            return None
        if jwk is None:
            raise Rejected(f"unknown signing key for issuer {quote(str(iss), 100)}")
        check_key(jwk)
        endorsements = jwk.get("endorsements")
        if endorsements is not None and (not isinstance(endorsements, list) or CHANNEL not in endorsements):
            raise Rejected(f"the signing key is not endorsed for {CHANNEL}")
        if known is not None and known[2] is jwk and known[3] == issuers:
            check_times(known[5], time.time())  # signature, audience and issuer: as they were
            claims = dict(known[4])
        else:
            claims = decode_signed(token, jwk, audience=self.bot_id, issuers=sorted(issuers),
                                   key=source.key_object(kid, jwk))
            self._remember(token, (kid, iss, jwk, frozenset(issuers), dict(claims), claim_times(claims)))
        if name == "tenant" and claims.get("tid") != self.tenant_id:
            raise Rejected("token issued for another tenant")
        service_url = claims.get("serviceurl", claims.get("serviceUrl"))
        if name == "botframework" and not isinstance(service_url, str):
            raise Rejected("token has no serviceurl claim")
        return Identity(claims, claims["iss"], name, service_url if isinstance(service_url, str) else None)

    def _remember(self, token: str, entry: tuple) -> None:
        cache = self._verified
        if len(cache) >= VERIFIED_TOKENS:  # far more than the tokens alive at once: start again
            cache.clear()
        cache[token] = entry

    def _source_for(self, iss: Any, fetch: bool = True) -> tuple[KeySource, str, set[str]] | None:
        """The key source, its name and the issuers it accepts for ``iss``; None when that
        takes a fetch and ``fetch`` is False."""
        if iss == BOT_FRAMEWORK_ISSUER:
            return self.botframework, "botframework", {BOT_FRAMEWORK_ISSUER}
        if self.tenant is not None and isinstance(iss, str):
            if fetch:
                self.tenant.ensure_loaded()  # first use: learn the tenant's issuer from its metadata
            elif not self.tenant.loaded:
                return None
            issuers = _tenant_issuers(self.tenant.issuer, self.tenant_id, self._authority_host)
            if iss in issuers:
                return self.tenant, "tenant", issuers
        raise Rejected(f"issuer {quote(str(iss), 100)} not accepted")

    # ---- the activity ----
    @staticmethod
    def check_activity(identity: Identity, activity: dict) -> None:
        """The activity comes from Teams (the channel the key is endorsed for) and its
        serviceUrl is the one the token was issued for."""
        if activity.get("channelId") != CHANNEL:
            raise Rejected(f"activity from channel {quote(str(activity.get('channelId')), 40)}, not {CHANNEL}")
        url = activity.get("serviceUrl")
        if not isinstance(url, str) or not url:
            raise Rejected("activity has no serviceUrl")
        if identity.service_url is None:
            if identity.source == "botframework":
                raise Rejected("token has no serviceurl claim")
            return
        if identity.service_url.rstrip("/") != url.rstrip("/"):
            raise Rejected("the activity's serviceUrl does not match the token's")


# ---- the checks every inbound token gets (activities and call notifications alike) ----
def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header, refused when absent or oversized."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Rejected("no bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise Rejected("token too long")
    return token


def signing_key_id(header: dict) -> str:
    """The `kid` of a token whose header asks for RS256; anything else (none, HS256, ...) is refused."""
    alg = header.get("alg")
    if alg != "RS256":
        raise Rejected(f"algorithm {quote(str(alg), 20)} not accepted (RS256 only)")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Rejected("token names no signing key (kid)")
    return kid


def claim_times(claims: dict) -> tuple:
    """(iat, nbf, exp) of claims PyJWT accepted, as it reads them (None: absent)."""
    return tuple(int(claims[c]) if c in claims else None for c in ("iat", "nbf", "exp"))


def check_times(times: tuple, now: float) -> None:
    """PyJWT's checks of the time claims (decode_signed), in its order, with the same leeway."""
    iat, nbf, exp = times
    if iat is not None and iat > now + SKEW_SECONDS:
        raise Rejected("token not yet valid")
    if nbf is not None and nbf > now + SKEW_SECONDS:
        raise Rejected("token not yet valid")
    if exp is not None and exp <= now - SKEW_SECONDS:
        raise Rejected("token expired")


def check_key(jwk: dict) -> None:
    if jwk.get("kty") != "RSA" or jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
        raise Rejected("the signing key is not an RS256 signature key")


def peek(token: str) -> tuple[dict, dict]:
    """The header and claims of a token, NOT verified: only to choose the key and issuer to
    verify against. Refuses anything that is not three base64url parts of JSON objects."""
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected("malformed token")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, TypeError):
        raise Rejected("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Rejected("malformed token")
    return header, claims


def _key_object(jwk: dict):
    import jwt

    try:
        return jwt.PyJWK(jwk, algorithm="RS256").key
    except (jwt.PyJWKError, ValueError, TypeError) as exc:
        raise Rejected(f"invalid signing key ({type(exc).__name__})") from None


def decode_signed(token: str, jwk: dict, *, audience: str, issuers: list[str], key=None) -> dict:
    """The claims of a token signed by ``jwk`` (``key``: its key object, when already built):
    RS256 only, audience and issuer as given, exp required, exp and nbf with SKEW_SECONDS of
    leeway; Rejected naming what failed, never the token."""
    import jwt

    try:
        key = key if key is not None else _key_object(jwk)
        return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuers,
                          leeway=SKEW_SECONDS, options={"require": ["exp", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Rejected("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Rejected("token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise Rejected("token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise Rejected("token from another issuer") from None
    except jwt.InvalidSignatureError:
        raise Rejected("bad signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Rejected(f"token lacks the {exc.claim} claim") from None
    except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as exc:
        raise Rejected(f"invalid token ({type(exc).__name__})") from None
