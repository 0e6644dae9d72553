"""Apps installed for a user and the user's chat with the bot, over real HTTP: the seeded bot is
installed for everyone until an admin uninstalls it; its 1:1 messages (text, cards, edits) are
the messages of that chat, as Graph lists a bot's; permissions and delegated callers checked."""
from __future__ import annotations

import json

import pytest

from graph_helpers import BOB, CONOR, H, err
from msal_helpers import bearer

CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Isolate WS-17?"}]}


@pytest.fixture
def ids(emu):
    cfg = emu.config()
    return {"bot": cfg["bot_id"], "client": cfg["client_id"], "tenant": cfg["tenant_id"],
            "conor": emu.state.user(CONOR)["id"], "bob": emu.state.user(BOB)["id"]}


def _apps(http, emu, token, user, **query):
    return http.get(f"{emu.graph_url}/users/{user}/teamwork/installedApps", headers=H(token), params=query)


def _bot_send(http, emu, bot_token, ids, user_id, activity):
    url = emu.bot_service_url + "v3/conversations"
    conv = http.post(url, headers=bearer(bot_token), json={"bot": {"id": "28:" + ids["bot"]}, "isGroup": False,
                                                           "members": [{"id": "29:" + user_id}],
                                                           "tenantId": ids["tenant"]}).json()["id"]
    r = http.post(f"{url}/{conv}/activities", headers=bearer(bot_token), json=activity)
    assert r.status_code == 201, r.text
    return conv, r.json()["id"]


def test_the_bot_is_installed_for_every_user_and_found_by_its_bot_or_manifest_id(emu, http, app_token, ids):
    r = _apps(http, emu, app_token, CONOR, **{"$expand": "teamsApp,teamsAppDefinition($expand=bot)"})
    assert r.status_code == 200, r.text
    (inst,) = r.json()["value"]
    assert inst["teamsAppDefinition"]["bot"] == {"id": ids["bot"]}
    assert inst["teamsApp"]["externalId"] == ids["bot"] and inst["teamsApp"]["id"] != ids["bot"]
    assert inst["teamsAppDefinition"]["teamsAppId"] == inst["teamsApp"]["id"]
    plain = _apps(http, emu, app_token, ids["conor"]).json()["value"]
    assert plain == [{"id": inst["id"]}]  # nothing expanded unless asked
    found = _apps(http, emu, app_token, CONOR, **{"$expand": "teamsApp",
                                                  "$filter": f"teamsApp/externalId eq '{ids['bot']}'"}).json()
    assert [i["id"] for i in found["value"]] == [inst["id"]]
    assert _apps(http, emu, app_token, CONOR, **{"$filter": "teamsApp/externalId eq 'another'"}).json()["value"] == []
    err(_apps(http, emu, app_token, CONOR, **{"$expand": "teamsApp($expand=bot)"}), 400)
    one = http.get(f"{emu.graph_url}/users/{CONOR}/teamwork/installedApps/{inst['id']}", headers=H(app_token))
    assert one.status_code == 200 and one.json()["id"] == inst["id"]
    # Another user's installation id is not Conor's.
    bobs = _apps(http, emu, app_token, BOB).json()["value"][0]["id"]
    err(http.get(f"{emu.graph_url}/users/{CONOR}/teamwork/installedApps/{bobs}/chat", headers=H(app_token)), 404)


def test_the_chat_with_the_app_holds_the_bots_1to1_messages(emu, http, app_token, bot_token, ids):
    inst = _apps(http, emu, app_token, CONOR).json()["value"][0]["id"]
    chat = http.get(f"{emu.graph_url}/users/{CONOR}/teamwork/installedApps/{inst}/chat", headers=H(app_token))
    assert chat.status_code == 200, chat.text
    chat = chat.json()
    assert chat["chatType"] == "oneOnOne" and chat["id"] == f"19:{ids['conor']}_{ids['bot']}@unq.gbl.spaces"
    conv, aid = _bot_send(http, emu, bot_token, ids, ids["conor"],
                          {"type": "message", "text": "Host <WS-17> is **down**", "textFormat": "markdown"})
    _, card_id = _bot_send(http, emu, bot_token, ids, ids["conor"],
                           {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                                "content": CARD}]})
    msgs = http.get(f"{emu.graph_url}/chats/{chat['id']}/messages", headers=H(app_token)).json()["value"]
    assert [m["id"] for m in msgs] == [card_id, aid]  # newest first
    text = msgs[1]
    assert text["from"]["application"]["id"] == ids["bot"] and text["from"]["user"] is None
    assert text["body"] == {"contentType": "html", "content": "Host &lt;WS-17&gt; is **down**"}
    assert text["chatId"] == chat["id"]
    (att,) = msgs[0]["attachments"]
    assert json.loads(att["content"]) == CARD and f'<attachment id="{att["id"]}">' in msgs[0]["body"]["content"]
    # An edit through the Bot Connector is the chat message's edit.
    r = http.put(emu.bot_service_url + f"v3/conversations/{conv}/activities/{aid}", headers=bearer(bot_token),
                 json={"type": "message", "text": "resolved"})
    assert r.status_code == 200
    edited = http.get(f"{emu.graph_url}/chats/{chat['id']}/messages/{aid}", headers=H(app_token)).json()
    assert edited["body"]["content"] == "resolved"
    # The user's chats list it, as Graph lists a chat with an app.
    listed = http.get(f"{emu.graph_url}/users/{CONOR}/chats", headers=H(app_token)).json()["value"]
    assert chat["id"] in {c["id"] for c in listed}


def test_an_uninstalled_app_has_no_installation(emu, http, app_token, ids):
    inst = _apps(http, emu, app_token, BOB).json()["value"][0]["id"]
    emu.teams.uninstall_bot(user=BOB)
    assert _apps(http, emu, app_token, BOB).json()["value"] == []
    err(http.get(f"{emu.graph_url}/users/{BOB}/teamwork/installedApps/{inst}/chat", headers=H(app_token)), 404)
    with emu.state.lock:  # installed again (install_bot would also tell the bot's endpoint, none here)
        emu.state.bot_uninstalled_users.discard(ids["bob"])
    assert [i["id"] for i in _apps(http, emu, app_token, BOB).json()["value"]] == [inst]


def test_permissions_and_delegated_callers(emu, http, ids):
    import msal_helpers as mh

    app_perms = set(emu.state.app(ids["client"]).application_permissions)
    emu.set_permissions(ids["client"], application=app_perms - {"TeamsAppInstallation.ReadForUser.All"})
    token = mh.app_token(emu)
    e = err(_apps(http, emu, token, CONOR), 403)
    assert "TeamsAppInstallation.ReadForUser.All" in e["message"]
    # A delegated caller reads only their own installations (with a delegated permission).
    emu.set_permissions(ids["client"], delegated=set(emu.state.app(ids["client"]).delegated_permissions)
                        | {"TeamsAppInstallation.ReadForUser"})
    token = mh.delegated_token(emu)
    assert _apps(http, emu, token, "soar-svc@contoso.example").status_code == 200
    err(_apps(http, emu, token, CONOR), 403)
