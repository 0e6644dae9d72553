"""meeting-create end to end against the emulator: delegated (/me/onlineMeetings) and app
(/users/{organizer}/onlineMeetings), attendees resolved to users, times checked client-side."""
import pytest

from integration.dispatch import execute
from integration.engine.errors import ArgumentError, NotFound, PermissionDenied
from integration.handlers.meetings import parse_time
from teams_helpers import graph_calls, uid

SVC, BOB, ALICE = "soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example"


def only_meeting(emu):
    (m,) = emu.state.meetings.values()
    return m


def test_delegated_meeting_with_attendees(emu, signed_in):
    r = execute("meeting-create", {"subject": "IR-42 bridge", "start_time": "2030-05-01T14:30:00Z",
                                   "end_time": "2030-05-01T15:00:00+00:00", "attendees": [BOB, "Zoë Müller"]}, signed_in)
    assert r.flow == "delegated" and r.prefix == "MicrosoftTeams.CreateMeeting"
    out = r.outputs[0]
    assert out["joinWebUrl"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert out["participantId"] == uid(emu, SVC) and out["threadId"].startswith("19:meeting_")
    m = only_meeting(emu)
    assert m["startDateTime"] == "2030-05-01T14:30:00.000Z" and m["endDateTime"] == "2030-05-01T15:00:00.000Z"
    assert {a["identity"]["user"]["id"] for a in m["participants"]["attendees"]} == {
        uid(emu, BOB), uid(emu, "zoe.muller@contoso.example")}
    assert [c["path"] for c in graph_calls(emu, "POST")] == ["/v1.0/me/onlineMeetings"]


def test_app_meeting_on_behalf_of_an_organizer(emu, runtime):
    r = execute("microsoft-teams-create-meeting", {"subject": "Board briefing", "organizer": "Alice Johnson",
                                                   "attendees": BOB, "start_time": "2030-01-02T09:00:00.1234567-05:00"},
                runtime)
    assert r.flow == "app" and r.outputs[0]["participantDisplayName"] == "Alice Johnson"
    assert only_meeting(emu)["startDateTime"] == "2030-01-02T14:00:00.123Z"
    assert [c["path"] for c in graph_calls(emu, "POST")] == [f"/v1.0/users/{uid(emu, ALICE)}/onlineMeetings"]


def test_app_meeting_needs_an_organizer(emu, runtime):
    with pytest.raises(ArgumentError) as e:
        execute("meeting-create", {"subject": "x"}, runtime)
    assert e.value.argument == "organizer" and e.value.exit_code == 2 and not graph_calls(emu)


def test_delegated_organizer_must_be_the_signed_in_account(emu, signed_in):
    execute("meeting-create", {"subject": "mine", "organizer": SVC}, signed_in)  # the account itself is fine
    with pytest.raises(ArgumentError) as e:
        execute("meeting-create", {"subject": "x", "organizer": ALICE}, signed_in)
    assert "--flow app" in str(e.value)
    r = execute("meeting-create", {"subject": "for Alice", "organizer": ALICE}, signed_in, flow="app")
    assert r.outputs[0]["participantId"] == uid(emu, ALICE)


@pytest.mark.parametrize("args,argument", [
    ({"start_time": "tomorrow"}, "start_time"),
    ({"start_time": "2030-05-01"}, "start_time"),
    ({"start_time": "2030-13-01T10:00:00Z"}, "start_time"),
    ({"end_time": "2030-05-01 10:00"}, "end_time"),
    ({"start_time": "2030-05-01T10:00:00Z", "end_time": "2030-05-01T09:00:00Z"}, "end_time"),
    ({"start_time": "2030-05-01T10:00:00+02:00", "end_time": "2030-05-01T08:00:00Z"}, "end_time"),
    ({"end_time": "2001-01-01T00:00:00Z"}, "end_time"),
])
def test_times_are_checked_before_any_request(emu, signed_in, args, argument):
    before = len(graph_calls(emu))
    with pytest.raises(ArgumentError) as e:
        execute("meeting-create", {"subject": "x", **args}, signed_in)
    assert e.value.argument == argument and e.value.exit_code == 2
    assert len(graph_calls(emu)) == before


def test_parse_time_accepts_graph_forms():
    assert parse_time("t", "2019-07-12T14:30:34.2444915-07:00").utcoffset().total_seconds() == -7 * 3600
    assert parse_time("t", "2030-05-01T10:00").tzinfo is not None  # no offset: UTC


def test_unknown_attendee(signed_in):
    with pytest.raises(NotFound) as e:
        execute("meeting-create", {"subject": "x", "attendees": "ghost@contoso.example"}, signed_in)
    assert e.value.exit_code == 5


def test_app_meeting_without_access_policy_is_forbidden(emu, runtime):
    with emu.state.lock:
        emu.state.apps[emu.config()["client_id"]].online_meetings_policy = False
    with pytest.raises(PermissionDenied) as e:
        execute("meeting-create", {"subject": "x", "organizer": ALICE}, runtime)
    assert "access policy" in str(e.value) and e.value.exit_code == 4
