"""Users: ``/users`` (``$filter``, ``$select``, ``$top``, ``$orderby``, ``$search``, paging),
``/users/{id | userPrincipalName}`` and ``/me``."""
from __future__ import annotations

import re
import weakref

from ..core import Context, GraphError, Request, Response, graph_route
from .common import bad, require_delegated, user_or_404
from .odata import Schema, compile_filter, parse_orderby, parse_select, parse_top, qopt, apply_select
from .paging import base_of, collection, paginate

DEFAULT_PROPS = ["businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                 "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"]
# Properties a $select may name; the ones the tenant does not hold come back null (as in Graph
# for unset properties), except these fixed values.
EXTRA_PROPS = {"accountEnabled": True, "userType": "Member", "department": None, "companyName": None,
               "employeeId": None, "otherMails": [], "proxyAddresses": [], "usageLocation": None,
               "createdDateTime": None, "onPremisesSamAccountName": None, "mailNickname": None,
               "city": None, "country": None, "state": None, "streetAddress": None, "postalCode": None,
               "faxNumber": None, "employeeType": None, "imAddresses": [], "ageGroup": None,
               "creationType": None, "externalUserState": None}
KNOWN_PROPS = DEFAULT_PROPS + list(EXTRA_PROPS)

USER_SCHEMA = Schema(
    "microsoft.graph.user",
    props={
        "id": lambda u: u.get("id"),
        "mail": lambda u: u.get("mail"),
        "userprincipalname": lambda u: u.get("userPrincipalName"),
        "displayname": lambda u: u.get("displayName"),
        "givenname": lambda u: u.get("givenName"),
        "surname": lambda u: u.get("surname"),
        "jobtitle": lambda u: u.get("jobTitle"),
        "accountenabled": lambda u: u.get("accountEnabled", True),
        "usertype": lambda u: u.get("userType", "Member"),
        "mailnickname": lambda u: (u.get("mailNickname") or (u.get("userPrincipalName") or "").split("@")[0]),
    },
    collections={
        "othermails": (lambda u: u.get("otherMails") or [], None),
        "proxyaddresses": (lambda u: u.get("proxyAddresses") or ["SMTP:" + (u.get("mail") or "")], None),
        "businessphones": (lambda u: u.get("businessPhones") or [], None),
    },
    functions=frozenset({"startswith", "endswith"}),
    operators=frozenset({"eq", "ne", "in", "not", "ge", "le"}),
)


def full_user(u: dict) -> dict:
    out = {k: u.get(k) for k in DEFAULT_PROPS}
    for k, v in EXTRA_PROPS.items():
        out[k] = u.get(k, v)
    if out.get("mailNickname") is None:
        out["mailNickname"] = (u.get("userPrincipalName") or "").split("@")[0]
    return out


def default_user(u: dict) -> dict:
    return {k: u.get(k) for k in DEFAULT_PROPS}


def render_user(u: dict, select: list[str] | None) -> dict:
    if select is None:
        return default_user(u)
    return apply_select(full_user(u), select)


def _context(base: str, select: list[str] | None, entity: bool = False) -> str:
    sel = f"({','.join(select)})" if select else ""
    return f"{base}/$metadata#users{sel}" + ("/$entity" if entity else "")


_SEARCH_RE = re.compile(r'^\s*"(?P<prop>\w+):(?P<val>[^"]*)"\s*$')


def _search_predicate(req: Request):
    search = qopt(req.query, "$search")
    if search is None:
        return None
    if (req.headers or {}).get("consistencylevel", "").lower() != "eventual":
        raise bad("Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
                  "Request_UnsupportedQuery")
    clauses = re.split(r"\s+(?:OR|AND)\s+", search.strip())
    joiner = any if re.search(r"\s+OR\s+", search) else all
    preds = []
    for c in clauses:
        m = _SEARCH_RE.match(c)
        if not m or m.group("prop").lower() not in ("displayname", "mail", "userprincipalname", "givenname", "surname"):
            raise bad(f"Invalid $search clause '{c}'. Use \"property:value\".", "Request_UnsupportedQuery")
        prop = {"displayname": "displayName", "mail": "mail", "userprincipalname": "userPrincipalName",
                "givenname": "givenName", "surname": "surname"}[m.group("prop").lower()]
        val = m.group("val").casefold()
        # Graph's $search tokenizes: a value matches at the start of any word
        preds.append(lambda u, p=prop, v=val: any(w.startswith(v) for w in [(u.get(p) or "").casefold()]
                                                   + re.split(r"[\s.@_\-]+", (u.get(p) or "").casefold())))
    return lambda u: joiner(p(u) for p in preds)


_sorted_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _by_id(state) -> list[dict]:
    """The tenant's users sorted by id (the listing order), cached while the directory is unchanged."""
    hit = _sorted_cache.get(state)
    if hit is not None and hit[0] is state.users and hit[1] == len(state.users):
        return hit[2]
    users = sorted(state.users.values(), key=lambda u: u["id"])
    _sorted_cache[state] = (state.users, len(state.users), users)
    return users


@graph_route("GET", "/users")
def list_users(ctx: Context, req: Request) -> Response:
    if qopt(req.query, "$skip") is not None:
        raise bad("'$skip' is not supported by the service.", "Request_BadRequest")
    pred = compile_filter(qopt(req.query, "$filter"), USER_SCHEMA)
    search = _search_predicate(req)
    select = parse_select(qopt(req.query, "$select"), KNOWN_PROPS, "microsoft.graph.user")
    top = parse_top(qopt(req.query, "$top"), 100, 999)
    order = parse_orderby(qopt(req.query, "$orderby"), {"displayname": ("asc", "desc"),
                                                        "userprincipalname": ("asc", "desc")}, "microsoft.graph.user")
    count = (qopt(req.query, "$count") or "").lower()
    if count not in ("", "true", "false"):
        raise bad(f"Invalid value '{qopt(req.query, '$count')}' for query option '$count'.")
    with ctx.state.lock:
        users = _by_id(ctx.state)
        if pred is not None:
            users = [u for u in users if pred(u)]
        if search is not None:
            users = [u for u in users if search(u)]
        if order is None:
            key = lambda u: u["id"]
            descending = False
        else:
            field = "displayName" if order[0].lower() == "displayname" else "userPrincipalName"
            key = lambda u: ((u.get(field) or "").casefold(), u["id"])
            descending = order[1]
            users = sorted(users, key=key, reverse=descending)
        page, link = paginate(req, ctx, users, key, top, descending)
        page = [dict(u) for u in page]
    extra = {}
    if count == "true":
        if (req.headers or {}).get("consistencylevel", "").lower() != "eventual":
            raise bad("$count is not currently supported without the header 'ConsistencyLevel: eventual'.",
                      "Request_BadRequest")
        extra["@odata.count"] = len(users)
    return Response(200, collection([render_user(u, select) for u in page],
                                    _context(base_of(req, ctx), select), link, **extra))


def _get_user(ctx: Context, req: Request, key: str) -> Response:
    select = parse_select(qopt(req.query, "$select"), KNOWN_PROPS, "microsoft.graph.user")
    with ctx.state.lock:
        u = dict(user_or_404(ctx.state, key))
    body = {"@odata.context": _context(base_of(req, ctx), select, entity=True)}
    body.update(render_user(u, select))
    return Response(200, body)


@graph_route("GET", "/users/{user_id}")
def get_user(ctx: Context, req: Request) -> Response:
    key = req.params["user_id"]
    if not key.strip() or len(key) > 1024:
        raise bad("Invalid object identifier '%s'." % key[:64], "Request_BadRequest")
    return _get_user(ctx, req, key)


@graph_route("GET", "/me")
def get_me(ctx: Context, req: Request) -> Response:
    uid = require_delegated(req.token)
    return _get_user(ctx, req, uid)


__all__ = ["list_users", "get_user", "get_me", "render_user", "USER_SCHEMA", "GraphError"]
