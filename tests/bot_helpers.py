"""What the bot endpoint's tests share with others that drive it (mirror, metrics, webhooks):
the senders and their roles, the access file, the rig around a live endpoint, and the forged
tokens every endpoint must refuse."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BOB = "bob.smith@contoso.example"          # analyst (by mail): read-only commands
CONOR = "conor.obrien@contoso.example"     # responder: read and write
ZOE = "zoe.muller@contoso.example"         # no role
FATIMA = "fatima.alsayed@contoso.example"  # helpdesk, through membership of the IT Helpdesk group
ALICE = "alice.johnson@contoso.example"    # admin, by object id
SOC = "Security Operations"


def access_yaml(emu) -> str:
    helpdesk = next(t.id for t in emu.state.teams.values() if t.display_name == "IT Helpdesk")
    alice = emu.state.user(ALICE)["id"]
    return f"""
roles:
  analysts: {{users: [{BOB}]}}
  responders: {{users: [{CONOR.upper()}]}}
  helpdesk: {{groups: [{helpdesk}]}}
  admins: {{users: [{alice}]}}
allow:
  analysts: [read]
  responders: [read, write]
  helpdesk: [users]
  admins: ["*"]
rate_limit: {{per_minute: 1, burst: 3}}
"""


class Rig:
    def __init__(self, emu, runtime, endpoint, server):
        self.emu, self.runtime, self.endpoint, self.server = emu, runtime, endpoint, server
        self.bot_id = runtime.cfg.bot_id

    def says(self, user: str, text: str, **kw) -> dict:
        rec = self.emu.teams.user_says(user, text, **kw)
        assert self.endpoint.processor.drain(20)
        return rec

    def replies(self, rec: dict) -> list[dict]:
        return [a["activity"] for a in self.emu.state.activities.values()
                if a["activity"].get("replyToId") == rec["activityId"]]

    def reply_text(self, rec: dict) -> str:
        from fake_tenant.drive import _card_text

        replies = self.replies(rec)
        assert len(replies) == 1, replies
        return "\n".join(_card_text(replies[0]))

    def audit(self) -> list[dict]:
        return self.runtime.store.audit_list()

    # ---- forged deliveries ----
    def activity(self, user: str = BOB, text: str = f'!channel-list team="{SOC}"') -> dict:
        return self.emu.teams.message(user, text)

    def claims(self, **over) -> dict:
        now = int(time.time())
        c = {"iss": "https://api.botframework.com", "aud": self.bot_id, "iat": now, "nbf": now, "exp": now + 300,
             "serviceurl": self.emu.bot_service_url}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def sign(self, claims: dict, key=None, kid: str | None = None, alg: str = "RS256") -> str:
        return jwt.encode(claims, key or self.emu.teams._key, algorithm=alg, headers={"kid": kid or self.emu.teams.kid})

    def deliver(self, activity: dict | None = None, **kw) -> dict:
        rec = self.emu.teams.deliver(activity or self.activity(), self.bot_id, **kw)
        assert self.endpoint.processor.drain(20)
        return rec

    def assert_nothing_happened(self, since: int) -> None:
        """Nothing ran, nothing was stored, nothing was sent (no Graph, no Bot Connector call)."""
        assert self.emu.state.activities == {}
        assert self.audit() == []
        assert self.runtime.store.conversation_list() == []
        later = [e["path"] for e in self.emu.request_log[since:]]
        assert not [p for p in later if p.startswith(("/botframework/", "/v1.0"))], later


def _hs256_with_public_key(rig) -> str:
    pem = rig.emu.teams._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': rig.emu.teams.kid})}.{b64(rig.claims())}"
    sig = base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    return f"{signing_input}.{sig}"


FORGERIES = {
    "another key": lambda r: r.sign(r.claims(), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "unknown key id": lambda r: r.sign(r.claims(), kid="not-a-known-kid"),
    "wrong issuer": lambda r: r.sign(r.claims(iss="https://api.botframework.example")),
    "Entra issuer of another tenant": lambda r: r.sign(r.claims(iss="https://login.microsoftonline.com/x/v2.0")),
    "wrong audience": lambda r: r.sign(r.claims(aud=r.emu.config()["client_id"])),
    "expired": lambda r: r.sign(r.claims(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
                                         exp=int(time.time()) - 3600)),
    "not yet valid": lambda r: r.sign(r.claims(nbf=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
    "serviceUrl mismatch": lambda r: r.sign(r.claims(serviceurl="https://evil.example/teams/")),
    "no serviceurl claim": lambda r: r.sign(r.claims(serviceurl=None)),
    "alg none": lambda r: jwt.encode(r.claims(), None, algorithm="none", headers={"kid": r.emu.teams.kid}),
    "HS256 signed with the public key": _hs256_with_public_key,
    "garbage": lambda r: "not.a.jwt",
    "issuer with a line break": lambda r: r.sign(r.claims(iss="https://x.example/\nINFO forged log line")),
    "no header": lambda r: "",
}
