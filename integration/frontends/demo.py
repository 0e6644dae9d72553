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

PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "library" / "incident-war-room.yml"
APPROVAL_PLAYBOOK = PLAYBOOK.parent / "access-request.yml"
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

    from integration.frontends.bot import server as bot_server

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


APPROVAL_INPUTS = {
    "request_id": "REQ-42",
    "requester": "bob.smith@contoso.example",
    "roles": ["prod-admin"],
    "reason": "Hotfix for INC-7",
    "role_to_recipients": {"prod-admin": ["grace.kim@contoso.example"], "*": ["Security Operations/Incident Response"]},
    "suggested_reviewers": ["conor.obrien@contoso.example"],
}
REVIEWER = "grace.kim@contoso.example"


def approval(rt, emu, out: Callable[[str], None]):
    """An access request end to end: the shipped access-request playbook asks every reviewer and
    waits; a simulated reviewer presses Approve in the fake tenant; the bot endpoint records the
    decision, resumes the run, and every reviewer's card changes."""
    import json

    from fake_tenant.drive import _card_text

    from integration.frontends.bot import server as bot_server
    from integration.playbooks import run_playbook

    import logging

    quiet = logging.getLogger("msteams.bot.server")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # no bot_access_file: no commands from Teams, which this demo does not need
    try:
        endpoint = bot_server.build(rt, workers=2)
    finally:
        quiet.setLevel(level)
    server = bot_server.BotServer(endpoint).start()
    try:
        emu.teams.register(server.messaging_endpoint)
        out(f"> msteams bot serve --port {server.port}      (in-process; receives the reviewers' decisions)")
        line = " ".join(f"--input {_quote(k + '=' + (json.dumps(v) if isinstance(v, dict) else ','.join(v) if isinstance(v, list) else v))}"
                        for k, v in APPROVAL_INPUTS.items())
        out(f"> msteams playbook run access-request {line}")
        result = run_playbook(APPROVAL_PLAYBOOK, APPROVAL_INPUTS, rt, out=lambda s: out("  " + s))
        out(f"  run {result.run_id}: {result.status} (question {result.waiting_for})")
        q = rt.store.question_get(result.waiting_for) if result.waiting_for else None
        if q is None:
            return result
        for r in q["value"]["recipients"]:
            out(f"  approval card sent to {r}")
        out("")
        out(f"> msteams emulator user-clicks --user {REVIEWER} --question {q['id']} --choice Approve "
            "--reason 'ok for 4h'")
        rec = emu.teams.user_clicks(REVIEWER, "Approve", question=q["id"], reason="ok for 4h")
        out(f"  signed activity delivered: HTTP {rec['status']}")
        endpoint.processor.drain(30)
        run = rt.store.run_get(result.run_id)
        out(f"  run {result.run_id} resumed in the endpoint: {run['status']}")
        for ref in q["value"]["refs"]:
            saved = rt.store.get_message_ref(ref)
            act = emu.state.activities.get(saved["activityId"]) or {}
            content = ((act.get("activity") or {}).get("attachments") or [{}])[0].get("content") or {}
            title = next((b.get("text") for b in content.get("body") or [] if b.get("type") == "TextBlock"), None)
            facts = {f["title"]: f["value"] for b in content.get("body") or [] if b.get("type") == "FactSet"
                     for f in b.get("facts") or []}
            out(f"  card to {saved['recipient']}: {title or ' '.join(_card_text(act.get('activity') or {}))}"
                + (f" (reviewer {facts.get('Reviewer')}, comment {facts.get('Comment')!r})" if facts else "")
                + f", edited {act.get('edits', 0)} time(s)")
        return result
    finally:
        emu.teams.register(None)
        server.stop()


def context_tables(context: dict) -> list[str]:
    """Each context path as a table, as a SOAR platform would show it."""
    import json

    from integration.engine.results import markdown_table

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
    p.add_argument("--scenario", choices=("war-room", "approval"), default="war-room",
                   help="war-room (default): an incident's war room and a command from Teams; approval: an access "
                        "request approved by a reviewer's click, resuming the playbook")
    ns = p.parse_args(argv or [])

    from integration.engine.config import load as load_config
    from integration.dispatch import Runtime, execute
    from fake_tenant import Emulator
    from integration.engine.errors import ConfigError
    from integration.playbooks import run_playbook

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
            if ns.scenario == "approval":
                out("## An access request: reviewers are asked in Teams, the playbook waits for a decision")
                result = approval(rt, emu, out)
                out("")
                out(f"Done: {len(emu.state.activities)} bot message(s) in the fake tenant; "
                    f"{len(emu.request_log)} requests served.")
                if result.run_id and rt.store.run_get(result.run_id)["status"] != "ok":
                    from integration.engine.errors import IntegrationError

                    raise IntegrationError(f"the access request run {result.run_id} did not finish")
                return 0
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
