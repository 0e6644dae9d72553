"""Team lifecycle, as XSOAR's Management integration offers it: creating a team from Microsoft's
standard template or from an existing Microsoft 365 group, changing its name, description and
settings, cloning it; and one member of a team (by membership id or by user): read it, make it
an owner or a member. Deleting, archiving, unarchiving and the joined teams are plain Graph
calls declared in commands.yml.

Graph creates, clones (and archives) teams asynchronously: 202 Accepted, the new team in
Content-Location (/teams('{id}')) and the operation in Location
(/teams('{id}')/operations('{op}')). The commands return once Microsoft accepted the request,
with the team's id, as XSOAR's do."""
from __future__ import annotations

import re

from integration.engine.errors import ArgumentError, GraphError
from integration.graph.client import seg
from integration.graph.resolve import is_guid, member_body
from .teams import find_team_member

HANDLERS = ("team_create", "team_create_from_group", "team_update", "team_clone", "team_member_get",
            "team_member_update")

# XSOAR's setting arguments -> (the team property holding it, the setting)
SETTING_ARGS = {
    "allow_guests_create_channels": ("guestSettings", "allowCreateUpdateChannels"),
    "allow_guests_delete_channels": ("guestSettings", "allowDeleteChannels"),
    "allow_members_create_private_channels": ("memberSettings", "allowCreatePrivateChannels"),
    "allow_members_create_channels": ("memberSettings", "allowCreateUpdateChannels"),
    "allow_members_delete_channels": ("memberSettings", "allowDeleteChannels"),
    "allow_members_add_remove_apps": ("memberSettings", "allowAddRemoveApps"),
    "allow_members_add_remove_tabs": ("memberSettings", "allowCreateUpdateRemoveTabs"),
    "allow_members_add_remove_connectors": ("memberSettings", "allowCreateUpdateRemoveConnectors"),
    "allow_user_edit_messages": ("messagingSettings", "allowUserEditMessages"),
    "allow_user_delete_messages": ("messagingSettings", "allowUserDeleteMessages"),
    "allow_owner_delete_messages": ("messagingSettings", "allowOwnerDeleteMessages"),
    "allow_team_mentions": ("messagingSettings", "allowTeamMentions"),
    "allow_channel_mentions": ("messagingSettings", "allowChannelMentions"),
}
_TEAM_IN_URL = re.compile(r"teams\('([^']+)'\)", re.IGNORECASE)


def settings_body(args: dict) -> dict:
    """The settings the arguments give, grouped as the team resource holds them."""
    body: dict = {}
    for arg, (prop, key) in SETTING_ARGS.items():
        if args.get(arg) is not None:
            body.setdefault(prop, {})[key] = args[arg]
    return body


def _template(ctx) -> str:
    return f"{ctx.cfg.graph_url.rstrip('/')}/teamsTemplates('standard')"


def _accepted(ctx, reply, what: str) -> tuple[str, str | None]:
    """(team id, operation URL) of a 202 Accepted: the team from Content-Location, else from the
    operation's Location; a reply with neither is a GraphError (the request may have been taken)."""
    headers = reply.headers or {}
    for h in ("Content-Location", "Location"):
        m = _TEAM_IN_URL.search(headers.get(h) or "")
        if m:
            return m.group(1), headers.get("Location")
    body = reply.json()
    if isinstance(body, dict) and body.get("id"):
        return body["id"], headers.get("Location")
    raise GraphError(f"{what}: Graph accepted the request without saying which team it is (no Location)",
                     hint="list the teams (`msteams team-list`) before trying again: it may have been created")


def _row(team_id: str, args: dict, status: str, operation: str | None, **more) -> dict:
    row = {"id": team_id, "displayName": args.get("display_name"), "description": args.get("description"),
           "visibility": args.get("visibility"), "status": status, "operation": operation}
    row.update(more)
    return row


def team_create(ctx):
    a, r = ctx.args, ctx.resolver
    owner = r.user(a["owner"]) if a.get("owner") else None
    if owner is None and ctx.flow != "delegated":
        raise ArgumentError("owner", f"is required with the {ctx.flow} flow: Graph creates a team app-only only with "
                                     "an owner", hint="pass owner=<mail, UPN, display name or id>, or sign in the "
                                                      "delegated flow (the signed-in account is then the owner)")
    body = {"template@odata.bind": _template(ctx), "displayName": a["display_name"], "visibility": a["visibility"],
            **settings_body(a)}
    if a.get("description"):
        body["description"] = a["description"]
    if owner is not None:
        body["members"] = [member_body(owner["id"], ctx.cfg.graph_url, ["owner"])]
    reply = ctx.graph.request("POST", "/teams", json=body)
    team_id, op = _accepted(ctx, reply, "POST /teams")
    ctx.extra["team_id"] = team_id
    row = _row(team_id, a, "accepted", op, owner=(owner or {}).get("id"))
    return ctx.result(row, reply.json(), message=f"Team '{a['display_name']}' was created (id {team_id}); Teams "
                                                 "finishes setting it up in the background.")


def team_create_from_group(ctx):
    a = ctx.args
    group_id = a["group"].strip()
    if not is_guid(group_id):
        raise ArgumentError("group", "is the id (a GUID) of the Microsoft 365 group to give a team",
                            hint="find it in Entra ID or with Graph's GET /groups")
    body = {"template@odata.bind": _template(ctx),
            "group@odata.bind": f"{ctx.cfg.graph_url.rstrip('/')}/groups('{group_id}')", **settings_body(a)}
    for arg, prop in (("display_name", "displayName"), ("description", "description"), ("visibility", "visibility")):
        if a.get(arg):
            body[prop] = a[arg]
    reply = ctx.graph.request("POST", "/teams", json=body)
    team_id, op = _accepted(ctx, reply, "POST /teams")
    ctx.extra["team_id"] = team_id
    row = _row(team_id, a, "accepted", op, groupId=group_id)
    return ctx.result(row, reply.json(), message=f"The group {group_id} now has a team (id {team_id}); Teams finishes "
                                                 "setting it up in the background.")


def team_update(ctx):
    a, r = ctx.args, ctx.resolver
    body = settings_body(a)  # something to change, a name, a description or a setting (commands.yml's rule)
    for arg, prop in (("display_name", "displayName"), ("description", "description")):
        if a.get(arg) is not None:
            body[prop] = a[arg]
    team = r.team(a["team"])
    ctx.extra["team_id"] = team["id"]
    ctx.graph.patch(f"/teams/{seg(team['id'])}", body)
    row = {"id": team["id"], **{k: v for k, v in body.items()}}
    row.setdefault("displayName", team.get("displayName"))
    if "displayName" in body:  # the old name no longer names it
        for old in {team.get("displayName"), a["team"].strip()} - {None}:
            ctx.store.delete("team_name", old)
        ctx.store.put("team", team["id"], {"id": team["id"], "displayName": body["displayName"]})
    return ctx.result(row, row, message=f"Team '{team.get('displayName') or a['team']}' was updated.")


def team_clone(ctx):
    a, r = ctx.args, ctx.resolver
    parts = [p for p in ("apps", "tabs", "settings", "channels", "members") if a.get(f"clone_{p}")]
    if not parts:
        raise ArgumentError("clone_channels", "nothing to clone: set at least one of clone_apps, clone_tabs, "
                                              "clone_settings, clone_channels, clone_members")
    team = r.team(a["team"])
    nick = re.sub(r"[^A-Za-z0-9]", "", a["display_name"]) or "team"
    body = {"displayName": a["display_name"], "mailNickname": nick[:64], "visibility": a["visibility"],
            "partsToClone": ",".join(parts)}
    if a.get("description"):
        body["description"] = a["description"]
    reply = ctx.graph.request("POST", f"/teams/{seg(team['id'])}/clone", json=body)
    new_id, op = _accepted(ctx, reply, f"POST /teams/{team['id']}/clone")
    ctx.extra["team_id"] = new_id
    row = _row(new_id, a, "accepted", op, sourceTeamId=team["id"], partsToClone=body["partsToClone"])
    return ctx.result(row, reply.json(), message=f"Team '{team.get('displayName') or a['team']}' is being cloned as "
                                                 f"'{a['display_name']}' (id {new_id}).")


# ---------------------------------------------------------------------------- one member

def team_member_get(ctx):
    a = ctx.args
    team = ctx.resolver.team(a["team"])
    ctx.extra["team_id"] = team["id"]
    m = find_team_member(ctx, team, a["member"])
    return ctx.result(m, m, title=f"Member of team {team.get('displayName') or a['team']}")


def team_member_update(ctx):
    a = ctx.args
    team = ctx.resolver.team(a["team"])
    ctx.extra["team_id"] = team["id"]
    m = find_team_member(ctx, team, a["member"])
    roles = ["owner"] if a["owner"] else []
    body = {"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": roles}
    updated = ctx.graph.patch(f"/teams/{seg(team['id'])}/members/{seg(m['id'])}", body)
    updated = updated if isinstance(updated, dict) and updated.get("id") else {**m, "roles": roles}
    who = updated.get("displayName") or updated.get("email") or updated.get("userId") or updated["id"]
    return ctx.result(updated, updated, message=f"{who} is now {'an owner' if roles else 'a member'} of team "
                                                f"'{team.get('displayName') or a['team']}'.")
