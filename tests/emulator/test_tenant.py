"""Tenant seeds: the shipped organisation, large generated directories, and clear errors for
bad tenant files."""
from __future__ import annotations

import time

import pytest

from fake_tenant import Emulator
from fake_tenant.tenant import TenantFileError, generate_tenant, load_tenant, read_seed

SOAR_APP_ONLY = {"User.Read.All", "Chat.Create", "Chat.Read.All", "ChatMember.ReadWrite.All", "Channel.ReadBasic.All",
                 "Channel.Create", "Channel.Delete.All", "ChannelMember.ReadWrite.All", "ChannelMessage.Read.All",
                 "Team.ReadBasic.All", "TeamMember.ReadWrite.All", "Group.Read.All", "Calls.Initiate.All",
                 "OnlineMeetings.ReadWrite.All", "Chat.ReadWrite.All", "Team.Create", "Group.ReadWrite.All",
                 "TeamsAppInstallation.ReadForUser.All"}  # reading bot messages back (send-notification)


def test_default_organisation():
    st = load_tenant()
    names = {u["displayName"] for u in st.users.values()}
    assert 12 <= len(st.users) <= 15
    assert "Conor O'Brien" in names
    assert {"Zoë Müller", "José Álvarez", "Søren Østergaard"} <= names
    for u in st.users.values():
        assert u["mail"] and u["userPrincipalName"].endswith("@contoso.example") and u["displayName"]
    assert st.users[st.service_account]["displayName"] == "SOAR Service Account"
    assert st.users[st.service_account]["userPrincipalName"] == "soar-svc@contoso.example"
    assert st.on_call and st.users[st.on_call]["jobTitle"].startswith("On-call")
    teams = {t.display_name: t for t in st.teams.values()}
    assert {"Security Operations", "IT Helpdesk"} <= set(teams)
    soc = {c.display_name: c for c in teams["Security Operations"].channels.values()}
    assert list(soc)[0] == "General"
    assert soc["Incident Response"].membership_type == "standard"
    assert soc["Threat Intel"].membership_type == "private" and len(soc["Threat Intel"].members) >= 3
    assert "Escalations" in {c.display_name for c in teams["IT Helpdesk"].channels.values()}
    assert all(c.id.startswith("19:") and c.id.endswith("@thread.tacv2") for t in st.teams.values()
               for c in t.channels.values())
    apps = {a.name: a for a in st.apps.values()}
    graph, bot = apps["SOAR Integration"], apps["SOAR Bot"]
    assert graph.kind == "graph" and bot.kind == "bot"
    assert graph.application_permissions == SOAR_APP_ONLY
    assert "Teamwork.Migrate.All" not in graph.application_permissions
    assert {"ChatMessage.Send", "ChannelMessage.Send", "offline_access", "openid"} <= graph.delegated_permissions
    assert {"http://localhost", "http://127.0.0.1"} <= set(graph.redirect_uris)


def test_ids_are_stable_between_loads():
    a, b = load_tenant(), load_tenant()
    assert list(a.users) == list(b.users) and list(a.teams) == list(b.teams)
    assert a.tenant_id == "8f6c2a4e-1b3d-4e5f-9a7b-0c2d4e6f8a1b"


def test_generate_10000_users_fast_and_deterministic():
    t = time.perf_counter()
    st = load_tenant(users=10_000)
    elapsed = time.perf_counter() - t
    assert len(st.users) == 10_000
    assert elapsed < 2.0, elapsed
    upns = [u["userPrincipalName"].lower() for u in st.users.values()]
    assert len(set(upns)) == len(upns)
    assert st.users[st.service_account]["userPrincipalName"] == "soar-svc@contoso.example"
    again = generate_tenant(10_000)
    assert [u["mail"] for u in again["users"]] == [u["mail"] for u in generate_tenant(10_000)["users"]]
    assert [u["mail"] for u in generate_tenant(50, seed=1)["users"]] != [u["mail"] for u in generate_tenant(50)["users"]]


def test_tenant_from_dict_and_custom_file(tmp_path):
    seed = read_seed()
    seed["users"] = seed["users"][:3] + [u for u in seed["users"] if u["mail"].startswith("soar-svc")]
    seed["teams"] = []
    seed["on_call"] = seed["users"][0]["mail"]
    st = load_tenant(seed)
    assert len(st.users) == 4 and not st.teams
    path = tmp_path / "t.yaml"
    import yaml
    path.write_text(yaml.safe_dump(seed, allow_unicode=True))
    assert len(load_tenant(str(path), users=100).users) == 100
    with Emulator(tenant=str(path)) as emu:
        assert emu.state.tenant_id == seed["tenant_id"] and len(emu.state.users) == 4


@pytest.mark.parametrize("text,needle", [
    ("tenant_id: [unclosed\n", "invalid YAML at line"),
    ("- just\n- a list\n", "mapping"),
    ("users: []\n", "missing required key 'tenant_id'"),
    ("tenant_id: x\nusers:\n  - {mail: a@b.c}\n", "users[0] is missing required key 'displayName'"),
    ("tenant_id: x\nusers:\n  - {displayName: A}\n", "users[0] is missing required key 'mail'"),
    ("tenant_id: x\napps:\n  - {name: a, app_id: b}\n", "apps[0] is missing required key 'secret'"),
    ("tenant_id: x\napps:\n  - {name: a, app_id: b, secret: c, kind: robot}\n", "unknown kind"),
    ("tenant_id: x\nteams:\n  - {displayName: T, owners: [nobody@x]}\n", "unknown user 'nobody@x'"),
    ("tenant_id: x\nteams:\n  - {displayName: T, channels: [{displayName: C, membershipType: odd}]}\n",
     "unknown membershipType"),
])
def test_bad_tenant_files_name_the_file(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TenantFileError) as e:
        load_tenant(str(path))
    assert str(path) in str(e.value) and needle in str(e.value)


def test_missing_tenant_file():
    with pytest.raises(TenantFileError, match="cannot read tenant file"):
        load_tenant("/nonexistent/tenant.yaml")
