"""Team membership commands: adding users (as members or owners) and removing them, with the
membership id looked up by user."""
from __future__ import annotations

from integration.engine.errors import NotFound, RequestRejected
from integration.graph.client import items_of, need_id, odata_literal, seg
from integration.graph.resolve import member_body

HANDLERS = ("team_member_add", "team_member_remove")


def team_member_add(ctx):
    args, r = ctx.args, ctx.resolver
    team = r.team(args["team"])
    ctx.extra["team_id"] = team["id"]
    roles = ["owner"] if args["owner"] else []
    rows = []
    for user in {u["id"]: u for u in (r.user(m) for m in args["member"])}.values():
        m = ctx.graph.post(f"/teams/{seg(team['id'])}/members", member_body(user["id"], ctx.cfg.graph_url, roles))
        m = m if isinstance(m, dict) else {}  # a 201 may come without a body
        for k, v in (("userId", user["id"]), ("displayName", user.get("displayName")), ("email", user.get("mail")),
                     ("roles", roles)):
            if m.get(k) is None:
                m[k] = v
        rows.append(m)
    names = ", ".join(x.get("displayName") or x.get("userId") or "?" for x in rows)
    return ctx.result(rows, rows, message=f"Added {names} to team '{team.get('displayName') or args['team']}'"
                                          + (" as owner." if args["owner"] else "."))


def is_membership_id(value: str) -> bool:
    """A conversationMember id as Graph issues them (base64 of '0#...', so 'MCMj...'): what
    XSOAR's `membership_id` passes, never a mail, object id or display name."""
    v = value.strip()
    return v.startswith("MCMj") and len(v) >= 8 and not any(c.isspace() or c == "@" for c in v)


def find_team_member(ctx, team: dict, member: str) -> dict:
    """A team's membership, by its id (MCMj..., XSOAR's membership_id) or by the user (mail,
    UPN, display name or object id)."""
    path = f"/teams/{seg(team['id'])}/members"
    name = team.get("displayName") or team["id"]
    if is_membership_id(member):
        m = ctx.graph.get(f"{path}/{seg(member.strip())}") or {}
        need_id(m, f"team member {member.strip()}")
        return m
    user = ctx.resolver.user(member)
    flt = f"(microsoft.graph.aadUserConversationMember/userId eq {odata_literal(user['id'])})"
    found = [m for m in items_of(ctx.graph.get(path, params={"$filter": flt}), f"GET {path}")
             if isinstance(m, dict) and m.get("userId") == user["id"] and m.get("id")]
    if not found:
        raise NotFound(f"{user.get('displayName') or user['id']} is not a member of team '{name}'",
                       hint="list the members with `msteams team-member-list`")
    return found[0]


def team_member_remove(ctx):
    args, r = ctx.args, ctx.resolver
    team = r.team(args["team"])
    ctx.extra["team_id"] = team["id"]
    path = f"/teams/{seg(team['id'])}/members"
    team_name = team.get("displayName") or args["team"]
    m = find_team_member(ctx, team, args["member"])
    who = m.get("displayName") or m.get("email") or m.get("userId") or m["id"]
    try:
        ctx.graph.delete(f"{path}/{seg(m['id'])}")
    except RequestRejected as exc:
        if "owner" in exc.message.lower() and not exc.hint:
            exc.hint = "add another owner first (`msteams team-member-add owner=true`)"
        raise
    return ctx.result(m, m, message=f"Removed {who} from team '{team_name}'.")
