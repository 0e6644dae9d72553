"""Configs with tenant profiles over the fake tenant, and the CLI run in-process, for the tests
of issue 27 (many tenants from one deployment)."""
from __future__ import annotations

import yaml

from engine_fixtures import store_settings
from integration.frontends.cli import main

OTHER = "11111111-2222-3333-4444-555555555555"


def write_profiles(emu, tmp_path, profiles=None, **top) -> str:
    """A config with the fake tenant's app at the top level and profiles naming tenants:
    contoso (the fake tenant's own) and fabrikam (another tenant id on the same authority, so
    its tokens are contoso's: what the tid check must refuse)."""
    data = {k: v for k, v in emu.config().items() if k not in ("tenant_id", "authority", "service_account")}
    data.update(store_settings(tmp_path))
    data.update(top)
    cfg = emu.config()
    data["tenants"] = profiles if profiles is not None else {
        "contoso": {"tenant_id": cfg["tenant_id"], "authority": cfg["authority"],
                    "service_account": cfg["service_account"]},
        "fabrikam": {"tenant_id": OTHER, "authority": cfg["authority"]},
    }
    path = tmp_path / "tenants.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def cli(path, *argv) -> tuple[int, str, str]:
    out, err = [], []
    code = main(["--config", path, *argv], out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def write_tenants_config(emu, tmp_path, **top) -> str:
    """The config `msteams emulator serve --tenants N --write-config` writes (a profile per hosted
    tenant), with the test's own store (SQLite, or Redis under MSTEAMS_TEST_STORE=redis)."""
    path = str(tmp_path / "tenants.yml")
    emu.write_config(path, tenants=True)
    data = yaml.safe_load(open(path))
    data.update(store_settings(tmp_path))
    data.update(top)
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return path


def a_user(emu, tenant: str, n: int = 0) -> str:
    """The mail of the n-th person of a hosted tenant's directory."""
    users = emu.tenant(tenant).state.users
    return list(users.values() if isinstance(users, dict) else users)[n]["mail"]
