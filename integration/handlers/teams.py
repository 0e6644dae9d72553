"""Team membership commands: adding users (as members or owners) and removing them, with the
membership id looked up by user."""
from __future__ import annotations

from ..errors import NotFound, RequestRejected
from ..graph import odata_literal, seg
from ..resolve import member_body

HANDLERS = ("team_member_add", "team_member_remove")


def team_member_add(ctx):
    args, r = ctx.args, ctx.resolver
    team = r.team(args["team"])
    ctx.extra["team_id"] = team["id"]
    roles = ["owner"] if args["owner"] else []
    rows = []
    for user in {u["id"]: u for u in (r.user(m) for m in args["member"])}.values():
        rows.append(ctx.graph.post(f"/teams/{seg(team['id'])}/members", member_body(user["id"], ctx.cfg.graph_url, roles)))
    names = ", ".join(x.get("displayName") or x.get("userId") for x in rows)
    return ctx.result(rows, rows, message=f"Added {names} to team '{team.get('displayName') or args['team']}'"
                                          + (" as owner." if args["owner"] else "."))


def team_member_remove(ctx):
    args, r = ctx.args, ctx.resolver
    team = r.team(args["team"])
    ctx.extra["team_id"] = team["id"]
    user = r.user(args["member"])
    path = f"/teams/{seg(team['id'])}/members"
    flt = f"(microsoft.graph.aadUserConversationMember/userId eq {odata_literal(user['id'])})"
    found = [m for m in ctx.graph.get(path, params={"$filter": flt}).get("value", []) if m.get("userId") == user["id"]]
    if not found:
        raise NotFound(f"{user['displayName']} is not a member of team '{team.get('displayName') or args['team']}'",
                       hint="list the members with `msteams team-member-list`")
    m = found[0]
    try:
        ctx.graph.delete(f"{path}/{seg(m['id'])}")
    except RequestRejected as exc:
        if "owner" in exc.message.lower() and not exc.hint:
            exc.hint = "add another owner first (`msteams team-member-add owner=true`)"
        raise
    return ctx.result(m, m, message=f"Removed {user['displayName']} from team '{team.get('displayName') or args['team']}'.")
