"""`msteams demo`: start the built-in emulator in-process, configure against it, sign in both
flows unattended, and run a short incident scenario as an analyst would type it in a war
room, printing each command and its result.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable

SCENARIO = [
    ("Who is signed in, and with what", "!auth-status"),
    ("Open a war room with three responders (one found by display name, apostrophe included)",
     '!chat-create chat_type=group member="Conor O\'Brien,zoe.muller@contoso.example,soren.ostergaard@contoso.example" '
     'chat_name="IR-4711 Suspicious OAuth consent"'),
    ("Brief the war room", '!message-send-to-chat chat="IR-4711 Suspicious OAuth consent" '
                           'content="Containment started: <app> consent revoked for 3 users. Next update in 30 min."'),
    ("Direct note to the SOC manager (their 1:1 chat is created on first use)",
     '!message-send-to-chat chat="alice.johnson@contoso.example" content="IR-4711 is a P2; war room is open."'),
    ("Where can the team follow along?", '!channel-list team="Security Operations"'),
    ("Page the on-call engineer", "!ring-user username=priya.patel@contoso.example"),
    ("Names are now answered from the context store", "!cache-show"),
]


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    p = argparse.ArgumentParser(prog="msteams demo", description=__doc__)
    p.add_argument("--keep", metavar="DIR", help="keep the config and store in DIR instead of a temporary directory")
    ns = p.parse_args(argv or [])

    from .arguments import parse_warroom
    from .config import load as load_config
    from .dispatch import Runtime, execute
    from .emulator import Emulator

    workdir = ns.keep or tempfile.mkdtemp(prefix="msteams-demo-")
    os.makedirs(workdir, exist_ok=True)
    with Emulator(throttling=True) as emu:
        cfg_path = os.path.join(workdir, "config.yml")
        emu.write_config(cfg_path)
        cfg = load_config(cfg_path, env={})
        cfg.store_path = os.path.join(workdir, "store.sqlite3")
        rt = Runtime(cfg)
        rt.echo = out
        out(f"Fake tenant up at {emu.base_url} (tenant {cfg.tenant_id}); config in {cfg_path}")
        out("")
        out("> !auth-login        (delegated sign-in of the service account, unattended against the emulator)")
        out(execute("auth-login", {}, rt).render())
        for title, line in SCENARIO:
            out("")
            out(f"## {title}")
            out(f"> {line}")
            name, args = parse_warroom(line)
            result = execute(name, args, rt)
            out(f"[{result.flow or 'local'} flow]" if result.flow else "[local]")
            out(result.render())
        snap = emu.state.snapshot()
        msgs = sum(len(c["messages"]) for c in snap["chats"].values())
        out("")
        out(f"Done: {len(snap['chats'])} chats, {msgs} messages and {len(snap['calls'])} call(s) in the fake tenant; "
            f"{len(emu.request_log)} requests served.")
        rt.close()
    return 0
