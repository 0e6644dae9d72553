"""send-notification and message-update through the emulator's Bot Connector: real MSAL bot
tokens, real HTTP, real SQLite message references."""
import json

import pytest

from engine_fixtures import make_config
from integration.dispatch import Runtime, execute
from integration.engine.errors import ArgumentError, AuthError, NotFound

CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Approve isolating WS-17?"}],
        "actions": [{"type": "Action.Submit", "title": "Approve", "data": {"decision": "approve"}}]}
WRAPPED = {"contentType": "application/vnd.microsoft.card.adaptive",
           "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "Approved"}]}}


def bot_requests(emu):
    return [e for e in emu.request_log if e["path"].startswith("/botframework")]


def graph_requests(emu):
    return [e for e in emu.request_log if e["path"].startswith("/v1.0")]


def activity(emu, activity_id):
    return emu.state.activities[activity_id]["activity"]


@pytest.fixture
def no_app(emu, tmp_path, sleeps):
    """Bot configured, app flow not (no client secret): names cannot be looked up."""
    rt = Runtime(make_config(emu, tmp_path, client_secret=None), sleep=sleeps)
    yield rt
    rt.close()


def test_sends_one_to_one_to_several_users_and_stores_references(emu, runtime):
    r = execute("send-notification", {"user": "Conor O'Brien,priya.patel@contoso.example",
                                      "message": "Incident 42 opened"}, runtime)
    assert r.flow == "bot"
    assert [o["status"] for o in r.outputs] == ["sent", "sent"]
    conor, priya = emu.state.user("conor.obrien@contoso.example"), emu.state.user("priya.patel@contoso.example")
    convs = {c["members"][0]: c for c in emu.state.bot_conversations.values()}
    assert set(convs) == {conor["id"], priya["id"]} and all(c["type"] == "personal" for c in convs.values())
    for out in r.outputs:
        sent = activity(emu, out["activityId"])
        assert sent["text"] == "Incident 42 opened" and sent["conversation"]["id"] == out["conversationId"]
        ref = runtime.store.get_message_ref(out["messageRef"])
        assert ref["activityId"] == out["activityId"] and ref["conversationId"] == out["conversationId"]
        assert ref["serviceUrl"] == runtime.cfg.bot_service_url and ref["recipientType"] == "user"
    ctx = r.context()["MicrosoftTeams.Notification"]
    assert {c["messageRef"] for c in ctx} == {o["messageRef"] for o in r.outputs}
    assert "Conor O'Brien" in r.outputs[0]["recipient"]


def test_markdown_mentions_become_entities_and_the_rest_is_escaped(emu, runtime):
    msg = "Hi @Conor O'Brien; and @Zoë Müller; <script>alert(1)</script> & **bold**"
    r = execute("send-notification", {"user": "bob.smith@contoso.example", "message": msg}, runtime)
    sent = activity(emu, r.outputs[0]["activityId"])
    assert sent["text"] == ("Hi <at>Conor O'Brien</at> and <at>Zoë Müller</at> "
                            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; **bold**")
    assert sent["textFormat"] == "markdown"
    conor, zoe = emu.state.user("conor.obrien@contoso.example"), emu.state.user("zoe.muller@contoso.example")
    assert sent["entities"] == [
        {"type": "mention", "text": "<at>Conor O'Brien</at>", "mentioned": {"id": conor["id"], "name": "Conor O'Brien"}},
        {"type": "mention", "text": "<at>Zoë Müller</at>", "mentioned": {"id": zoe["id"], "name": "Zoë Müller"}}]


def test_text_format_is_sent_plain_without_mentions(emu, runtime):
    r = execute("send-notification", {"user": "bob.smith@contoso.example", "message": "mail @ops; <b>x</b>",
                                      "message_format": "text"}, runtime)
    sent = activity(emu, r.outputs[0]["activityId"])
    assert sent["text"] == "mail @ops; <b>x</b>" and sent["textFormat"] == "plain" and "entities" not in sent


def test_unknown_mention_fails_before_anything_is_sent(emu, runtime):
    with pytest.raises(NotFound, match="No Such Person"):
        execute("send-notification", {"user": "bob.smith@contoso.example", "message": "cc @No Such Person;"}, runtime)
    assert not bot_requests(emu) and not emu.state.activities


@pytest.mark.parametrize("card", [CARD, json.dumps(CARD), WRAPPED, json.dumps(WRAPPED)])
def test_adaptive_card_raw_or_wrapped(emu, runtime, card):
    r = execute("send-notification", {"user": "bob.smith@contoso.example", "adaptive_card": card}, runtime)
    att = activity(emu, r.outputs[0]["activityId"])["attachments"]
    assert len(att) == 1 and att[0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att[0]["content"]["type"] == "AdaptiveCard"


@pytest.mark.parametrize("bad", ['{"type": "AdaptiveCard", ', '[1, 2]', '{"type": "HeroCard"}',
                                 '{"contentType": "application/vnd.microsoft.card.adaptive", "content": "x"}'])
def test_invalid_card_is_an_argument_error_before_any_request(emu, runtime, bad):
    with pytest.raises(ArgumentError) as e:
        execute("send-notification", {"user": "bob.smith@contoso.example", "adaptive_card": bad}, runtime)
    assert e.value.argument == "adaptive_card" and e.value.exit_code == 2
    assert not bot_requests(emu) and not graph_requests(emu)


def test_oversized_message_is_refused_before_sending(emu, runtime):
    with pytest.raises(ArgumentError, match="bytes"):
        execute("send-notification", {"user": "bob.smith@contoso.example", "message": "x" * 40000,
                                      "message_format": "text"}, runtime)
    assert not bot_requests(emu)


def test_one_failing_recipient_does_not_stop_the_others(emu, runtime):
    r = execute("send-notification", {"user": "nobody@contoso.example,bob.smith@contoso.example",
                                      "message": "hello"}, runtime)
    failed, sent = r.outputs
    assert failed["status"] == "failed" and "not found" in failed["error"] and failed["messageRef"] is None
    assert sent["status"] == "sent" and sent["messageRef"]
    assert "1 of 2" in r.message and "nobody@contoso.example" in r.message


def test_all_recipients_failing_is_an_error(emu, runtime):
    with pytest.raises(NotFound) as e:
        execute("send-notification", {"user": "nobody@contoso.example", "message": "hello"}, runtime)
    assert e.value.exit_code == 5
    with pytest.raises(NotFound, match="2 recipients failed"):
        execute("send-notification", {"user": "nobody@contoso.example,ghost@contoso.example", "message": "x"}, runtime)
    assert not emu.state.activities


def test_bot_not_configured_fails_before_any_request(emu, tmp_path):
    rt = Runtime(make_config(emu, tmp_path, bot_id=None, bot_secret=None))
    try:
        with pytest.raises(AuthError) as e:
            execute("send-notification", {"user": "bob.smith@contoso.example", "message": "x"}, rt)
        assert e.value.exit_code == 3 and "bot" in str(e.value) and "bot_id" in str(e.value)
        with pytest.raises(AuthError):
            execute("message-update", {"message_ref": "whatever", "message": "x"}, rt)
    finally:
        rt.close()
    assert not emu.request_log


def test_channel_post_by_names_and_by_id(emu, runtime, no_app):
    r = execute("send-notification", {"team": "Security Operations", "channel": "Incident Response",
                                      "message": "Containment started"}, runtime)
    out = r.outputs[0]
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    ch = next(c for c in team.channels.values() if c.display_name == "Incident Response")
    assert out["conversationId"] == ch.id and out["status"] == "sent"
    assert ch.messages[-1].id == out["activityId"] and "Containment started" in ch.messages[-1].body["content"]
    assert runtime.store.get_message_ref(out["messageRef"])["recipientType"] == "channel"
    # A channel id needs no lookup: works without the app flow.
    r2 = execute("send-notification", {"channel": ch.id, "message": "second"}, no_app)
    assert r2.outputs[0]["conversationId"] == ch.id and len(ch.messages) == 2


def test_without_app_flow_ids_work_and_names_are_refused(emu, no_app):
    bob = emu.state.user("bob.smith@contoso.example")
    r = execute("send-notification", {"user": f"{bob['id']},Conor O'Brien", "message": "hi"}, no_app)
    ok, refused = r.outputs
    assert ok["status"] == "sent" and ok["recipient"] == bob["id"]
    assert refused["status"] == "failed" and "app flow" in refused["error"]
    with pytest.raises(ArgumentError, match="app flow"):
        execute("send-notification", {"team": "Security Operations", "channel": "General", "message": "x"}, no_app)
    assert not graph_requests(emu)


def test_arguments_need_a_recipient_and_content(runtime, emu):
    with pytest.raises(ArgumentError, match="give one or more users"):
        execute("send-notification", {"message": "x"}, runtime)
    with pytest.raises(ArgumentError, match="give a message"):
        execute("send-notification", {"user": "bob.smith@contoso.example"}, runtime)
    with pytest.raises(ArgumentError, match="'channel'"):
        execute("send-notification", {"team": "Security Operations", "message": "x"}, runtime)
    assert not bot_requests(emu)


def test_xsoar_alias_and_team_member_argument(emu, runtime):
    r = execute("microsoft-teams-send-notification", {"team_member": "bob.smith@contoso.example", "message": "x"},
                runtime)
    assert r.outputs[0]["status"] == "sent"


def test_stale_cached_user_is_looked_up_again_once(emu, runtime):
    bob = emu.state.user("bob.smith@contoso.example")
    stale = {"id": "00000000-0000-0000-0000-0000000000aa", "displayName": "Bob Smith",
             "mail": "bob.smith@contoso.example", "userPrincipalName": "bob.smith@contoso.example"}
    runtime.store.put("user", "bob.smith@contoso.example", stale)
    r = execute("send-notification", {"user": "bob.smith@contoso.example", "message": "x"}, runtime)
    assert r.outputs[0]["status"] == "sent"
    assert emu.state.bot_conversations[r.outputs[0]["conversationId"]]["members"] == [bob["id"]]
    assert runtime.store.get("user", "bob.smith@contoso.example")["id"] == bob["id"]


def test_card_sent_then_updated_in_place(emu, runtime):
    sent = execute("send-notification", {"user": "Conor O'Brien", "adaptive_card": CARD}, runtime).outputs[0]
    before = dict(emu.state.activities)
    r = execute("message-update", {"message_ref": sent["messageRef"], "adaptive_card": WRAPPED}, runtime)
    assert r.outputs[0]["status"] == "updated" and r.outputs[0]["edits"] == 1
    assert set(emu.state.activities) == set(before) and len(emu.state.activities) == 1  # one activity, edited
    rec = emu.state.activities[sent["activityId"]]
    assert rec["edits"] == 1
    assert rec["activity"]["attachments"][0]["content"]["body"][0]["text"] == "Approved"
    assert runtime.store.get_message_ref(sent["messageRef"])["edits"] == 1


def test_channel_message_updated_in_place_shows_in_graph(emu, runtime):
    sent = execute("send-notification", {"team": "Security Operations", "channel": "Incident Response",
                                         "message": "Request pending"}, runtime).outputs[0]
    execute("message-update", {"message_ref": sent["messageRef"], "message": "Request **approved**"}, runtime)
    team = next(t for t in emu.state.teams.values() if t.display_name == "Security Operations")
    msg = next(m for m in team.channels[sent["conversationId"]].messages if m.id == sent["activityId"])
    assert "Request **approved**" in msg.body["content"] and msg.last_modified
    assert emu.state.activities[sent["activityId"]]["edits"] == 1


def test_update_unknown_ref_is_not_found_before_any_request(emu, runtime):
    with pytest.raises(NotFound) as e:
        execute("message-update", {"message_ref": "no-such-ref", "message": "x"}, runtime)
    assert e.value.exit_code == 5 and "no-such-ref" in str(e.value)
    assert not bot_requests(emu)


def test_update_needs_content_and_refuses_foreign_service_url(emu, runtime):
    sent = execute("send-notification", {"user": "bob.smith@contoso.example", "message": "x"}, runtime).outputs[0]
    with pytest.raises(ArgumentError, match="give a message"):
        execute("message-update", {"message_ref": sent["messageRef"]}, runtime)
    ref = runtime.store.get_message_ref(sent["messageRef"])
    runtime.store.save_message_ref("forged", dict(ref, serviceUrl="https://evil.example/teams/"))
    with pytest.raises(Exception, match="refusing to send credentials"):
        execute("message-update", {"message_ref": "forged", "message": "y"}, runtime)
    assert emu.state.activities[sent["activityId"]]["edits"] == 0


def test_cli_exit_codes(emu, tmp_path, monkeypatch):
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "cli-store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    out, err = [], []
    code = cli.main(["--config", conf, "-o", "json", "send-notification", "--user", "bob.smith@contoso.example",
                     "--message", "hi"], out=out.append, err=err.append)
    assert code == 0 and '"status": "sent"' in out[-1], err
    code = cli.main(["--config", conf, "message-update", "--message-ref", "nope", "--message", "x"],
                    out=out.append, err=err.append)
    assert code == 5 and "nope" in err[-1]
    code = cli.main(["--config", conf, "send-notification", "--user", "bob.smith@contoso.example",
                     "--adaptive-card", "{not json"], out=out.append, err=err.append)
    assert code == 2 and "adaptive_card" in err[-1]


# ---- fan-out and exactly-once ----
RECIPIENTS = ["conor.obrien@contoso.example", "priya.patel@contoso.example", "Zoë Müller", "bob.smith@contoso.example"]


def sent_texts(emu) -> list[tuple[str, str]]:
    return sorted((a["conversationId"], a["activity"].get("text")) for a in emu.state.activities.values())


def test_the_same_dedupe_key_never_sends_twice(emu, runtime):
    args = {"user": RECIPIENTS, "message": "IR-9 contained", "dedupe_key": "IR-9/contained"}
    first = execute("send-notification", args, runtime)
    again = execute("send-notification", args, runtime)
    assert [o["status"] for o in first.outputs] == ["sent"] * 4
    assert [o["status"] for o in again.outputs] == ["already sent"] * 4
    assert [o["messageRef"] for o in again.outputs] == [o["messageRef"] for o in first.outputs]
    assert len(emu.state.activities) == 4
    assert "had it already" in again.message
    # without a key, running it again is a new message, as a person running it by hand expects
    execute("send-notification", {"user": RECIPIENTS[:1], "message": "IR-9 contained"}, runtime)
    assert len(emu.state.activities) == 5


def test_results_keep_input_order_and_one_failure_does_not_stop_the_others(emu, runtime):
    users = RECIPIENTS[:2] + ["nobody@contoso.example"] + RECIPIENTS[2:]
    r = execute("send-notification", {"user": users, "message": "hello"}, runtime)
    assert [o["status"] for o in r.outputs] == ["sent", "sent", "failed", "sent", "sent"]
    assert r.outputs[2]["recipient"] == "nobody@contoso.example" and "not found" in r.outputs[2]["error"]
    assert len(emu.state.activities) == 4


def test_cold_names_are_looked_up_in_one_batch_and_warm_sends_need_one_request_each(emu, runtime):
    execute("send-notification", {"user": RECIPIENTS, "message": "cold"}, runtime)
    graph = graph_requests(emu)
    lookups = [e for e in graph if e["path"].startswith("/v1.0/users") and not e.get("batch_item")]
    assert any(e["path"] == "/v1.0/$batch" for e in graph)
    assert lookups == []  # every name came through $batch
    emu.request_log.clear()
    execute("send-notification", {"user": RECIPIENTS, "message": "warm"}, runtime)
    assert graph_requests(emu) == []
    posts = bot_requests(emu)
    assert len(posts) == 4 and all(e["path"].endswith("/activities") for e in posts)


def test_a_send_whose_connection_drops_is_reported_unknown_and_not_resent(emu, runtime):
    # Without the permissions to read the chat back (tests/teams/test_bot_readback.py reads it back).
    from teams_helpers import grant_exactly

    grant_exactly(emu, runtime, "app", ["User.Read.All", "Team.ReadBasic.All", "Channel.ReadBasic.All"])
    emu.faults.add(method="POST", path=r"/v3/conversations/[^/]+/activities$", drop=True, count=1)
    args = {"user": RECIPIENTS[:1], "message": "maybe", "dedupe_key": "k1"}
    from integration.delivery.outbox import UnknownDelivery

    with pytest.raises(UnknownDelivery) as e:
        execute("send-notification", args, runtime)
    assert "resend_unknown" in (e.value.hint or "")
    again = execute("send-notification", dict(args, user=RECIPIENTS[:2]), runtime)
    assert [o["status"] for o in again.outputs] == ["unknown", "sent"]
    forced = execute("send-notification", dict(args, resend_unknown=True), runtime)
    assert [o["status"] for o in forced.outputs] == ["sent"]
