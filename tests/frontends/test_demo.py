"""`msteams demo`: the README's first command runs the shipped incident-war-room playbook against
an in-process emulator, prints each step and the war room, and exits 0."""
from integration.frontends.cli import main


def test_demo_runs_the_war_room_playbook(tmp_path):
    out, err = [], []
    code = main(["demo", "--keep", str(tmp_path)], out=out.append, err=err.append)
    text = "\n".join(out)
    assert code == 0, text + "\n".join(err)
    assert "msteams playbook run incident-war-room" in text
    for step in ("[1/8] chat (chat-create) ok", "[4/8] meeting (meeting-create) ok",
                 "[6/8] card_responders (send-notification) ok", "[7/8] brief (message-send-to-chat) ok",
                 "[8/8] ring (ring-user) ok", "playbook 'incident-war-room': ok"):
        assert step in text
    assert "- Chat 'IR-4711 Suspicious OAuth consent granted to <unknown app>' with Conor O'Brien" in text
    assert "- Calling the on-call engineer Priya Patel: establishing" in text
    assert text.count("- Incident card to ") == 3
    for path in ("MicrosoftTeams.ChatList", "MicrosoftTeams.CreateMeeting", "MicrosoftTeams.Notification",
                 "MicrosoftTeams.Call"):
        assert f"### {path}" in text
    assert "Traceback" not in text and (tmp_path / "config.yml").is_file()
    # the other direction: an analyst's command from Teams, answered by the bot endpoint
    assert "## A command from Teams" in text
    assert "Bob Smith (analyst) in a 1:1 chat with the bot: !channel-list team=\"Security Operations\"" in text
    assert "signed activity delivered: HTTP 202" in text
    answer = text[text.index("  bot: "):]
    assert "Incident Response" in answer and "Threat Intel" in answer
    assert "audit: Bob Smith ran channel-list in personal chat: allowed, ok" in text


def test_demo_approval_scenario_resumes_the_playbook_on_a_click(tmp_path):
    out, err = [], []
    code = main(["demo", "--scenario", "approval", "--keep", str(tmp_path)], out=out.append, err=err.append)
    text = "\n".join(out)
    assert code == 0, text + "\n".join(err)
    assert "[2/3] decide (ask) waiting for the answer to question" in text
    assert "msteams emulator user-clicks --user grace.kim@contoso.example" in text
    assert "resumed in the endpoint: ok" in text
    cards = [line for line in out if line.startswith("  card to ")]
    assert len(cards) == 2 and all("approved (reviewer Grace Kim, comment 'ok for 4h')" in c for c in cards)
    assert "Traceback" not in text
