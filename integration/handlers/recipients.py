"""`recipients-resolve`: route keys (roles, severities, teams) to users and channels through a
route map with a "*" entry, plus suggested reviewers, with fallback recipients for the ones
that cannot be reached. The routing itself is :mod:`integration.graph.recipients`."""
from __future__ import annotations

from integration.engine.errors import InputError, NotFound
from integration.graph.recipients import RecipientResolver, route_entries

HANDLERS = ("recipients_resolve",)


def recipients_resolve(ctx):
    args = ctx.args
    routes = args.get("routes") or {}
    keys = args.get("keys") or []
    if not route_entries(routes, keys) and not args.get("suggested_reviewers") and not args.get("fallback"):
        listed = ", ".join(repr(k) for k in routes) or "none"
        raise InputError("nobody to resolve: the keys route to no recipient and there are no suggested reviewers "
                         f"or fallback recipients (routes has keys: {listed})",
                         hint='add a "*" entry to routes for keys it does not list')
    routing = RecipientResolver(ctx.resolver, tenant_id=ctx.cfg.tenant_id).route(
        routes, keys, suggested=args.get("suggested_reviewers"), fallback=args.get("fallback"))
    if not routing.resolved:
        detail = "; ".join(f"{u['recipient']}: {u['reason']}" for u in routing.unresolved)
        raise NotFound(f"no recipient could be resolved ({detail})",
                       hint="check the names with `msteams user-get`, or add fallback recipients")
    rows = [{"status": "resolved", **r} for r in routing.resolved]
    rows += [{"status": "unresolved", **u} for u in routing.unresolved]
    users = sum(r["kind"] == "user" for r in routing.resolved)
    msg = f"{len(routing.resolved)} recipient(s): {users} user(s), {len(routing.resolved) - users} channel(s)"
    if routing.unresolved:
        msg += f"; {len(routing.unresolved)} unresolved"
    if routing.fallback_used:
        msg += "; fallback recipients used"
    return ctx.result(rows, routing.to_dict(), message=msg + ".")
