"""The calling service of the fake tenant: a simulated user answers (or not) a call the app
placed through ``POST /communications/calls``, and Graph's notifications go to the call's
``callbackUri`` as the calling service sends them.

- Signing as Microsoft's calling service does (its own RSA key, not Entra's nor the Bot
  Framework's), published as OpenID metadata at ``/calling-login/v1/.well-known/OpenIdConfiguration``
  (the real one: ``https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration``); each
  notification carries ``Authorization: Bearer <JWT>`` with issuer ``https://graph.microsoft.com``,
  audience the app that placed the call, ``tid`` the tenant, five minutes of life.
- The body is a ``#microsoft.graph.commsNotifications`` document: ``accept`` sends the call
  ``established`` (``changeType: updated``); ``decline``, ``busy`` and ``ignore`` send it
  ``terminated`` (``changeType: deleted``) with ``resultInfo`` code 603, 486 and 408.
- https callbacks are checked against :attr:`ca_bundle` (the emulator's CA by default).
"""
from __future__ import annotations

import json
import threading
import time
from typing import Callable

import jwt

from .core import Response, utcnow_iso
from .tokens import signing_key

ISSUER = "https://graph.microsoft.com"
METADATA_PATH = "/calling-login/v1/.well-known/OpenIdConfiguration"
KEYS_PATH = "/calling-login/v1/.well-known/keys"
TOKEN_LIFETIME = 300
DELIVERY_TIMEOUT = 15.0

# What the call's end says, per answer: (resultInfo code, subcode, message).
ENDINGS = {
    "decline": (603, 10004, "The call was declined by the callee."),
    "busy": (486, 10036, "The callee is busy."),
    "ignore": (408, 10057, "The call was not answered (timed out)."),
}
ANSWERS = ("accept",) + tuple(ENDINGS)


class CallError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class CallingService:
    def __init__(self, state, base_url: str, ca_bundle: str | None = None, clock: Callable[[], float] = time.time):
        self.state = state
        self.base_url = base_url
        self.ca_bundle = ca_bundle
        self.clock = clock
        self._key, self.kid, self._jwk = signing_key()
        self.deliveries: list[dict] = []
        self._lock = threading.Lock()

    # ---- the calling service's OpenID metadata ----
    @property
    def metadata_url(self) -> str:
        return self.base_url + METADATA_PATH

    def handle(self, method: str, path: str) -> Response | None:
        if path not in (METADATA_PATH, KEYS_PATH):
            return None
        if method != "GET":
            return Response(405, {"error": {"code": "MethodNotAllowed", "message": "GET only"}})
        if path == METADATA_PATH:
            body = {"issuer": ISSUER, "jwks_uri": self.base_url + KEYS_PATH,
                    "id_token_signing_alg_values_supported": ["RS256"]}
        else:
            body = {"keys": [dict(self._jwk)]}
        return Response(200, body, {"Cache-Control": "max-age=86400"})

    def sign(self, app_id: str, *, lifetime: int = TOKEN_LIFETIME) -> str:
        now = int(self.clock())
        claims = {"iss": ISSUER, "aud": app_id, "tid": self.state.tenant_id, "iat": now, "nbf": now,
                  "exp": now + lifetime, "appid": app_id}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()

    # ---- a simulated user answers ----
    def _call_for(self, who: str) -> dict:
        u = self.state.user(who)
        if u is None:
            u = next((x for x in self.state.users.values() if (x.get("mail") or "").lower() == who.lower()), None)
        if u is None:
            raise CallError(f"no user {who!r} in the tenant", 404)
        with self.state.lock:
            ringing = [c for c in self.state.calls.values() if c.get("state") == "establishing"
                       and any(t["identity"]["user"]["id"] == u["id"] for t in c.get("targets") or [])]
        if not ringing:
            raise CallError(f"no call is ringing for {u['displayName']}", 404)
        return max(ringing, key=lambda c: c.get("createdDateTime") or "")

    def answer(self, user: str, answer: str) -> dict:
        """The user's Teams client rings: ``accept``, ``decline``, ``busy`` or ``ignore`` (rings
        out). The call's state changes, and its notification goes to the callback. Returns the
        delivery record."""
        if answer not in ANSWERS:
            raise CallError(f"answer is one of {', '.join(ANSWERS)}")
        call = self._call_for(user)
        with self.state.lock:
            if answer == "accept":
                call["state"], change = "established", "updated"
            else:
                code, subcode, message = ENDINGS[answer]
                call["state"], change = "terminated", "deleted"
                call["resultInfo"] = {"@odata.type": "#microsoft.graph.resultInfo", "code": code, "subcode": subcode,
                                      "message": message}
            data = {k: v for k, v in call.items() if not k.startswith("_")}
            app_id, url = call.get("_app_id") or "", call["callbackUri"]
        doc = {"@odata.type": "#microsoft.graph.commsNotifications",
               "value": [{"@odata.type": "#microsoft.graph.commsNotification", "changeType": change,
                          "resourceUrl": f"/communications/calls/{call['id']}", "resource": f"/app/calls/{call['id']}",
                          "resourceData": data}]}
        return self.deliver(url, doc, app_id, call["id"], answer)

    def deliver(self, url: str, doc: dict, app_id: str, call_id: str = "", answer: str = "",
                token: str | None = None) -> dict:
        import requests

        headers = {"Content-Type": "application/json"}
        tok = self.sign(app_id) if token is None else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        record = {"time": utcnow_iso(), "callId": call_id, "answer": answer, "endpoint": url, "status": None,
                  "error": None}
        try:
            with requests.Session() as s:
                s.trust_env = False
                r = s.post(url, data=json.dumps(doc).encode(), headers=headers, timeout=DELIVERY_TIMEOUT,
                           verify=self.ca_bundle or True)
            record["status"] = r.status_code
        except requests.RequestException as exc:
            record["error"] = f"{type(exc).__name__}: the callback could not be reached"
        with self._lock:
            self.deliveries.append(record)
        return record
