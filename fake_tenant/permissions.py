"""Which permission a Graph call needs, and the 403 Graph answers when the token lacks it.

The table is ``permission_map.json`` (Microsoft's published permission metadata, keyed by
method and a lowercase path with ``{id}`` for every key segment). A few entries are tightened
where Microsoft's documentation is stricter than the metadata (see ``OVERRIDES``). App tokens
are checked against the ``application`` list via their ``roles``; delegated tokens against
the ``delegated`` list via ``scp``. A route whose ``permission_key`` is ``"none"`` (``$batch``)
only needs a valid token: each batch item is checked on its own.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

from .core import Claims, GraphError, Route

MAP_PATH = os.path.join(os.path.dirname(__file__), "permission_map.json")
NO_PERMISSION = "none"

# Microsoft's docs (not the metadata) say app-only message sends are for migration only.
_MIGRATE_ONLY = ["Teamwork.Migrate.All"]
OVERRIDES: dict[tuple[str, str], dict] = {
    ("POST", "/chats/{id}/messages"): {"application": _MIGRATE_ONLY},
    ("POST", "/teams/{id}/channels/{id}/messages"): {"application": _MIGRATE_ONLY},
    ("POST", "/teams/{id}/channels/{id}/messages/{id}/replies"): {"application": _MIGRATE_ONLY},
}

@lru_cache(maxsize=1)
def load_map() -> dict[tuple[str, str], dict]:
    with open(MAP_PATH, encoding="utf-8") as f:
        data = json.load(f)
    table: dict[tuple[str, str], dict] = {}
    for e in data["entries"]:
        table[(e["method"].upper(), e["path"])] = {"delegated": list(e["delegated"]),
                                                   "application": list(e["application"])}
    for k, v in OVERRIDES.items():
        if k in table:
            table[k] = dict(table[k], **v)
    return table


def path_key(method: str, path: str) -> str | None:
    """The map key for a concrete Graph path, e.g. ``/Chats/19:abc@thread.v2/messages`` ->
    ``/chats/{id}/messages``: literal segments must match (case-insensitively) and ``{id}``
    matches any one segment; the key with the most literal matches wins."""
    segs = [s.lower() for s in path.split("?", 1)[0].strip("/").split("/") if s]
    best, best_score = None, -1
    for (m, key) in load_map():
        if m != method:
            continue
        ksegs = key.strip("/").split("/")
        if len(ksegs) != len(segs):
            continue
        score = 0
        for k, s in zip(ksegs, segs):
            if k == "{id}":
                continue
            if k != s:
                break
            score += 1
        else:
            if score > best_score:
                best, best_score = key, score
    return best


def required_permissions(method: str, path: str) -> dict:
    """``{"delegated": [...], "application": [...]}`` for a method and a path (concrete or a
    map key). Raises KeyError when the map does not know the call."""
    method = method.upper()
    table = load_map()
    key = path if (method, path) in table else path_key(method, path)
    if key is not None:
        entry = table[(method, key)]
        return {"delegated": list(entry["delegated"]), "application": list(entry["application"])}
    raise KeyError(f"no permission entry for {method} {path}")


def check_routes(routes: list[Route]) -> None:
    """Refuse to start when a route needs a permission the map does not know."""
    table = load_map()
    missing = [f"{r.method} {r.pattern} (key {r.permission_key})" for r in routes
               if r.permission_key != NO_PERMISSION and (r.method, r.permission_key) not in table]
    if missing:
        raise RuntimeError("Graph routes without an entry in permission_map.json: " + "; ".join(missing))


def check(claims: Claims, route: Route) -> None:
    """Raise Graph's 403 when the token does not carry a permission the call accepts."""
    if route.permission_key == NO_PERMISSION:
        return
    entry = load_map()[(route.method, route.permission_key)]
    if claims.kind == "app":
        allowed = entry["application"]
        have = claims.roles
        if set(allowed) & have:
            return
        if allowed:
            wanted = allowed
            msg = "Missing role permissions on the request. API requires one of '{}'. Roles on the request '{}'."
        else:
            # No application permission exists: say what would work (a delegated token).
            wanted = entry["delegated"]
            msg = ("Application permissions are not supported for this API; it needs a delegated token. "
                   "API requires one of '{}'. Roles on the request '{}'.")
    else:
        allowed = entry["delegated"]
        have = claims.scopes
        if set(allowed) & have:
            return
        if allowed:
            wanted = allowed
            msg = "Missing scope permissions on the request. API requires one of '{}'. Scopes on the request '{}'."
        else:
            wanted = entry["application"]
            msg = ("Delegated permissions are not supported for this API; it needs an application token. "
                   "API requires one of '{}'. Scopes on the request '{}'.")
    raise GraphError(403, "Forbidden", msg.format(", ".join(wanted), ", ".join(sorted(have))))
