"""Groups that are teams, teams, joined teams and team members."""
from __future__ import annotations

import re
from typing import Callable
from urllib.parse import quote

from ..core import Context, Request, Response, graph_route, utcnow_iso
from ..state import Membership, Team, TenantState
from .common import (bad, caller_user_id, find_membership, forbidden, is_guid, json_object, member_entity, member_id,
                     member_resource, membership_or_404, not_found, parse_member, require_delegated, user_or_404)
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
    owners = sum(1 for m in team.members if "owner" in m.roles)
    guests = sum(1 for m in team.members if "guest" in m.roles)
    return {
        "id": team.id,
        "createdDateTime": team_created(team),
        "displayName": team.display_name,
        "description": team.description,
        "internalId": general_channel_id(team),
        "classification": None,
        "specialization": "none",
        "visibility": team.visibility.lower(),
        "webUrl": team_web_url(state, team),
        "isArchived": False,
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
                        resource: Callable[[TenantState, Team], dict]) -> tuple[list, str | None, list | None]:
    """One page of every team as ``resource`` shapes it (a group or a team), in id order, with
    $filter on ``schema``, $select among ``props`` and $top (100 by default, 999 at most); also
    the $select asked for."""
    pred = compile_filter(qopt(req.query, "$filter"), schema)
    select = parse_select(qopt(req.query, "$select"), props, type_name)
    top = parse_top(qopt(req.query, "$top"), 100, 999)
    with ctx.state.lock:
        rows = [resource(ctx.state, t) for t in ctx.state.teams.values()]
    if pred is not None:
        rows = [r for r in rows if pred(r)]
    rows.sort(key=lambda r: r["id"])
    page, link = paginate(req, ctx, rows, lambda r: r["id"], top)
    return page, link, select


# ------------------------------------------------------------------------------------ groups

@graph_route("GET", "/groups")
def list_groups(ctx: Context, req: Request) -> Response:
    page, link, select = _page_of_every_team(ctx, req, GROUP_SCHEMA, GROUP_PROPS, "microsoft.graph.group",
                                             group_resource)
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
        if team is None:
            raise not_found(f"Resource '{gid}' does not exist or one of its queried reference-property objects are not present.",
                            "Request_ResourceNotFound")
        g = group_resource(ctx.state, team)
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
                  "isArchived": False, "tenantId": ctx.state.tenant_id}
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
