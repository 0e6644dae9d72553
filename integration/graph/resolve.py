"""Names to ids: users (mail, UPN, display name, id), teams (name or id), channels (name or
id within a team) and chats (id, topic, or a member's 1:1 chat). The context store answers
first; Graph second. A name that matches several objects is an error listing the candidates,
never a silent pick. Display names are cached as the list of everyone with that name (kinds
``user_name``, ``team_name``, ``channel_name``), so an ambiguous name is reported from the
store as well as a unique one is answered from it. Untrusted names reach Graph only as escaped OData literals or encoded
path segments.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the protocol is for type checkers
    from integration.store.base import Store

import re
from urllib.parse import quote

from integration.engine.errors import AmbiguousError, NotFound
from integration.engine.untrusted import quote as quoted  # how a message shows a user's value
from .client import Client, items_of, need_id, odata_literal, seg

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
USER_SELECT = "id,displayName,mail,userPrincipalName,userType"
# A name that matched no one is remembered briefly, so a fan-out (or a retried playbook) that
# names a departed user does not look them up again for every message; short, because the
# user may be created or fixed in the directory any moment.
MISS_TTL = 60.0


def is_guid(value: str) -> bool:
    return bool(GUID_RE.match(value.strip()))


def is_thread_id(value: str) -> bool:
    return value.strip().startswith("19:")


def user_view(u: dict) -> dict:
    return {k: u.get(k) for k in ("id", "displayName", "mail", "userPrincipalName", "userType")}


def is_guest(u: dict) -> bool:
    """A guest of the tenant (userType Guest; an older cache entry without userType still shows
    it in the UPN: name_domain#EXT#@tenant): chats take guests only in the 'guest' role."""
    return (u.get("userType") or "").lower() == "guest" or "#ext#" in (u.get("userPrincipalName") or "").lower()


def _describe_user(u: dict) -> str:
    return f"{u.get('displayName')} <{u.get('mail') or u.get('userPrincipalName')}>"


def _describe_named(x: dict) -> str:
    return x.get("displayName") or "?"


def _is_address(name: str) -> bool:
    """An object id or a mail/UPN: looked up as a key, never as a display name."""
    return is_guid(name) or "@" in name


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

    def _named(self, kind: str, key: str, what: str, name: str, describe) -> dict | None:
        """The one object a cached name stands for; AmbiguousError (with every candidate) when
        the store knows several; None when the name is not cached."""
        cands = self.store.get(kind, key)
        if not isinstance(cands, list) or not cands:
            return None
        if len(cands) > 1:
            raise AmbiguousError(what, name, [f"{describe(x)} [{x.get('id')}]" for x in cands])
        self.from_cache.append((kind, key))
        return cands[0]

    def forget_cached(self) -> bool:
        """Drop what this command took from the store (after a 404 on a cached id). True if anything was."""
        had = bool(self.from_cache)
        with self.store.transaction():
            for kind, key in self.from_cache:
                # Both entries a name can have (an object, and the list of everyone with the
                # name), so the retry asks Graph instead of the other stale half.
                base = kind[:-len("_name")] if kind.endswith("_name") else kind
                self.store.delete(base, key)
                self.store.delete(base + "_name", key)
        self.from_cache.clear()
        return had

    # ---- users ----
    def user(self, name: str) -> dict:
        name = name.strip()
        hit = self._cached("user", name)  # ids, mails and UPNs
        if hit:
            return hit
        if self.store.get("user_miss", name) is not None:
            raise _user_not_found(name, recently=True)
        if not _is_address(name):
            hit = self._named("user_name", name, "user", name, _describe_user)
            if hit:
                return hit
        user = None
        if _is_address(name):
            try:
                user = self.client.get(f"/users/{seg(name)}", params={"$select": USER_SELECT})
                need_id(user, f"Graph GET /users/{name}")
            except NotFound:
                user = None
            if user is None and "@" in name:
                found = self._user_filter(f"mail eq {odata_literal(name)}")
                user = self._one("user", name, found, lambda u: f"{u.get('displayName')} <{u.get('mail')}>")
        else:
            found = [user_view(u) for u in self._user_filter(f"displayName eq {odata_literal(name)}")]
            if found:  # namesakes too: the next lookup of this name is answered by the store
                self.store.put("user_name", name, found)
            user = self._one("user", name, found, _describe_user)
        if user is None:
            self.store.put("user_miss", name, True, ttl=MISS_TTL)
            raise _user_not_found(name)
        user = user_view(user)
        with self.store.transaction():
            if _is_address(name):
                self.store.put("user", name, user)
            self.store.put("user", user["id"], user)
        return user

    def _user_filter(self, flt: str) -> list[dict]:
        found = items_of(self.client.get("/users", params={"$filter": flt, "$select": USER_SELECT, "$top": 10}),
                         "Graph GET /users")
        for u in found:
            need_id(u, "Graph GET /users")
        return found

    @staticmethod
    def _one(what: str, name: str, found: list[dict], describe) -> dict | None:
        if len(found) > 1:
            raise AmbiguousError(what, name, [f"{describe(x)} [{x.get('id')}]" for x in found])
        return found[0] if found else None

    def me(self) -> dict:
        hit = self._cached("user", "@me")
        if hit:
            return hit
        me = self.client.get("/me", params={"$select": USER_SELECT})
        need_id(me, "Graph GET /me")
        me = user_view(me)
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
            team = {"id": need_id(t, f"Graph GET /teams/{name}"), "displayName": t.get("displayName")}
        else:
            hit = self._named("team_name", name, "team", name, _describe_named)
            if hit:
                return hit
            found = items_of(self.client.get("/teams", params={"$filter": f"displayName eq {odata_literal(name)}"}),
                             "Graph GET /teams")
            found = [t for t in found if (t.get("displayName") or "").casefold() == name.casefold()] or found
            found = [{"id": need_id(t, "Graph GET /teams"), "displayName": t.get("displayName")} for t in found]
            if found:
                self.store.put("team_name", name, found)
            team = self._one("team", name, found, _describe_named)
            if team is None:
                raise NotFound(f"team {quoted(name)} not found", hint="check the name with `msteams team-list`, or pass the team id")
        self.store.put("team", team["id"], team)
        return team

    def channel(self, team_id: str, name: str) -> dict:
        name = name.strip()
        key = f"{team_id}/{name}"
        hit = self._cached("channel", key)
        if hit:
            return hit
        if is_thread_id(name):
            c = self.client.get(f"/teams/{seg(team_id)}/channels/{seg(name)}")
            chan = channel_view(c)
            self.store.put("channel", key, chan)
            return chan
        hit = self._named("channel_name", key, "channel", name, _describe_named)
        if hit:
            return hit
        views = [channel_view(c) for c in self.client.paged(f"/teams/{seg(team_id)}/channels").items]
        remember_channels(self.store, team_id, views)  # the whole listing: every name of the team
        found = [c for c in views if (c.get("displayName") or "").strip().casefold() == name.casefold()]
        chan = self._one("channel", name, found, _describe_named)
        if chan is None:
            raise NotFound(f"channel {quoted(name)} not found in the team",
                           hint="list them with `msteams channel-list team=...`")
        return chan

    # ---- chats ----
    def chat_by_topic(self, topic: str) -> dict | None:
        hit = self._cached("chat_topic", topic)
        if hit:
            return hit
        found = items_of(self.client.get("/me/chats", params={"$filter": f"topic eq {odata_literal(topic)}",
                                                              "$top": 50}), "Graph GET /me/chats")
        found = [c for c in found if (c.get("topic") or "") == topic] or found
        chat = self._one("chat", topic, found, lambda c: f"{c.get('topic')} ({c.get('chatType')})")
        if chat:
            chat = {"id": need_id(chat, "Graph GET /me/chats"), "topic": chat.get("topic"), "chatType": chat.get("chatType")}
            self.store.put("chat_topic", topic, chat)
        return chat

    def remember_chat(self, chat: dict, *, one_on_one_with: str | None = None) -> None:
        view = {"id": need_id(chat, "the chat"), "topic": chat.get("topic"), "chatType": chat.get("chatType")}
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
            ids = {m.get("userId") for m in c.get("members") or [] if isinstance(m, dict)}
            if c.get("chatType") == "oneOnOne" and user["id"] in ids and c.get("id"):
                view = {"id": c["id"], "topic": c.get("topic"), "chatType": "oneOnOne"}
                self.store.put("chat", user["id"], view)
                return view
        return None

    def one_on_one_chat(self, me: dict, user: dict, bind_base: str) -> dict:
        """The 1:1 chat between the signed-in account and ``user`` (Graph's get-or-create)."""
        hit = self._cached("chat", user["id"])
        if hit:
            return hit
        chat = self.client.create("/chats", chat_body("oneOnOne", [me["id"], user["id"]], bind_base,
                                                      guests={u["id"] for u in (me, user) if is_guest(u)}))
        self.remember_chat(chat, one_on_one_with=user["id"])
        return {"id": chat["id"], "topic": chat.get("topic"), "chatType": chat.get("chatType")}

    # ---- many users at once ----
    def prefetch_users(self, names: list[str]) -> int:
        """Look up the users not yet cached through `$batch` (20 a request) and cache them, so a
        fan-out to many recipients does not pay one lookup request each. Names that match no
        one or several people are left for `user()` to report. Returns how many were cached."""
        todo = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
        todo = [n for n in todo if self.store.get("user", n) is None and self.store.get("user_miss", n) is None
                and (_is_address(n) or self.store.get("user_name", n) is None)]
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
        entries, named, missed, resolved = [], [], [], 0
        # Several packs of 20 at once: lookups are the serial prelude of every cold fan-out.
        from integration.delivery.fanout import fan_out
        from .client import BATCH_MAX

        packs = [reqs[i:i + BATCH_MAX] for i in range(0, len(reqs), BATCH_MAX)]
        replies = [r for o in fan_out(packs, self.client.batch, workers=4) if o.ok for r in o.value]
        for r in replies:
            if r.get("status") == 404 or (r.get("status") == 200 and isinstance(r.get("body"), dict)
                                          and r["body"].get("value") == [] and "@" not in todo[int(r["id"])]):
                missed.append((todo[int(r["id"])], True))  # no one: a mail may still match by $filter in user()
                continue
            if r.get("status") != 200 or not isinstance(r.get("body"), dict):
                continue
            body = r["body"]
            found = body.get("value") if "value" in body else [body]
            if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict) and found[0].get("id"):
                user = user_view(found[0])
                name = todo[int(r["id"])]
                resolved += 1
                entries.append((user["id"], user))
                if _is_address(name):
                    entries.append((name, user))
                else:
                    named.append((name, [user]))
        with self.store.transaction():
            self.store.put_many("user", entries)
            self.store.put_many("user_name", named)
            self.store.put_many("user_miss", [m for m in missed if not _is_address(m[0]) or is_guid(m[0])], ttl=MISS_TTL)
        return resolved


def _user_not_found(name: str, recently: bool = False) -> NotFound:
    hint = "use the user's mail, UPN or object id"
    if recently:
        hint += f"; this name matched no one less than {MISS_TTL:.0f} s ago (`msteams cache-reset` to look again now)"
    return NotFound(f"user {quoted(name)} not found", hint=hint)


class Prefetch:
    """`prefetch_users` in chunks on a thread of its own, ahead of a fan-out that goes through
    the names in the same order: the first sends start after one chunk's lookups instead of
    after the whole list's. A worker calls `wait(name)` before looking its name up."""

    CHUNK = 80  # four `$batch` requests, sent together

    def __init__(self, resolver: "Resolver", names: list[str]):
        import threading

        todo = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
        self._chunks = [todo[i:i + self.CHUNK] for i in range(0, len(todo), self.CHUNK)]
        self._ready = {n: threading.Event() for n in todo}
        self._resolver = resolver
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for chunk in self._chunks:
            try:
                self._resolver.prefetch_users(chunk)
            except Exception:  # noqa: BLE001 - a failed prefetch only costs the workers their own lookups
                pass
            finally:
                for n in chunk:
                    self._ready[n].set()

    def wait(self, name: str, timeout: float = 120.0) -> None:
        ev = self._ready.get((name or "").strip())
        if ev is not None:
            ev.wait(timeout)

    def close(self) -> None:
        self._thread.join()


def channel_view(c: dict) -> dict:
    return {"id": need_id(c, "Graph's channel"), "displayName": c.get("displayName"),
            "membershipType": c.get("membershipType")}


def remember_channels(store: Store, team_id: str, views: list[dict]) -> None:
    """Cache a team's complete channel listing: by id, and every name with all its channels."""
    by_name: dict[str, list] = {}
    for c in views:
        n = (c.get("displayName") or "").strip()
        if n:
            by_name.setdefault(n.casefold(), []).append(c)
    with store.transaction():
        store.put_many("channel", [(f"{team_id}/{c['id']}", c) for c in views])
        store.put_many("channel_name", [(f"{team_id}/{n}", cs) for n, cs in by_name.items()])


def member_body(user_id: str, bind_base: str, roles: list | None = None) -> dict:
    return {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": roles if roles is not None else ["owner"],
            "user@odata.bind": f"{bind_base.rstrip('/')}/users('{user_id}')"}


def chat_body(chat_type: str, user_ids: list[str], bind_base: str, topic: str | None = None,
              guests: set | frozenset = frozenset()) -> dict:
    """A new chat's body: every member an owner, but guests (ids in ``guests``) in the 'guest'
    role, the only one Graph gives a guest in a chat."""
    body = {"chatType": chat_type,
            "members": [member_body(u, bind_base, ["guest"] if u in guests else ["owner"]) for u in user_ids]}
    if topic:
        body["topic"] = topic
    return body
