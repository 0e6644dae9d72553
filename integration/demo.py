"""`msteams demo`: start the built-in emulator in-process, configure against it, sign in the
delegated flow unattended, and run the shipped playbook `playbooks/incident-war-room.yml` for a
critical incident, printing each step as it runs and then the war room it opened: the chat, the
bridge meeting, the incident cards, the call to the on-call engineer, and the context a SOAR
platform would store. Then the other direction: the bot's messaging endpoint (`msteams bot
serve`) runs in-process on loopback, the fake tenant delivers a signed command an analyst sends
the bot in Teams, and the demo prints the bot's answer as the fake Bot Connector recorded it.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Callable

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "library" / "incident-war-room.yml"
INPUTS = {
    "incident_id": "IR-4711",
    "title": "Suspicious OAuth consent granted to <unknown app>",
    "severity": "critical",
    # one found by display name (apostrophe included), two by mail
    "responders": ["Conor O'Brien", "zoe.muller@contoso.example", "soren.ostergaard@contoso.example"],
    "oncall": "priya.patel@contoso.example",
}


def _quote(text: str) -> str:
    """Shell quoting that reads well: double quotes when single ones are inside."""
    import shlex

    quoted = shlex.quote(text)
    if quoted != text and "'" in text and not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return quoted


def _command_line(inputs: dict) -> str:
    parts = ["msteams playbook run incident-war-room"]
    for k, v in inputs.items():
        value = ",".join(v) if isinstance(v, list) else str(v)
        parts.append(f"--input {_quote(f'{k}={value}')}")
    return " \\\n    ".join(parts)


def war_room_summary(result, emu) -> list[str]:
    """The war room in a few lines, from the playbook's outputs and context and the fake tenant."""
    o, ctx = result.outputs, result.context
    lines = []
    chat = emu.state.chats.get(o.get("chat_id") or "")
    if chat is not None:
        names = sorted(emu.state.users[m.user_id]["displayName"] for m in chat.members)
        lines.append(f"- Chat '{chat.topic}' with {', '.join(names)}")
        if chat.messages:
            lines.append(f"  brief posted: {chat.messages[-1].body['content']}")
    if o.get("channel_id"):
        lines.append(f"- Private channel {o['channel_id']}")
    if o.get("meeting_url"):
        lines.append(f"- Bridge meeting: {o['meeting_url']}")
    cards = [c for c in (o.get("card_refs") or []) + (o.get("card_refs_channel") or []) if isinstance(c, dict)]
    for c in cards:
        lines.append(f"- Incident card to {c.get('recipient')}: {c.get('status')} (messageRef {c.get('messageRef')})")
    call = (ctx.get("MicrosoftTeams.Call") or [None])[0]
    if call:
        lines.append(f"- Calling the on-call engineer {call.get('userName')}: {call.get('state')} (call {call.get('callId')})")
    elif o.get("call") == "failed":
        lines.append(f"- The call to the on-call engineer failed: {result.step('ring')['error']}")
    return lines


ANALYST = "bob.smith@contoso.example"
TEAMS_COMMAND = '!channel-list team="Security Operations"'
ACCESS = f"""# who may run which command from Teams (bot_access_file)
roles:
  analysts: {{users: [{ANALYST}]}}
allow:
  analysts: [read]
"""


def command_from_teams(rt, emu, workdir: str, out: Callable[[str], None]) -> None:
    """An analyst sends the bot a command in Teams; the endpoint verifies, runs and answers it."""
    from fake_tenant.drive import _card_text

    from .bot import server as bot_server

    access = os.path.join(workdir, "bot-access.yml")
    with open(access, "w", encoding="utf-8") as f:
        f.write(ACCESS)
    rt.cfg.bot_access_file = access
    endpoint = bot_server.build(rt, workers=1)
    server = bot_server.BotServer(endpoint).start()
    try:
        emu.teams.register(server.messaging_endpoint)  # as `msteams bot serve` registers itself
        out(f"> msteams bot serve --port {server.port}      (in-process; the fake tenant's messaging endpoint: "
            f"{server.messaging_endpoint})")
        analyst = emu.state.user(ANALYST)
        out(f"> msteams emulator user-says --user {ANALYST} {_quote(TEAMS_COMMAND)}")
        rec = emu.teams.user_says(ANALYST, TEAMS_COMMAND)
        endpoint.processor.drain(20)
        out(f"  {analyst['displayName']} (analyst) in a 1:1 chat with the bot: {TEAMS_COMMAND}")
        out(f"  signed activity delivered: HTTP {rec['status']}")
        replies = [a["activity"] for a in emu.state.activities.values()
                   if a["activity"].get("replyToId") == rec["activityId"]]
        for reply in replies:
            out("  bot: " + "\n       ".join(_card_text(reply)))
        if not replies:
            out("  (no reply from the bot)")
        for row in rt.store.audit_list(limit=1):
            out(f"  audit: {row['sender_name']} ran {row['command']} in {row['place']}: {row['decision']}, "
                f"{row['outcome']}")
    finally:
        emu.teams.register(None)
        server.stop()


def context_tables(context: dict) -> list[str]:
    """Each context path as a table, as a SOAR platform would show it."""
    import json

    from .results import markdown_table

    lines = []
    for path, value in context.items():
        lines.append("")
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            flat = [_flatten(v) for v in value]
            columns = [c for c in dict.fromkeys(k for row in flat for k in row)
                       if c.rsplit(".", 1)[-1] not in _DETAIL and any(r.get(c) for r in flat)]
            lines.append(markdown_table(value, columns[:7], path))  # dotted columns reach into entries
        else:
            lines.append(f"### {path}\n\n{json.dumps(value, ensure_ascii=False, default=str)}")
    return lines


# Columns left out of the demo's tables (they are in the context all the same).
_DETAIL = {"createdDateTime", "lastUpdatedDateTime", "creationDateTime", "tenantId", "activityId", "conversationId",
           "threadId", "messageId", "participantId", "id", "webUrl", "from", "contentType"}


def _flatten(entry: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in entry.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    p = argparse.ArgumentParser(prog="msteams demo", description=__doc__)
    p.add_argument("--keep", metavar="DIR", help="keep the config and store in DIR instead of a temporary directory")
    ns = p.parse_args(argv or [])

    from .config import load as load_config
    from .dispatch import Runtime, execute
    from fake_tenant import Emulator
    from .errors import ConfigError
    from .playbooks import run_playbook

    if not PLAYBOOK.is_file():
        raise ConfigError(f"the shipped playbook {PLAYBOOK} is missing",
                          hint="run the demo from a source checkout (pip install -e .)")
    workdir = ns.keep or tempfile.mkdtemp(prefix="msteams-demo-")
    os.makedirs(workdir, exist_ok=True)
    with Emulator(throttling=True) as emu:
        cfg_path = os.path.join(workdir, "config.yml")
        emu.write_config(cfg_path)
        cfg = load_config(cfg_path, env={})
        cfg.store_path = os.path.join(workdir, "store.sqlite3")
        rt = Runtime(cfg)
        rt.echo = out
        try:
            out(f"Fake tenant up at {emu.base_url} (tenant {cfg.tenant_id}); config in {cfg_path}")
            out("")
            out("> msteams auth login        (delegated sign-in of the service account, unattended against the emulator)")
            out(execute("auth-login", {}, rt).render())
            out("")
            out("## A critical incident: open the war room with the shipped playbook")
            out(f"> {_command_line(INPUTS)}")
            result = run_playbook(PLAYBOOK, INPUTS, rt, out=lambda line: out("  " + line))
            out("")
            out(f"## The war room ({result.status})")
            for line in war_room_summary(result, emu):
                out(line)
            out("")
            out("## Context (what the SOAR platform stores)")
            for line in context_tables(result.context):
                out(line)
            out("")
            out("## A command from Teams: an analyst asks the bot")
            command_from_teams(rt, emu, workdir, out)
            snap = emu.state.snapshot()
            msgs = sum(len(c["messages"]) for c in snap["chats"].values())
            out("")
            out(f"Done: {len(snap['chats'])} chat(s), {msgs} message(s), {len(emu.state.activities)} bot message(s), "
                f"{len(snap['meetings'])} meeting(s) and {len(snap['calls'])} call(s) in the fake tenant; "
                f"{len(emu.request_log)} requests served.")
        finally:
            rt.close()
    if not result.ok:
        raise result.error
    return 0
