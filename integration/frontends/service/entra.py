"""Entra ID bearer tokens for the HTTP API, beside API keys (an enterprise's SOAR platform with an
app registration of its own): ``Authorization: Bearer <access token>`` issued by the tenant's
Entra ID for the integration's API, with app roles assigned to the platform's app.

Only with ``api_entra_audience`` set (deny by default). A token is checked as Microsoft
specifies for an API: signed by a key of the tenant's published key set (its OpenID metadata
at the authority, fetched over TLS, cached by ``kid`` as the bot's keys are:
teams/verify.KeySource), RS256, the tenant's own issuer, ``aud`` the configured audience,
``tid`` a tenant the service serves (the config's ``tenant_id``, or a tenant profile's), and
``exp``/``nbf`` with five minutes of skew. Its ``roles`` are the key's scopes, with the same rules
as an API key's (a glob never allows a destructive command); it acts for the tenant that issued
it only. Its name in the audit log and the rate limiter is ``entra:<the calling app's id>``.
"""
from __future__ import annotations

import re
import threading

from integration.teams.verify import (KeySource, Rejected, bearer_token, check_key, decode_signed, fetch_json, peek,
                                      signing_key_id)

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class EntraTokens:
    """The tenants a service takes tokens from, their key sets, and the check of one token."""

    def __init__(self, runtime, audience: str):
        self.runtime = runtime
        self.audience = audience
        cfg = runtime.cfg
        self._fetch = fetch_json(cfg.verify, min(cfg.timeout, 10.0))
        # tenant id (lowercase) -> (tenant profile or None, its authority)
        self.tenants: dict[str, tuple[str | None, str]] = {}
        # A tenant configured by its domain name (contoso.onmicrosoft.com): its id is learned from
        # its metadata's issuer on the first token naming a tenant not known yet.
        self._by_name: list[tuple[str | None, str]] = []
        if cfg.tenant_names:
            configured = [(name, runtime.for_tenant(name).cfg) for name in cfg.tenant_names]
        else:
            configured = [(None, cfg)]
        for name, t in configured:
            if not (t.tenant_id or t.authority):
                continue
            tid = (t.tenant_id or "").strip().lower()
            if _GUID.fullmatch(tid):
                self.tenants[tid] = (name, t.authority_url)
            else:
                self._by_name.append((name, t.authority_url))
        self._sources: dict[str, KeySource] = {}
        self._lock = threading.Lock()

    def _learn_ids(self) -> None:
        """The ids of the tenants configured by name, from their metadata (once each)."""
        with self._lock:
            pending, self._by_name = self._by_name, []
        for name, authority in pending:
            src = KeySource(f"{authority.rstrip('/')}/v2.0/.well-known/openid-configuration", self._fetch)
            src.ensure_loaded()
            m = _GUID.search((src.issuer or "").lower())
            if m is None:  # not reachable now: tried again on the next unknown token
                with self._lock:
                    self._by_name.append((name, authority))
                continue
            with self._lock:
                self.tenants[m.group(0)] = (name, authority)
                self._sources[m.group(0)] = src

    def _source(self, tid: str, authority: str) -> KeySource:
        with self._lock:
            src = self._sources.get(tid)
            if src is None:
                src = self._sources[tid] = KeySource(f"{authority.rstrip('/')}/v2.0/.well-known/openid-configuration",
                                                     self._fetch)
            return src

    def key_of(self, token: str) -> dict:
        """The key record (name, scopes, tenants) a valid token stands for; Rejected otherwise."""
        token = bearer_token(f"Bearer {token}")
        header, unverified = peek(token)
        tid = str(unverified.get("tid") or "").strip().lower()
        if tid not in self.tenants and self._by_name:
            self._learn_ids()
        if tid not in self.tenants:
            raise Rejected("token of a tenant this service does not serve")
        profile, authority = self.tenants[tid]
        source = self._source(tid, authority)
        source.ensure_loaded()
        kid = signing_key_id(header)
        jwk = source.key(kid)
        if jwk is None:
            raise Rejected("unknown signing key for the tenant")
        check_key(jwk)
        issuer = (source.issuer or "").replace("{tenantid}", tid)
        if not issuer:
            raise Rejected("the tenant's metadata names no issuer")
        claims = decode_signed(token, jwk, audience=self.audience, issuers=[issuer], key=source.key_object(kid, jwk))
        if str(claims.get("tid") or "").lower() != tid:
            raise Rejected("token issued for another tenant")
        caller = claims.get("azp") or claims.get("appid")
        if not isinstance(caller, str) or not caller:
            raise Rejected("token names no calling app")
        roles = claims.get("roles") if isinstance(claims.get("roles"), list) else []
        return {"name": f"entra:{caller[:64]}", "scopes": [r for r in roles if isinstance(r, str)],
                "tenants": [profile] if profile else [], "entra": True}
