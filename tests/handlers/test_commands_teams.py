"""Team commands end to end against the emulator: team-list, team-get, team-member-list,
team-member-add, team-member-remove."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import AmbiguousError, ArgumentError, NotFound, PermissionDenied, RequestRejected
from teams_helpers import duplicate_team, grant_exactly, make_owner, team_of, uid

BOB, WEI = "bob.smith@contoso.example", "wei.chen@contoso.example"


def roles_in(emu, team, mail):
    m = next((m for m in team_of(emu, team).members if m.user_id == uid(emu, mail)), None)
    return None if m is None else m.roles


def test_team_list_and_paging(emu, runtime):
    r = execute("microsoft-teams-teams-list", {}, runtime)
    assert {t["displayName"] for t in r.outputs} == {"Security Operations", "IT Helpdesk", "Executive"}
    assert r.prefix == "MicrosoftTeams.Team" and r.key == "id"
    first = execute("team-list", {"limit": 2, "page_size": 2}, runtime)
    assert len(first.outputs) == 2 and first.next_link
    rest = execute("team-list", {"next_link": first.next_link}, runtime)
    assert {t["id"] for t in first.outputs + rest.outputs} == {t["id"] for t in r.outputs}


def test_team_list_refuses_a_foreign_next_link(runtime):
    with pytest.raises(Exception) as e:
        execute("team-list", {"next_link": "https://evil.example/v1.0/teams?$skiptoken=x"}, runtime)
    assert "refusing to send credentials" in str(e.value)


def test_team_get_by_name_and_id(emu, runtime):
    r = execute("team-get", {"team": "IT Helpdesk"}, runtime)
    t = r.outputs[0]
    assert t["displayName"] == "IT Helpdesk" and t["summary"]["ownersCount"] == 1 and t["webUrl"]
    again = execute("microsoft-teams-team-get", {"team": t["id"]}, runtime)
    assert again.outputs[0]["id"] == t["id"]


def test_team_get_unknown_and_ambiguous(emu, runtime):
    with pytest.raises(NotFound) as e:
        execute("team-get", {"team": "Red Team"}, runtime)
    assert e.value.exit_code == 5
    other = duplicate_team(emu, "Executive")
    with pytest.raises(AmbiguousError) as e:
        execute("team-get", {"team": "Executive"}, runtime)
    assert e.value.exit_code == 2 and len(e.value.candidates) == 2
    assert execute("team-get", {"team": other}, runtime).outputs[0]["id"] == other  # the id always works


def test_team_member_list(emu, runtime):
    r = execute("microsoft-teams-members-list", {"team": "IT Helpdesk"}, runtime)
    by_mail = {m["email"]: m for m in r.outputs}
    assert by_mail[WEI]["roles"] == ["owner"] and len(r.outputs) == 5
    assert all(m["teamId"] == team_of(emu, "IT Helpdesk").id for m in r.outputs)
    page = execute("team-member-list", {"team": "IT Helpdesk", "limit": 2, "page_size": 2}, runtime)
    assert len(page.outputs) == 2 and page.next_link


def test_team_member_list_missing_permission(emu, runtime):
    grant_exactly(emu, runtime, "app", ["Team.ReadBasic.All"])
    with pytest.raises(PermissionDenied) as e:
        execute("team-member-list", {"team": "IT Helpdesk"}, runtime)
    assert "TeamMember.Read.All" in e.value.permissions and e.value.exit_code == 4


def test_team_member_add_and_promote(emu, runtime):
    r = execute("microsoft-teams-member-add", {"team": "IT Helpdesk", "member": "Bob Smith"}, runtime)
    assert r.outputs[0]["userId"] == uid(emu, BOB) and roles_in(emu, "IT Helpdesk", BOB) == []
    r = execute("team-member-add", {"team": "IT Helpdesk", "member": [BOB, "Grace Kim"], "owner": True}, runtime)
    assert roles_in(emu, "IT Helpdesk", BOB) == ["owner"] and "as owner" in r.message
    assert roles_in(emu, "IT Helpdesk", "grace.kim@contoso.example") == ["owner"]


def test_team_member_add_unknown_user(runtime):
    with pytest.raises(NotFound) as e:
        execute("team-member-add", {"team": "IT Helpdesk", "member": "Nobody Atall"}, runtime)
    assert e.value.exit_code == 5


def test_team_member_add_delegated_needs_an_owner(emu, signed_in):
    with pytest.raises(PermissionDenied) as e:
        execute("team-member-add", {"team": "IT Helpdesk", "member": BOB}, signed_in, flow="delegated")
    assert e.value.exit_code == 4
    make_owner(emu, "IT Helpdesk", "soar-svc@contoso.example")
    execute("team-member-add", {"team": "IT Helpdesk", "member": BOB}, signed_in, flow="delegated")
    assert roles_in(emu, "IT Helpdesk", BOB) == []


def test_team_member_remove(emu, runtime):
    r = execute("microsoft-teams-member-remove", {"team": "IT Helpdesk", "member": "Liam Murphy"}, runtime)
    assert "Removed Liam Murphy" in r.message and roles_in(emu, "IT Helpdesk", "liam.murphy@contoso.example") is None
    with pytest.raises(NotFound) as e:
        execute("team-member-remove", {"team": "IT Helpdesk", "member": "Liam Murphy"}, runtime)
    assert "not a member" in str(e.value) and e.value.exit_code == 5


def test_team_member_remove_last_owner_is_rejected(emu, runtime):
    with pytest.raises(RequestRejected) as e:
        execute("team-member-remove", {"team": "IT Helpdesk", "member": WEI}, runtime)
    assert e.value.exit_code == 2 and "another owner" in str(e.value)


def test_team_member_add_needs_a_member(runtime):
    with pytest.raises(ArgumentError) as e:
        execute("team-member-add", {"team": "IT Helpdesk"}, runtime)
    assert e.value.argument == "member"


def test_stale_cached_team_is_refreshed_for_a_handler_command(emu, runtime):
    execute("team-get", {"team": "IT Helpdesk"}, runtime)
    runtime.store.put("team", "IT Helpdesk", {"id": "00000000-0000-4000-a000-000000000000", "displayName": "IT Helpdesk"})
    execute("team-member-add", {"team": "IT Helpdesk", "member": BOB}, runtime)
    assert roles_in(emu, "IT Helpdesk", BOB) == []
