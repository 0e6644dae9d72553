"""Groups that are teams, teams, joined teams and team members."""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import quote

from ..core import Context, Request, Response, graph_route, new_guid, utcnow_iso
from ..state import Membership, Team, TenantState
from .common import (bad, caller_user_id, conflict, find_membership, forbidden, is_guid, json_object, member_entity,
                     member_id, member_resource, membership_or_404, not_found, parse_member, parse_members,
                     require_delegated, user_or_404)
from .odata import Schema, apply_select, compile_filter, parse_select, parse_top, qopt
from .paging import base_of, collection, paginate

GROUP_PROPS = ["id", "createdDateTime", "description", "displayName", "groupTypes", "mail", "mailEnabled",
               "mailNickname", "securityEnabled", "visibility", "resourceProvisioningOptions", "classification",
               "deletedDateTime", "expirationDateTime", "renewedDateTime", "proxyAddresses", "securityIdentifier",
               "creationOptions", "isAssignableToRole", "onPremisesSyncEnabled", "preferredDataLocation",
               "preferredLanguage", "theme"]

GROUP_SCHEMA = Schema(
    "microsoft.graph.group",
    props={
        "id": lambda g: g["id"],
        "displayname": lambda g: g["displayName"],
        "description": lambda g: g["description"],
        "mail": lambda g: g["mail"],
        "mailnickname": lambda g: g["mailNickname"],
        "visibility": lambda g: g["visibility"],
        "mailenabled": lambda g: g["mailEnabled"],
        "securityenabled": lambda g: g["securityEnabled"],
    },
    collections={
        "resourceprovisioningoptions": (lambda g: g["resourceProvisioningOptions"], None),
        "grouptypes": (lambda g: g["groupTypes"], None),
        "proxyaddresses": (lambda g: g["proxyAddresses"], None),
    },
    functions=frozenset({"startswith"}),
    operators=frozenset({"eq", "ne", "in", "not", "ge", "le"}),
)

TEAM_LIST_SCHEMA = Schema(
    "microsoft.graph.team",
    props={"id": lambda t: t["id"], "displayname": lambda t: t["displayName"],
           "description": lambda t: t["description"], "visibility": lambda t: t["visibility"]},
    functions=frozenset({"startswith"}),
    operators=frozenset({"eq", "ne", "in", "not"}),
)

MEMBER_SCHEMA = Schema(
    "microsoft.graph.conversationMember",
    props={"displayname": lambda m: m["displayName"], "userid": lambda m: m["userId"],
           "email": lambda m: m["email"], "id": lambda m: m["id"],
           "microsoft.graph.aaduserconversationmember/userid": lambda m: m["userId"],
           "microsoft.graph.aaduserconversationmember/email": lambda m: m["email"]},
    collections={"roles": (lambda m: m["roles"], None)},
    functions=frozenset({"startswith"}),
    operators=frozenset({"eq", "ne", "in", "not"}),
)


def nickname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name) or "team"


def team_created(team: Team) -> str:
    general = next(iter(team.channels.values()), None)
    return general.created if general else utcnow_iso()


def general_channel_id(team: Team) -> str:
    return next(iter(team.channels), "")


def team_web_url(state: TenantState, team: Team) -> str:
    return (f"https://teams.microsoft.com/l/team/{quote(general_channel_id(team), safe='')}/conversations"
            f"?groupId={team.id}&tenantId={state.tenant_id}")


def group_resource(state: TenantState, team: Team) -> dict:
    nick = nickname(team.display_name)
    mail = f"{nick}@{state.domain}"
    return {
        "id": team.id,
        "createdDateTime": team_created(team),
        "description": team.description,
        "displayName": team.display_name,
        "groupTypes": ["Unified"],
        "mail": mail,
        "mailEnabled": True,
        "mailNickname": nick,
        "securityEnabled": False,
        "visibility": team.visibility.capitalize(),
        "resourceProvisioningOptions": ["Team"],
        "classification": None,
        "deletedDateTime": None,
        "expirationDateTime": None,
        "renewedDateTime": team_created(team),
        "proxyAddresses": [f"SMTP:{mail}"],
        "securityIdentifier": None,
        "creationOptions": ["Team"],
        "isAssignableToRole": None,
        "onPremisesSyncEnabled": None,
        "preferredDataLocation": None,
        "preferredLanguage": None,
        "theme": None,
    }


DEFAULT_GROUP_PROPS = GROUP_PROPS


def team_resource(state: TenantState, team: Team) -> dict:
    res = _team_defaults(state, team)
    for k, v in team.settings.items():  # what a create or PATCH set
        res[k] = {**res.get(k, {}), **v}
    return res


def _team_defaults(state: TenantState, team: Team) -> dict:
    owners = sum(1 for m in team.members if "owner" in m.roles)
    guests = sum(1 for m in team.members if "guest" in m.roles)
    return {
        "id": team.id,
        "createdDateTime": team_created(team),
        "displayName": team.display_name,
        "description": team.description,
        "internalId": general_channel_id(team),
        "classification": team.classification,
        "specialization": "none",
        "visibility": team.visibility.lower(),
        "webUrl": team_web_url(state, team),
        "isArchived": team.archived,
        "tenantId": state.tenant_id,
        "isMembershipLimitedToOwners": False,
        "memberSettings": {"allowCreateUpdateChannels": True, "allowDeleteChannels": True,
                           "allowAddRemoveApps": True, "allowCreateUpdateRemoveTabs": True,
                           "allowCreateUpdateRemoveConnectors": True, "allowCreatePrivateChannels": True},
        "guestSettings": {"allowCreateUpdateChannels": False, "allowDeleteChannels": False},
        "messagingSettings": {"allowUserEditMessages": True, "allowUserDeleteMessages": True,
                              "allowOwnerDeleteMessages": True, "allowTeamMentions": True,
                              "allowChannelMentions": True},
        "funSettings": {"allowGiphy": True, "giphyContentRating": "moderate", "allowStickersAndMemes": True,
                        "allowCustomMemes": True},
        "discoverySettings": {"showInTeamsSearchAndSuggestions": team.visibility.lower() == "public"},
        "summary": {"ownersCount": owners, "membersCount": len(team.members) - owners - guests,
                    "guestsCount": guests},
    }


def team_or_error(state: TenantState, team_id: str) -> Team:
    if not is_guid(team_id):
        raise bad(f"Invalid team id '{team_id}': a team id is the GUID of its group.")
    team = state.teams.get(team_id.lower()) or state.teams.get(team_id)
    if team is None:
        raise not_found(f"No team found with Group Id {team_id}")
    return team


def team_membership(team: Team, user_id: str | None) -> Membership | None:
    return find_membership(team.members, user_id)


def require_team_member(team: Team, claims) -> None:
    uid = caller_user_id(claims)
    if uid and team_membership(team, uid) is None:
        raise forbidden("The caller is not a member of the team.")


def require_team_owner(team: Team, claims) -> None:
    uid = caller_user_id(claims)
    if uid:
        m = team_membership(team, uid)
        if m is None or "owner" not in m.roles:
            raise forbidden("Only owners of the team may change its membership.")


def _page_of_every_team(ctx: Context, req: Request, schema: Schema, props: list[str], type_name: str,
                        resource: Callable[[TenantState, Team], dict],
                        plain_groups: bool = False) -> tuple[list, str | None, list | None]:
    """One page of every team as ``resource`` shapes it (a group or a team), in id order, with
    $filter on ``schema``, $select among ``props`` and $top (100 by default, 999 at most); also
    the $select asked for."""
    pred = compile_filter(qopt(req.query, "$filter"), schema)
    select = parse_select(qopt(req.query, "$select"), props, type_name)
    top = parse_top(qopt(req.query, "$top"), 100, 999)
    with ctx.state.lock:
        rows = [resource(ctx.state, t) for t in ctx.state.teams.values()]
        if plain_groups:  # /groups lists the groups without a team too
            rows += [plain_group_resource(ctx.state, g) for g in ctx.state.groups.values()]
    if pred is not None:
        rows = [r for r in rows if pred(r)]
    rows.sort(key=lambda r: r["id"])
    page, link = paginate(req, ctx, rows, lambda r: r["id"], top)
    return page, link, select


# ------------------------------------------------------------------------------------ groups

@graph_route("GET", "/groups")
def list_groups(ctx: Context, req: Request) -> Response:
    page, link, select = _page_of_every_team(ctx, req, GROUP_SCHEMA, GROUP_PROPS, "microsoft.graph.group",
                                             group_resource, plain_groups=True)
    sel = f"({','.join(select)})" if select else ""
    return Response(200, collection([apply_select(g, select) for g in page],
                                    f"{base_of(req, ctx)}/$metadata#groups{sel}", link))


@graph_route("GET", "/groups/{group_id}")
def get_group(ctx: Context, req: Request) -> Response:
    gid = req.params["group_id"]
    if not is_guid(gid):
        raise bad(f"Invalid object identifier '{gid[:100]}'.", "Request_BadRequest")
    select = parse_select(qopt(req.query, "$select"), GROUP_PROPS, "microsoft.graph.group")
    with ctx.state.lock:
        team = ctx.state.teams.get(gid.lower()) or ctx.state.teams.get(gid)
        plain = ctx.state.groups.get(gid) or ctx.state.groups.get(gid.lower())
        if team is None and plain is None:
            raise not_found(f"Resource '{gid}' does not exist or one of its queried reference-property objects are not present.",
                            "Request_ResourceNotFound")
        g = group_resource(ctx.state, team) if team is not None else plain_group_resource(ctx.state, plain)
    body = {"@odata.context": f"{base_of(req, ctx)}/$metadata#groups/$entity"}
    body.update(apply_select(g, select))
    return Response(200, body)


# ------------------------------------------------------------------------------------ teams

TEAM_LIST_PROPS = ["id", "displayName", "description", "visibility", "createdDateTime", "webUrl", "isArchived",
                   "tenantId", "internalId", "classification", "specialization"]


@graph_route("GET", "/teams")
def list_teams(ctx: Context, req: Request) -> Response:
    page, link, select = _page_of_every_team(ctx, req, TEAM_LIST_SCHEMA, TEAM_LIST_PROPS, "microsoft.graph.team",
                                             team_resource)
    fields = select or ["id", "displayName", "description", "visibility", "isArchived", "tenantId"]
    return Response(200, collection([apply_select(t, fields) for t in page],
                                    f"{base_of(req, ctx)}/$metadata#teams", link))


@graph_route("GET", "/teams/{team_id}")
def get_team(ctx: Context, req: Request) -> Response:
    select = None
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        res = team_resource(ctx.state, team)
    sel_raw = qopt(req.query, "$select")
    if sel_raw is not None:
        select = parse_select(sel_raw, list(res), "microsoft.graph.team")
    body = {"@odata.context": f"{base_of(req, ctx)}/$metadata#teams/$entity"}
    body.update(apply_select(res, select))
    return Response(200, body)


def _joined(ctx: Context, req: Request, user_id: str) -> Response:
    with ctx.state.lock:
        user_or_404(ctx.state, user_id)
        uid = ctx.state.user(user_id)["id"]
        value = [{"id": t.id, "displayName": t.display_name, "description": t.description,
                  "isArchived": t.archived, "tenantId": ctx.state.tenant_id}
                 for t in ctx.state.teams.values() if team_membership(t, uid) is not None]
    return Response(200, collection(value, f"{base_of(req, ctx)}/$metadata#teams", None, **{"@odata.count": len(value)}))


@graph_route("GET", "/me/joinedTeams")
def me_joined_teams(ctx: Context, req: Request) -> Response:
    return _joined(ctx, req, require_delegated(req.token))


@graph_route("GET", "/users/{user_id}/joinedTeams")
def user_joined_teams(ctx: Context, req: Request) -> Response:
    return _joined(ctx, req, req.params["user_id"])


# ------------------------------------------------------------------------------------ team members

def _members_context(req: Request, ctx: Context, team_id: str, entity: bool = False) -> str:
    return f"{base_of(req, ctx)}/$metadata#teams('{team_id}')/members" + ("/$entity" if entity else "")


def _team_member(team: Team, membership_id: str) -> Membership:
    return membership_or_404(team.members, membership_id, f"Member '{membership_id}' was not found in the team.")


@graph_route("GET", "/teams/{team_id}/members")
def list_team_members(ctx: Context, req: Request) -> Response:
    pred = compile_filter(qopt(req.query, "$filter"), MEMBER_SCHEMA)
    top = parse_top(qopt(req.query, "$top"), 999, 999)
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        if team.visibility.lower() != "public":
            require_team_member(team, req.token)
        value = [member_resource(ctx.state, m) for m in team.members]
    if pred is not None:
        value = [m for m in value if pred(m)]
    if qopt(req.query, "$top"):  # keyset pages need the listing sorted by their key
        value.sort(key=lambda m: m["id"])
    page, link = paginate(req, ctx, value, lambda m: m["id"], top) if qopt(req.query, "$top") else (value, None)
    return Response(200, collection(page, _members_context(req, ctx, team.id), link,
                                    **({"@odata.count": len(value)} if link is None else {})))


@graph_route("GET", "/teams/{team_id}/members/{membership_id}")
def get_team_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        if team.visibility.lower() != "public":
            require_team_member(team, req.token)
        m = _team_member(team, req.params["membership_id"])
        return Response(200, member_entity(ctx.state, m, _members_context(req, ctx, team.id, True)))


@graph_route("POST", "/teams/{team_id}/members")
def add_team_member(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_owner(team, req.token)
        user, roles = parse_member(ctx.state, body, base_of(req, ctx))
        existing = team_membership(team, user["id"])
        if existing is not None:
            # Graph answers an add of an existing member with the membership (roles updated)
            existing.roles = ["owner"] if "owner" in roles else existing.roles if not roles else roles
            m = existing
        else:
            m = Membership(member_id(team.id, user["id"]), user["id"], roles)
            team.members.append(m)
        out = member_entity(ctx.state, m, _members_context(req, ctx, team.id, True))
    return Response(201, out, {"Location": f"{base_of(req, ctx)}/teams/{team.id}/members/{m.id}"})


@graph_route("DELETE", "/teams/{team_id}/members/{membership_id}")
def remove_team_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        m = _team_member(team, req.params["membership_id"])
        if caller_user_id(req.token) != m.user_id:
            require_team_owner(team, req.token)
        if "owner" in m.roles and sum(1 for x in team.members if "owner" in x.roles) <= 1:
            raise bad("The last owner of a team cannot be removed. Add another owner first.")
        team.members.remove(m)
        # leaving a team also leaves its private and shared channels
        for ch in team.channels.values():
            if ch.membership_type == "private":
                ch.members = [x for x in ch.members if x.user_id != m.user_id]
    return Response(204)


# ------------------------------------------------------------------------------------ team lifecycle
#
# Creating, changing, archiving, cloning and deleting teams. Graph creates, archives and clones
# asynchronously: 202 Accepted with the operation in Location (/teams('{id}')/operations('{op}'))
# and, for a new team, the team in Content-Location; the fake tenant has finished by then.

_TEMPLATE_BIND = re.compile(r"/teamsTemplates\('([^']+)'\)$", re.IGNORECASE)
_GROUP_BIND = re.compile(r"/groups\('([^']+)'\)$", re.IGNORECASE)
TEMPLATES = ("standard",)
# The settings a team takes (Microsoft's teamMemberSettings, teamGuestSettings, ...), each
# property with the type of its values.
SETTINGS = {
    "memberSettings": dict.fromkeys(("allowCreateUpdateChannels", "allowDeleteChannels", "allowAddRemoveApps",
                                     "allowCreateUpdateRemoveTabs", "allowCreateUpdateRemoveConnectors",
                                     "allowCreatePrivateChannels"), bool),
    "guestSettings": dict.fromkeys(("allowCreateUpdateChannels", "allowDeleteChannels"), bool),
    "messagingSettings": dict.fromkeys(("allowUserEditMessages", "allowUserDeleteMessages", "allowOwnerDeleteMessages",
                                        "allowTeamMentions", "allowChannelMentions"), bool),
    "funSettings": {"allowGiphy": bool, "giphyContentRating": str, "allowStickersAndMemes": bool,
                    "allowCustomMemes": bool},
    "discoverySettings": {"showInTeamsSearchAndSuggestions": bool},
}
TEAM_PATCH_PROPS = ("displayName", "description", "visibility", "classification", *SETTINGS)
TEAM_CREATE_PROPS = ("template@odata.bind", "group@odata.bind", "members", "firstChannelName", *TEAM_PATCH_PROPS)
CLONABLE_PARTS = ("apps", "tabs", "settings", "channels", "members")


def _unknown_properties(body: dict, allowed, type_name: str) -> None:
    for k in body:
        if k not in allowed:
            raise bad(f"Invalid request: the property '{k}' does not exist on type '{type_name}' or cannot be set here.")


def _settings(body: dict) -> dict:
    """The settings objects of a team body, checked against their types."""
    out = {}
    for name, props in SETTINGS.items():
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if not isinstance(value, dict):
            raise bad(f"Invalid value for property '{name}': an object is expected.")
        for k, v in value.items():
            if k == "@odata.type":
                continue
            if k not in props:
                raise bad(f"Invalid request: the property '{k}' does not exist on the type of '{name}'.")
            if not isinstance(v, props[k]) or (props[k] is str and k == "giphyContentRating" and v not in ("moderate", "strict")):
                raise bad(f"Invalid value for property '{name}.{k}'.")
        out[name] = {k: v for k, v in value.items() if k != "@odata.type"}
    return out


def _visibility(body: dict, default: str | None = None) -> str | None:
    v = body.get("visibility", default)
    if v is None:
        return default
    if not isinstance(v, str) or v.lower() not in ("public", "private"):
        raise bad(f"Invalid value '{v}' for property 'visibility': public or private is expected.")
    return v.lower()


def _accepted(base: str, team_id: str, created: bool = False) -> Response:
    op = new_guid()
    headers = {"Location": f"/teams('{team_id}')/operations('{op}')"}
    if created:
        headers["Content-Location"] = f"/teams('{team_id}')"
    return Response(202, None, headers)


def _new_team(ctx: Context, team_id: str, name: str, description: str, visibility: str,
              members: list[Membership], first_channel: str = "General") -> Team:
    team = Team(team_id, name, description or "", visibility, members)
    cid = f"19:{new_guid().replace('-', '')}@thread.tacv2"
    from ..state import Channel

    team.channels[cid] = Channel(cid, team_id, first_channel, f"{name} general channel")
    return team


def plain_group_resource(state: TenantState, g: dict) -> dict:
    nick = nickname(g["displayName"])
    mail = f"{nick}@{state.domain}"
    return {"id": g["id"], "createdDateTime": None, "description": g["description"], "displayName": g["displayName"],
            "groupTypes": ["Unified"], "mail": mail, "mailEnabled": True, "mailNickname": nick,
            "securityEnabled": False, "visibility": g["visibility"].capitalize(), "resourceProvisioningOptions": [],
            "classification": None, "deletedDateTime": None, "expirationDateTime": None, "renewedDateTime": None,
            "proxyAddresses": [f"SMTP:{mail}"], "securityIdentifier": None, "creationOptions": [],
            "isAssignableToRole": None, "onPremisesSyncEnabled": None, "preferredDataLocation": None,
            "preferredLanguage": None, "theme": None}


@graph_route("POST", "/teams")
def create_team(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    _unknown_properties(body, TEAM_CREATE_PROPS, "microsoft.graph.team")
    template = body.get("template@odata.bind")
    m = _TEMPLATE_BIND.search(template) if isinstance(template, str) else None
    if m is None:
        raise bad("A team template is required: 'template@odata.bind' naming teamsTemplates('standard').")
    if m.group(1) not in TEMPLATES:
        raise not_found(f"The template '{m.group(1)}' was not found.")
    settings = _settings(body)
    members_raw = body.get("members")
    if members_raw is not None and not isinstance(members_raw, list):
        raise bad("Invalid value for property 'members': an array is expected.")
    caller = caller_user_id(req.token)
    with ctx.state.lock:
        parsed = parse_members(ctx.state, members_raw or [], base_of(req, ctx))
        group_bind = body.get("group@odata.bind")
        if group_bind is not None:
            g = _GROUP_BIND.search(group_bind) if isinstance(group_bind, str) else None
            if g is None:
                raise bad("Invalid value for 'group@odata.bind': a group URL such as .../groups('{id}') is expected.")
            gid = g.group(1)
            if gid in ctx.state.teams or gid.lower() in ctx.state.teams:
                raise conflict(f"The group '{gid}' already has a team.")
            group = ctx.state.groups.get(gid) or ctx.state.groups.get(gid.lower())
            if group is None:
                raise not_found(f"Resource '{gid}' does not exist.", "Request_ResourceNotFound")
            if not group["owners"]:
                raise bad("A team can be created only from a group that has at least one owner.")
            name = body.get("displayName") or group["displayName"]
            members = [Membership(member_id(group["id"], u), u, ["owner"]) for u in group["owners"]]
            members += [Membership(member_id(group["id"], u), u, []) for u in group["members"] if u not in group["owners"]]
            team = _new_team(ctx, group["id"], name, body.get("description") or group["description"],
                             _visibility(body, group["visibility"]), members)
            del ctx.state.groups[group["id"]]
        else:
            name = body.get("displayName")
            if not isinstance(name, str) or not name.strip():
                raise bad("The property 'displayName' is required.")
            owners = [u for u, roles in parsed if "owner" in roles]
            if caller is None and len(owners) != 1:
                raise bad("Creating a team with application permissions needs exactly one member in the owner role "
                          "('members').")
            tid = new_guid()
            members = [Membership(member_id(tid, u["id"]), u["id"], roles) for u, roles in parsed]
            if caller and not any(x.user_id == caller for x in members):
                members.insert(0, Membership(member_id(tid, caller), caller, ["owner"]))
            first = body.get("firstChannelName") or "General"
            team = _new_team(ctx, tid, name, body.get("description") or "", _visibility(body, "public"), members,
                             first if isinstance(first, str) else "General")
        team.settings = settings
        team.classification = body.get("classification")
        ctx.state.teams[team.id] = team
    return _accepted(base_of(req, ctx), team.id, created=True)


@graph_route("PATCH", "/teams/{team_id}")
def update_team(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    _unknown_properties(body, TEAM_PATCH_PROPS, "microsoft.graph.team")
    settings = _settings(body)
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_owner(team, req.token)
        if team.archived:
            raise forbidden("The team is archived: unarchive it before changing it.")
        if "displayName" in body:
            name = body["displayName"]
            if not isinstance(name, str) or not name.strip():
                raise bad("Invalid value for property 'displayName'.")
            team.display_name = name
        if "description" in body:
            if body["description"] is not None and not isinstance(body["description"], str):
                raise bad("Invalid value for property 'description'.")
            team.description = body["description"] or ""
        if "visibility" in body:
            team.visibility = _visibility(body)
        if "classification" in body:
            team.classification = body["classification"]
        for k, v in settings.items():
            team.settings[k] = {**team.settings.get(k, {}), **v}
    return Response(204)


@graph_route("DELETE", "/groups/{group_id}")
def delete_group(ctx: Context, req: Request) -> Response:
    gid = req.params["group_id"]
    if not is_guid(gid):
        raise bad(f"Invalid object identifier '{gid[:100]}'.", "Request_BadRequest")
    with ctx.state.lock:
        team = ctx.state.teams.get(gid) or ctx.state.teams.get(gid.lower())
        if team is not None:
            require_team_owner(team, req.token)
            del ctx.state.teams[team.id]
            return Response(204)
        if ctx.state.groups.pop(gid, None) is None and ctx.state.groups.pop(gid.lower(), None) is None:
            raise not_found(f"Resource '{gid}' does not exist or one of its queried reference-property objects are "
                            "not present.", "Request_ResourceNotFound")
    return Response(204)


def _no_body_or_object(req: Request) -> dict:
    return {} if not req.body or req.json is None else json_object(req)


@graph_route("POST", "/teams/{team_id}/archive")
def archive_team(ctx: Context, req: Request) -> Response:
    body = _no_body_or_object(req)
    _unknown_properties(body, ("shouldSetSpoSiteReadOnlyForMembers",), "microsoft.graph.archive")
    if body.get("shouldSetSpoSiteReadOnlyForMembers") not in (None, True, False):
        raise bad("Invalid value for parameter 'shouldSetSpoSiteReadOnlyForMembers': a boolean is expected.")
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_owner(team, req.token)
        if not any("owner" in m.roles for m in team.members):
            raise bad("A team without an owner cannot be archived: add an owner first.")
        team.archived = True
    return _accepted(base_of(req, ctx), team.id)


@graph_route("POST", "/teams/{team_id}/unarchive")
def unarchive_team(ctx: Context, req: Request) -> Response:
    _unknown_properties(_no_body_or_object(req), (), "microsoft.graph.unarchive")
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_owner(team, req.token)
        team.archived = False
    return _accepted(base_of(req, ctx), team.id)


@graph_route("POST", "/teams/{team_id}/clone")
def clone_team(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    _unknown_properties(body, ("displayName", "description", "mailNickname", "classification", "visibility",
                               "partsToClone"), "microsoft.graph.clone")
    for k in ("displayName", "description", "mailNickname", "classification"):
        if body.get(k) is not None and not isinstance(body[k], str):
            raise bad(f"Invalid value for parameter '{k}': a string is expected.")
    if "visibility" not in body:
        raise bad("The parameter 'visibility' is required.")
    visibility = _visibility(body)
    parts_raw = body.get("partsToClone")
    if not isinstance(parts_raw, str) or not parts_raw.strip():
        raise bad("The parameter 'partsToClone' is required: some of " + ", ".join(CLONABLE_PARTS) + ".")
    parts = [p.strip() for p in parts_raw.split(",")]
    if any(p not in CLONABLE_PARTS for p in parts):
        raise bad(f"Invalid value '{parts_raw}' for parameter 'partsToClone'.")
    caller = caller_user_id(req.token)
    with ctx.state.lock:
        src = team_or_error(ctx.state, req.params["team_id"])
        if caller and team_membership(src, caller) is None:
            raise forbidden("The caller is not a member of the team.")
        tid = new_guid()
        if "members" in parts:
            members = [Membership(member_id(tid, m.user_id), m.user_id, list(m.roles)) for m in src.members]
        else:  # the caller owns the copy (app-only: the source's owners do)
            owners = [caller] if caller else [m.user_id for m in src.members if "owner" in m.roles]
            members = [Membership(member_id(tid, u), u, ["owner"]) for u in owners]
        team = _new_team(ctx, tid, body.get("displayName") or src.display_name, body.get("description") or "",
                         visibility, members)
        team.mail_nickname = body.get("mailNickname") or nickname(team.display_name)
        team.classification = body.get("classification")
        if "settings" in parts:
            team.settings = {k: dict(v) for k, v in src.settings.items()}
        if "channels" in parts:
            from ..state import Channel

            for ch in list(src.channels.values())[1:]:  # the General channel is the new team's own
                cid = f"19:{new_guid().replace('-', '')}@thread.tacv2"
                team.channels[cid] = Channel(cid, tid, ch.display_name, ch.description, ch.membership_type)
        ctx.state.teams[tid] = team
    return _accepted(base_of(req, ctx), tid)


@graph_route("PATCH", "/teams/{team_id}/members/{membership_id}")
def update_team_member(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    _unknown_properties(body, ("@odata.type", "roles"), "microsoft.graph.aadUserConversationMember")
    otype = body.get("@odata.type")
    if not isinstance(otype, str) or otype.lower() != "#microsoft.graph.aaduserconversationmember":
        raise bad(f"The provided '{otype}' for 'odata.type' is not valid for this operation.")
    roles = body.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise bad("Invalid value for property 'roles': an array of strings is expected.")
    roles = [r.strip().lower() for r in roles]
    if any(r not in ("owner",) for r in roles):
        raise bad("Invalid value for property 'roles': a team member's roles are [] or ['owner'].")
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_owner(team, req.token)
        m = _team_member(team, req.params["membership_id"])
        if "owner" in m.roles and "owner" not in roles and sum(1 for x in team.members if "owner" in x.roles) <= 1:
            raise bad("The last owner of a team cannot be made a member. Add another owner first.")
        m.roles = ["owner"] if "owner" in roles else []
        return Response(200, member_entity(ctx.state, m, _members_context(req, ctx, team.id, True)))
