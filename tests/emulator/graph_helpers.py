"""Helpers shared by the Graph tests over real HTTP (``test_graph_*.py``): the seeded users,
request headers, Graph error checks, conversationMember bodies, chat creation and the seeded
team and channel ids. Imported as a plain module: pytest puts this folder on ``sys.path`` for
the test modules in it (they are not a package)."""
from __future__ import annotations

from msal_helpers import bearer as H  # noqa: F401  (re-exported: nearly every request sends it)

SVC = "soar-svc@contoso.example"
BOB = "bob.smith@contoso.example"
ALICE = "alice.johnson@contoso.example"
CONOR = "conor.obrien@contoso.example"
WEI = "wei.chen@contoso.example"
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"


def err(r, status: int, code: str | None = None) -> dict:
    """The Graph error of ``r`` after checking its status (and code, when given)."""
    assert r.status_code == status, r.text
    e = r.json()["error"]
    if code:
        assert e["code"] == code, e
    return e


def member(key: str, roles=("owner",)) -> dict:
    """A conversationMember body binding the user with id or UPN ``key``."""
    return {"@odata.type": MEMBER_TYPE, "roles": list(roles),
            "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{key}')"}


def create_chat(http, emu, token, chat_type, members, **extra):
    """POST /chats with ``members`` (ids or UPNs, each an owner); the response."""
    return http.post(emu.graph_url + "/chats", headers=H(token),
                     json={"chatType": chat_type, "members": [member(m) for m in members], **extra})


def team_id(emu, name: str) -> str:
    return next(t.id for t in emu.state.teams.values() if t.display_name == name)


def channel_id(emu, team: str, name: str) -> str:
    t = emu.state.teams[team_id(emu, team)]
    return next(c.id for c in t.channels.values() if c.display_name == name)
