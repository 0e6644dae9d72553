"""Token issuing and checking for the emulator's Entra ID: an RSA signing key made at start,
its JWKS, RS256 access tokens and ID tokens (PyJWT), and opaque refresh tokens kept
server-side so they can be rotated and revoked.

Access tokens carry what Entra puts in them and what Graph checks: ``aud``, ``iss``, ``tid``,
``appid``/``azp``, ``oid``/``sub``, ``iat``/``nbf``/``exp`` and either ``roles`` (app-only: the
application permissions granted *when the token is issued*) or ``scp`` (delegated, space
separated). :meth:`TokenService.verify` turns a bearer token back into
:class:`~fake_tenant.core.Claims`.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .core import Claims, new_guid

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Graph's own app id; Entra may use it as aud
BOT_AUDIENCE = "https://api.botframework.com"

AUDIENCES = {
    GRAPH_AUDIENCE: (GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", GRAPH_APP_ID),
    BOT_AUDIENCE: (BOT_AUDIENCE, BOT_AUDIENCE + "/"),
}

# The claim that ties a token to the "epoch" of expire_all(); iat has one-second granularity,
# which would make a token minted in the same second as expire_all() ambiguous.
_GEN_CLAIM = "xms_emu_gen"


class TokenError(Exception):
    """A bearer token that must be refused; ``str(exc)`` is safe to show the caller."""


@dataclass
class RefreshGrant:
    app_id: str
    user_id: str
    scopes: list
    issued: float
    expires: float
    family: str = field(default_factory=new_guid)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_key(**jwk_fields) -> tuple:
    """(private key, kid, public JWK) of a new RS256 signing key, as Entra, the Bot Framework and
    the calling service publish theirs (``jwk_fields`` adds issuer or endorsements)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = _b64url(hashlib.sha256((jwk["n"] + jwk["e"]).encode()).digest()[:20])
    return key, kid, dict(jwk, kid=kid, x5t=kid, use="sig", alg="RS256", **jwk_fields)


class TokenService:
    def __init__(self, issuer: str, tenant_id: str, lifetime: int = 3600,
                 clock: Callable[[], float] = time.time, refresh_lifetime: int = 90 * 24 * 3600):
        self.issuer = issuer
        self.tenant_id = tenant_id
        self.lifetime = int(lifetime)
        self.refresh_lifetime = refresh_lifetime
        self.clock = clock
        self._key, self.kid, self._jwk = signing_key(issuer=issuer)
        self._public = self._key.public_key()
        self._generation = 0
        self._lock = threading.Lock()
        self._refresh: dict[str, RefreshGrant] = {}
        # Refresh tokens redeemed, and presented again after use (or unknown, revoked, expired):
        # what a test of concurrent refreshes counts.
        self.refresh_redeemed = 0
        self.refresh_refused = 0
        # Verifying an RS256 signature dominates a Graph request's cost; the same token is sent
        # many times, so remember the decoded payload (expiry/epoch are re-checked every time).
        self._verified: dict[tuple[str, str], dict] = {}

    # ---- keys ----
    def jwks(self) -> dict:
        return {"keys": [dict(self._jwk)]}

    # ---- issuing ----
    def _sign(self, claims: dict) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def _base_claims(self, audience: str, app_id: str, lifetime: int | None) -> dict:
        now = int(self.clock())
        life = self.lifetime if lifetime is None else int(lifetime)
        return {"aud": audience, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + life,
                "tid": self.tenant_id, "appid": app_id, "azp": app_id, "appidacr": "1", "azpacr": "1",
                "uti": _b64url(secrets.token_bytes(16)), "ver": "2.0", _GEN_CLAIM: self._generation}

    def issue_app_token(self, app, audience: str = GRAPH_AUDIENCE, lifetime: int | None = None,
                        roles=None) -> str:
        """An app-only token; ``roles`` are the app's application permissions right now (or, for
        another app's API, the roles given: those assigned to the caller on it)."""
        c = self._base_claims(audience, app.app_id, lifetime)
        sp_oid = _service_principal_id(self.tenant_id, app.app_id)
        c.update({"oid": sp_oid, "sub": sp_oid, "idtyp": "app"})
        roles = sorted(app.application_permissions if roles is None else roles)
        if roles:
            c["roles"] = roles
        return self._sign(c)

    def issue_delegated_token(self, app, user: dict, scopes, audience: str = GRAPH_AUDIENCE,
                              lifetime: int | None = None) -> str:
        c = self._base_claims(audience, app.app_id, lifetime)
        c.update({"oid": user["id"], "sub": _pairwise_sub(app.app_id, user["id"]), "idtyp": "user",
                  "scp": " ".join(scopes), "upn": user.get("userPrincipalName"),
                  "unique_name": user.get("userPrincipalName"), "name": user.get("displayName")})
        return self._sign(c)

    def issue_id_token(self, app, user: dict, nonce: str | None = None) -> str:
        now = int(self.clock())
        c = {"aud": app.app_id, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + self.lifetime,
             "tid": self.tenant_id, "oid": user["id"], "sub": _pairwise_sub(app.app_id, user["id"]),
             "preferred_username": user.get("userPrincipalName"), "name": user.get("displayName"),
             "ver": "2.0"}
        if nonce:
            c["nonce"] = nonce
        return self._sign(c)

    # ---- checking ----
    def verify(self, token: str, audience: str = GRAPH_AUDIENCE) -> Claims:
        """Check signature, issuer, audience, tenant and lifetime; raise :class:`TokenError`."""
        if not token:
            raise TokenError("Access token is empty.")
        cache_key = (token, audience)
        payload = self._verified.get(cache_key)
        if payload is None:
            try:
                payload = jwt.decode(token, self._public, algorithms=["RS256"],
                                     options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                              "verify_iat": False, "verify_iss": False})
            except jwt.InvalidTokenError:
                raise TokenError("Access token validation failure. Invalid signature or malformed token.") from None
            if payload.get("iss") != self.issuer:
                raise TokenError("Access token validation failure. Invalid issuer.")
            if payload.get("aud") not in AUDIENCES.get(audience, (audience,)):
                raise TokenError("Access token validation failure. Invalid audience.")
            if payload.get("tid") != self.tenant_id:
                raise TokenError("Access token validation failure. Token is issued for another tenant.")
            if len(self._verified) > 4096:  # bounded: long benchmarks mint many tokens
                self._verified.clear()
            self._verified[cache_key] = payload
        now = self.clock()
        if payload.get(_GEN_CLAIM, -1) != self._generation or now >= payload.get("exp", 0):
            raise TokenError("Lifetime validation failed, the token is expired.")
        if now + 300 < payload.get("nbf", 0):  # Entra allows five minutes of clock skew
            raise TokenError("Lifetime validation failed, the token is not yet valid.")
        if audience == BOT_AUDIENCE:
            kind = "bot"
        elif "scp" in payload:
            kind = "delegated"
        else:
            kind = "app"
        return Claims(kind=kind, app_id=payload.get("appid") or payload.get("azp", ""),
                      tenant_id=payload["tid"],
                      user_id=payload.get("oid") if kind == "delegated" else None,
                      roles=frozenset(payload.get("roles", ())),
                      scopes=frozenset(payload.get("scp", "").split()), raw=payload)

    def expire_all(self) -> None:
        """Every access token issued so far stops working (the next one is fine)."""
        with self._lock:
            self._generation += 1
            self._verified.clear()

    # ---- refresh tokens (opaque, server-side, rotated on use) ----
    def issue_refresh_token(self, app_id: str, user_id: str, scopes, family: str | None = None) -> str:
        rt = "0.emu." + secrets.token_urlsafe(48)
        now = self.clock()
        grant = RefreshGrant(app_id, user_id, list(scopes), now, now + self.refresh_lifetime)
        if family:
            grant.family = family
        with self._lock:
            self._refresh[rt] = grant
        return rt

    def redeem_refresh_token(self, rt: str, app_id: str) -> RefreshGrant | None:
        """The grant behind ``rt`` (which stops working now), or None if unknown/used/revoked/expired.

        A refresh token for another client is refused without being consumed."""
        with self._lock:
            grant = self._refresh.get(rt)
            if grant is None or grant.app_id != app_id:
                self.refresh_refused += 1
                return None
            del self._refresh[rt]  # single use: rotated on every redemption
            if self.clock() >= grant.expires:
                self.refresh_refused += 1
                return None
            self.refresh_redeemed += 1
        return grant

    def refresh_stats(self) -> dict:
        with self._lock:
            return {"redeemed": self.refresh_redeemed, "refused": self.refresh_refused,
                    "outstanding": len(self._refresh)}

    def revoke_refresh_tokens(self, user_id: str | None = None) -> int:
        with self._lock:
            doomed = [k for k, g in self._refresh.items() if user_id is None or g.user_id == user_id]
            for k in doomed:
                del self._refresh[k]
        return len(doomed)


def _service_principal_id(tenant_id: str, app_id: str) -> str:
    h = hashlib.sha1(f"{tenant_id}/sp/{app_id}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _pairwise_sub(app_id: str, user_id: str) -> str:
    # Entra's sub is unique per (user, app), unlike oid.
    return _b64url(hashlib.sha256(f"{app_id}/{user_id}".encode()).digest()[:32])
