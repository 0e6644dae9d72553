"""The fake tenant's data: directory (users, teams, channels, members), app registrations, and
what callers create (chats, messages, meetings, calls, bot conversations). Built from a tenant
seed (YAML) by :meth:`TenantState.from_seed`; every mutation happens under ``lock``.

Seed format (see ``default_tenant.yaml``)::

    tenant_id: <guid>
    domain: contoso.example
    users:        [{id?, displayName, mail, userPrincipalName?, jobTitle?}]
    service_account: <upn>          # the account the authorize endpoint signs in unattended
    on_call: <upn>
    teams:        [{id?, displayName, description?, visibility?, owners: [upn], members: [upn],
                    channels: [{id?, displayName, description?, membershipType?, owners?: [upn], members?: [upn]}]}]
    groups:       [{id?, displayName, description?, visibility?, owners: [upn], members: [upn]}]  # without a team
    apps:         [{name, app_id, secret, kind: graph|bot,
                    application_permissions: [..], delegated_permissions: [..],
                    redirect_uris?: [..]}]
"""
from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from .core import new_guid, utcnow_iso


def _stable_guid(*parts: str) -> str:
    """A deterministic GUID so seeded ids are the same on every start."""
    h = hashlib.sha1("/".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _membership_id(*parts: str) -> str:
    """A conversationMember id as Graph issues them (base64 of '1#...', so 'MCMj...'), stable
    for the same container and user (graph.common.member_id makes the same for added members)."""
    import base64

    digest = hashlib.sha1(("1#" + "#".join(parts)).encode()).hexdigest()[:24]
    return "MCMjMSMj" + base64.urlsafe_b64encode(digest.encode()).decode().rstrip("=")


def _thread_id(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:32]


@dataclass
class App:
    name: str
    app_id: str
    secret: str
    kind: str  # "graph" | "bot"
    application_permissions: set = field(default_factory=set)
    delegated_permissions: set = field(default_factory=set)
    redirect_uris: list = field(default_factory=list)
    certificates: list = field(default_factory=list)  # PEM certificates for private_key_jwt sign-in
    # Teams "application access policy": lets an app-only token create online meetings for users
    online_meetings_policy: bool = True
    # App roles this (client) app was assigned on other apps' APIs: resource app id -> role values
    # (a SOAR platform's registration calling `msteams serve` with Entra ID tokens)
    api_roles: dict = field(default_factory=dict)


@dataclass
class Membership:
    """A conversationMember: a user in a team, channel or chat."""

    id: str
    user_id: str
    roles: list = field(default_factory=list)  # [] or ["owner"] (chats: ["owner"] / ["guest"])
    visible_history_start: str | None = None


@dataclass
class Message:
    id: str
    created: str
    body: dict  # {"contentType": "text"|"html", "content": str}
    sender: dict  # {"user": {...}} or {"application": {...}}
    chat_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    reply_to_id: str | None = None
    mentions: list = field(default_factory=list)
    attachments: list = field(default_factory=list)
    last_modified: str | None = None
    replies: list = field(default_factory=list)  # list[Message] (channel threads)


@dataclass
class Channel:
    id: str
    team_id: str
    display_name: str
    description: str = ""
    membership_type: str = "standard"
    created: str = field(default_factory=utcnow_iso)
    members: list = field(default_factory=list)  # list[Membership]; standard channels inherit the team's
    messages: list = field(default_factory=list)  # list[Message]


@dataclass
class Team:
    id: str
    display_name: str
    description: str = ""
    visibility: str = "private"
    members: list = field(default_factory=list)  # list[Membership]
    channels: dict = field(default_factory=dict)  # id -> Channel, insertion ordered (General first)
    archived: bool = False
    # PATCHed or created settings, by team property (memberSettings, guestSettings, ...): each
    # overrides the defaults team_resource shows
    settings: dict = field(default_factory=dict)
    classification: str | None = None
    mail_nickname: str | None = None


@dataclass
class Chat:
    id: str
    chat_type: str  # "oneOnOne" | "group" | "meeting"
    topic: str | None
    created: str
    updated: str
    members: list = field(default_factory=list)  # list[Membership]
    messages: list = field(default_factory=list)  # list[Message]


class TenantState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tenant_id = ""
        self.domain = ""
        self.users: dict[str, dict] = {}  # id -> Graph user resource
        self.service_account: str | None = None  # user id
        self.on_call: str | None = None  # user id
        self.teams: dict[str, Team] = {}
        # Microsoft 365 groups without a team (a team's group is its Team): id -> {"id",
        # "displayName", "description", "visibility", "owners": [user id], "members": [user id]}
        self.groups: dict[str, dict] = {}
        self.apps: dict[str, App] = {}  # app_id -> App
        self.chats: dict[str, Chat] = {}
        self.meetings: dict[str, dict] = {}
        self.calls: dict[str, dict] = {}
        self.bot_conversations: dict[str, dict] = {}  # id -> {"id","members","tenantId","isGroup", ...}
        self.activities: dict[str, dict] = {}  # activity id -> {"conversationId", "activity", "edits": int}
        # Where an admin took the bot away (the app is installed everywhere until then): users who
        # uninstalled it (its 1:1 conversation refuses it) and teams it was removed from.
        self.bot_uninstalled_users: set[str] = set()
        self.bot_removed_teams: set[str] = set()
        self._seed: dict | None = None

    # ---- lookup helpers shared by route modules ----
    def user(self, key: str) -> dict | None:
        """A user by object id or userPrincipalName (case-insensitive), as Graph's /users/{id|upn}."""
        u = self.users.get(key)
        if u:
            return u
        k = key.lower()
        for u in self.users.values():
            if (u.get("userPrincipalName") or "").lower() == k:
                return u
        return None

    def app(self, app_id: str) -> App | None:
        return self.apps.get(app_id)

    # ---- building ----
    @classmethod
    def from_seed(cls, seed: dict) -> "TenantState":
        st = cls()
        st._seed = copy.deepcopy(seed)
        st._load(seed)
        return st

    def reset(self) -> None:
        """Back to the seed: forget everything callers created."""
        with self.lock:
            seed = self._seed
            self.__init__()  # type: ignore[misc]
            self._seed = seed
            if seed is not None:
                self._load(seed)

    def _load(self, seed: dict) -> None:
        self.tenant_id = seed["tenant_id"]
        self.domain = seed.get("domain", "contoso.example")
        by_upn: dict[str, str] = {}
        for u in seed.get("users", []):
            upn = u.get("userPrincipalName") or u["mail"]
            uid = u.get("id") or _stable_guid(self.tenant_id, "user", upn.lower())
            self.users[uid] = {
                "id": uid,
                "displayName": u["displayName"],
                "mail": u.get("mail", upn),
                "userPrincipalName": upn,
                "jobTitle": u.get("jobTitle"),
                "givenName": u.get("givenName"),
                "surname": u.get("surname"),
                "businessPhones": [],
                "officeLocation": u.get("officeLocation"),
                "preferredLanguage": u.get("preferredLanguage", "en-US"),
                "mobilePhone": None,
                "userType": u.get("userType", "Member"),
            }
            by_upn[upn.lower()] = uid

        def uid_of(upn: str) -> str:
            try:
                return by_upn[upn.lower()]
            except KeyError:
                raise ValueError(f"tenant seed names unknown user {upn!r}") from None

        if seed.get("service_account"):
            self.service_account = uid_of(seed["service_account"])
        if seed.get("on_call"):
            self.on_call = uid_of(seed["on_call"])
        for t in seed.get("teams", []):
            tid = t.get("id") or _stable_guid(self.tenant_id, "team", t["displayName"])
            team = Team(tid, t["displayName"], t.get("description", ""), t.get("visibility", "private"))
            owners = [uid_of(x) for x in t.get("owners", [])]
            members = [uid_of(x) for x in t.get("members", [])]
            for u in dict.fromkeys(owners + members):
                team.members.append(Membership(_membership_id(tid, u), u, ["owner"] if u in owners else []))
            general = {"displayName": "General", "description": f"{team.display_name} general channel"}
            for c in [general] + [c for c in t.get("channels", []) if c["displayName"] != "General"]:
                cid = c.get("id") or f"19:{_thread_id(tid, c['displayName'])}@thread.tacv2"
                ch = Channel(cid, tid, c["displayName"], c.get("description", ""), c.get("membershipType", "standard"))
                if ch.membership_type != "standard":
                    c_owners = [uid_of(x) for x in c.get("owners", t.get("owners", [])[:1])]
                    c_members = [uid_of(x) for x in c.get("members", [])]
                    for u in dict.fromkeys(c_owners + c_members):
                        ch.members.append(Membership(_membership_id(cid, u), u, ["owner"] if u in c_owners else []))
                team.channels[cid] = ch
            self.teams[tid] = team
        for g in seed.get("groups", []):
            gid = g.get("id") or _stable_guid(self.tenant_id, "group", g["displayName"])
            self.groups[gid] = {"id": gid, "displayName": g["displayName"], "description": g.get("description", ""),
                                "visibility": g.get("visibility", "private"),
                                "owners": [uid_of(x) for x in g.get("owners", [])],
                                "members": [uid_of(x) for x in g.get("members", [])]}
        for a in seed.get("apps", []):
            self.apps[a["app_id"]] = App(
                a["name"], a["app_id"], a["secret"], a.get("kind", "graph"),
                set(a.get("application_permissions", [])), set(a.get("delegated_permissions", [])),
                list(a.get("redirect_uris", [])), certificates=list(a.get("certificates", [])),
                online_meetings_policy=bool(a.get("online_meetings_access_policy", True)),
            )

    # ---- views for tests and the admin endpoint ----
    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "chats": {cid: {"chatType": c.chat_type, "topic": c.topic,
                                "members": [m.user_id for m in c.members],
                                "messages": [{"id": m.id, "body": m.body, "from": m.sender} for m in c.messages]}
                          for cid, c in self.chats.items()},
                "channel_messages": [{"teamId": t.id, "channelId": ch.id, "id": m.id, "body": m.body,
                                      "replies": [{"id": r.id, "body": r.body} for r in m.replies]}
                                     for t in self.teams.values() for ch in t.channels.values() for m in ch.messages],
                "channels": [{"teamId": t.id, "id": ch.id, "displayName": ch.display_name,
                              "membershipType": ch.membership_type} for t in self.teams.values() for ch in t.channels.values()],
                "meetings": list(self.meetings.values()),
                "calls": list(self.calls.values()),
                "bot_conversations": list(self.bot_conversations.values()),
                "activities": list(self.activities.values()),
            }


__all__ = ["App", "Membership", "Message", "Channel", "Team", "Chat", "TenantState", "new_guid", "utcnow_iso"]
