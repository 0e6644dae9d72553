"""Which tenant profile an HTTP call runs against, and whether its API key may act for it
(a config with `tenants:`; docs/tenants.md).

The tenant is named by the ``X-Msteams-Tenant`` header (a command's body may also carry
``tenant``, as the war-room form does; both naming different tenants is a 400). With tenant
profiles, a call that names none is a 400 naming the profiles, a name that is no profile a 404,
and a key not allowed that tenant a 403: a key is allowed the tenants given by
``msteams api-key create --tenants NAME`` (names or globs: ``--tenants '*'`` for every tenant),
deny by default. Without profiles, naming a tenant is a 400.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from .problems import Problem

HEADER = "X-Msteams-Tenant"
_HEADER_LOWER = HEADER.lower()


def requested(headers, args: dict | None = None) -> str | None:
    """The tenant a call names (``args`` loses its ``tenant``), checked as a profile name."""
    from integration.engine.config import TENANT_NAME

    named = headers.get(_HEADER_LOWER)
    in_body = args.pop("tenant", None) if isinstance(args, dict) else None
    if in_body is not None and not isinstance(in_body, str):
        raise Problem(422, "input", "argument 'tenant' must be a tenant profile's name", details={"argument": "tenant"})
    if named is not None and in_body is not None and named.strip() != in_body.strip():
        raise Problem(400, "input", f"the {HEADER} header and the body's tenant name different tenants",
                      details={"parameter": HEADER})
    name = (named if named is not None else in_body)
    if name is None:
        return None
    name = name.strip()
    if not TENANT_NAME.fullmatch(name):
        raise Problem(400, "input", f"{HEADER} must name a tenant profile (1 to 32 lowercase letters, digits, "
                      "'_' or '-')", details={"parameter": HEADER})
    return name


def check(cfg, key: dict, tenant: str | None) -> None:
    """Raise the problem of a call for ``tenant`` under ``key`` on a service whose provider
    config is ``cfg``; nothing when the call may go on."""
    names = cfg.tenant_names
    if not names:
        if tenant is not None:
            raise Problem(400, "input", f"this service has no tenant profiles: send no {HEADER}",
                          details={"parameter": HEADER})
        return
    if tenant is None:
        raise Problem(400, "tenant_required", f"this service serves several tenants ({', '.join(names)}): name one "
                      f"with the {HEADER} header", details={"parameter": HEADER, "tenants": list(names)})
    if tenant not in names:
        raise Problem(404, "not_found", f"no tenant profile {tenant!r}", hint=f"the profiles: {', '.join(names)}",
                      details={"parameter": HEADER})
    if not allows(key.get("tenants") or (), tenant):
        raise Problem(403, "tenant", f"API key {key.get('name')!r} may not act for tenant {tenant!r}",
                      hint=f"create a key with --tenants {tenant}", details={"tenant": tenant})


def allows(patterns, tenant: str) -> bool:
    return any(fnmatchcase(tenant, p) for p in patterns)
