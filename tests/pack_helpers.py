"""What the pack tests share: a command added to the registry after the generators were written
(each pack must carry it without an edit), what a generated module imports, how many chat
messages of a given content the fake tenant holds, and for the packs' tenant setting: a config
with the three hosted tenants' profiles and a key for every tenant, a tenant's team ids, and a
stand-in for requests that sends nothing (what a check "before any request" looks at)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

EXTRA_COMMAND = """
  pack-probe:
    category: admin
    local: true
    description: A command added to the registry after the pack generator was written.
    arguments:
      type: object
      properties:
        depth:
          type: string
          enum: [shallow, deep]
          default: shallow
          description: How deep to probe.
        target:
          type: string
          minLength: 1
          description: What to probe.
      required: [target]
    handler: admin.cache_show
    outputs:
      prefix: MicrosoftTeams.PackProbe
      key: id
      fields: {id: id, depth: depth}
"""


def registry_with_extra_command(tmp_path: Path, monkeypatch) -> Path:
    """The shipped registry plus EXTRA_COMMAND, in use through MSTEAMS_REGISTRY."""
    from integration.engine import registry

    reg_file = tmp_path / "commands.yml"
    reg_file.write_text(registry.COMMANDS_FILE.read_text(encoding="utf-8").rstrip("\n") + "\n" + EXTRA_COMMAND)
    monkeypatch.setenv("MSTEAMS_REGISTRY", str(reg_file))
    return reg_file


def imports_of(source: str) -> set[str]:
    """The top-level packages a module's source imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0])
    return found


def chat_messages(emu, content: str) -> int:
    return sum(1 for chat in emu.state.chats.values() for m in chat.messages if (m.body or {}).get("content") == content)


def tenants_config_and_key(emu, tmp_path: Path) -> tuple[str, str]:
    """A config with a tenant profile per hosted tenant (the tenants3 fixture's contoso, fabrikam
    and northwind) and an API key allowed team-list in every tenant."""
    from service_helpers import cli
    from tenant_helpers import write_tenants_config

    cfg = write_tenants_config(emu, tmp_path)
    code, out, err = cli(cfg, "-o", "json", "api-key", "create", "--name", "x", "--scope", "team-list",
                         "--tenants", "*")
    assert code == 0, err
    return cfg, json.loads(out[0])["key"]


def team_ids(emu, tenant: str) -> set[str]:
    """The ids of a hosted tenant's teams."""
    return set(emu.tenant(tenant).state.teams)


def no_requests(monkeypatch) -> list:
    """requests.Session.request recording each call (method, url) and sending nothing."""
    import requests

    sent: list = []

    def request(self, method, url, *args, **kwargs):
        sent.append((method, url))
        raise requests.ConnectionError(f"not sent: {method} {url}")

    monkeypatch.setattr(requests.Session, "request", request)
    return sent
