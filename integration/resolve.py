"""Names to ids: users (mail, UPN, display name, id), teams (name or id), channels (name or
id within a team) and chats (id, topic, or a member's 1:1 chat). The context store answers
first; Graph second. A name that matches several objects is an error listing the candidates,
never a silent pick. Untrusted names reach Graph only as escaped OData literals or encoded
path segments.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from .errors import AmbiguousError, NotFound
from .untrusted import quote as quoted  # how a message shows a user's value
from .graph import Client, odata_literal, seg
from .store import Store

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
USER_SELECT = "id,displayName,mail,userPrincipalName"


def is_guid(value: str) -> bool:
    return bool(GUID_RE.match(value.strip()))


def is_thread_id(value: str) -> bool:
    return value.strip().startswith("19:")


def _user_view(u: dict) -> dict:
    return {k: u.get(k) for k in ("id", "displayName", "mail", "userPrincipalName")}


class Resolver:
    def __init__(self, client: Client, store: Store):
        self.client = client
        self.store = store
        self.from_cache: list[tuple[str, str]] = []  # (kind, key) answered by the store this command

    def _cached(self, kind: str, key: str):
        value = self.store.get(kind, key)
        if value is not None:
            self.from_cache.append((kind, key))
        return value

    def forget_cached(self) -> bool:
        """Drop what this command took from the store (after a 404 on a cached id). True if anything was."""
        had = bool(self.from_cache)
        for kind, key in self.from_cache:
            self.store.delete(kind, key)
        self.from_cache.clear()
        return had

    # ---- users ----
    def user(self, name: str) -> dict:
        name = name.strip()
        hit = self._cached("user", name)
        if hit:
            return hit
        user = None
        if is_guid(name) or "@" in name:
            try:
                user = self.client.get(f"/users/{seg(name)}", params={"$select": USER_SELECT})
            except NotFound:
                user = None
            if user is None and "@" in name:
                found = self._user_filter(f"mail eq {odata_literal(name)}")
                user = self._one("user", name, found, lambda u: f"{u['displayName']} <{u.get('mail')}>")
        else:
            found = self._user_filter(f"displayName eq {odata_literal(name)}")
            user = self._one("user", name, found, lambda u: f"{u['displayName']} <{u.get('mail') or u.get('userPrincipalName')}>")
        if user is None:
            raise NotFound(f"user {quoted(name)} not found", hint="use the user's mail, UPN or object id")
        user = _user_view(user)
        self.store.put("user", name, user)
        self.store.put("user", user["id"], user)
        return user

    def _user_filter(self, flt: str) -> list[dict]:
        return self.client.get("/users", params={"$filter": flt, "$select": USER_SELECT, "$top": 10}).get("value", [])

    @staticmethod
    def _one(what: str, name: str, found: list[dict], describe) -> dict | None:
        if len(found) > 1:
            raise AmbiguousError(what, name, [f"{describe(x)} [{x['id']}]" for x in found])
        return found[0] if found else None

    def me(self) -> dict:
        hit = self._cached("user", "@me")
        if hit:
            return hit
        me = _user_view(self.client.get("/me", params={"$select": USER_SELECT}))
        self.store.put("user", "@me", me)
        return me

    # ---- teams and channels ----
    def team(self, name: str) -> dict:
        name = name.strip()
        hit = self._cached("team", name)
        if hit:
            return hit
        if is_guid(name):
            t = self.client.get(f"/teams/{seg(name)}")
            team = {"id": t["id"], "displayName": t.get("displayName")}
        else:
            found = self.client.get("/teams", params={"$filter": f"displayName eq {odata_literal(name)}"}).get("value", [])
            found = [t for t in found if (t.get("displayName") or "").casefold() == name.casefold()] or found
            team = self._one("team", name, found, lambda t: t.get("displayName", "?"))
            if team is None:
                raise NotFound(f"team {quoted(name)} not found", hint="check the name with `msteams team-list`, or pass the team id")
            team = {"id": team["id"], "displayName": team.get("displayName")}
        self.store.put("team", name, team)
        return team

    def channel(self, team_id: str, name: str) -> dict:
        name = name.strip()
        key = f"{team_id}/{name}"
        hit = self._cached("channel", key)
        if hit:
            return hit
        if is_thread_id(name):
            c = self.client.get(f"/teams/{seg(team_id)}/channels/{seg(name)}")
            chan = {"id": c["id"], "displayName": c.get("displayName"), "membershipType": c.get("membershipType")}
        else:
            page = self.client.paged(f"/teams/{seg(team_id)}/channels")
            found = [c for c in page.items if (c.get("displayName") or "").casefold() == name.casefold()]
            c = self._one("channel", name, found, lambda c: c.get("displayName", "?"))
            if c is None:
                raise NotFound(f"channel {quoted(name)} not found in the team",
                               hint="list them with `msteams channel-list team=...`")
            chan = {"id": c["id"], "displayName": c.get("displayName"), "membershipType": c.get("membershipType")}
        self.store.put("channel", key, chan)
        return chan

    # ---- chats ----
    def chat_by_topic(self, topic: str) -> dict | None:
        hit = self._cached("chat_topic", topic)
        if hit:
            return hit
        found = self.client.get("/me/chats", params={"$filter": f"topic eq {odata_literal(topic)}", "$top": 50}).get("value", [])
        found = [c for c in found if (c.get("topic") or "") == topic] or found
        chat = self._one("chat", topic, found, lambda c: f"{c.get('topic')} ({c.get('chatType')})")
        if chat:
            chat = {"id": chat["id"], "topic": chat.get("topic"), "chatType": chat.get("chatType")}
            self.store.put("chat_topic", topic, chat)
        return chat

    def remember_chat(self, chat: dict, *, one_on_one_with: str | None = None) -> None:
        view = {"id": chat["id"], "topic": chat.get("topic"), "chatType": chat.get("chatType")}
        if chat.get("topic"):
            self.store.put("chat_topic", chat["topic"], view)
        if one_on_one_with:
            self.store.put("chat", one_on_one_with, view)

    def find_one_on_one_chat(self, user: dict) -> dict | None:
        """The signed-in account's existing 1:1 chat with ``user``, without creating one (a
        read: Chat.ReadBasic is enough). None when they have never chatted."""
        hit = self._cached("chat", user["id"])
        if hit:
            return hit
        flt = f"members/any(o: o/microsoft.graph.aadUserConversationMember/userId eq {odata_literal(user['id'])})"
        page = self.client.paged("/me/chats", params={"$filter": flt, "$expand": "members"}, page_size=50, limit=250)
        for c in page.items:
            ids = {m.get("userId") for m in c.get("members") or []}
            if c.get("chatType") == "oneOnOne" and user["id"] in ids:
                view = {"id": c["id"], "topic": c.get("topic"), "chatType": "oneOnOne"}
                self.store.put("chat", user["id"], view)
                return view
        return None

    def one_on_one_chat(self, me: dict, user: dict, bind_base: str) -> dict:
        """The 1:1 chat between the signed-in account and ``user`` (Graph's get-or-create)."""
        hit = self._cached("chat", user["id"])
        if hit:
            return hit
        chat = self.client.post("/chats", chat_body("oneOnOne", [me["id"], user["id"]], bind_base))
        self.remember_chat(chat, one_on_one_with=user["id"])
        return {"id": chat["id"], "topic": chat.get("topic"), "chatType": chat.get("chatType")}

    # ---- many users at once ----
    def prefetch_users(self, names: list[str]) -> int:
        """Look up the users not yet cached through `$batch` (20 a request) and cache them, so a
        fan-out to many recipients does not pay one lookup request each. Names that match no
        one or several people are left for `user()` to report. Returns how many were cached."""
        todo = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
        todo = [n for n in todo if self.store.get("user", n) is None]
        if len(todo) < 2:
            return 0  # one lookup costs the same request either way
        reqs = []
        for i, name in enumerate(todo):
            if is_guid(name) or "@" in name:
                url = f"/users/{seg(name)}?$select={USER_SELECT}"
            else:
                url = (f"/users?$filter={quote('displayName eq ' + odata_literal(name), safe='')}"
                       f"&$select={USER_SELECT}&$top=2")
            reqs.append({"id": str(i), "method": "GET", "url": url})
        entries = []
        for r in self.client.batch(reqs):
            if r.get("status") != 200 or not isinstance(r.get("body"), dict):
                continue
            body = r["body"]
            found = body.get("value") if "value" in body else [body]
            if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict) and found[0].get("id"):
                user = _user_view(found[0])
                entries += [(todo[int(r["id"])], user), (user["id"], user)]
        if entries:
            self.store.put_many("user", entries)
        return len(entries) // 2


def member_body(user_id: str, bind_base: str, roles: list | None = None) -> dict:
    return {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": roles if roles is not None else ["owner"],
            "user@odata.bind": f"{bind_base.rstrip('/')}/users('{user_id}')"}


def chat_body(chat_type: str, user_ids: list[str], bind_base: str, topic: str | None = None) -> dict:
    body = {"chatType": chat_type, "members": [member_body(u, bind_base) for u in user_ids]}
    if topic:
        body["topic"] = topic
    return body
