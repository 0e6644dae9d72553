"""The fake tenant's Teams side: its Bot Framework OpenID metadata and keys, the tokens it signs,
the messaging endpoint setting, and simulated users acting through the admin API."""
from __future__ import annotations

import threading

import jwt
import pytest

from fake_tenant.teams_channel import ChannelError


def test_metadata_and_keys_over_https(emu, http):
    meta = http.get(emu.teams.metadata_url)
    assert meta.status_code == 200
    doc = meta.json()
    assert doc["issuer"] == "https://api.botframework.com" and doc["jwks_uri"].startswith(emu.base_url + "/")
    [key] = http.get(doc["jwks_uri"]).json()["keys"]
    assert key["kty"] == "RSA" and key["endorsements"] == ["msteams"] and key["kid"] == emu.teams.kid
    assert "d" not in key  # the public half only
    assert http.post(emu.teams.metadata_url).status_code == 405
    assert emu.config()["bot_openid_metadata_url"] == emu.teams.metadata_url


def test_signed_tokens_say_what_teams_says(emu):
    bot_id = emu.config()["bot_id"]
    token = emu.teams.sign(bot_id)
    assert jwt.get_unverified_header(token)["kid"] == emu.teams.kid
    claims = jwt.decode(token, jwt.PyJWK(emu.teams.jwks()["keys"][0]).key, algorithms=["RS256"], audience=bot_id)
    assert claims["iss"] == "https://api.botframework.com" and claims["serviceurl"] == emu.bot_service_url
    assert claims["exp"] - claims["nbf"] == 300


def test_messaging_endpoint_setting(emu, http):
    admin = emu.base_url + "/_emulator/messaging-endpoint"
    try:
        assert http.post(admin, json={"url": "http://evil.example/api/messages"}).status_code == 400
        assert http.post(admin, json={"url": "ftp://127.0.0.1/x"}).status_code == 400
        r = http.post(admin, json={"url": "http://127.0.0.1:9/api/messages"})
        assert r.status_code == 200 and r.json() == {"url": "http://127.0.0.1:9/api/messages"}
        assert http.get(admin).json()["url"] == "http://127.0.0.1:9/api/messages"
        assert http.post(admin, json={"url": "https://bot.example/api/messages"}).status_code == 200
        # Nobody listens on port 9 of loopback: the delivery is recorded as unreachable.
        http.post(admin, json={"url": "http://127.0.0.1:9/api/messages"})
        r = http.post(emu.base_url + "/_emulator/user-says", json={"user": "bob.smith@contoso.example", "text": "hi"})
        assert r.status_code == 200 and r.json()["status"] is None and "could not be reached" in r.json()["error"]
        assert len(http.get(emu.base_url + "/_emulator/deliveries").json()["deliveries"]) == 1
        assert http.delete(admin).json() == {"url": None}
    finally:
        emu.teams.register(None)


def test_simulated_users_cannot_do_what_they_could_not_do_in_teams(emu, http):
    says = emu.base_url + "/_emulator/user-says"
    assert http.post(says, json={"user": "bob.smith@contoso.example", "text": "hi"}).status_code == 409  # no endpoint
    emu.teams.register("http://127.0.0.1:9/api/messages")
    try:
        assert http.post(says, json={"user": "nobody@contoso.example", "text": "hi"}).status_code == 404
        r = http.post(says, json={"user": "wei.chen@contoso.example", "text": "hi", "team": "Security Operations",
                                  "channel": "Incident Response"})
        assert r.status_code == 403 and "not a member" in r.json()["error"]
        r = http.post(says, json={"user": "alice.johnson@contoso.example", "text": "hi", "team": "Security Operations",
                                  "channel": "Nope"})
        assert r.status_code == 404
        assert http.post(says, json={"user": "bob.smith@contoso.example"}).status_code == 400
        assert http.post(says, json={"user": "bob.smith@contoso.example", "text": "x", "extra": 1}).status_code == 400
        install = emu.base_url + "/_emulator/install-bot"
        assert http.post(install, json={}).status_code == 400
        assert http.post(install, json={"user": "bob.smith@contoso.example", "team": "Executive"}).status_code == 400
        assert http.post(install, json={"team": "No Such Team"}).status_code == 404
        with pytest.raises(ChannelError, match="a channel needs its team"):
            emu.teams.user_says("bob.smith@contoso.example", "hi", channel="General")
    finally:
        emu.teams.register(None)


def test_channel_messages_from_users_are_graph_messages(emu, http, delegated_token):
    emu.teams.register("http://127.0.0.1:9/api/messages")
    try:
        activity = emu.teams.message("conor.obrien@contoso.example", "look <here> & there", team="Security Operations",
                                     channel="Incident Response")
    finally:
        emu.teams.register(None)
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    ch = next(c for c in team.channels.values() if c.display_name == "Incident Response")
    assert activity["conversation"]["id"] == f"{ch.id};messageid={activity['id']}"
    assert activity["channelData"]["team"] == {"id": next(iter(team.channels)), "name": "Security Operations",
                                               "aadGroupId": team.id}
    assert activity["text"].startswith("<at>SOAR Bot</at> ") or activity["text"].startswith("<at>")
    r = http.get(f"{emu.graph_url}/teams/{team.id}/channels/{ch.id}/messages/{activity['id']}",
                 headers={"Authorization": f"Bearer {delegated_token}"})
    assert r.status_code == 200
    assert r.json()["from"]["user"]["displayName"] == "Conor O'Brien"
    assert "look &lt;here&gt; &amp; there" in r.json()["body"]["content"]


def test_emulator_serve_takes_a_messaging_endpoint(capsys):
    from fake_tenant.serve import main

    assert main(["--messaging-endpoint", "http://bot.example/api/messages"]) == 2
    assert "--messaging-endpoint" in capsys.readouterr().err
    stop = threading.Event()
    stop.set()
    assert main(["--messaging-endpoint", "http://127.0.0.1:3978/api/messages"], stop_event=stop) == 0
    assert "bot endpoint     http://127.0.0.1:3978/api/messages" in capsys.readouterr().out
