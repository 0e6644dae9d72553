"""Groups that are teams, teams, team members, channels and channel members over real HTTP."""
from __future__ import annotations

from urllib.parse import quote

import pytest

import graph_helpers
import msal_helpers
from graph_helpers import ALICE, BOB, MEMBER_TYPE, SVC, WEI, H, channel_id, err, team_id


def member(key: str, roles=()) -> dict:
    """A team or channel member body; unlike a chat's, no role unless given (owners matter here)."""
    return graph_helpers.member(key, roles)


@pytest.fixture
def secops(emu) -> str:
    return team_id(emu, "Security Operations")


# ------------------------------------------------------------------------------- groups / teams

def test_groups_that_are_teams(emu, http, app_token):
    f = quote("resourceProvisioningOptions/Any(x:x eq 'Team')")
    r = http.get(emu.graph_url + f"/groups?$filter={f}", headers=H(app_token))
    assert r.status_code == 200, r.text
    groups = r.json()["value"]
    assert sorted(g["displayName"] for g in groups) == ["Executive", "IT Helpdesk", "Security Operations"]
    g = groups[0]
    assert g["resourceProvisioningOptions"] == ["Team"] and g["mail"].endswith("@contoso.example")
    f2 = quote("resourceProvisioningOptions/Any(x:x eq 'Team') and startswith(displayName,'Sec')")
    r = http.get(emu.graph_url + f"/groups?$filter={f2}&$select=id,displayName", headers=H(app_token))
    assert [g["displayName"] for g in r.json()["value"]] == ["Security Operations"]
    assert set(r.json()["value"][0]) == {"id", "displayName"}
    f3 = quote("displayName eq 'IT Helpdesk'")
    assert [g["displayName"] for g in http.get(emu.graph_url + f"/groups?$filter={f3}",
                                               headers=H(app_token)).json()["value"]] == ["IT Helpdesk"]
    err(http.get(emu.graph_url + "/groups?$filter=" + quote("resourceProvisioningOptions/Any(x:x eq 'Team'"),
                 headers=H(app_token)), 400)


def test_group_by_id(emu, http, app_token, secops):
    r = http.get(emu.graph_url + f"/groups/{secops}", headers=H(app_token))
    assert r.status_code == 200 and r.json()["displayName"] == "Security Operations"
    err(http.get(emu.graph_url + "/groups/not-a-guid", headers=H(app_token)), 400)
    err(http.get(emu.graph_url + "/groups/00000000-0000-0000-0000-000000000000", headers=H(app_token)), 404)


def test_team(emu, http, app_token, secops):
    r = http.get(emu.graph_url + f"/teams/{secops}", headers=H(app_token))
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["id"] == secops and t["displayName"] == "Security Operations" and t["isArchived"] is False
    assert t["tenantId"] == emu.state.tenant_id and t["webUrl"].startswith("https://teams.microsoft.com/l/team/")
    assert t["visibility"] in ("private", "public") and "memberSettings" in t
    err(http.get(emu.graph_url + "/teams/nope", headers=H(app_token)), 400)
    err(http.get(emu.graph_url + "/teams/00000000-0000-0000-0000-000000000000", headers=H(app_token)), 404, "NotFound")
    r = http.get(emu.graph_url + "/teams?$filter=" + quote("startswith(displayName,'IT')"), headers=H(app_token))
    assert [x["displayName"] for x in r.json()["value"]] == ["IT Helpdesk"]


def test_joined_teams(emu, http, app_token, delegated_token):
    r = http.get(emu.graph_url + "/me/joinedTeams", headers=H(delegated_token))
    assert r.status_code == 200, r.text
    assert sorted(t["displayName"] for t in r.json()["value"]) == ["IT Helpdesk", "Security Operations"]
    r = http.get(emu.graph_url + f"/users/{ALICE}/joinedTeams", headers=H(app_token))
    assert sorted(t["displayName"] for t in r.json()["value"]) == ["Executive", "Security Operations"]
    err(http.get(emu.graph_url + "/users/ghost@contoso.example/joinedTeams", headers=H(app_token)), 404)


# ------------------------------------------------------------------------------- team members

def test_team_members(emu, http, app_token, secops):
    url = emu.graph_url + f"/teams/{secops}/members"
    r = http.get(url, headers=H(app_token))
    assert r.status_code == 200, r.text
    members = r.json()["value"]
    assert len(members) == 7
    alice = next(m for m in members if m["email"] == ALICE)
    assert alice["roles"] == ["owner"] and alice["@odata.type"] == MEMBER_TYPE
    r = http.post(url, headers=H(app_token), json=member(WEI))
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["userId"] == emu.state.user(WEI)["id"] and new["roles"] == []
    assert http.get(f"{url}/{new['id']}", headers=H(app_token)).json()["email"] == WEI
    assert http.delete(f"{url}/{new['id']}", headers=H(app_token)).status_code == 204
    err(http.get(f"{url}/{new['id']}", headers=H(app_token)), 404)
    # the last owner stays
    err(http.delete(f"{url}/{alice['id']}", headers=H(app_token)), 400)
    f = quote("roles/any(r:r eq 'owner')")
    assert [m["email"] for m in http.get(f"{url}?$filter={f}", headers=H(app_token)).json()["value"]] == [ALICE]


def test_team_members_page_with_top_each_member_once(emu, http, app_token, secops):
    url = emu.graph_url + f"/teams/{secops}/members?$top=2"
    seen, pages = [], 0
    while url and pages < 20:
        body = http.get(url, headers=H(app_token)).json()
        seen += [m["id"] for m in body["value"]]
        url, pages = body.get("@odata.nextLink"), pages + 1
    assert url is None and pages == 4
    assert sorted(seen) == seen and len(set(seen)) == len(seen) == 7


def test_team_member_changes_need_an_owner_when_delegated(emu, http, delegated_token, secops):
    err(http.post(emu.graph_url + f"/teams/{secops}/members", headers=H(delegated_token), json=member(WEI)), 403)


def test_removing_a_team_member_removes_them_from_private_channels(emu, http, app_token, secops):
    conor = emu.state.user("conor.obrien@contoso.example")["id"]
    t = emu.state.teams[secops]
    mid = next(m.id for m in t.members if m.user_id == conor)
    assert http.delete(emu.graph_url + f"/teams/{secops}/members/{mid}", headers=H(app_token)).status_code == 204
    ti = t.channels[channel_id(emu, "Security Operations", "Threat Intel")]
    assert conor not in [m.user_id for m in ti.members]


# ------------------------------------------------------------------------------- channels

def test_list_channels_and_private_visibility(emu, http, app_token, delegated_token, secops):
    url = emu.graph_url + f"/teams/{secops}/channels"
    r = http.get(url, headers=H(app_token))
    assert r.status_code == 200, r.text
    chans = r.json()["value"]
    assert [c["displayName"] for c in chans] == ["General", "Incident Response", "Threat Intel"]
    c = chans[0]
    assert c["id"].startswith("19:") and c["id"].endswith("@thread.tacv2")
    assert set(c) >= {"id", "createdDateTime", "displayName", "description", "isFavoriteByDefault", "email",
                      "tenantId", "webUrl", "membershipType"}
    r = http.get(url + "?$filter=" + quote("membershipType eq 'private'"), headers=H(app_token))
    assert [c["displayName"] for c in r.json()["value"]] == ["Threat Intel"]
    r = http.get(url + "?$filter=" + quote("displayName eq 'incident response'"), headers=H(app_token))
    assert [c["displayName"] for c in r.json()["value"]] == ["Incident Response"]
    bob = msal_helpers.delegated_token(emu, login_hint=BOB)  # not in Threat Intel
    assert [c["displayName"] for c in http.get(url, headers=H(bob)).json()["value"]] == ["General", "Incident Response"]
    svc = [c["displayName"] for c in http.get(url, headers=H(delegated_token)).json()["value"]]
    assert "Threat Intel" in svc
    err(http.get(url + "?$filter=" + quote("colour eq 'red'"), headers=H(app_token)), 400)
    wei = msal_helpers.delegated_token(emu, login_hint=WEI)
    err(http.get(url, headers=H(wei)), 403)


def test_get_channel(emu, http, app_token, secops):
    cid = channel_id(emu, "Security Operations", "Incident Response")
    r = http.get(emu.graph_url + f"/teams/{secops}/channels/{quote(cid)}", headers=H(app_token))
    assert r.status_code == 200 and r.json()["displayName"] == "Incident Response"
    err(http.get(emu.graph_url + f"/teams/{secops}/channels/19:{'0' * 32}@thread.tacv2", headers=H(app_token)), 404)
    err(http.get(emu.graph_url + f"/teams/{secops}/channels/garbage", headers=H(app_token)), 400)


def test_create_channel_rules(emu, http, app_token, delegated_token, secops):
    url = emu.graph_url + f"/teams/{secops}/channels"
    r = http.post(url, headers=H(delegated_token), json={"displayName": "Case 1234", "description": "war room"})
    assert r.status_code == 201, r.text
    ch = r.json()
    assert ch["membershipType"] == "standard" and ch["displayName"] == "Case 1234"
    e = err(http.post(url, headers=H(delegated_token), json={"displayName": "case 1234"}), 400, "BadRequest")
    assert e["message"] == "Channel name already existed, please use other name."
    for bad in [{"displayName": "General"}, {"displayName": "a/b"}, {"displayName": "x" * 51},
                {"displayName": "what?"}, {"displayName": "it's"}, {}, {"displayName": 7},
                {"displayName": "ok", "membershipType": "secret"}, {"displayName": "_x"},
                {"displayName": "ok2", "members": [member(BOB, ["owner"])]}]:
        err(http.post(url, headers=H(delegated_token), json=bad), 400)


def test_private_channel_created_app_only_needs_exactly_one_owner(emu, http, app_token, secops):
    url = emu.graph_url + f"/teams/{secops}/channels"
    err(http.post(url, headers=H(app_token), json={"displayName": "Secret", "membershipType": "private"}), 400)
    err(http.post(url, headers=H(app_token), json={"displayName": "Secret", "membershipType": "private",
                                                    "members": [member(BOB)]}), 400)
    err(http.post(url, headers=H(app_token), json={"displayName": "Secret", "membershipType": "private",
                                                    "members": [member(BOB, ["owner"]), member(ALICE, ["owner"])]}), 400)
    # private channel members must be in the team
    err(http.post(url, headers=H(app_token), json={"displayName": "Secret", "membershipType": "private",
                                                    "members": [member(WEI, ["owner"])]}), 400)
    r = http.post(url, headers=H(app_token), json={"displayName": "Secret", "membershipType": "private",
                                                    "members": [member(BOB, ["owner"])]})
    assert r.status_code == 201, r.text
    assert r.json()["membershipType"] == "private"
    members = http.get(f"{url}/{r.json()['id']}/members", headers=H(app_token)).json()["value"]
    assert [(m["email"], m["roles"]) for m in members] == [(BOB, ["owner"])]


def test_private_channel_created_delegated_makes_the_creator_owner(emu, http, delegated_token, secops):
    url = emu.graph_url + f"/teams/{secops}/channels"
    r = http.post(url, headers=H(delegated_token), json={"displayName": "Case 99", "membershipType": "private",
                                                          "members": [member(BOB)]})
    assert r.status_code == 201, r.text
    members = http.get(f"{url}/{r.json()['id']}/members", headers=H(delegated_token)).json()["value"]
    assert sorted((m["email"], tuple(m["roles"])) for m in members) == [(BOB, ()), (SVC, ("owner",))]


def test_delete_channels(emu, http, app_token, secops):
    url = emu.graph_url + f"/teams/{secops}/channels"
    general = channel_id(emu, "Security Operations", "General")
    err(http.delete(f"{url}/{general}", headers=H(app_token)), 400, "BadRequest")
    cid = http.post(url, headers=H(app_token), json={"displayName": "Temp"}).json()["id"]
    assert http.delete(f"{url}/{cid}", headers=H(app_token)).status_code == 204
    err(http.get(f"{url}/{cid}", headers=H(app_token)), 404)


# ------------------------------------------------------------------------------- channel members

def test_channel_members(emu, http, app_token, secops):
    std = channel_id(emu, "Security Operations", "Incident Response")
    url = emu.graph_url + f"/teams/{secops}/channels/{std}/members"
    assert len(http.get(url, headers=H(app_token)).json()["value"]) == 7  # a standard channel has the team
    err(http.post(url, headers=H(app_token), json=member(BOB)), 400)
    priv = channel_id(emu, "Security Operations", "Threat Intel")
    url = emu.graph_url + f"/teams/{secops}/channels/{priv}/members"
    before = http.get(url, headers=H(app_token)).json()["value"]
    assert BOB not in [m["email"] for m in before]
    err(http.post(url, headers=H(app_token), json=member(WEI)), 400)  # not in the team
    r = http.post(url, headers=H(app_token), json=member(BOB))
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["email"] == BOB and m["@odata.type"] == MEMBER_TYPE
    err(http.post(url, headers=H(app_token), json=member(BOB)), 409)
    assert http.get(f"{url}/{m['id']}", headers=H(app_token)).json()["userId"] == m["userId"]
    assert http.delete(f"{url}/{m['id']}", headers=H(app_token)).status_code == 204
    owner = next(x for x in before if "owner" in x["roles"])
    err(http.delete(f"{url}/{owner['id']}", headers=H(app_token)), 400)  # last owner
