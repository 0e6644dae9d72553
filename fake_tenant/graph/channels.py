"""Channels of a team and channel members."""
from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from ..core import Context, Request, Response, graph_route, utcnow_iso
from ..state import Channel, Membership, Team, TenantState
from .common import (bad, caller_user_id, conflict, find_by_id, find_membership, forbidden, is_app, json_object,
                     member_collection, member_entity, member_id, membership_or_404, opt_list, opt_str, parse_member,
                     parse_members)
from .odata import Schema, apply_select, compile_filter, parse_select, qopt
from .paging import base_of, collection
from .teams import MEMBER_SCHEMA, require_team_member, team_membership, team_or_error

CHANNEL_ID_RE = re.compile(r"^19:[^\s/]+@thread\.(tacv2|skype)$", re.IGNORECASE)
FORBIDDEN_NAME_CHARS = set('~#%&*{}+/\\:<>?|\'"')
MAX_NAME = 50
MAX_STANDARD = 200
MAX_PRIVATE = 30
MAX_SHARED = 15
MEMBERSHIP_TYPES = {"standard": "standard", "private": "private", "shared": "shared"}

CHANNEL_SCHEMA = Schema(
    "microsoft.graph.channel",
    props={"id": lambda c: c["id"], "displayname": lambda c: c["displayName"],
           "description": lambda c: c["description"], "membershiptype": lambda c: c["membershipType"],
           "email": lambda c: c["email"]},
    functions=frozenset({"startswith"}),
    operators=frozenset({"eq", "ne", "in", "not"}),
)

CHANNEL_PROPS = ["id", "createdDateTime", "displayName", "description", "isFavoriteByDefault", "email",
                 "tenantId", "webUrl", "membershipType", "isArchived"]


def channel_web_url(state: TenantState, team: Team, ch: Channel) -> str:
    return (f"https://teams.microsoft.com/l/channel/{quote(ch.id, safe='')}/{quote(ch.display_name, safe='')}"
            f"?groupId={team.id}&tenantId={state.tenant_id}")


def channel_resource(state: TenantState, team: Team, ch: Channel) -> dict:
    return {
        "id": ch.id,
        "createdDateTime": ch.created,
        "displayName": ch.display_name,
        "description": ch.description,
        "isFavoriteByDefault": None,
        "email": "",
        "tenantId": state.tenant_id,
        "webUrl": channel_web_url(state, team, ch),
        "membershipType": ch.membership_type,
        "isArchived": False,
    }


def is_general(team: Team, ch: Channel) -> bool:
    return ch.display_name.lower() == "general" or next(iter(team.channels), None) == ch.id


def channel_or_error(team: Team, channel_id: str) -> Channel:
    return find_by_id(team.channels, channel_id, CHANNEL_ID_RE, "Channel", f" in team '{team.id}'")


def channel_members(team: Team, ch: Channel) -> list[Membership]:
    return team.members if ch.membership_type == "standard" else ch.members


def channel_membership(team: Team, ch: Channel, user_id: str | None) -> Membership | None:
    return find_membership(channel_members(team, ch), user_id)


def can_see_channel(team: Team, ch: Channel, claims) -> bool:
    uid = caller_user_id(claims)
    if not uid:
        return True  # app-only (and the server has checked its permission)
    if ch.membership_type == "standard":
        return team_membership(team, uid) is not None
    return channel_membership(team, ch, uid) is not None


def require_channel_access(team: Team, ch: Channel, claims) -> None:
    """A delegated caller must be in the team, and in the channel when it is private or shared."""
    uid = caller_user_id(claims)
    if not uid:
        return
    if ch.membership_type == "standard":
        require_team_member(team, claims)
    elif channel_membership(team, ch, uid) is None:
        raise forbidden(f"The caller is not a member of the {ch.membership_type} channel.")


def lookup(ctx: Context, req: Request) -> tuple[Team, Channel]:
    team = team_or_error(ctx.state, req.params["team_id"])
    return team, channel_or_error(team, req.params["channel_id"])


def _ctx_url(req: Request, ctx: Context, team_id: str, entity: bool = False) -> str:
    return f"{base_of(req, ctx)}/$metadata#teams('{team_id}')/channels" + ("/$entity" if entity else "")


def validate_channel_name(name: str) -> str:
    if not name.strip():
        raise bad("Channel name cannot be empty.")
    if len(name) > MAX_NAME:
        raise bad(f"Channel name cannot be longer than {MAX_NAME} characters.")
    bad_chars = sorted({c for c in name if c in FORBIDDEN_NAME_CHARS})
    if bad_chars:
        raise bad("Channel name contains invalid characters: " + " ".join(bad_chars)
                  + ". Channel names can't contain ~ # % & * { } + / \\ : < > ? | ' \".")
    if any(ord(c) < 32 for c in name):
        raise bad("Channel name contains control characters.")
    if name.startswith(("_", ".")) or name.endswith("."):
        raise bad("Channel name can't start with an underscore or a period, or end with a period.")
    if name.strip().lower() == "general":
        raise bad("Channel name 'General' is reserved.")
    return name


# ------------------------------------------------------------------------------------ channels

@graph_route("GET", "/teams/{team_id}/channels")
def list_channels(ctx: Context, req: Request) -> Response:
    pred = compile_filter(qopt(req.query, "$filter"), CHANNEL_SCHEMA)
    select = parse_select(qopt(req.query, "$select"), CHANNEL_PROPS, "microsoft.graph.channel")
    with ctx.state.lock:
        team = team_or_error(ctx.state, req.params["team_id"])
        require_team_member(team, req.token)
        value = [channel_resource(ctx.state, team, ch) for ch in team.channels.values()
                 if can_see_channel(team, ch, req.token)]
    if pred is not None:
        value = [c for c in value if pred(c)]
    return Response(200, collection([apply_select(c, select) for c in value], _ctx_url(req, ctx, team.id), None,
                                    **{"@odata.count": len(value)}))


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}")
def get_channel(ctx: Context, req: Request) -> Response:
    select = parse_select(qopt(req.query, "$select"), CHANNEL_PROPS, "microsoft.graph.channel")
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        require_channel_access(team, ch, req.token)
        res = channel_resource(ctx.state, team, ch)
    body = {"@odata.context": _ctx_url(req, ctx, team.id, True)}
    body.update(apply_select(res, select))
    return Response(200, body)


@graph_route("POST", "/teams/{team_id}/channels")
def create_channel(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    name = opt_str(body, "displayName")
    if name is None:
        raise bad("The property 'displayName' is required.")
    validate_channel_name(name)
    description = opt_str(body, "description", max_len=1024) or ""
    mtype_raw = opt_str(body, "membershipType") or "standard"
    mtype = MEMBERSHIP_TYPES.get(mtype_raw.lower())
    if mtype is None:
        raise bad(f"Invalid value '{mtype_raw}' for property 'membershipType': expected standard, private or shared.")
    members_raw = opt_list(body, "members")
    base = base_of(req, ctx)
    with ctx.state.lock:
        state = ctx.state
        team = team_or_error(state, req.params["team_id"])
        require_team_member(team, req.token)
        if any(c.display_name.lower() == name.strip().lower() for c in team.channels.values()):
            raise bad("Channel name already existed, please use other name.")
        counts = {"standard": 0, "private": 0, "shared": 0}
        for c in team.channels.values():
            counts[c.membership_type] = counts.get(c.membership_type, 0) + 1
        limit = {"standard": MAX_STANDARD, "private": MAX_PRIVATE, "shared": MAX_SHARED}[mtype]
        if counts.get(mtype, 0) >= limit:
            raise bad(f"The team already has the maximum number of {mtype} channels ({limit}).")
        members: list[tuple[dict, list]] = []
        if members_raw:
            if mtype == "standard":
                raise bad("Members can be specified only when creating a private or shared channel.")

            def in_team(user: dict) -> None:
                if mtype == "private" and team_membership(team, user["id"]) is None:
                    raise bad(f"The user '{user['userPrincipalName']}' is not a member of the team; "
                              "private channel members must be members of the team.")

            members = parse_members(state, members_raw, base, in_team)
        creator = caller_user_id(req.token)
        if mtype != "standard":
            owners = [u for u, r in members if "owner" in r]
            if is_app(req.token) or not creator:
                if len(owners) != 1:
                    raise bad(f"Creating a {mtype} channel in application context requires exactly one member "
                              "with the 'owner' role in 'members'.")
        cid = f"19:{uuid.uuid4().hex}@thread.tacv2"
        ch = Channel(cid, team.id, name, description, mtype, utcnow_iso())
        if mtype != "standard":
            if creator:
                ch.members.append(Membership(member_id(cid, creator), creator, ["owner"]))
            for user, roles in members:
                if user["id"] == creator:
                    continue
                ch.members.append(Membership(member_id(cid, user["id"]), user["id"], roles))
        team.channels[cid] = ch
        res = channel_resource(state, team, ch)
    out = {"@odata.context": _ctx_url(req, ctx, team.id, True)}
    out.update(res)
    return Response(201, out, {"Location": f"{base}/teams/{team.id}/channels/{cid}"})


@graph_route("DELETE", "/teams/{team_id}/channels/{channel_id}")
def delete_channel(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        if is_general(team, ch):
            raise bad("The General channel cannot be deleted.")
        require_channel_access(team, ch, req.token)
        uid = caller_user_id(req.token)
        if uid and ch.membership_type != "standard":
            m = channel_membership(team, ch, uid)
            tm = team_membership(team, uid)
            if not ((m and "owner" in m.roles) or (tm and "owner" in tm.roles)):
                raise forbidden(f"Only owners may delete a {ch.membership_type} channel.")
        del team.channels[ch.id]
    return Response(204)


# ------------------------------------------------------------------------------------ channel members

def _members_ctx(req: Request, ctx: Context, team_id: str, channel_id: str, entity: bool = False) -> str:
    return (f"{base_of(req, ctx)}/$metadata#teams('{team_id}')/channels('{quote(channel_id, safe=':@')}')/members"
            + ("/$entity" if entity else ""))


def _channel_member(members: list[Membership], membership_id: str) -> Membership:
    return membership_or_404(members, membership_id, f"Member '{membership_id}' was not found in the channel.")


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/members")
def list_channel_members(ctx: Context, req: Request) -> Response:
    pred = compile_filter(qopt(req.query, "$filter"), MEMBER_SCHEMA)
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        require_channel_access(team, ch, req.token)
        return Response(200, member_collection(ctx.state, channel_members(team, ch), pred,
                                               _members_ctx(req, ctx, team.id, ch.id)))


@graph_route("GET", "/teams/{team_id}/channels/{channel_id}/members/{membership_id}")
def get_channel_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        require_channel_access(team, ch, req.token)
        m = _channel_member(channel_members(team, ch), req.params["membership_id"])
        return Response(200, member_entity(ctx.state, m, _members_ctx(req, ctx, team.id, ch.id, True)))


def _require_channel_owner(team: Team, ch: Channel, claims) -> None:
    uid = caller_user_id(claims)
    if not uid:
        return
    m = channel_membership(team, ch, uid)
    tm = team_membership(team, uid)
    if not ((m and "owner" in m.roles) or (tm and "owner" in tm.roles)):
        raise forbidden("Only owners of the channel may change its membership.")


@graph_route("POST", "/teams/{team_id}/channels/{channel_id}/members")
def add_channel_member(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    base = base_of(req, ctx)
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        if ch.membership_type == "standard":
            raise bad("Adding members is not supported for standard channels: standard channels have the "
                      "members of the team.")
        _require_channel_owner(team, ch, req.token)
        user, roles = parse_member(ctx.state, body, base)
        if ch.membership_type == "private" and team_membership(team, user["id"]) is None:
            raise bad(f"The user '{user['userPrincipalName']}' is not a member of the team; add them to the team first.")
        if channel_membership(team, ch, user["id"]) is not None:
            raise conflict(f"The user '{user['userPrincipalName']}' is already a member of the channel.")
        m = Membership(member_id(ch.id, user["id"]), user["id"], roles)
        ch.members.append(m)
        out = member_entity(ctx.state, m, _members_ctx(req, ctx, team.id, ch.id, True))
    return Response(201, out, {"Location": f"{base}/teams/{team.id}/channels/{ch.id}/members/{m.id}"})


@graph_route("DELETE", "/teams/{team_id}/channels/{channel_id}/members/{membership_id}")
def remove_channel_member(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        team, ch = lookup(ctx, req)
        if ch.membership_type == "standard":
            raise bad("Removing members is not supported for standard channels: remove the member from the team.")
        m = _channel_member(ch.members, req.params["membership_id"])
        if caller_user_id(req.token) != m.user_id:
            _require_channel_owner(team, ch, req.token)
        if "owner" in m.roles and sum(1 for x in ch.members if "owner" in x.roles) <= 1:
            raise bad("The last owner of a channel cannot be removed.")
        ch.members.remove(m)
    return Response(204)

