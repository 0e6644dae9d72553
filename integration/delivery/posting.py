"""Posting a chat or channel message through Graph exactly once: the post goes through the
outbox under its delivery key, and an ambiguous outcome (timeout, dropped connection, 5xx) is
settled by reading the conversation's newest messages back for ours (same sender, same body,
created after the attempt began) before anything is sent again."""
from __future__ import annotations

import time
from datetime import datetime

from integration.engine.errors import IntegrationError
from .outbox import Outbox

READ_BACK_TOP = 20  # the conversation's newest messages: ours, if it arrived, is among them
CLOCK_SKEW = 60.0


def created_after(created: str | None, since: float | None) -> bool:
    """Whether a message Graph dated ``created`` (ISO 8601) was posted at or after ``since`` (our
    clock), allowing CLOCK_SKEW between the two clocks; True when ``since`` is not known."""
    if since is None:
        return True
    if not isinstance(created, str) or not created:
        return False
    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return t >= since - CLOCK_SKEW


def post_once(ctx, path: str, body: dict, key: str, target: str):
    """POST ``body`` to ``path`` (…/messages or …/replies) once under ``key``. Returns (the
    message, or {"id": ...} when it was found by reading back; the outbox's Delivery: its
    ``status`` says sent, already sent or sent-unrecorded)."""
    started: dict = {}

    def send():
        started.setdefault("at", time.time())
        msg = ctx.graph.post(path, body)
        msg = msg if isinstance(msg, dict) else {}
        if not msg.get("id"):  # a 201 without a body: the message is there, find its id
            try:
                found = read_back()
            except IntegrationError:
                found = None
            if found:
                msg["id"] = found
        return msg.get("id"), msg

    def read_back():
        me = ctx.resolver.me()["id"]
        page = ctx.graph.get(path, params={"$top": READ_BACK_TOP}) or {}
        for m in page.get("value") or []:
            if not isinstance(m, dict):
                continue
            sender = ((m.get("from") or {}).get("user") or {}).get("id")
            if (sender == me and (m.get("body") or {}).get("content") == body["body"]["content"]
                    and created_after(m.get("createdDateTime"), started.get("at"))):
                return m.get("id")
        return None

    d = Outbox(ctx.store).deliver(key, send, read_back=read_back, target=target, pending_at_write=True,
                                  resend_unknown=ctx.args.get("resend_unknown", False)).settled(target)
    return dict(d.value or {"id": d.message_id}), d
