"""Listing users with a filter built from typed arguments: every value reaches Graph as an
escaped OData literal, never as raw filter text."""
from __future__ import annotations

from integration.graph.client import odata_literal

HANDLERS = ("user_list",)

USER_SELECT = "id,displayName,mail,userPrincipalName,jobTitle,officeLocation,givenName,surname,accountEnabled"


def user_filter(name: str | None = None, mail: str | None = None, job_title: str | None = None) -> str | None:
    """An OData $filter from typed values (prefix matches), or None."""
    clauses = []
    if name:
        clauses.append(f"startswith(displayName,{odata_literal(name)})")
    if mail:
        lit = odata_literal(mail)
        clauses.append(f"(startswith(mail,{lit}) or startswith(userPrincipalName,{lit}))")
    if job_title:
        clauses.append(f"startswith(jobTitle,{odata_literal(job_title)})")
    return " and ".join(clauses) or None


def user_list(ctx):
    a = ctx.args
    params = {"$select": USER_SELECT}
    flt = user_filter(a.get("name"), a.get("mail"), a.get("job_title"))
    if flt:
        params["$filter"] = flt
    page = ctx.graph.paged("/users", params=params, limit=a.get("limit"), page_size=a.get("page_size"),
                           next_link=a.get("next_link"))
    ctx.store.put_many("user", [(u["id"], {k: u.get(k) for k in ("id", "displayName", "mail", "userPrincipalName")})
                                for u in page.items if u.get("id")])
    return ctx.result(page.items, page.items, next_link=page.next_link)
