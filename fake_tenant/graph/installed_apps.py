"""Apps installed for a user (personal scope) and the chat between the user and an app:
``/users/{id}/teamwork/installedApps`` (``$expand`` of ``teamsApp`` and ``teamsAppDefinition``,
the latter also as ``teamsAppDefinition($expand=bot)``; ``$filter`` on ``teamsApp/externalId``,
``teamsApp/id``, ``teamsApp/displayName`` and ``teamsAppDefinition/teamsAppId``),
``/users/{id}/teamwork/installedApps/{installation id}`` and its ``/chat``.

What is installed, and the chat, come from ``teams_apps.py``. A delegated caller may read only
their own installations (403 otherwise). An installation that is not there (the app
uninstalled for the user, an id of another user) is 404. The listing is not paged (a user has
few apps).
"""
from __future__ import annotations

import re

from ..core import Context, Request, Response, graph_route
from .. import teams_apps
from .chats import chat_resource
from .common import bad, not_found, require_self_unless_app, user_or_404
from .odata import Schema, compile_filter, qopt
from .paging import base_of, collection

INSTALLATION_SCHEMA = Schema(
    "microsoft.graph.userScopeTeamsAppInstallation",
    props={"id": lambda r: r["id"],
           "teamsapp/id": lambda r: r["_app"]["id"],
           "teamsapp/externalid": lambda r: r["_app"]["externalId"],
           "teamsapp/displayname": lambda r: r["_app"]["displayName"],
           "teamsappdefinition/teamsappid": lambda r: r["_definition"]["teamsAppId"]},
    functions=frozenset(),
    operators=frozenset({"eq", "ne"}),
)

# $expand items: the navigation property, and whether its own bot is expanded with it.
_EXPAND_RE = re.compile(r"^\s*(teamsApp|teamsAppDefinition|chat)\s*(?:\(\s*\$expand\s*=\s*(bot)\s*\)\s*)?$",
                        re.IGNORECASE)


def _expand(value: str | None) -> dict[str, bool]:
    """{"teamsApp" | "teamsAppDefinition" | "chat": bot expanded too} for ``$expand``."""
    if value is None:
        return {}
    out: dict[str, bool] = {}
    for raw in _split(str(value)):
        m = _EXPAND_RE.match(raw)
        if m is None:
            raise bad(f"Could not find a property named '{raw.strip()[:100]}' on type "
                      "'microsoft.graph.userScopeTeamsAppInstallation', or its query options are not supported.")
        name = {"teamsapp": "teamsApp", "teamsappdefinition": "teamsAppDefinition", "chat": "chat"}[m.group(1).lower()]
        if m.group(2) and name != "teamsAppDefinition":
            raise bad(f"Could not find a property named 'bot' on type 'microsoft.graph.{name}'.")
        out[name] = out.get(name, False) or bool(m.group(2))
    return out


def _split(value: str) -> list[str]:
    """Top-level comma-separated items (commas inside parentheses stay)."""
    items, depth, cur = [], 0, ""
    for ch in value:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise bad("Invalid $expand: unbalanced parentheses.")
        cur += ch
    if depth:
        raise bad("Invalid $expand: unbalanced parentheses.")
    items.append(cur)
    return items


def _resource(state, user_id: str, app, expand: dict[str, bool]) -> dict:
    out = {"id": teams_apps.installation_id(state, user_id, app)}
    if "teamsApp" in expand:
        out["teamsApp"] = teams_apps.teams_app(state, app)
    if "teamsAppDefinition" in expand:
        out["teamsAppDefinition"] = teams_apps.app_definition(state, app, with_bot=expand["teamsAppDefinition"])
    if "chat" in expand:
        out["chat"] = chat_resource(state, teams_apps.personal_chat(state, app.app_id, user_id))
    return out


def _context(req: Request, ctx: Context, user_id: str) -> str:
    return f"{base_of(req, ctx)}/$metadata#users('{user_id}')/teamwork/installedApps"


def _installation(ctx: Context, req: Request):
    """(user, app) of the installation named in the path; 404 when the user has no such one."""
    user = user_or_404(ctx.state, req.params["user_id"])
    app = teams_apps.installation(ctx.state, user["id"], req.params["installation_id"])
    if app is None:
        raise not_found(f"App installation '{req.params['installation_id'][:200]}' was not found for the user.")
    return user, app


@graph_route("GET", "/users/{user_id}/teamwork/installedApps")
def list_user_installed_apps(ctx: Context, req: Request) -> Response:
    require_self_unless_app(ctx.state, req.token, req.params["user_id"],
                            "A delegated caller can list only their own installed apps.")
    expand = _expand(qopt(req.query, "$expand"))
    pred = compile_filter(qopt(req.query, "$filter"), INSTALLATION_SCHEMA)
    with ctx.state.lock:
        user = user_or_404(ctx.state, req.params["user_id"])
        rows = []
        for app in teams_apps.installed_for(ctx.state, user["id"]):
            row = _resource(ctx.state, user["id"], app, expand)
            row["_app"], row["_definition"] = teams_apps.teams_app(ctx.state, app), teams_apps.app_definition(ctx.state, app)
            rows.append(row)
    if pred is not None:
        rows = [r for r in rows if pred(r)]
    for r in rows:
        r.pop("_app")
        r.pop("_definition")
    return Response(200, collection(rows, _context(req, ctx, user["id"]), None, **{"@odata.count": len(rows)}))


@graph_route("GET", "/users/{user_id}/teamwork/installedApps/{installation_id}")
def get_user_installed_app(ctx: Context, req: Request) -> Response:
    require_self_unless_app(ctx.state, req.token, req.params["user_id"],
                            "A delegated caller can read only their own installed apps.")
    expand = _expand(qopt(req.query, "$expand"))
    with ctx.state.lock:
        user, app = _installation(ctx, req)
        out = {"@odata.context": _context(req, ctx, user["id"]) + "/$entity"}
        out.update(_resource(ctx.state, user["id"], app, expand))
    return Response(200, out)


@graph_route("GET", "/users/{user_id}/teamwork/installedApps/{installation_id}/chat")
def get_chat_with_app(ctx: Context, req: Request) -> Response:
    require_self_unless_app(ctx.state, req.token, req.params["user_id"],
                            "A delegated caller can read only their own chats with apps.")
    with ctx.state.lock:
        user, app = _installation(ctx, req)
        chat = teams_apps.personal_chat(ctx.state, app.app_id, user["id"])
        out = {"@odata.context": f"{base_of(req, ctx)}/$metadata#chats/$entity"}
        out.update(chat_resource(ctx.state, chat, req.token))
    return Response(200, out)
