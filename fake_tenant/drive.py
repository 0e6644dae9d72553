"""``msteams emulator user-says``, ``install-bot``/``uninstall-bot``, ``forget-conversations`` and
``answer-call``: act as a Teams user
against a running emulator (``msteams emulator serve``), through its admin API. The emulator is
the one the config names (``--config`` or ``MSTEAMS_CONFIG``, as ``--write-config`` wrote it),
or ``--emulator URL`` with ``--ca-bundle``.

``user-says`` prints what the bot's endpoint answered and, with ``--wait SECONDS``, the bot's
reply in the thread once it arrives (the text of its card).

``user-clicks --message-ref REF`` names the card by the product's messageRef, which only the
product's context store can turn into the bot message's activity id. The fake tenant imports
nothing of the product, so the front end that runs these commands passes that lookup in
(``main(..., activity_of_ref=...)``); without it, only ``--question ID`` can name the card.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable
from urllib.parse import urlsplit

# (config path or None, messageRef) -> the activity id of the bot message it names, or None when
# the context store has no such reference. The product's front end supplies it.
ActivityOfRef = Callable[[str | None, str], str | None]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def _target(ns) -> tuple[str, str | bool]:
    if ns.emulator:
        return ns.emulator.rstrip("/"), ns.ca_bundle or True
    path = ns.config or os.environ.get("MSTEAMS_CONFIG")
    if not path:
        raise _UsageError("which emulator? pass --config FILE (as `msteams emulator serve --write-config` wrote it), "
                          "set MSTEAMS_CONFIG, or pass --emulator URL")
    import yaml

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise _UsageError(f"cannot read the config {path}: {exc}") from None
    authority = data.get("authority") if isinstance(data, dict) else None
    if not authority:
        raise _UsageError(f"{path} names no emulator (no authority setting)")
    parts = urlsplit(authority)
    return f"{parts.scheme}://{parts.netloc}", ns.ca_bundle or data.get("ca_bundle") or True


def _card_text(activity: dict) -> list[str]:
    lines: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "TextRun" and isinstance(node.get("text"), str):
                lines.append(node["text"])
            elif node.get("type") == "TableRow":
                cells = []
                for cell in node.get("cells") or []:
                    texts = []
                    for item in cell.get("items") or []:
                        for inline in item.get("inlines") or []:
                            texts.append(str(inline.get("text", "")))
                    cells.append(" ".join(texts))
                lines.append(" | ".join(cells))
                return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    if activity.get("text"):
        lines.append(str(activity["text"]))
    walk(activity.get("attachments") or [])
    return lines


def _activity_of_ref(lookup: ActivityOfRef | None, config: str | None, ref: str) -> str:
    """The bot message's activity id behind a messageRef, through the product's lookup."""
    if lookup is None:
        raise _UsageError("--message-ref needs the context store, which `msteams emulator user-clicks` reads; "
                          "pass --question ID instead")
    found = lookup(config, ref.strip())
    if not found:
        raise _UsageError(f"no message reference {ref!r} in the context store")
    return found


def main(argv: list[str], *, out=print, err=None, config: str | None = None,
         activity_of_ref: ActivityOfRef | None = None) -> int:
    err = err or (lambda s: print(s, file=sys.stderr))
    action = argv[0] if argv else None
    p = _Parser(prog=f"msteams emulator {action}")
    p.add_argument("--config", default=config, help="the config the emulator wrote (default: $MSTEAMS_CONFIG)")
    p.add_argument("--emulator", metavar="URL", help="the emulator's base URL instead of the config's")
    p.add_argument("--ca-bundle", metavar="PEM", help="the emulator's CA (with --emulator)")
    if action == "user-says":
        p.add_argument("--user", required=True, help="who writes (mail or UPN)")
        p.add_argument("--team", help="in a channel of this team (with --channel; General without it)")
        p.add_argument("--channel", help="the channel")
        p.add_argument("--chat", metavar="ID", help="in this group chat")
        p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait this long for the bot's reply and print it")
        p.add_argument("text", nargs="+", help="what the user writes (the bot is @mentioned in a channel or chat)")
    elif action == "user-clicks":
        p.add_argument("--user", required=True, help="who presses the button (mail or UPN)")
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--question", metavar="ID", help="the card of this question (ask)")
        g.add_argument("--message-ref", metavar="REF", help="the bot message with this messageRef (read from the "
                                                            "config's context store)")
        p.add_argument("--choice", required=True, help="the button's title")
        p.add_argument("--reason", help="text typed in the card's reason box")
    elif action == "answer-call":
        p.add_argument("--user", required=True, help="whose Teams client rings (mail or UPN)")
        p.add_argument("answer", choices=("accept", "decline", "busy", "ignore"),
                       help="pick up, decline, be busy, or let it ring out")
    elif action in ("install-bot", "uninstall-bot"):
        g = p.add_mutually_exclusive_group(required=True)
        verb = "install" if action == "install-bot" else "uninstall (an admin takes the app away)"
        g.add_argument("--user", help=f"{verb} for this user (personal scope)")
        g.add_argument("--team", help=f"{verb} in this team")
    elif action == "forget-conversations":
        p.add_argument("--user", help="only this user's 1:1 conversations with the bot (default: all)")
    else:
        err("usage: msteams emulator user-says --user MAIL [--team NAME --channel NAME | --chat ID] TEXT | "
            "msteams emulator user-clicks --user MAIL (--question ID | --message-ref REF) --choice TITLE "
            "[--reason TEXT] | "
            "msteams emulator install-bot|uninstall-bot --user MAIL | --team NAME | "
            "msteams emulator forget-conversations [--user MAIL] | "
            "msteams emulator answer-call --user MAIL accept|decline|busy|ignore")
        return 2
    try:
        ns = p.parse_args(argv[1:])
        if action == "user-says" and ns.chat and (ns.team or ns.channel):
            raise _UsageError(f"{p.prog}: --chat or --team/--channel, not both")
        if action == "user-says" and ns.channel and not ns.team:
            raise _UsageError(f"{p.prog}: --channel needs --team")
        base, verify = _target(ns)
    except _UsageError as exc:
        err(f"error: {exc}")
        return 2
    import requests

    session = requests.Session()
    session.trust_env = False
    if action == "user-says":
        body = {"user": ns.user, "text": " ".join(ns.text)}
        body.update({k: getattr(ns, k) for k in ("team", "channel", "chat") if getattr(ns, k)})
    elif action == "user-clicks":
        body = {"user": ns.user, "choice": ns.choice}
        if ns.question:
            body["question"] = ns.question
        else:
            try:
                body["activity_id"] = _activity_of_ref(activity_of_ref, ns.config, ns.message_ref)
            except _UsageError as exc:
                err(f"error: {exc}")
                return 2
        if ns.reason is not None:
            body["reason"] = ns.reason
    elif action == "answer-call":
        body = {"user": ns.user, "answer": ns.answer}
    elif action == "forget-conversations":
        body = {"user": ns.user} if ns.user else {}
    else:
        body = {"user": ns.user} if ns.user else {"team": ns.team}
    try:
        r = session.post(f"{base}/_emulator/{action}", json=body, verify=verify, timeout=30)
    except requests.RequestException as exc:
        err(f"error: cannot reach the emulator at {base}: {type(exc).__name__} (is `msteams emulator serve` running?)")
        return 3
    try:
        data = r.json()
    except ValueError:
        data = {"error": r.text[:200]}
    if r.status_code != 200:
        err(f"error: {data.get('error')}")
        return 2 if r.status_code in (400, 404, 403) else 3 if r.status_code == 409 else 1
    if action == "forget-conversations":  # the tenant forgot them: the bot's next send heals
        out(f"the tenant forgot {len(data.get('forgotten') or [])} conversation(s) of the bot")
        return 0
    if action == "uninstall-bot":
        told = data.get("delivery") or {}
        out(f"the bot is uninstalled for {ns.user or ns.team}"
            + (f"; Teams told the bot at {told.get('endpoint')}: HTTP {told.get('status')}" if told else ""))
        return 0
    if data.get("error") or not data.get("status"):
        err(f"error: delivering to {data.get('endpoint')}: {data.get('error') or 'no answer'}")
        return 1
    what = f"call {data.get('callId')} ({data.get('answer')}) notification" if action == "answer-call" \
        else data.get("type")
    out(f"{what} delivered to {data.get('endpoint')}: HTTP {data['status']}")
    if not 200 <= data["status"] < 300:
        return 1
    if action == "user-says" and ns.wait > 0:
        deadline = time.monotonic() + ns.wait
        while time.monotonic() < deadline:
            state = session.get(f"{base}/_emulator/state", params={"user": ns.user}, verify=verify,
                                timeout=30).json()  # the user's tenant's (several hosted tenants)
            replies = [a["activity"] for a in state.get("activities", [])
                       if a.get("activity", {}).get("replyToId") == data.get("activityId")]
            if replies:
                for reply in replies:
                    out("bot: " + "\n     ".join(_card_text(reply)))
                return 0
            time.sleep(0.2)
        err(f"no reply from the bot within {ns.wait:g} s")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
