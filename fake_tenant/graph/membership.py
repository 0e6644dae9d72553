"""Group membership checks: ``POST /users/{id | userPrincipalName}/checkMemberGroups`` with
``{"groupIds": [...]}`` (at most 20) answers ``{"value": [the ids the user is a member of]}``.
The tenant's groups are its teams (owners count as members); membership is transitive in Graph,
and flat here since teams do not nest."""
from __future__ import annotations

from ..core import Context, Request, Response, graph_route
from .common import bad, is_guid, json_object, user_or_404


@graph_route("POST", "/users/{user_id}/checkMemberGroups")
def check_member_groups(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    ids = body.get("groupIds")
    if not isinstance(ids, list) or not ids:
        raise bad("groupIds is required: a list of group object ids.", "Request_BadRequest")
    if len(ids) > 20:
        raise bad("At most 20 groupIds may be checked in one request.", "Request_BadRequest")
    if not all(isinstance(g, str) and is_guid(g) for g in ids):
        raise bad("Each of groupIds must be a group object id.", "Request_BadRequest")
    with ctx.state.lock:
        user = user_or_404(ctx.state, req.params["user_id"])
        member = [g for g in ids if (t := ctx.state.teams.get(g.lower()) or ctx.state.teams.get(g)) is not None
                  and any(m.user_id == user["id"] for m in t.members)]
    return Response(200, {"@odata.context": f"{req.base_url}/$metadata#Collection(Edm.String)", "value": member})
