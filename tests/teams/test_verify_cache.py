"""A bot token PyJWT accepted is kept and not parsed or signature-checked again when it comes
back (verify.py): what could answer differently is checked again every time, as strictly
(the key the kid names must still be the very key that verified it; iat/nbf/exp against the
clock with the same leeway; tenant and serviceurl), and a token that differs in one character
is checked in full. ``verify(fetch=False)`` answers with the keys at hand, or None when they
must be fetched first."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from integration.teams import verify as verify_mod
from integration.teams.verify import SKEW_SECONDS, InboundVerifier, Rejected

ISS = "https://api.botframework.com"


def _jwk(key, kid: str, **extra) -> dict:
    from jwt.algorithms import RSAAlgorithm

    return dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), kid=kid, use="sig", **extra)


@pytest.fixture()
def rig(monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = {"keys": [_jwk(key, "k1", endorsements=["msteams"])]}
    docs = {"https://meta.example/openid": {"issuer": ISS, "jwks_uri": "https://meta.example/keys"},
            "https://meta.example/keys": keys}
    clock = [1000.0]
    fetched = []

    def fetch(url):
        fetched.append(url)
        return docs[url]

    decodes = []
    real = verify_mod.decode_signed

    def counted(*a, **kw):
        decodes.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(verify_mod, "decode_signed", counted)
    v = InboundVerifier("bot-app", metadata_url="https://meta.example/openid", fetch=fetch, clock=lambda: clock[0])

    class Rig:
        pass

    r = Rig()
    r.key, r.keys, r.clock, r.fetched, r.decodes, r.v = key, keys, clock, fetched, decodes, v

    def token(kid="k1", key=key, **claims):
        now = int(time.time())
        body = {"iss": ISS, "aud": "bot-app", "nbf": now, "iat": now, "exp": now + 3600,
                "serviceurl": "https://svc.example/"}
        body.update(claims)
        return "Bearer " + jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

    r.token = token
    return r


def test_a_token_seen_before_is_not_decoded_again_and_answers_the_same(rig):
    t = rig.token()
    first = rig.v.verify(t)
    second = rig.v.verify(t)
    assert len(rig.decodes) == 1
    assert (second.claims, second.issuer, second.source, second.service_url) == \
           (first.claims, first.issuer, first.source, first.service_url)
    second.claims["aud"] = "changed"  # each answer its own claims
    assert rig.v.verify(t).claims["aud"] == "bot-app"


def test_one_character_changed_is_checked_in_full(rig):
    t = rig.token()
    rig.v.verify(t)
    head, body, sig = t[len("Bearer "):].split(".")
    forged = f"Bearer {head}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Rejected):
        rig.v.verify(forged)
    assert len(rig.decodes) == 2


def test_a_kept_token_expires_as_pyjwt_would_have_it(rig, monkeypatch):
    now = int(time.time())
    t = rig.token(exp=now + 100)
    rig.v.verify(t)
    monkeypatch.setattr(verify_mod.time, "time", lambda: now + 100 + SKEW_SECONDS - 1)
    rig.v.verify(t)  # within the leeway
    monkeypatch.setattr(verify_mod.time, "time", lambda: now + 100 + SKEW_SECONDS)
    with pytest.raises(Rejected, match="token expired"):
        rig.v.verify(t)
    monkeypatch.setattr(verify_mod.time, "time", lambda: now - SKEW_SECONDS - 5)  # the clock went back
    with pytest.raises(Rejected, match="not yet valid"):
        rig.v.verify(t)
    assert len(rig.decodes) == 1


def test_a_rotated_or_removed_key_is_not_trusted_from_the_cache(rig):
    t = rig.token()
    rig.v.verify(t)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rig.keys["keys"] = [_jwk(other, "k1", endorsements=["msteams"])]  # the same kid, another key
    rig.clock[0] += 24 * 3600  # the key set is stale: fetched again
    with pytest.raises(Rejected, match="bad signature"):
        rig.v.verify(t)
    rig.keys["keys"] = [_jwk(rig.key, "k1", endorsements=["webchat"])]
    rig.clock[0] += 24 * 3600
    with pytest.raises(Rejected, match="not endorsed"):
        rig.v.verify(t)
    rig.keys["keys"] = []
    rig.clock[0] += 24 * 3600
    with pytest.raises(Rejected, match="unknown signing key"):
        rig.v.verify(t)


def test_the_cache_is_bounded(rig, monkeypatch):
    monkeypatch.setattr(verify_mod, "VERIFIED_TOKENS", 3)
    tokens = [rig.token(jti=str(i)) for i in range(5)]
    for t in tokens:
        rig.v.verify(t)
    assert 0 < len(rig.v._verified) <= 3 and tokens[4][len("Bearer "):] in rig.v._verified


def test_without_fetching_keys_at_hand_or_none(rig):
    t = rig.token()
    assert rig.v.verify(t, fetch=False) is None and rig.fetched == []  # never fetched: None, no I/O
    assert rig.v.verify(t).service_url == "https://svc.example/"
    assert rig.v.verify(t, fetch=False).service_url == "https://svc.example/"
    with pytest.raises(Rejected, match="unknown signing key"):
        rig.v.verify(rig.token(kid="new"), fetch=False)  # fetched under a minute ago: refused, no fetch
    rig.clock[0] += 61
    assert rig.v.verify(rig.token(kid="new"), fetch=False) is None  # unknown kid, a fetch allowed: None
    assert len(rig.fetched) == 2
    with pytest.raises(Rejected, match="unknown signing key"):
        rig.v.verify(rig.token(kid="new"))  # fetched: still unknown
    with pytest.raises(Rejected, match="unknown signing key"):
        rig.v.verify(rig.token(kid="new"), fetch=False)  # within a minute: no fetch, refused at once
    with pytest.raises(Rejected, match="not accepted"):
        rig.v.verify(rig.token(iss="https://evil.example"), fetch=False)
