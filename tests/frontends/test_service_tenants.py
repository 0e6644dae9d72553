"""The HTTP API for many tenants (issue 27): a live `msteams serve` on a config with three tenant
profiles (the fake tenant hosting three tenants). A call names its tenant with X-Msteams-Tenant;
none named, no such profile, or a key not allowed that tenant is refused with its problem; each
tenant's answer is its own; an Idempotency-Key used for one tenant is another request for
another; runs and audit entries live in the tenant's store; keys in the provider's."""
from __future__ import annotations

import json

import pytest

from service_helpers import Service, cli
from tenant_helpers import a_user, write_tenants_config

SOC = "Security Operations"


@pytest.fixture
def multi(tenants3):
    return tenants3


@pytest.fixture
def cfg_file(multi, tmp_path):
    return write_tenants_config(multi, tmp_path, store_path=str(tmp_path / "store.sqlite3"))


def make_key(cfg_file, name: str, *tenants: str, scopes=("channel-list", "team-list")) -> str:
    argv = ["-o", "json", "api-key", "create", "--name", name]
    for s in scopes:
        argv += ["--scope", s]
    for t in tenants:
        argv += ["--tenants", t]
    code, out, err = cli(cfg_file, *argv)
    assert code == 0, err
    return json.loads(out[0])["key"]


def test_a_key_needs_tenants_with_profiles_and_names_only_real_ones(cfg_file):
    code, out, err = cli(cfg_file, "api-key", "create", "--name", "x", "--scope", "team-list")
    assert code == 2 and "give --tenants NAME" in err[-1] and "contoso, fabrikam, northwind" in err[-1]
    code, out, err = cli(cfg_file, "api-key", "create", "--name", "x", "--scope", "team-list", "--tenants", "nope*")
    assert code == 2 and "no tenant profile matches it" in err[-1]
    code, out, err = cli(cfg_file, "--tenant", "contoso", "api-key", "list")
    assert code == 2 and "API keys are the provider's" in err[-1]


def test_each_call_runs_in_the_tenant_it_names_and_is_refused_without_one(multi, cfg_file, tmp_path):
    both = make_key(cfg_file, "both", "contoso", "fabrikam")
    with Service(cfg_file, tmp_path) as svc:
        ids = {}
        for tenant in ("contoso", "fabrikam"):
            r = svc.post("channel-list", {"team": SOC}, key=both, headers={"X-Msteams-Tenant": tenant})
            assert r.status_code == 200, r.text
            ids[tenant] = {c["id"] for c in r.json()["outputs"]}
        assert ids["contoso"] and ids["fabrikam"] and not ids["contoso"] & ids["fabrikam"]
        r = svc.post("team-list", {"tenant": "fabrikam"}, key=both)  # the body's tenant, as the war-room form's
        assert r.status_code == 200 and r.json()["outputs"]

        r = svc.post("team-list", {}, key=both)
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "tenant_required" and r.json()["details"]["tenants"] == ["contoso", "fabrikam",
                                                                                               "northwind"]
        r = svc.post("team-list", {}, key=both, headers={"X-Msteams-Tenant": "northwind"})
        assert r.status_code == 403 and r.json()["code"] == "tenant" and "--tenants northwind" in r.json()["hint"]
        r = svc.post("team-list", {}, key=both, headers={"X-Msteams-Tenant": "nowhere"})
        assert r.status_code == 404
        r = svc.post("team-list", {}, key=both, headers={"X-Msteams-Tenant": "Bad Name"})
        assert r.status_code == 400 and r.json()["details"]["parameter"] == "X-Msteams-Tenant"
        r = svc.post("team-list", {"tenant": "contoso"}, key=both, headers={"X-Msteams-Tenant": "fabrikam"})
        assert r.status_code == 400 and "name different tenants" in r.json()["detail"]

        every = make_key(cfg_file, "every", "*")
        r = svc.post("team-list", {}, key=every, headers={"X-Msteams-Tenant": "northwind"})
        assert r.status_code == 200, r.text
    # audit entries in each tenant's store; the refusals before a tenant was settled in the provider's
    code, out, err = cli(cfg_file, "--tenant", "fabrikam", "-o", "json", "bot", "audit")
    fab = json.loads(out[0])
    assert [(a["command"], a["outcome"]) for a in fab] == [("team-list", "ok"), ("channel-list", "ok")]
    code, out, err = cli(cfg_file, "-o", "json", "bot", "audit")
    provider = json.loads(out[0])
    assert {a["outcome"] for a in provider} == {"tenant_required", "tenant", "not_found", "input"}


def test_an_idempotency_key_for_one_tenant_is_another_request_for_another(multi, cfg_file, tmp_path):
    both = make_key(cfg_file, "both", "contoso", "fabrikam")
    with Service(cfg_file, tmp_path) as svc:
        h = {"Idempotency-Key": "req-1", "X-Msteams-Tenant": "contoso"}
        first = svc.post("team-list", {}, key=both, headers=h)
        again = svc.post("team-list", {}, key=both, headers=h)
        assert first.status_code == again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
        other = svc.post("team-list", {}, key=both, headers=dict(h, **{"X-Msteams-Tenant": "fabrikam"}))
        assert other.status_code == 422 and other.json()["code"] == "idempotency_mismatch"


def test_runs_live_in_the_tenant_named(multi, cfg_file, tmp_path):
    key = make_key(cfg_file, "runs", "fabrikam", scopes=("playbook:access-request",))
    with Service(cfg_file, tmp_path, "--bot") as svc:
        reviewer, requester = a_user(multi, "fabrikam"), a_user(multi, "fabrikam", 1)
        body = {"inputs": {"request_id": "REQ-7", "requester": requester, "roles": ["prod-admin"],
                           "role_to_recipients": {"prod-admin": [reviewer]}}}
        h = {"X-API-Key": key, "X-Msteams-Tenant": "fabrikam"}
        r = svc.http.post(f"{svc.url}/v1/playbooks/access-request/runs", json=body, headers=h, timeout=60)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        got = svc.http.get(f"{svc.url}/v1/runs/{run_id}", headers=h, timeout=60)
        assert got.status_code == 200 and got.json()["id"] == run_id
        listed = svc.http.get(f"{svc.url}/v1/runs", headers=h, timeout=60).json()["runs"]
        assert run_id in [x["id"] for x in listed]
        elsewhere = svc.http.get(f"{svc.url}/v1/runs/{run_id}", headers=dict(h, **{"X-Msteams-Tenant": "contoso"}),
                                 timeout=60)
        assert elsewhere.status_code == 403  # this key is not allowed contoso
        assert svc.http.get(f"{svc.url}/v1/runs/{run_id}", headers={"X-API-Key": key}, timeout=60).status_code == 400
    code, out, err = cli(cfg_file, "--tenant", "fabrikam", "-o", "json", "playbook", "runs")
    assert run_id in [x.get("id") or x.get("run_id") for x in json.loads(out[0])]


def test_a_job_is_read_only_by_keys_allowed_its_tenant(multi, cfg_file, tmp_path):
    both = make_key(cfg_file, "both", "contoso", "fabrikam")
    contoso_only = make_key(cfg_file, "contoso-only", "contoso")
    fabrikam_too = make_key(cfg_file, "fabrikam-too", "fabrikam")
    with Service(cfg_file, tmp_path) as svc:
        r = svc.post("team-list", {}, key=both, headers={"X-Msteams-Tenant": "fabrikam", "Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        assert svc.get(location, key=contoso_only).json()["code"] == "tenant"  # may run team-list, not for fabrikam
        assert svc.get(location, key=contoso_only).status_code == 403
        got = svc.get(location, key=fabrikam_too)
        assert got.status_code == 200 and got.json()["id"] == location.rsplit("/", 1)[1]
