"""Graph as it really answers (issue 14, part 5): replies with nulls, missing and extra fields,
bot senders (`from.application`), system event messages (`from: null`, `eventDetail`),
guests, deleted messages and empty bodies shape without error; a reply that cannot be used
(an object without its id, a 201 without a body or Location) is a clear GraphError, never a
KeyError, TypeError or AttributeError. Recorded-style replies are served through the fake
tenant's fault hook (a status with a body stands in for the handler's answer) or requests-mock.
Also: chat-create and chat-add-user give guests Graph's 'guest' role, everyone else 'owner'."""
import json
import uuid

import pytest
import requests_mock

from integration.dispatch import execute
from integration.engine.errors import GraphError, IntegrationError, NotFound
from integration.graph.client import Client, TokenProvider, items_of, need_id
from teams_helpers import add_message, channel_of, make_chat, team_of, uid

SVC, BOB, ALICE = "soar-svc@contoso.example", "bob.smith@contoso.example", "alice.johnson@contoso.example"
TENANT, OTHER_TENANT = "2c1f0e1a-0000-4000-8000-000000000001", "9e8d7c6b-0000-4000-8000-000000000002"
CHAT = "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"

# ------------------------------------------------------------------ recorded-style chat messages

USER_MSG = {
    "@odata.type": "#microsoft.graph.chatMessage", "id": "1616964509832", "replyToId": None, "etag": "1616964509832",
    "messageType": "message", "createdDateTime": "2021-03-28T20:48:29.832Z",
    "lastModifiedDateTime": "2021-03-28T20:48:29.832Z", "lastEditedDateTime": None, "deletedDateTime": None,
    "subject": None, "summary": None, "chatId": CHAT, "importance": "normal", "locale": "en-us", "webUrl": None,
    "channelIdentity": None, "policyViolation": None, "eventDetail": None,
    "from": {"application": None, "device": None,
             "user": {"@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": "8ea0e38b-efb3-4757-924a-5f94061cf8c2",
                      "displayName": "Robin Kline", "userIdentityType": "aadUser", "tenantId": TENANT}},
    "body": {"contentType": "html", "content": "<p>Hello <at id=\"0\">Bob</at></p>"},
    "attachments": [],
    "mentions": [{"id": 0, "mentionText": "Bob", "mentioned": {"application": None, "device": None, "conversation": None,
                                                               "user": {"id": "x", "displayName": "Bob",
                                                                        "userIdentityType": "aadUser"}}}],
    "reactions": [{"reactionType": "like", "createdDateTime": "2021-03-28T20:50:00Z",
                   "user": {"application": None, "device": None, "user": {"id": "y", "displayName": None}}}],
}
BOT_MSG = {
    "id": "1616964509900", "messageType": "message", "createdDateTime": "2021-03-28T20:49:00Z", "chatId": CHAT,
    "from": {"application": {"@odata.type": "#microsoft.graph.teamworkApplicationIdentity",
                             "id": "22222222-2222-2222-2222-222222222222", "displayName": "SOAR Bot",
                             "applicationIdentityType": "bot"}, "device": None, "user": None},
    "body": {"contentType": "html", "content": "<attachment id=\"74d20c7f34aa4a7fb74e2b30004247c5\"></attachment>"},
    "attachments": [{"id": "74d20c7f34aa4a7fb74e2b30004247c5", "contentType": "application/vnd.microsoft.card.adaptive",
                     "contentUrl": None, "content": "{\"type\":\"AdaptiveCard\",\"version\":\"1.4\"}", "name": None,
                     "thumbnailUrl": None, "teamsAppId": None}],
    "mentions": [], "reactions": [],
}
SYSTEM_MSG = {
    "id": "1616964510000", "messageType": "systemEventMessage", "createdDateTime": "2021-03-28T20:50:00Z",
    "chatId": CHAT, "from": None, "body": {"contentType": "html", "content": "<systemEventMessage/>"},
    "eventDetail": {"@odata.type": "#microsoft.graph.membersAddedEventMessageDetail",
                    "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
                    "members": [{"id": "8ea0e38b-efb3-4757-924a-5f94061cf8c2", "displayName": None,
                                 "userIdentityType": "aadUser", "tenantId": TENANT}],
                    "initiator": {"application": None, "device": None,
                                  "user": {"id": "1fb8890f-423e-4154-8fbf-db6809bc8756", "displayName": None,
                                           "userIdentityType": "aadUser"}}},
    "attachments": [], "mentions": [], "reactions": [],
}
GUEST_MSG = {
    "id": "1616964510100", "messageType": "message", "createdDateTime": "2021-03-28T20:51:00Z", "chatId": CHAT,
    "from": {"application": None, "device": None,
             "user": {"id": "5b1e4c9d-0000-4000-8000-0000000000aa", "displayName": "Gail (Fabrikam) (Guest)",
                      "userIdentityType": "aadUser", "tenantId": OTHER_TENANT}},
    "body": {"contentType": "text", "content": "hi from outside"},
    "attachments": [], "mentions": [], "reactions": [],
}
DELETED_MSG = {
    "id": "1616964510200", "messageType": "message", "createdDateTime": "2021-03-28T20:52:00Z",
    "deletedDateTime": "2021-03-28T20:53:00Z", "chatId": CHAT,
    "from": {"application": None, "device": None, "user": {"id": "8ea0e38b-efb3-4757-924a-5f94061cf8c2",
                                                          "displayName": "Robin Kline"}},
    "body": {"contentType": "text", "content": ""}, "attachments": [], "mentions": [], "reactions": [],
}
EMPTY_MSG = {  # every optional part null, and fields no version of ours knows
    "id": "1616964510300", "messageType": "unknownFutureValue", "createdDateTime": None, "chatId": None,
    "from": {"application": None, "device": None, "user": None}, "body": None, "attachments": None,
    "mentions": None, "reactions": None, "messageHistory": [{"modifiedDateTime": "2021-03-28T21:00:00Z",
                                                             "actions": "reactionAdded", "reaction": None}],
    "onBehalfOf": None, "someFutureField": {"nested": [1, None, {"x": None}]},
}
MESSAGES = [USER_MSG, BOT_MSG, SYSTEM_MSG, GUEST_MSG, DELETED_MSG, EMPTY_MSG]


@pytest.fixture(autouse=True)
def every_recorded_reply_served(request):
    """Each recorded reply a test arms must have been asked for (else the test proves nothing)."""
    emu = request.getfixturevalue("emu") if "emu" in request.fixturenames else None
    yield
    if emu is not None:
        assert emu.faults.list() == [], "recorded replies not served: " + json.dumps(emu.faults.list())


def recorded(emu, method, path_rx, body, status=200):
    """The next matching Graph request is answered with this recorded reply."""
    emu.faults.add(method=method, path=path_rx, status=status, body=body, count=1)


def shaped_without_error(r, ids):
    """The result renders in every form, and every id given is in its context."""
    ctx = json.dumps(r.context(), default=str)
    for fmt in ("table", "json", "context"):
        assert isinstance(r.render(fmt), str)
    for i in ids:
        assert i in ctx, f"{i} missing from the context"


def test_chat_messages_of_every_kind_shape(emu, signed_in):
    body = {"@odata.context": "x", "@odata.count": 7, "value": MESSAGES + [None]}
    recorded(emu, "GET", r"^/chats/[^/]+/messages$", body)
    r = execute("microsoft-teams-chat-message-list", {"chat": CHAT}, signed_in)
    assert [m["id"] for m in r.raw] == [m["id"] for m in MESSAGES]  # the null item dropped
    shaped_without_error(r, [m["id"] for m in MESSAGES])


def test_channel_messages_of_every_kind_shape(emu, signed_in):
    chan = channel_of(emu, "Security Operations", "Incident Response")
    msgs = [dict(m, chatId=None, channelIdentity={"teamId": chan.team_id, "channelId": chan.id}) for m in MESSAGES]
    recorded(emu, "GET", r"/channels/[^/]+/messages$", {"value": msgs, "@odata.nextLink": None})
    r = execute("message-list", {"team": "Security Operations", "channel": "Incident Response"}, signed_in)
    assert len(r.raw) == len(MESSAGES)
    shaped_without_error(r, [m["id"] for m in MESSAGES])


def test_chats_with_nulls_and_bot_previews_shape(emu, signed_in):
    chats = [
        {"id": CHAT, "topic": None, "createdDateTime": "2021-03-28T20:48:29Z", "lastUpdatedDateTime": None,
         "chatType": "group", "webUrl": None, "tenantId": TENANT, "onlineMeetingInfo": None,
         "viewpoint": {"isHidden": False, "lastMessageReadDateTime": None}, "members": None,
         "lastMessagePreview": {"id": "1", "createdDateTime": None, "isDeleted": False, "messageType": "message",
                                "eventDetail": None, "body": {"contentType": "text", "content": "card"},
                                "from": {"application": {"id": "b", "displayName": "SOAR Bot",
                                                         "applicationIdentityType": "bot"},
                                         "device": None, "user": None}}},
        {"id": "19:meeting_abc@thread.v2", "topic": "Bridge", "chatType": "meeting",
         "onlineMeetingInfo": {"calendarEventId": None, "joinWebUrl": "https://teams.example/l/meetup-join/x",
                               "organizer": {"id": "o", "displayName": None, "userIdentityType": "aadUser"}},
         "members": [None, {"id": "m", "displayName": None, "userId": None, "email": None, "roles": None}],
         "lastMessagePreview": None, "viewpoint": None},
        {"id": "19:a_b@unq.gbl.spaces", "chatType": "oneOnOne"},  # almost everything missing
    ]
    recorded(emu, "GET", r"^/me/chats$", {"value": chats})
    r = execute("chat-list", {"expand": "members"}, signed_in)
    assert len(r.raw) == 3
    shaped_without_error(r, [c["id"] for c in chats])


def test_members_with_nulls_shape(emu, signed_in, runtime):
    members = [{"@odata.type": "#microsoft.graph.aadUserConversationMember", "id": "MCMjMSMjYWJj",
                "roles": None, "displayName": None, "visibleHistoryStartDateTime": None, "userId": None,
                "email": None, "tenantId": None},
               {"@odata.type": "#microsoft.graph.anonymousGuestConversationMember", "id": "MCMjMSMjZGVm",
                "roles": ["guest"], "displayName": "Gail (Guest)", "anonymousGuestId": "g"},
               {"@odata.type": "#microsoft.graph.microsoftAccountUserConversationMember", "id": "MCMjMSMjZ2hp",
                "roles": [], "displayName": "Sam Consumer", "userId": "s"}]
    recorded(emu, "GET", r"^/chats/[^/]+/members$", {"value": members})
    r = execute("chat-member-list", {"chat": CHAT}, signed_in)
    shaped_without_error(r, [m["id"] for m in members])
    recorded(emu, "GET", r"^/teams/[^/]+/members$", {"value": members + [None]})
    r = execute("team-member-list", {"team": "Security Operations"}, runtime)
    assert len(r.raw) == 3
    shaped_without_error(r, [m["id"] for m in members])
    recorded(emu, "GET", r"/channels/[^/]+/members$", {"value": None})
    r = execute("channel-user-list", {"team": "Security Operations", "channel": "Incident Response"}, runtime)
    assert r.raw == []


def test_value_null_everywhere_is_empty(emu, signed_in, runtime):
    recorded(emu, "GET", r"^/me/chats$", {"value": None})
    assert execute("chat-list", {}, signed_in).raw == []
    recorded(emu, "GET", r"^/teams$", {"@odata.context": "x", "value": None})
    assert execute("team-list", {}, runtime).raw == []
    recorded(emu, "GET", r"^/users$", {"value": None})
    assert execute("user-list", {"name": "Zo"}, runtime).raw == []
    recorded(emu, "GET", r"^/users$", {"value": None})  # a name lookup that finds nobody: not found, not a crash
    with pytest.raises(NotFound):
        execute("user-get", {"user": "Nobody Here"}, runtime)


def test_a_team_reply_without_id_is_a_clear_error(emu, runtime):
    tid = team_of(emu, "IT Helpdesk").id
    recorded(emu, "GET", rf"^/teams/{tid}$", {"displayName": "IT Helpdesk", "description": None})
    with pytest.raises(GraphError) as e:
        execute("team-get", {"team": tid}, runtime)
    assert "has no id" in str(e.value) and e.value.exit_code == 1
    recorded(emu, "GET", r"^/teams$", {"value": [{"displayName": "Executive"}]})
    with pytest.raises(GraphError, match="has no id"):
        execute("channel-list", {"team": "Executive"}, runtime)


def test_a_chat_post_answered_201_without_a_body(emu, signed_in):
    chat = make_chat(emu, [SVC, BOB, ALICE], "Empty replies")
    # The message arrived (it is in the chat), but the 201 carried no body: its id is read back.
    recorded(emu, "POST", r"^/chats/[^/]+/messages$", "", status=201)
    posted = add_message(emu, chat, SVC, "status update")
    r = execute("message-send-to-chat", {"chat": chat, "content": "status update"}, signed_in)
    assert posted in json.dumps(r.context())
    # Nothing to read back either: sent, with no id, and no error.
    recorded(emu, "POST", r"^/chats/[^/]+/messages$", "", status=201)
    r = execute("message-send-to-chat", {"chat": chat, "content": "never seen"}, signed_in)
    shaped_without_error(r, [chat])


def test_chat_create_answered_201_without_a_body(emu, signed_in):
    recorded(emu, "POST", r"^/chats$", "", status=201)
    with pytest.raises(GraphError) as e:
        execute("chat-create", {"member": [BOB, ALICE], "chat_name": "No body"}, signed_in)
    assert "no id (an empty body)" in str(e.value) and "created all the same" in (e.value.hint or "")


def test_channel_member_added_201_without_a_body(emu, runtime):
    from teams_helpers import make_owner

    make_owner(emu, "Security Operations", ALICE)
    execute("channel-create", {"team": "Security Operations", "channel_name": "IR-88", "membership_type": "private",
                               "owner": ALICE}, runtime)
    recorded(emu, "POST", r"/channels/[^/]+/members$", "", status=201)
    r = execute("channel-user-add", {"team": "Security Operations", "channel": "IR-88", "member": BOB}, runtime)
    assert uid(emu, BOB) in json.dumps(r.context())


# ------------------------------------------------------------------ guests


def add_guest(emu) -> dict:
    gid = str(uuid.uuid4())
    guest = {"id": gid, "displayName": "Gail Guest (Fabrikam)", "mail": "gail@fabrikam.example",
             "userPrincipalName": "gail_fabrikam.example#EXT#@contoso.onmicrosoft.com", "jobTitle": None,
             "givenName": "Gail", "surname": "Guest", "businessPhones": [], "officeLocation": None,
             "preferredLanguage": None, "mobilePhone": None, "userType": "Guest"}
    with emu.state.lock:
        emu.state.users[gid] = guest
    return guest


def roles_by_user(emu, chat_id):
    with emu.state.lock:
        return {m.user_id: m.roles for m in emu.state.chats[chat_id].members}


def test_chat_create_gives_guests_the_guest_role(emu, signed_in):
    guest = add_guest(emu)
    r = execute("microsoft-teams-chat-create", {"member": [BOB, "gail@fabrikam.example"], "chat_name": "With a guest"},
                signed_in)
    chat_id = r.raw["id"]
    assert roles_by_user(emu, chat_id) == {uid(emu, SVC): ["owner"], uid(emu, BOB): ["owner"], guest["id"]: ["guest"]}


def test_chat_add_user_gives_a_guest_the_guest_role(emu, signed_in):
    guest = add_guest(emu)
    chat = make_chat(emu, [SVC, BOB, ALICE], "Add a guest")
    execute("chat-add-user", {"chat": chat, "member": "gail@fabrikam.example"}, signed_in)
    assert roles_by_user(emu, chat)[guest["id"]] == ["guest"]


def test_the_fake_tenant_refuses_a_guest_as_owner(emu, signed_in):
    from integration.engine.errors import RequestRejected
    from integration.graph.resolve import chat_body

    guest = add_guest(emu)
    g = signed_in.client("delegated")
    body = chat_body("group", [uid(emu, SVC), uid(emu, BOB), guest["id"]], signed_in.cfg.graph_url)  # all owners
    with pytest.raises(RequestRejected, match="guest"):
        g.post("/chats", body)


def test_a_guest_from_an_old_cache_entry_is_known_by_upn(emu, signed_in):
    from integration.graph.resolve import is_guest

    assert is_guest({"userPrincipalName": "gail_fabrikam.example#EXT#@contoso.onmicrosoft.com"})
    assert is_guest({"userType": "Guest"}) and not is_guest({"userType": "Member"}) and not is_guest({})


# ------------------------------------------------------------------ the client's own checks

BASE = "https://graph.example/v1.0"


class _Tokens(TokenProvider):
    def token(self, force_refresh=False):
        return "t"


def client():
    return Client(BASE, _Tokens(), sleep=lambda s: None)


def test_items_of_and_need_id():
    assert items_of({"value": None}) == [] and items_of({}) == [] and items_of({"value": [None, {"id": 1}]}) == [{"id": 1}]
    for bad in (None, [], "x"):
        with pytest.raises(GraphError):
            items_of(bad)
    assert need_id({"id": "a"}, "x") == "a"
    for bad in (None, {}, {"id": None}, {"id": ""}, {"id": 5}, []):
        with pytest.raises(GraphError, match="no id"):
            need_id(bad, "thing")


@pytest.mark.parametrize("location", [BASE + "/chats/19:abc@thread.v2", "/v1.0/chats/19:abc@thread.v2",
                                      "/chats/19:abc@thread.v2"])
def test_create_follows_location_when_the_201_is_empty(location):
    with requests_mock.Mocker() as m:
        m.post(BASE + "/chats", status_code=201, content=b"", headers={"Location": location})
        m.get(BASE + "/chats/19:abc@thread.v2", json={"id": "19:abc@thread.v2", "chatType": "group"})
        assert client().create("/chats", {"chatType": "group"})["id"] == "19:abc@thread.v2"


def test_create_without_body_or_location_is_unusable():
    with requests_mock.Mocker() as m:
        m.post(BASE + "/chats", status_code=201, content=b"")
        with pytest.raises(GraphError) as e:
            client().create("/chats", {"chatType": "group"})
        assert "no id" in str(e.value) and isinstance(e.value, IntegrationError)
        m.post(BASE + "/chats", status_code=201, json={"topic": "x"})
        with pytest.raises(GraphError, match="keys: topic"):
            client().create("/chats", {"chatType": "group"})


def test_batch_answers_without_ids_or_responses():
    with requests_mock.Mocker() as m:
        m.post(BASE + "/$batch", json={"responses": [None, {"status": 200}, {"id": "0", "status": 200, "body": {}},
                                                     {"id": "9", "status": 200}]})
        got = client().batch([{"id": "0", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}])
        assert [r["id"] for r in got] == ["0"]
        m.post(BASE + "/$batch", json={"responses": None})
        assert client().batch([{"id": "0", "method": "GET", "url": "/me"}]) == []
        m.post(BASE + "/$batch", json={"responses": [{"id": "0", "status": 429, "headers": {"Retry-After": "soon"}}]})
        assert client().batch([{"id": "0", "method": "GET", "url": "/me"}])[0]["status"] == 429
