"""One worker process for every tenant profile (issue 27): `msteams worker` on a config with
tenant profiles and none named runs a worker per tenant, each on that tenant's own queue,
store and budget in the shared Redis; each tenant's queued notifications reach its own users
exactly once. Real Redis, the fake tenant hosting three tenants, the worker as a subprocess."""
from __future__ import annotations

import collections
import os
import subprocess
import sys

from cryptography.fernet import Fernet

from integration.dispatch import Runtime, execute
from tenant_helpers import write_tenants_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXT = "IR-91: rotate your credentials now"


def users(emu, tenant: str, n: int) -> list[str]:
    found = emu.tenant(tenant).state.users
    return sorted(u["id"] for u in (found.values() if isinstance(found, dict) else found))[:n]


def test_one_worker_serves_every_tenants_queue_exactly_once_each(tenants3, tmp_path, redis_server, redis_namespace):
    multi = tenants3
    path = write_tenants_config(multi, tmp_path, store_url=redis_server.url, store_namespace=redis_namespace,
                                store_key=Fernet.generate_key().decode())
    wanted = {"fabrikam": users(multi, "fabrikam", 4), "northwind": users(multi, "northwind", 3)}
    for tenant, ids in wanted.items():
        rt = Runtime(config_path=path, tenant=tenant)
        rt.echo = lambda s: None
        try:
            r = execute("send-notification", {"user": ids, "message": TEXT, "queue": True}, rt)
            assert len(r.outputs) == len(ids)
        finally:
            rt.close()
    env = dict(os.environ, MSTEAMS_CONFIG=str(path), PYTHONPATH=REPO)
    env.pop("MSTEAMS_TENANT", None)
    p = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "worker", "--until-empty",
                        "--concurrency", "2", "--visibility-timeout", "5"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "/fabrikam" in p.stdout and "/northwind" in p.stdout and "/contoso" in p.stdout
    for tenant, ids in wanted.items():
        got = collections.Counter(a["conversationId"] for a in multi.tenant(tenant).state.activities.values()
                                  if a["activity"].get("text") == TEXT)
        assert len(got) == len(ids) and max(got.values()) == 1, (tenant, got)
    assert not [a for a in multi.tenant("contoso").state.activities.values() if a["activity"].get("text") == TEXT]


def test_a_tenants_worker_that_fails_makes_the_process_fail(tenants3, tmp_path, redis_server, redis_namespace,
                                                            monkeypatch, caplog):
    """One tenant's worker stopping on an error: the others finish, the failure is logged by
    name, and the process exits with its code, never 0."""
    from integration.engine.errors import ConfigError
    from integration.frontends import worker as worker_mod

    path = write_tenants_config(tenants3, tmp_path, store_url=redis_server.url, store_namespace=redis_namespace,
                                store_key=Fernet.generate_key().decode())
    real = worker_mod.Worker.run

    def run(self):
        if self.name.endswith("/fabrikam"):
            raise ConfigError("fabrikam's store cannot be reached")
        return real(self)

    monkeypatch.setattr(worker_mod.Worker, "run", run)
    out = []
    code = worker_mod.main(["--until-empty", "--concurrency", "1"], out=out.append, err=out.append, config=path)
    assert code == 3
    assert "fabrikam's store cannot be reached" in caplog.text
    assert sum("stopped" in line for line in out) == 2  # contoso's and northwind's finished
