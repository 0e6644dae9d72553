"""Tenant seeds: reading a YAML tenant file (or the shipped ``default_tenant.yaml``), checking
it with errors that name the file, and generating large deterministic directories for
benchmarks (``--users 10000``) on top of the default organisation.

The seed format is documented in ``state.py``.
"""
from __future__ import annotations

import copy
import os
import random
from typing import Any

import yaml

from .state import TenantState, _stable_guid

DEFAULT_TENANT_PATH = os.path.join(os.path.dirname(__file__), "default_tenant.yaml")


class TenantFileError(ValueError):
    """A tenant file that cannot be used; the message names the file and the problem."""


def _require(obj: Any, key: str, where: str, source: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or obj[key] in (None, ""):
        raise TenantFileError(f"{source}: {where} is missing required key '{key}'")
    return obj[key]


def validate_seed(seed: Any, source: str = "tenant seed") -> dict:
    """Check the shape of a seed; raise :class:`TenantFileError` naming ``source``."""
    if not isinstance(seed, dict):
        raise TenantFileError(f"{source}: expected a mapping at the top level, got {type(seed).__name__}")
    _require(seed, "tenant_id", "the tenant", source)
    users = seed.get("users") or []
    if not isinstance(users, list):
        raise TenantFileError(f"{source}: 'users' must be a list")
    for i, u in enumerate(users):
        _require(u, "displayName", f"users[{i}]", source)
        if not isinstance(u, dict) or not (u.get("mail") or u.get("userPrincipalName")):
            raise TenantFileError(f"{source}: users[{i}] is missing required key 'mail'")
    for key in ("teams", "groups", "apps"):
        if not isinstance(seed.get(key) or [], list):
            raise TenantFileError(f"{source}: '{key}' must be a list")
    for i, t in enumerate(seed.get("teams") or []):
        _require(t, "displayName", f"teams[{i}]", source)
        for j, c in enumerate(t.get("channels") or []):
            _require(c, "displayName", f"teams[{i}].channels[{j}]", source)
            mt = c.get("membershipType", "standard")
            if mt not in ("standard", "private", "shared"):
                raise TenantFileError(f"{source}: teams[{i}].channels[{j}] has unknown membershipType {mt!r}")
    for i, g in enumerate(seed.get("groups") or []):
        _require(g, "displayName", f"groups[{i}]", source)
    for i, a in enumerate(seed.get("apps") or []):
        for k in ("name", "app_id", "secret"):
            _require(a, k, f"apps[{i}]", source)
        if a.get("kind", "graph") not in ("graph", "bot"):
            raise TenantFileError(f"{source}: apps[{i}] has unknown kind {a.get('kind')!r} (graph or bot)")
    return seed


def read_seed(path: str | None = None) -> dict:
    """The seed in ``path`` (default: the shipped organisation)."""
    path = path or DEFAULT_TENANT_PATH
    try:
        with open(path, encoding="utf-8") as f:
            seed = yaml.safe_load(f)
    except OSError as e:
        raise TenantFileError(f"{path}: cannot read tenant file ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TenantFileError(f"{path}: invalid YAML{where}: {problem}") from None
    return validate_seed(seed, path)


_FIRST = ["Aarav", "Abigail", "Ahmed", "Aiko", "Amelia", "Ana", "Andrés", "Anna", "Arjun", "Astrid", "Ben",
          "Björn", "Carlos", "Chen", "Chloé", "Daniel", "Dmitri", "Elena", "Emma", "Eoin", "Fatima", "Felix",
          "François", "Gabriel", "Hana", "Hiroshi", "Ingrid", "Isabel", "Jack", "Jana", "Javier", "Jonas",
          "Kai", "Karin", "Leila", "Liam", "Lucía", "Mael", "Maria", "Mateo", "Mei", "Mohammed", "Nadia",
          "Niamh", "Noah", "Olga", "Omar", "Oscar", "Paula", "Pedro", "Rania", "Ravi", "Rosa", "Sakura",
          "Sean", "Sofia", "Sven", "Tomás", "Yara", "Yusuf", "Zoë"]
_LAST = ["Andersen", "Bauer", "Byrne", "Costa", "D'Angelo", "Dubois", "Fernández", "Fischer", "García",
         "Hansen", "Hernández", "Ito", "Jensen", "Kowalski", "Kumar", "Larsen", "Lee", "Lindqvist", "López",
         "Martin", "Mendes", "Müller", "Nakamura", "Nguyen", "Novak", "O'Connor", "O'Neill", "Petrov",
         "Rossi", "Sánchez", "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Walsh", "Wang",
         "Weber", "Wójcik", "Yilmaz", "Zhang", "Østby"]
_TITLES = ["Analyst", "Engineer", "Consultant", "Manager", "Technician", "Specialist", "Administrator",
           "Architect", "Coordinator", "Director"]
_DEPTS = ["Finance", "Sales", "Engineering", "Operations", "Legal", "Marketing", "HR", "IT", "Security",
          "Facilities"]
_OFFICES = ["London", "Dublin", "Berlin", "Madrid", "New York", "Singapore", "Tokyo", "São Paulo", "Sydney"]


def _ascii(s: str) -> str:
    table = str.maketrans({"ä": "a", "á": "a", "à": "a", "ã": "a", "é": "e", "è": "e", "ë": "e", "í": "i",
                           "ó": "o", "ö": "o", "ø": "o", "Ø": "o", "ú": "u", "ü": "u", "ñ": "n", "ç": "c",
                           "ł": "l", "'": "", " ": ""})
    return s.lower().translate(table)


def generate_tenant(n_users: int, seed: int = 0, base: dict | None = None) -> dict:
    """A seed with ``n_users`` users in total: the default organisation (or ``base``) plus
    deterministic generated people (same ``seed`` -> same names and ids)."""
    out = copy.deepcopy(base) if base is not None else read_seed()
    users = out.setdefault("users", [])
    rng = random.Random(seed)
    domain = out.get("domain", "contoso.example")
    tid = out["tenant_id"]
    taken = {(u.get("userPrincipalName") or u["mail"]).lower() for u in users}
    i = 0
    while len(users) < n_users:
        i += 1
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        upn = f"{_ascii(first)}.{_ascii(last)}{i}@{domain}"
        if upn in taken:
            continue
        taken.add(upn)
        dept = rng.choice(_DEPTS)
        # Explicit ids save hashing in TenantState and keep them stable across releases.
        users.append({"id": _stable_guid(tid, "gen-user", str(seed), str(i)), "displayName": f"{first} {last}",
                      "givenName": first, "surname": last, "mail": upn, "userPrincipalName": upn,
                      "jobTitle": f"{dept} {rng.choice(_TITLES)}", "officeLocation": rng.choice(_OFFICES)})
    return out


def load_tenant(tenant: str | dict | None = None, users: int | None = None) -> TenantState:
    """A ready :class:`TenantState` from a file path, a seed dict or the default organisation;
    ``users`` grows the directory to that many users."""
    if isinstance(tenant, dict):
        source = "tenant seed"
        seed = validate_seed(copy.deepcopy(tenant), source)
    else:
        source = tenant or DEFAULT_TENANT_PATH
        seed = read_seed(tenant)
    if users:
        seed = generate_tenant(int(users), base=seed)
    try:
        return TenantState.from_seed(seed)
    except (KeyError, ValueError, TypeError) as e:
        raise TenantFileError(f"{source}: {e}") from None


# ---- several tenants (``Emulator(tenants=N)``, ``msteams emulator serve --tenants N``) ----

HOSTED_NAMES = ["contoso", "fabrikam", "northwind"]
_ORG_NAMES = {"fabrikam": "Fabrikam", "northwind": "Northwind Traders"}
_SOC_ROLES = ["SOC Manager", "Security Analyst", "Incident Responder", "Threat Intelligence Analyst",
              "On-call Security Engineer", "IT Helpdesk Lead", "Helpdesk Technician", "Systems Administrator",
              "Chief Information Security Officer"]


def hosted_tenant_name(index: int) -> str:
    """The short lowercase name of hosted tenant ``index`` (1-based): contoso (the default
    organisation or the seed given), fabrikam, northwind, then tenant4, tenant5..."""
    if index < 1:
        raise ValueError("tenant indexes start at 1")
    return HOSTED_NAMES[index - 1] if index <= len(HOSTED_NAMES) else f"tenant{index}"


def hosted_tenant_seed(index: int, apps: list) -> dict:
    """The seed of hosted tenant ``index`` (2 and up): a small deterministic organisation of its
    own (tenant id, domain, people, a "Security Operations" and an "IT Helpdesk" team, a
    service account), with the same app registrations as the first tenant (``apps``: the
    multi-tenant app consented there with the same permissions). Same index -> same seed."""
    if index < 2:
        raise ValueError("hosted tenant 1 is the default organisation (or the seed given)")
    name = hosted_tenant_name(index)
    org = _ORG_NAMES.get(name, f"Tenant {index}")
    domain = f"{name}.example"
    tid = _stable_guid("hosted-tenant", name)
    rng = random.Random(f"hosted-tenant/{name}")
    users, seen = [], set()
    while len(users) < len(_SOC_ROLES):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        upn = f"{_ascii(first)}.{_ascii(last)}@{domain}"
        users.append({"displayName": f"{first} {last}", "givenName": first, "surname": last, "mail": upn,
                      "jobTitle": _SOC_ROLES[len(users)], "officeLocation": rng.choice(_OFFICES)})
    svc = f"soar-svc@{domain}"
    users.append({"displayName": "SOAR Service Account", "mail": svc, "jobTitle": "Service Account"})
    upn = [u["mail"] for u in users]
    return {
        "tenant_id": tid,
        "domain": domain,
        "service_account": svc,
        "on_call": upn[4],
        "users": users,
        "teams": [
            {"displayName": "Security Operations", "description": f"{org} SOC: triage and incident response",
             "owners": [upn[0]], "members": upn[1:5] + [svc],
             "channels": [{"displayName": "Incident Response", "description": "Live incidents and war rooms"},
                          {"displayName": "Threat Intel", "description": "Indicators (restricted)",
                           "membershipType": "private", "owners": [upn[3]], "members": [upn[0], svc]}]},
            {"displayName": "IT Helpdesk", "description": f"{org} end-user support",
             "owners": [upn[5]], "members": upn[6:8] + [svc],
             "channels": [{"displayName": "Escalations", "description": "Tickets escalated to second line"}]},
        ],
        "apps": copy.deepcopy(list(apps)),
    }
