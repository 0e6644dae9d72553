"""One bot for every tenant (issue 27, item 4): a live bot endpoint on a config with three tenant
profiles, the fake tenant's Teams side signing each tenant's users' activities. Each activity
lands in its own tenant's store, runs under its tenant's access file and answers into its own
tenant's conversation; an activity of a tenant with no profile is refused and audited; a
command from Teams naming another tenant is refused."""
from __future__ import annotations

import pytest
import yaml

from integration.dispatch import Runtime
from integration.frontends.bot import server as bot_server
from integration.frontends.bot import tenants
from tenant_helpers import a_user, write_tenants_config

TENANTS = ("contoso", "fabrikam", "northwind")


@pytest.fixture
def bot(tenants3, tmp_path):
    multi = tenants3
    path = tmp_path / "tenants.yml"
    write_tenants_config(multi, tmp_path, store_path=str(tmp_path / "store.sqlite3"))
    data = yaml.safe_load(path.read_text())
    for tenant in ("contoso", "fabrikam"):  # northwind has no access file: its commands are refused
        access = tmp_path / f"access-{tenant}.yml"
        access.write_text(f"roles:\n  analysts: {{users: [{a_user(multi, tenant)}]}}\n"
                          "allow:\n  analysts: [read]\n")
        data["tenants"][tenant]["bot_access_file"] = str(access)
    path.write_text(yaml.safe_dump(data))
    runtime = Runtime(config_path=str(path), provider=True)
    endpoint = bot_server.build(runtime, workers=2)
    tenants.install(endpoint, runtime, workers=2)
    server = bot_server.BotServer(endpoint).start()
    multi.teams.register(server.messaging_endpoint)
    try:
        yield multi, runtime, endpoint
    finally:
        multi.teams.register(None)
        server.stop()
        endpoint.processor.close(5)
        runtime.close()


def says(emu, endpoint, user: str, text: str) -> dict:
    rec = emu.teams.user_says(user, text)
    assert endpoint.processor.drain(20)
    return rec


def replies(emu, tenant: str, rec: dict) -> list[str]:
    from fake_tenant.drive import _card_text

    acts = emu.tenant(tenant).state.activities
    return ["\n".join(_card_text(a["activity"])) for a in acts.values()
            if a["activity"].get("replyToId") == rec["activityId"]]


def test_each_tenants_activity_lands_in_its_own_store_and_answers_there(bot):
    emu, runtime, endpoint = bot
    assert isinstance(endpoint.processor, tenants.TenantRouter)
    for tenant in ("contoso", "fabrikam"):
        rec = says(emu, endpoint, a_user(emu, tenant), "!team-list")
        assert rec["status"] in (200, 202), rec
        (text,) = replies(emu, tenant, rec)
        assert "Security Operations" in text
    for tenant in ("contoso", "fabrikam"):
        audit = runtime.for_tenant(tenant).store.audit_list()
        assert [(a["command"], a["outcome"]) for a in audit] == [("team-list", "ok")]
        assert audit[0]["sender_name"] and audit[0]["tenant_id"] == emu.tenant_ids()[tenant]
        refs = runtime.for_tenant(tenant).store.conversation_list()
        assert refs and {r["value"].get("tenantId") for r in refs if r["value"].get("tenantId")} == \
            {emu.tenant_ids()[tenant]}
    assert runtime.store.audit_list() == []  # the provider's store took nothing


def test_each_tenant_has_its_own_access_file(bot):
    emu, runtime, endpoint = bot
    rec = says(emu, endpoint, a_user(emu, "northwind"), "!team-list")
    (text,) = replies(emu, "northwind", rec)
    assert "team-list" in text and ("not allowed" in text.lower() or "may not" in text.lower()), text
    assert [a["decision"] for a in runtime.for_tenant("northwind").store.audit_list()] == ["denied"]


def test_a_command_from_teams_naming_another_tenant_is_refused(bot):
    emu, runtime, endpoint = bot
    rec = says(emu, endpoint, a_user(emu, "fabrikam"), "!team-list tenant=contoso")
    (text,) = replies(emu, "fabrikam", rec)
    assert "for tenant 'fabrikam' only" in text, text
    assert runtime.for_tenant("contoso").store.audit_list() == []


def test_an_activity_of_a_tenant_with_no_profile_is_refused_and_audited(bot):
    emu, runtime, endpoint = bot
    activity = emu.teams.message(a_user(emu, "contoso"), "!team-list")
    stranger = "99999999-8888-7777-6666-555555555555"
    activity["channelData"] = dict(activity.get("channelData") or {}, tenant={"id": stranger})
    activity["conversation"] = dict(activity["conversation"], tenantId=stranger)
    rec = emu.teams.deliver(activity, runtime.cfg.bot_id)
    assert endpoint.processor.drain(20) and rec["status"] == 202
    (row,) = runtime.store.audit_list()
    assert row["decision"] == "denied" and row["tenant_id"] == stranger
    assert "no tenant profile" in row["detail"]
    for tenant in TENANTS:
        assert runtime.for_tenant(tenant).store.audit_list() == []
        assert runtime.for_tenant(tenant).store.conversation_list() == []
    assert not replies(emu, "contoso", rec)


def test_an_activity_of_one_tenant_naming_anothers_conversation_is_refused(bot):
    emu, runtime, endpoint = bot
    says(emu, endpoint, a_user(emu, "contoso"), "!team-list")  # contoso's 1:1 conversation, now known
    (conv,) = [r["value"]["conversationId"] for r in runtime.for_tenant("contoso").store.conversation_list()
               if r["value"].get("type") == "personal"]
    fab = emu.tenant_ids()["fabrikam"]
    activity = emu.teams.message(a_user(emu, "fabrikam"), "!team-list")
    activity["conversation"] = dict(activity["conversation"], id=conv, tenantId=fab)
    rec = emu.teams.deliver(activity, runtime.cfg.bot_id)
    assert endpoint.processor.drain(20) and rec["status"] == 202
    (row,) = runtime.store.audit_list()
    assert row["decision"] == "denied" and "belongs to tenant profile 'contoso'" in row["detail"]
    assert runtime.for_tenant("fabrikam").store.audit_list() == []
    assert [a["command"] for a in runtime.for_tenant("contoso").store.audit_list()] == ["team-list"]


def test_an_activity_naming_two_tenants_is_refused(bot):
    emu, runtime, endpoint = bot
    activity = emu.teams.message(a_user(emu, "fabrikam"), "!team-list")
    activity["conversation"] = dict(activity["conversation"], tenantId=emu.tenant_ids()["contoso"])
    emu.teams.deliver(activity, runtime.cfg.bot_id)
    assert endpoint.processor.drain(20)
    (row,) = runtime.store.audit_list()
    assert row["decision"] == "denied" and row["detail"] == "the activity names two tenants"


def test_metrics_are_labelled_with_each_tenant(bot):
    from integration.engine import metrics
    from integration.frontends.tenants import watch_stores

    emu, runtime, endpoint = bot
    was = metrics.enabled
    metrics.enable()
    try:
        watch_stores(runtime)
        for tenant in ("contoso", "fabrikam"):
            says(emu, endpoint, a_user(emu, tenant), "!team-list")
        text = metrics.render()[0].decode()
    finally:
        metrics.enabled = was
    for tenant in ("contoso", "fabrikam"):
        assert f'msteams_commands_total{{command="team-list",outcome="ok",tenant="{tenant}"}}' in text
    for tenant in TENANTS:
        assert f'msteams_outbox_deliveries{{state="sent",tenant="{tenant}"}}' in text


def test_call_notifications_land_in_the_calls_tenant(tenants3, tmp_path):
    """ring-user wait= in fabrikam, with one bot endpoint for every tenant: the calling service
    posts fabrikam's signed notifications to /api/calls, the endpoint records them in fabrikam's
    store (where the wait looks), and a call of a tenant with no profile is refused."""
    from integration.dispatch import execute

    emu = tenants3
    user = a_user(emu, "fabrikam", 2)
    answered = []

    def sleep(seconds):  # the rung user answers while ring-user waits
        if not answered:
            answered.append(emu.tenant("fabrikam").calling.answer(user, "accept"))

    path = write_tenants_config(emu, tmp_path, store_path=str(tmp_path / "store.sqlite3"))
    runtime = Runtime(config_path=path, provider=True, sleep=sleep)
    endpoint = bot_server.build(runtime, workers=1)
    tenants.install(endpoint, runtime, workers=1)
    assert isinstance(endpoint.calls, tenants.TenantCalls)
    server = bot_server.BotServer(endpoint, tls_cert=emu.tls.cert_path, tls_key=emu.tls.key_path).start()
    try:
        fab = runtime.for_tenant("fabrikam")
        fab.cfg.bot_public_url = server.url
        out = execute("ring-user", {"username": user, "wait": 30}, fab).outputs[0]
        assert out["outcome"] == "answered" and answered[0]["status"] == 202
        assert [e["state"] for e in fab.store.call_events(out["callId"])] == ["established"]
        assert runtime.for_tenant("contoso").store.call_events(out["callId"]) == []
        with pytest.raises(ValueError, match="no tenant profile"):
            endpoint.calls.accept({"@odata.type": "#microsoft.graph.commsNotifications", "value": []},
                                  {"tid": "99999999-8888-7777-6666-555555555555"})
    finally:
        server.stop()
        endpoint.processor.close(5)
        runtime.close()
