"""Helpers shared by the Graph route modules: body validation, caller checks, chat and channel
lookup by id (with the chat member check), memberships, member binding and the
conversationMember / identity shapes. It imports no route module, so every route module can
import it without a cycle."""
from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from ..core import Claims, GraphError, Request
from ..state import Chat, Membership, TenantState
from .paging import collection

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
ALL_HISTORY = "0001-01-01T00:00:00Z"


def is_guid(s: Any) -> bool:
    return isinstance(s, str) and bool(GUID_RE.match(s))


def bad(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(message: str, code: str = "NotFound") -> GraphError:
    return GraphError(404, code, message)


def conflict(message: str, code: str = "Conflict") -> GraphError:
    return GraphError(409, code, message)


def forbidden(message: str, code: str = "Forbidden") -> GraphError:
    return GraphError(403, code, message)


def json_object(req: Request) -> dict:
    """The request body as a JSON object; 400 when missing or not an object."""
    body = req.json
    if body is None:
        raise bad("Empty Payload. JSON content expected.")
    if not isinstance(body, dict):
        raise bad("Invalid request payload: a JSON object is expected.")
    return body


def opt_str(body: dict, name: str, *, max_len: int | None = None, allow_null: bool = True) -> str | None:
    if name not in body:
        return None
    v = body[name]
    if v is None and allow_null:
        return None
    if not isinstance(v, str):
        raise bad(f"Invalid value for property '{name}': a string is expected.")
    if max_len is not None and len(v) > max_len:
        raise bad(f"Invalid value for property '{name}': at most {max_len} characters are allowed.")
    return v


def req_str(body: dict, name: str, **kw: Any) -> str:
    v = opt_str(body, name, allow_null=False, **kw) if name in body else None
    if v is None:
        raise bad(f"The property '{name}' is required.")
    return v


def _opt_of(body: dict, name: str, kind: type, what: str) -> Any:
    """``body[name]`` when it is a ``kind``; None when absent or null; 400 naming ``what`` otherwise."""
    if name not in body or body[name] is None:
        return None
    v = body[name]
    if not isinstance(v, kind):
        raise bad(f"Invalid value for property '{name}': {what} is expected.")
    return v


def opt_list(body: dict, name: str) -> list | None:
    return _opt_of(body, name, list, "an array")


def opt_obj(body: dict, name: str) -> dict | None:
    return _opt_of(body, name, dict, "an object")


def parse_iso(value: Any, name: str) -> datetime:
    from .odata import parse_datetime

    dt = parse_datetime(value) if isinstance(value, str) else None
    if dt is None:
        raise bad(f"Invalid value for property '{name}': '{value}' is not an ISO 8601 date and time.")
    return dt


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ---------------------------------------------------------------------------- callers

def caller_user_id(claims: Claims | None) -> str | None:
    if claims is not None and claims.kind == "delegated":
        return claims.user_id
    return None


def is_app(claims: Claims | None) -> bool:
    return claims is not None and claims.kind == "app"


def require_delegated(claims: Claims | None) -> str:
    uid = caller_user_id(claims)
    if not uid:
        raise forbidden("This API is not supported in application-only context: a signed-in user (delegated token) is required.")
    return uid


def require_self_unless_app(state: TenantState, claims: Claims | None, key: str, message: str) -> None:
    """A delegated caller may name only themselves as the user ``key`` (403 ``message`` otherwise);
    an app may name anyone its permissions allow."""
    uid = caller_user_id(claims)
    if uid:
        with state.lock:
            u = user_or_404(state, key)
        if u["id"] != uid:
            raise forbidden(message)


def user_or_404(state: TenantState, key: str) -> dict:
    u = state.user(key) if isinstance(key, str) and key else None
    if u is None:
        raise not_found(f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
                        "Request_ResourceNotFound")
    return u


# ---------------------------------------------------------------------------- containers / members

def find_by_id(items: dict[str, Any], key: str, pattern: re.Pattern, what: str, where: str = "") -> Any:
    """The chat or channel ``items[key]``, its id matched case-insensitively as Graph does: 400
    unless ``key`` has the form of ``pattern``, 404 ``"<what> '<key>' was not found<where>."``."""
    if not pattern.match(key or ""):
        raise bad(f"Invalid {what.lower()} id '{(key or '')[:200]}'.")
    found = items.get(key)
    if found is None:
        low = key.lower()
        found = next((v for k, v in items.items() if k.lower() == low), None)
    if found is None:
        raise not_found(f"{what} '{key[:200]}' was not found{where}.")
    return found


def find_membership(members: list[Membership], user_id: str | None) -> Membership | None:
    """The membership of ``user_id`` among ``members``; None for no user (an app caller)."""
    if not user_id:
        return None
    return next((m for m in members if m.user_id == user_id), None)


# Chat lookup and the member check live here, not in chats.py, because messages.py needs them
# too and chats.py imports messages.py (for a chat's lastMessagePreview): kept in chats.py, the
# two modules would import each other.
CHAT_ID_RE = re.compile(r"^19:[^\s/]+@(thread\.v2|unq\.gbl\.spaces|thread\.skype|thread\.tacv2)$", re.IGNORECASE)


def chat_or_error(state: TenantState, chat_id: str) -> Chat:
    """The chat with this id: 400 for an id not of a chat's form, 404 when there is none."""
    return find_by_id(state.chats, chat_id, CHAT_ID_RE, "Chat")


def chat_membership(chat: Chat, user_id: str | None) -> Membership | None:
    return find_membership(chat.members, user_id)


def require_chat_member(chat: Chat, claims: Claims | None) -> Membership | None:
    """A delegated caller must be a member of the chat (403 otherwise); None for app callers."""
    uid = caller_user_id(claims)
    if not uid:
        return None
    m = chat_membership(chat, uid)
    if m is None:
        raise forbidden("The caller is not a member of the chat.")
    return m


def user_identity(state: TenantState, user_id: str) -> dict:
    u = state.users.get(user_id) or {}
    return {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": user_id,
            "displayName": u.get("displayName"), "userIdentityType": "aadUser", "tenantId": state.tenant_id}


def member_resource(state: TenantState, m: Membership) -> dict:
    u = state.users.get(m.user_id) or {}
    return {
        "@odata.type": MEMBER_TYPE,
        "id": m.id,
        "roles": list(m.roles),
        "displayName": u.get("displayName"),
        "visibleHistoryStartDateTime": m.visible_history_start or ALL_HISTORY,
        "userId": m.user_id,
        "email": u.get("mail"),
        "tenantId": state.tenant_id,
    }


def membership_or_404(members: list[Membership], membership_id: str, missing: str) -> Membership:
    """The membership with id ``membership_id``; 404 with the message ``missing`` when there is none."""
    m = next((x for x in members if x.id == membership_id), None)
    if m is None:
        raise not_found(missing)
    return m


def member_entity(state: TenantState, m: Membership, context: str) -> dict:
    """One conversationMember answer: its ``@odata.context`` first, then the member."""
    return {"@odata.context": context, **member_resource(state, m)}


def member_collection(state: TenantState, members: list[Membership], pred: Callable | None, context: str) -> dict:
    """``members`` as a conversationMember collection, kept by ``pred`` (a compiled $filter) when
    given, with ``@odata.count`` and no nextLink: Graph does not page chat or channel members."""
    value = [member_resource(state, m) for m in members]
    if pred is not None:
        value = [m for m in value if pred(m)]
    return collection(value, context, None, **{"@odata.count": len(value)})


_BIND_RE = re.compile(r"^/(?:v1\.0|beta)/users(?:\('(?P<q>(?:[^']|'')+)'\)|\((?P<u>[^)']+)\)|/(?P<s>[^/]+))/?$", re.IGNORECASE)


def parse_user_bind(value: Any, base_url: str, prop: str = "user@odata.bind") -> str:
    """The id or UPN inside ``https://graph.microsoft.com/v1.0/users('<id or upn>')``."""
    if not isinstance(value, str) or not value:
        raise bad(f"Invalid value for property '{prop}': a URL such as https://graph.microsoft.com/v1.0/users('<id>') is expected.")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    hosts = {"graph.microsoft.com"}
    if base_url:
        try:
            hosts.add(urlsplit(base_url).netloc.lower())
        except ValueError:
            pass
    if parts is None or parts.scheme.lower() != "https" or parts.netloc.lower() not in hosts or parts.query or parts.fragment:
        raise bad(f"Invalid value for property '{prop}': '{value}' is not a Microsoft Graph user URL.")
    m = _BIND_RE.match(unquote(parts.path))
    if not m:
        raise bad(f"Invalid value for property '{prop}': '{value}' is not a Microsoft Graph user URL.")
    key = m.group("q")
    if key is not None:
        key = key.replace("''", "'")
    else:
        key = m.group("u") or m.group("s")
    return key.strip()


def parse_member(state: TenantState, item: Any, base_url: str, *, allowed_roles=("owner", "guest")) -> tuple[dict, list]:
    """Validate one conversationMember body; (user, roles). Unknown users are a 404 as in Graph."""
    if not isinstance(item, dict):
        raise bad("Invalid member: a conversationMember object is expected.")
    otype = item.get("@odata.type")
    if not isinstance(otype, str) or otype.lower() != MEMBER_TYPE.lower():
        raise bad(f"The provided '{otype}' for 'odata.type' is not valid for this operation.")
    roles = item.get("roles", [])
    if roles is None:
        roles = []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise bad("Invalid value for property 'roles': an array of strings is expected.")
    norm = []
    for r in roles:
        rl = r.strip().lower()
        if rl == "member":  # Graph treats "member" as no special role
            continue
        if rl not in allowed_roles:
            raise bad(f"Invalid value '{r}' for property 'roles'.")
        if rl not in norm:
            norm.append(rl)
    if "user@odata.bind" in item:
        key = parse_user_bind(item["user@odata.bind"], base_url)
    elif "userId" in item:
        key = item["userId"]
        if not isinstance(key, str) or not key:
            raise bad("Invalid value for property 'userId': a string is expected.")
    else:
        raise bad("The member must name its user with 'user@odata.bind'.")
    user = state.user(key)
    if user is None:
        if "@" in key:
            raise not_found(f"Failed to find users with user principal name '{key}'.")
        if not is_guid(key):
            raise bad(f"Invalid user id '{key}': a GUID or user principal name is expected.")
        raise not_found(f"User '{key}' was not found in the tenant.")
    return user, norm


def parse_members(state: TenantState, items: list, base_url: str,
                  check: Callable[[dict], None] | None = None) -> list[tuple[dict, list]]:
    """Each conversationMember body of ``items`` as (user, roles), see :func:`parse_member`; a
    user listed twice is a 400. ``check`` vets each user as it is read, so that the first bad
    item decides the error."""
    members: list[tuple[dict, list]] = []
    seen: set[str] = set()
    for item in items:
        user, roles = parse_member(state, item, base_url)
        if user["id"] in seen:
            raise bad(f"The member '{user['userPrincipalName']}' is listed more than once.")
        seen.add(user["id"])
        if check is not None:
            check(user)
        members.append((user, roles))
    return members


def member_id(*parts: str) -> str:
    """A conversationMember id: opaque, URL-safe, stable for the same container and user."""
    import base64
    import hashlib

    raw = "1#" + "#".join(parts)
    digest = hashlib.sha1(raw.encode()).hexdigest()[:24]
    return "MCMjMSMj" + base64.urlsafe_b64encode(digest.encode()).decode().rstrip("=")


# ---------------------------------------------------------------------------- message ids

_id_lock = threading.Lock()
_last_id = 0


def new_message_id() -> int:
    """Epoch milliseconds, strictly increasing across the process (Graph's message ids)."""
    global _last_id
    with _id_lock:
        now = int(time.time() * 1000)
        _last_id = max(now, _last_id + 1)
        return _last_id


def ms_to_iso(ms: int) -> str:
    return iso(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


def thread_hex() -> str:
    return uuid.uuid4().hex
