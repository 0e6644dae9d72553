"""docs/commands.md is generated from commands.yml and must not go stale."""
from pathlib import Path

from integration.frontends import docs
from integration.engine import registry

ROOT = Path(__file__).resolve().parents[2]


def test_commands_md_is_current():
    expected = docs.commands_markdown(registry.load())
    actual = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/commands.md is stale: run `msteams docs --write`"


def test_permissions_totals_cover_every_command():
    by_flow = registry.load().permissions_by_flow()
    assert by_flow["app"]["ring-user"] == ["Calls.Initiate.All", "User.Read.All"]
    assert "message-send-to-chat" not in by_flow["app"]
    text = docs.permissions_markdown(registry.load())
    assert "`ChatMessage.Send`" in text
