"""`msteams tenants` (also `msteams integration-health --all-tenants`): every tenant profile of
the config with its health in one table: for each, the integration-health checks run on that
tenant's own runtime (a fresh token per configured flow, so a tenant where the app is not
consented or a secret expired shows as such; the permissions granted against those needed;
its own store). One row per profile, whatever happens to the others; exits as the worst
tenant's health would (3 a flow or store unusable, 4 only permissions missing, 0 all well).
"""
from __future__ import annotations

import argparse
from typing import Callable

from integration.engine.errors import InputError, IntegrationError

FLOWS = ("app", "delegated", "bot")
USAGE = "msteams tenants [--output table|json|context]: each tenant profile with its health"


def report(runtime) -> tuple[list[dict], int]:
    """(a row per tenant profile, the exit code) for a runtime read without a tenant."""
    from integration.engine import redact
    from integration.dispatch import execute

    names = runtime.cfg.tenant_names
    if not names:
        raise InputError(f"{runtime.cfg.source} has no tenant profiles",
                         hint="a config with `tenants:` lists them (docs/tenants.md); without, "
                              "`msteams integration-health` checks the one tenant")
    rows, worst = [], 0
    for name in names:
        row = {"tenant": name, "tenant_id": None, **{f: None for f in FLOWS}, "store": None, "status": "ok",
               "exit_code": 0, "detail": None}
        try:
            rt = runtime.for_tenant(name)
            row["tenant_id"] = rt.cfg.tenant_id
            result = execute("integration-health", {}, rt)
            checks = {r["check"]: r for r in result.outputs}
            for check in (*FLOWS, "store"):
                row[check] = (checks.get(check) or {}).get("status")
            problems = [f"{c}: {r.get('detail') or r.get('status')}" for c, r in checks.items()
                        if r.get("status") not in ("ok", "not configured", "not signed in")]
            row.update(exit_code=result.exit_code, status="ok" if result.exit_code == 0 else "problems",
                       detail="; ".join(problems) or None)
        except IntegrationError as exc:  # this tenant's profile or store: the others still report
            row.update(status="error", exit_code=exc.exit_code if exc.exit_code in (2, 3, 4) else 3,
                       detail=redact.redact(exc.message + (f" ({exc.hint})" if exc.hint else "")))
        rows.append(row)
        worst = _worse(worst, row["exit_code"])
    return rows, worst


def _worse(a: int, b: int) -> int:
    rank = {0: 0, 4: 1, 2: 2, 3: 3}
    return a if rank.get(a, 3) >= rank.get(b, 3) else b


def main(argv: list[str], *, out: Callable[[str], None], config: str | None, output: str | None) -> int:
    from integration.dispatch import Runtime
    from integration.engine.results import Result

    p = argparse.ArgumentParser(prog="msteams tenants", description=USAGE)
    p.parse_args(argv)
    runtime = Runtime(config_path=config, provider=True)
    try:
        rows, code = report(runtime)
    finally:
        runtime.close()
    bad = [r["tenant"] for r in rows if r["exit_code"]]
    message = (f"{len(rows)} tenant profile(s); " + (f"problems in {', '.join(bad)} (exit {code})" if bad
                                                    else "all well."))
    result = Result(command="tenants", outputs=rows, raw=rows, prefix="MicrosoftTeams.Tenant", key="tenant",
                    title="Tenants", columns=["tenant", "tenant_id", *FLOWS, "store", "status", "detail"],
                    message=message, exit_code=code)
    out(result.render(output or "table"))
    return code


def watch_stores(runtime) -> None:
    """Metrics of a service: its runtime's store, and with tenant profiles each tenant's, every
    gauge labelled with its tenant (engine/metrics.py)."""
    from integration.engine import metrics

    cfg = runtime.cfg
    metrics.register_store(runtime.store, cfg.tenant)
    if cfg.tenant is None:
        for name in cfg.tenant_names:
            metrics.register_store(runtime.for_tenant(name).store, name)
