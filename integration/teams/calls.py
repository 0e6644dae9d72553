"""Call notifications (``POST /api/calls``): what Graph's calling service says about the calls
``ring-user`` placed, and the outcome ``ring-user wait=SECONDS`` reports.

Verified as Microsoft documents for calling bots (and as its Graph communications samples'
``AuthenticationProvider`` does): ``Authorization: Bearer <JWT>``, RS256 only, signed by a key
of the calling service's OpenID metadata (``https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration``
by default; ``call_openid_metadata_url`` for the fake tenant), issuer ``https://graph.microsoft.com``
or ``https://api.botframework.com``, audience the app that placed the call (``client_id``),
``tid`` the configured tenant, expiry and not-before with five minutes of skew. The keys are
the same cached :class:`~integration.teams.verify.KeySource` the messaging endpoint uses.

A verified ``#microsoft.graph.commsNotifications`` body records each call's state change
(``establishing``, ``established``, ``terminated`` with its ``resultInfo``) in the store; the
outcome of a call: ``answered`` once ``established``; when ``terminated`` first, ``declined``
(603), ``busy`` (486, 600) or ``no answer`` (408, 480, 487 and anything else).
"""
from __future__ import annotations

import re
import time
from typing import Callable

from .verify import KeySource, Rejected, bearer_token, check_key, decode_signed, fetch_json, peek, signing_key_id

CALLING_OPENID_METADATA = "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
CALL_ISSUERS = ("https://graph.microsoft.com", "https://api.botframework.com")
NOTIFICATIONS_TYPE = "#microsoft.graph.commsnotifications"
STATES = {"incoming", "establishing", "ringing", "established", "hold", "transferring", "transferaccepted",
          "redirecting", "terminating", "terminated"}
_CALL_URL = re.compile(r"^(?:https://[^/]+/(?:v1\.0|beta))?/?(?:app/)?communications/calls/([0-9A-Fa-f-]{36})$")

ANSWERED, DECLINED, BUSY, NO_ANSWER = "answered", "declined", "busy", "no answer"
DECLINED_CODES = {603}
BUSY_CODES = {486, 600}


class CallVerifier:
    """Checks the bearer token of a call notification (see the module docstring)."""

    def __init__(self, app_id: str, tenant_id: str | None, *, metadata_url: str = CALLING_OPENID_METADATA,
                 verify: str | bool = True, timeout: float = 10.0, fetch: Callable[[str], dict] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not app_id:
            raise ValueError("app_id is required")
        self.app_id = app_id
        self.tenant_id = tenant_id
        self.keys = KeySource(metadata_url, fetch or fetch_json(verify, timeout), clock=clock)

    @classmethod
    def from_config(cls, cfg, **kw) -> "CallVerifier":
        return cls(cfg.client_id, cfg.tenant_id,
                   metadata_url=getattr(cfg, "call_openid_metadata_url", None) or CALLING_OPENID_METADATA,
                   verify=cfg.verify, timeout=min(cfg.timeout, 10.0), **kw)

    def verify(self, authorization: str | None) -> dict:
        token = bearer_token(authorization)
        kid = signing_key_id(peek(token)[0])
        jwk = self.keys.key(kid)
        if jwk is None:
            raise Rejected("unknown signing key")
        check_key(jwk)
        claims = decode_signed(token, jwk, audience=self.app_id, issuers=list(CALL_ISSUERS),
                               key=self.keys.key_object(kid, jwk))
        if self.tenant_id and str(claims.get("tid", "")).lower() != self.tenant_id.lower():
            raise Rejected("token issued for another tenant")
        return claims


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse(body) -> list[dict]:
    """The call state changes in a notification body: [{call_id, state, code, subcode, message}].
    ValueError when the body is not a commsNotifications document (400)."""
    if not isinstance(body, dict) or str(body.get("@odata.type", "")).lower() != NOTIFICATIONS_TYPE:
        raise ValueError("not a #microsoft.graph.commsNotifications document")
    value = body.get("value")
    if not isinstance(value, list):
        raise ValueError("no value list")
    out = []
    for n in value[:100]:
        if not isinstance(n, dict) or not isinstance(n.get("resourceUrl"), str):
            continue
        m = _CALL_URL.match(n["resourceUrl"])
        data = n.get("resourceData")
        if not m or not isinstance(data, dict):
            continue  # participants, media: not the call's own state
        state = data.get("state")
        if not isinstance(state, str) or state.lower() not in STATES:
            continue
        info = data.get("resultInfo") if isinstance(data.get("resultInfo"), dict) else {}
        message = info.get("message")
        out.append({"call_id": m.group(1).lower(), "state": state.lower(), "code": _int(info.get("code")),
                    "subcode": _int(info.get("subcode")),
                    "message": message[:300] if isinstance(message, str) else None})
    return out


class CallNotifications:
    """What ``/api/calls`` does with a verified body: record it in the store."""

    def __init__(self, verifier: CallVerifier, store):
        self.verifier = verifier
        self.store = store
        self.recorded = 0

    def accept(self, body, claims: dict | None = None) -> int:
        """Record the call state changes of a verified body (``claims``: its token's, unused here)."""
        changes = parse(body)
        for c in changes:
            self.store.call_event_add(c["call_id"], c["state"], code=c["code"], subcode=c["subcode"],
                                      message=c["message"])
        self.recorded += len(changes)
        return len(changes)


def outcome(events: list[dict]) -> str | None:
    """answered, declined, busy or no answer from a call's recorded events; None while it rings."""
    if any(e["state"] == "established" for e in events):
        return ANSWERED
    end = next((e for e in events if e["state"] == "terminated"), None)
    if end is None:
        return None
    if end.get("code") in DECLINED_CODES:
        return DECLINED
    if end.get("code") in BUSY_CODES:
        return BUSY
    return NO_ANSWER


def wait_for_outcome(store, call_id: str, seconds: float, sleep: Callable[[float], None],
                     interval: float = 1.0) -> tuple[str, list[dict], bool]:
    """Poll the store until the call has an outcome or ``seconds`` have been slept away
    (counted by the sleeps, so an injected sleep makes it instant). Returns (outcome, events,
    timed_out); a call still ringing at the end is ``no answer``."""
    call_id = call_id.lower()
    waited = 0.0
    while True:
        events = store.call_events(call_id)
        found = outcome(events)
        if found is not None:
            return found, events, False
        if waited >= seconds:
            return NO_ANSWER, events, True
        step = min(interval, seconds - waited)
        sleep(step)
        waited += step
