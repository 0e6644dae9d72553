"""Nothing crosses between tenants (issue 27, "Tests and figures"): three customer tenants in
one fake Microsoft 365 (Emulator(tenants=3)), one config with a profile each (as
`msteams emulator serve --tenants 3 --write-config` writes it), the real CLI and Python API,
real MSAL against each tenant's authority, real SQLite stores (or Redis under
MSTEAMS_TEST_STORE=redis)."""
from __future__ import annotations

import json
import os

import pytest

from tenant_helpers import a_user, cli, write_tenants_config

TENANTS = ("contoso", "fabrikam", "northwind")


@pytest.fixture
def emu3(tenants3):
    return tenants3


@pytest.fixture
def config(emu3, tmp_path) -> str:
    return write_tenants_config(emu3, tmp_path)


def team_id(emu, tenant: str, name: str = "Security Operations") -> str:
    return next(t.id for t in emu.tenant(tenant).state.teams.values() if t.display_name == name)


def token_requests(emu) -> list[str]:
    return [e["path"] for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token")]


def test_each_tenant_answers_with_its_own_directory(emu3, config):
    seen = {}
    for tenant in TENANTS:
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "team-list")
        assert code == 0, err
        seen[tenant] = {t["displayName"]: t["id"] for t in json.loads(out)}
        assert seen[tenant]["Security Operations"] == team_id(emu3, tenant)
    ids = [seen[t]["Security Operations"] for t in TENANTS]
    assert len(set(ids)) == 3  # the same name, three teams


def test_a_command_for_one_tenant_signs_in_to_that_tenant_only(emu3, config):
    ids = emu3.tenant_ids()
    code, out, err = cli(config, "--tenant", "fabrikam", "team-list", "--flow", "app")
    assert code == 0, err
    assert token_requests(emu3) and all(f"/{ids['fabrikam']}/" in p for p in token_requests(emu3))
    if os.environ.get("MSTEAMS_TEST_STORE") != "redis":
        from integration.store.sqlite import SQLiteStore

        d = os.path.dirname(config)
        assert SQLiteStore(os.path.join(d, "store.fabrikam.sqlite3")).counts()["token_caches"] >= 1
        for other in ("contoso", "northwind"):  # never opened: nothing of theirs was read or written
            assert not os.path.exists(os.path.join(d, f"store.{other}.sqlite3"))


def test_names_cached_for_one_tenant_never_answer_for_another(emu3, config):
    answers = {}
    for tenant in ("contoso", "fabrikam", "contoso"):
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "channel-list", "--team", "Security Operations")
        assert code == 0, err
        answers.setdefault(tenant, []).append(sorted(c["id"] for c in json.loads(out)))
    assert answers["contoso"][0] == answers["contoso"][1]  # the second from the cache, the same
    assert not set(answers["contoso"][0]) & set(answers["fabrikam"][0])


def test_another_tenants_ids_are_not_found_here(emu3, config):
    code, out, err = cli(config, "--tenant", "contoso", "channel-list", "--team", team_id(emu3, "fabrikam"))
    assert code == 5 and "Traceback" not in err, err


def test_cache_reset_of_one_tenant_leaves_the_others(emu3, config):
    for tenant in TENANTS:
        assert cli(config, "--tenant", tenant, "channel-list", "--team", "Security Operations")[0] == 0
    code, out, err = cli(config, "--tenant", "contoso", "cache-reset")
    assert code == 0, err
    counts = {}
    for tenant in TENANTS:
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "cache-show")
        counts[tenant] = {r["kind"]: r["entries"] for r in json.loads(out)}
    assert counts["contoso"]["team"] == 0
    assert counts["fabrikam"]["team"] >= 1 and counts["northwind"]["team"] >= 1
    assert counts["fabrikam"]["token_caches"] >= 1  # state, not cache: kept by any reset


def test_a_notification_reaches_the_user_in_the_profiles_tenant(emu3, config):
    for tenant in ("fabrikam", "northwind"):
        user = a_user(emu3, tenant)
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "send-notification", "--to", user,
                             "--message", f"hello {tenant}")
        assert code == 0, err
    code, out, err = cli(config, "--tenant", "contoso", "send-notification", "--to", a_user(emu3, "fabrikam"),
                         "--message", "crossing")
    assert code == 5 and "not found" in err  # fabrikam's user is no user of contoso's directory


def test_tenants_lists_every_profile_healthy(emu3, config):
    code, out, err = cli(config, "-o", "json", "tenants")
    rows = {r["tenant"]: r for r in json.loads(out)}
    assert code == 0, out + err
    assert list(rows) == list(TENANTS)
    ids = emu3.tenant_ids()
    for tenant in TENANTS:
        assert rows[tenant]["tenant_id"] == ids[tenant] and rows[tenant]["app"] == "ok" and rows[tenant]["bot"] == "ok"


def test_a_tenant_that_withdrew_consent_shows_in_tenants_and_the_others_still_work(emu3, config):
    emu3.set_consent("northwind", False)
    code, out, err = cli(config, "-o", "json", "tenants")
    rows = {r["tenant"]: r for r in json.loads(out)}
    assert code == 3
    assert rows["northwind"]["app"] == "token error" and "AADSTS" in rows["northwind"]["detail"]
    assert rows["contoso"]["status"] == "ok" and rows["fabrikam"]["status"] == "ok"
    assert cli(config, "--tenant", "fabrikam", "team-list")[0] == 0


def test_a_tenants_webhooks_are_its_own_and_each_event_says_whose_it_is(emu3, config, tmp_path):
    from webhook_helpers import Receiver

    receiver = Receiver()
    try:
        code, out, err = cli(config, "--tenant", "fabrikam", "-o", "json", "webhook", "add", receiver.url,
                             "--event", "run.finished")
        assert code == 0, err
        receiver.secret = json.loads(out)["secret"]
        book = tmp_path / "list.yml"
        book.write_text("name: list\nsteps:\n  - id: teams\n    command: team-list\n")
        for tenant in ("contoso", "fabrikam"):  # contoso's run: no subscriber of its own, no event
            code, out, err = cli(config, "--tenant", tenant, "playbook", "run", str(book))
            assert code == 0, err
        assert receiver.types() == ["run.finished"]
        assert receiver.accepted[0]["data"]["tenant"] == "fabrikam"
        code, out, err = cli(config, "--tenant", "contoso", "-o", "json", "webhook", "list")
        assert code == 0 and json.loads(out) in ([], {"webhooks": []}), out
    finally:
        receiver.close()


def test_one_tenants_429_pause_never_holds_another_tenants_sends(emu3, config):
    """Microsoft's limits are per app per tenant: a pause one tenant's 429 asked for (its pacer,
    or its keys in the shared Redis budget) leaves another tenant's sends alone."""
    from integration.delivery.pacer import bot_windows
    from integration.dispatch import Runtime

    from engine_fixtures import Sleeps

    slept = {"contoso": Sleeps(), "fabrikam": Sleeps()}
    rts = {t: Runtime(config_path=config, tenant=t, sleep=slept[t]) for t in slept}
    try:
        app_windows = bot_windows("POST", "/v3/conversations")  # the app's budget: every send draws from it
        rts["contoso"].pacer.pause(app_windows, 30.0)
        code = execute_notification(rts["fabrikam"], a_user(emu3, "fabrikam"))
        assert code == "sent"
        assert not [s for s in slept["fabrikam"] if s >= 1.0]  # fabrikam never waited out contoso's pause
        ticket = rts["contoso"].pacer.acquire(app_windows)  # contoso itself does wait
        rts["contoso"].pacer.done(ticket)
        assert sum(slept["contoso"]) >= 29.0
    finally:
        for rt in rts.values():
            rt.close()


def execute_notification(rt, user: str) -> str:
    from integration.dispatch import execute

    rt.echo = lambda s: None
    row, = execute("send-notification", {"user": user, "message": "not held"}, rt).outputs
    return row.get("status") or row.get("deliveryStatus")


def test_a_shipped_playbook_runs_against_each_tenant_by_name(emu3, config):
    """The issue's "done when": the shipped playbooks, run against each tenant by name, reach that
    tenant's people only, and each run is recorded in its own tenant's store."""
    from integration.playbooks.loader import shipped

    book = shipped()["alert-notify"]
    runs = {}
    for tenant in TENANTS:
        who = a_user(emu3, tenant)
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "playbook", "run", str(book),
                             "--input", "title=Impossible travel", "--input", f"message=alert for {tenant}",
                             "--input", f"recipients={who}")
        assert code == 0, err
        result = json.loads(out)
        assert result["status"] == "ok", result
        runs[tenant] = result["run_id"]
    for tenant in TENANTS:
        texts = [json.dumps(a["activity"]) for a in emu3.tenant(tenant).state.activities.values()]
        assert sum(f"alert for {tenant}" in t for t in texts) == 1
        assert not [t for t in texts for other in TENANTS if other != tenant and f"alert for {other}" in t]
        code, out, err = cli(config, "--tenant", tenant, "-o", "json", "playbook", "runs")
        assert [r.get("id") or r.get("run_id") for r in json.loads(out)] == [runs[tenant]]
