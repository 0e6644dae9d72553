"""Online meetings and communications/calls over real HTTP."""
from __future__ import annotations

import pytest

from graph_helpers import BOB, SVC, H, err
from fake_tenant.graph import calls as calls_module

MEETING = {"startDateTime": "2030-01-15T10:00:00.0000000+00:00", "endDateTime": "2030-01-15T11:00:00Z",
           "subject": "Incident bridge 'P1'"}


# ------------------------------------------------------------------------------- meetings

def test_create_my_meeting(emu, http, delegated_token):
    bob = emu.state.user(BOB)
    body = {**MEETING, "participants": {"attendees": [{"upn": BOB, "identity": {"user": {"id": bob["id"]}}}]}}
    r = http.post(emu.graph_url + "/me/onlineMeetings", headers=H(delegated_token), json=body)
    assert r.status_code == 201, r.text
    m = r.json()
    assert m["joinWebUrl"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert m["subject"] == "Incident bridge 'P1'"
    assert m["startDateTime"] == "2030-01-15T10:00:00.000Z" and m["endDateTime"] == "2030-01-15T11:00:00.000Z"
    assert m["participants"]["organizer"]["upn"] == SVC
    assert m["participants"]["attendees"][0]["identity"]["user"]["id"] == bob["id"]
    thread = m["chatInfo"]["threadId"]
    assert thread.startswith("19:meeting_") and thread.endswith("@thread.v2")
    assert m["id"] in emu.state.meetings
    # the meeting chat exists for its members
    c = http.get(emu.graph_url + f"/chats/{thread}", headers=H(delegated_token)).json()
    assert c["chatType"] == "meeting" and c["onlineMeetingInfo"]["joinWebUrl"] == m["joinWebUrl"]


@pytest.mark.parametrize("body", [
    {"startDateTime": "2030-01-15T11:00:00Z", "endDateTime": "2030-01-15T10:00:00Z"},
    {"startDateTime": "2030-01-15T11:00:00Z", "endDateTime": "2030-01-15T11:00:00Z"},
    {"startDateTime": "tomorrow", "endDateTime": "2030-01-15T11:00:00Z"},
    {"startDateTime": 5, "endDateTime": "2030-01-15T11:00:00Z"},
    {**MEETING, "subject": ["x"]},
    {**MEETING, "participants": {"attendees": "everyone"}},
    {**MEETING, "participants": {"attendees": [{"identity": {"user": {"id": "not-a-guid"}}}]}},
])
def test_invalid_meetings_are_400(emu, http, delegated_token, body):
    err(http.post(emu.graph_url + "/me/onlineMeetings", headers=H(delegated_token), json=body), 400)


def test_meeting_for_a_user_app_only_and_the_access_policy(emu, http, app_token, delegated_token):
    url = emu.graph_url + f"/users/{BOB}/onlineMeetings"
    r = http.post(url, headers=H(app_token), json=MEETING)
    assert r.status_code == 201, r.text
    assert r.json()["participants"]["organizer"]["upn"] == BOB
    emu.state.app(emu.config()["client_id"]).online_meetings_policy = False  # reset() restores the seed
    err(http.post(url, headers=H(app_token), json=MEETING), 403, "Forbidden")
    err(http.post(emu.graph_url + "/users/ghost@contoso.example/onlineMeetings", headers=H(app_token),
                  json=MEETING), 404)
    # a delegated caller may create meetings only for themselves
    err(http.post(url, headers=H(delegated_token), json=MEETING), 403)
    assert http.post(emu.graph_url + f"/users/{SVC}/onlineMeetings", headers=H(delegated_token),
                     json=MEETING).status_code == 201


# ------------------------------------------------------------------------------- calls

def call_body(emu, user=BOB, callback="https://soar.example/callback"):
    u = emu.state.user(user)
    return {"@odata.type": "#microsoft.graph.call", "callbackUri": callback,
            "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                         "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                      "user": {"@odata.type": "#microsoft.graph.identity", "id": u["id"],
                                               "displayName": u["displayName"]}}}],
            "requestedModalities": ["audio"],
            "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
            "tenantId": emu.state.tenant_id}


def test_place_get_and_end_a_call(emu, http, app_token):
    url = emu.graph_url + "/communications/calls"
    r = http.post(url, headers=H(app_token), json=call_body(emu))
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["state"] == "establishing" and c["direction"] == "outgoing"
    assert c["callbackUri"] == "https://soar.example/callback" and c["requestedModalities"] == ["audio"]
    assert c["targets"][0]["identity"]["user"]["id"] == emu.state.user(BOB)["id"]
    assert c["source"]["identity"]["application"]["id"] == emu.config()["client_id"]
    assert c["tenantId"] == emu.state.tenant_id and c["myParticipantId"]
    assert http.get(f"{url}/{c['id']}", headers=H(app_token)).json()["id"] == c["id"]
    assert http.delete(f"{url}/{c['id']}", headers=H(app_token)).status_code == 204
    err(http.get(f"{url}/{c['id']}", headers=H(app_token)), 404)
    assert emu.state.calls[c["id"]]["state"] == "terminated"


@pytest.mark.parametrize("mutate,status", [
    (lambda b: b.update(callbackUri="http://soar.example/callback"), 400),
    (lambda b: b.update(callbackUri="not a url"), 400),
    (lambda b: b.pop("callbackUri"), 400),
    (lambda b: b.update(targets=[]), 400),
    (lambda b: b.update(requestedModalities=["smell"]), 400),
    (lambda b: b.update(mediaConfig={"@odata.type": "#microsoft.graph.nope"}), 400),
    (lambda b: b.update(tenantId="00000000-0000-0000-0000-000000000000"), 400),
    (lambda b: b["targets"][0]["identity"]["user"].update(id="00000000-0000-0000-0000-000000000000"), 404),
    (lambda b: b["targets"][0]["identity"]["user"].update(id="bob"), 400),
])
def test_invalid_calls(emu, http, app_token, mutate, status):
    body = call_body(emu)
    mutate(body)
    err(http.post(emu.graph_url + "/communications/calls", headers=H(app_token), json=body), status)
    assert emu.state.calls == {}


def test_delegated_token_cannot_place_a_call(emu, http, delegated_token):
    err(http.post(emu.graph_url + "/communications/calls", headers=H(delegated_token), json=call_body(emu)),
        403, "Forbidden")


def test_concurrent_call_limit(emu, http, app_token, monkeypatch):
    monkeypatch.setattr(calls_module, "MAX_CONCURRENT_CALLS", 3)
    url = emu.graph_url + "/communications/calls"
    ids = [http.post(url, headers=H(app_token), json=call_body(emu)).json()["id"] for _ in range(3)]
    r = http.post(url, headers=H(app_token), json=call_body(emu))
    err(r, 429, "TooManyRequests")
    assert int(r.headers["Retry-After"]) > 0
    assert http.delete(f"{url}/{ids[0]}", headers=H(app_token)).status_code == 204
    assert http.post(url, headers=H(app_token), json=call_body(emu)).status_code == 201
