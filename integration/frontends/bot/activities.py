"""What the endpoint does with a verified activity.

Every activity first teaches the store where the bot may write (``conversations.learn``). A
``message`` addressed to the bot (any message in a 1:1 chat; in a channel or group chat, one
that @mentions the bot, the mention stripped) in war-room form (``!channel-list team="SOC"``)
is a command: it is rate-limited per sender, recorded in the audit log (a redelivered activity
id is recorded once and never runs twice), acknowledged at once, and run by a worker thread:
authorization (``access``), ``execute()``, and the readable result (or a short refusal or the
error) sent back into the thread through the Bot Connector, proactively, since Teams gives a
bot's HTTP answer only about 15 seconds. ``help`` lists what the sender may run. Each audited
command, once decided, is the ``command.received`` webhook event (delivery/webhooks.py).
"""
from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections import deque

from integration.frontends.pool import WarmPool
from integration.teams import conversations, render
from integration.teams.access import Access, RateLimiter

log = logging.getLogger("msteams.bot")

MAX_LINE = 4000  # characters of a command line kept in the audit log
_AT = re.compile(r"<at[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"</?(?:p|div|span|br)\b[^>]*>", re.IGNORECASE)
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
                         "\u2018": "'", "\u2019": "'", "\u00a0": " ", "\u202f": " "})


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def bot_mentioned(activity: dict, bot_id: str) -> list[str]:
    """The texts (``<at>Name</at>``) of the entities that mention this bot."""
    ids = {bot_id.lower(), f"28:{bot_id}".lower()}
    out = []
    for e in activity.get("entities") or []:
        e = _dict(e)
        if e.get("type") == "mention" and str(_dict(e.get("mentioned")).get("id", "")).lower() in ids:
            out.append(e.get("text") if isinstance(e.get("text"), str) else "")
    return out


def command_text(activity: dict, bot_id: str, where: dict | None = None) -> str | None:
    """The command line of a message addressed to the bot, or None when it is not addressed
    to it (a channel or group message that does not mention it). ``where``: the activity's
    ``conversations.describe``, when the caller has it already."""
    text = activity.get("text")
    if not isinstance(text, str):
        return None
    personal = (where or conversations.describe(activity))["type"] == "personal"
    mentions = bot_mentioned(activity, bot_id)
    if not personal and not mentions:
        return None
    for m in mentions:
        if m:
            text = text.replace(m, " ", 1)
    text = _AT.sub(lambda m: m.group(1), text)  # other people's mentions: their names
    text = html.unescape(_TAGS.sub(" ", text)).translate(_QUOTES)
    return text.strip()


class Processor:
    def __init__(self, runtime, access: Access, limiter: RateLimiter, *, workers: int = 4, max_pending: int = 64,
                 clock=time.monotonic):
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.bot_id = self.cfg.bot_id
        self.access = access
        self.limiter = limiter
        self.max_pending = max_pending
        self._clock = clock
        self._pool = WarmPool(workers, thread_name_prefix="msteams-bot")
        self._cv = threading.Condition()
        self._pending = 0
        self.sent: deque = deque(maxlen=200)  # the latest replies sent (tests, health)
        self._deferring = threading.local()  # accept_deferred's effects, on the thread it runs in

    # ---- the request path (fast: no Graph, no Bot Connector) ----
    def accept(self, activity: dict) -> tuple[int, dict | None]:
        """(status, body) for the HTTP answer; the work itself is queued."""
        from integration.engine import metrics
        where = conversations.describe(activity)  # once: learn, command_text and the audit entry read it
        try:
            conversations.learn(self._learning_store(), self.bot_id, activity, where=where)
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not lose the command
            log.warning("could not record the conversation reference: %s", exc)
        from integration.teams import questions

        data = questions.submit_data(activity)
        if data is not None:  # a question's button was pressed (ask)
            return self._answer(activity, data)
        if activity.get("type") != "message":
            return 200, None
        text = command_text(activity, self.bot_id, where)
        if not (text and (text.startswith("!") or text.lower() in ("help", "?"))) and self._mirror(activity):
            return 202, None  # a message of a mirrored incident's conversation: journaled, not a command
        if text is None or not text:
            return 202, None
        sender = _dict(activity.get("from"))
        oid = conversations._user_oid(sender)
        row = {"activity_id": activity.get("id") if isinstance(activity.get("id"), str) else None,
               "tenant_id": where["tenantId"], "sender_id": oid or str(sender.get("id") or "")[:200],
               "sender_name": str(sender.get("name") or "")[:200], "conversation_type": where["type"],
               "conversation_id": where["conversationId"][:500], "place": _place(where),
               "text": text[:MAX_LINE], "command": _first_word(text)}
        tenant = self.cfg.tenant_id
        if tenant and where["tenantId"] != tenant:
            row.update(decision="denied", outcome="refused", detail="the message came from another tenant")
            metrics.inbound("denied-tenant", kind="command")
            if (audit_id := self.runtime.store.audit_add(row)) is not None:
                self._submit(self._send, activity, render.text_reply("Sorry, this bot takes commands only from "
                                                                     "its own organisation."))
                self._submit(self._emit_command, audit_id, row, {})
            return 202, None
        ok, first = self.limiter.take(row["sender_id"] or "?")
        if not ok:
            row.update(decision="rate-limited", outcome="refused", detail="too many commands from this sender")
            metrics.inbound("rate-limited", kind="command")
            if (audit_id := self.runtime.store.audit_add(row)) is not None and first:
                self._submit(self._send, activity, render.text_reply(
                    "Slow down: too many commands.", f"You may send {self.limiter.burst:g} at once and "
                    f"{self.limiter.rate * 60:g} a minute; the others are not run."))
                self._submit(self._emit_command, audit_id, row, {})
            return 202, None
        with self._cv:
            busy = self._pending >= self.max_pending
        if busy:
            row.update(decision="busy", outcome="refused", detail="too many commands waiting")
            metrics.inbound("busy", kind="command")
            if (audit_id := self.runtime.store.audit_add(row)) is not None:
                self._submit(self._send, activity, render.text_reply("Busy: try again in a minute."))
                self._submit(self._emit_command, audit_id, row, {})
            return 202, None
        row["decision"] = "queued"
        audit_id = self.runtime.store.audit_add(row)
        if audit_id is None:  # Teams sent this activity before: it ran (or runs) already
            log.info("activity %s was received before; not run again", row["activity_id"])
            metrics.inbound("duplicate", kind="command")
            return 200, None
        metrics.inbound("queued", kind="command")
        self._submit(self._run, activity, text, audit_id, row)
        return 202, None

    def _mirror(self, activity: dict) -> bool:
        """Journal a message of a mirrored channel or chat (mirror.py); True when the conversation
        is mirrored (the message was journaled now or before). A new entry goes on to the
        webhooks subscribed to ``mirror.entry``, in the background."""
        from integration.teams import mirror

        try:
            base = conversations.describe(activity)["baseId"]
            if not base or self.runtime.store.mirror_for_conversation(base) is None:
                return False
            if mirror.journal(self.runtime, activity):
                self._submit(mirror.flush, self.runtime)  # to the webhooks subscribed to mirror.entry
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not stop the endpoint
            log.warning("could not journal a mirrored message: %s", exc)
            return False
        return True

    def _answer(self, activity: dict, data: dict) -> tuple[int, dict | None]:
        """A card button of a question (questions.py): recorded in the audit log (a redelivered
        activity counts once); the first valid answer from an allowed responder wins, then the
        cards change and the playbook runs waiting on it resume, in the background; any other
        press gets a short reply and changes nothing."""
        from integration.teams import questions

        sender = _dict(activity.get("from"))
        oid = conversations._user_oid(sender)
        where = conversations.describe(activity)
        invoke = activity.get("type") == "invoke"
        row = {"activity_id": activity.get("id") if isinstance(activity.get("id"), str) else None,
               "tenant_id": where["tenantId"], "sender_id": oid or str(sender.get("id") or "")[:200],
               "sender_name": str(sender.get("name") or "")[:200], "conversation_type": where["type"],
               "conversation_id": where["conversationId"][:500], "place": _place(where), "command": "ask-answer",
               "text": f"{str(data.get(questions.SUBMIT_KEY))[:100]} {str(data.get('answer'))[:100]}"}
        store = self.runtime.store
        tenant = self.cfg.tenant_id
        if tenant and where["tenantId"] != tenant:
            outcome, reply, won = "other-tenant", "Sorry, this bot takes answers only from its own organisation.", None
        else:
            outcome, reply, won = "pending", "", None
        audit_id = store.audit_add(dict(row, decision="received"))
        if audit_id is None:
            log.info("activity %s was received before; not taken again", row["activity_id"])
            return 200, None
        if outcome == "pending":
            outcome, reply, won = questions.answer_from_teams(self.runtime, data, oid, row["sender_name"],
                                                              where["conversationId"])
        store.audit_update(audit_id, decision="answered" if won else "refused", outcome=outcome,
                           detail=reply[:500])
        if won is not None:
            self._submit(self._after_answer, won)
        elif not invoke:
            self._submit(self._send, activity, render.text_reply(reply))
        if invoke:
            return 200, {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": reply}
        return 202, None

    def _after_answer(self, q: dict) -> None:
        from integration.delivery import webhooks
        from integration.teams import questions
        from integration.playbooks.runner import resume_waiting_on

        webhooks.pump_quietly(self.runtime.store, self.cfg)  # question.answered, recorded with the answer
        questions.update_cards(self.runtime, q)
        if self.cfg.store_url:
            # A shared store with a worker pool running: the run may have started on another
            # host, whose playbook file the pool shares; a worker resumes it (run_claim_waiting
            # keeps it to one). Without a running pool, or when the queue cannot take the job,
            # this endpoint resumes it, as with a store of its own.
            from integration.engine.errors import IntegrationError
            from integration.delivery.queue import JobQueue

            try:
                if self.__dict__.get("_queue") is None:
                    self._queue = JobQueue.from_config(self.cfg)
                if self._queue.active_workers():
                    self._queue.enqueue("resume", {"question": q["id"]})
                    return
            except IntegrationError as exc:
                log.warning("could not queue the resumption of runs waiting on %s (%s): resuming here",
                            q["id"], exc.message)
        resume_waiting_on(self.runtime, q["id"], out=lambda line: log.info("%s", line))

    def accept_deferred(self, activity: dict, effects) -> tuple[int, dict | None]:
        """``accept`` with what it would start in the background appended to ``effects``
        instead, as ``(fn, args)``, to be started once its store writes are committed (the
        endpoint's event loop lane, frontends/lane.py); in a lane group, the conversation
        references it reads are kept for the group (``effects.shared``: one snapshot)."""
        self._deferring.effects = effects
        try:
            return self.accept(activity)
        finally:
            self._deferring.effects = None

    def _learning_store(self):
        """Where ``learn`` reads and writes conversation references: the store, or, in a lane
        group, the store through the group's kept references."""
        effects = getattr(self._deferring, "effects", None)
        shared = getattr(effects, "shared", None)
        if shared is None:
            return self.runtime.store
        refs = shared.get(_REFS)
        if refs is None:
            refs = shared[_REFS] = conversations.KeptReferences(self.runtime.store)
        return refs

    def _submit(self, fn, *args) -> None:
        effects = getattr(self._deferring, "effects", None)
        if effects is not None:
            effects.append((self._submit, (fn, *args)))
            return
        with self._cv:
            self._pending += 1

        def job():
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a worker must never die silently
                log.exception("bot worker failed")
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()

        self._pool.submit(job)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued command ran and was answered (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        self.drain(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- the worker ----
    def _emit_command(self, audit_id: int, row: dict, fields: dict) -> None:
        """The ``command.received`` webhook event: the audit record of a command from Teams, as
        decided (run, refused, failed). Never raises."""
        from integration.delivery import webhooks

        r = dict(row, **fields)
        data = {"auditId": audit_id, "activityId": r.get("activity_id"), "tenantId": r.get("tenant_id"),
                "sender": {"id": r.get("sender_id"), "name": r.get("sender_name")},
                "conversationType": r.get("conversation_type"), "conversationId": r.get("conversation_id"),
                "place": r.get("place"), "command": r.get("command"), "text": r.get("text"),
                "decision": r.get("decision"), "outcome": r.get("outcome"), "detail": r.get("detail"),
                "durationMs": r.get("duration_ms")}
        webhooks.emit(self.runtime.store, self.cfg, "command.received", data,
                      key=(audit_id, r.get("activity_id")))

    def _run(self, activity: dict, text: str, audit_id: int, row: dict | None = None) -> None:
        from integration.engine.arguments import parse_warroom
        from integration.dispatch import execute
        from integration.engine.errors import IntegrationError
        from integration.engine.redact import redact

        store = self.runtime.store
        started = time.monotonic()
        oid = conversations._user_oid(_dict(activity.get("from")))
        fields: dict = {}
        reply = None
        try:
            if text.lstrip("!").strip().lower() in ("help", "?"):
                allowed = self.access.allowed_commands(oid, self.runtime.registry)
                fields.update(command="help", decision="allowed", outcome="ok", detail=f"{len(allowed)} commands")
                reply = render.text_reply("Commands you may run here" if allowed else "You may not run commands here.",
                                          ", ".join(allowed) + "\n\nSend them in war-room form: "
                                          '!channel-list team="Security Operations"' if allowed else None)
                return
            if not text.startswith("!"):
                fields.update(decision="invalid", outcome="refused", detail="not a command")
                reply = render.text_reply("Send a command in war-room form, for example "
                                          '!channel-list team="Security Operations", or help.')
                return
            try:
                name, args = parse_warroom(text)
            except IntegrationError as exc:
                fields.update(decision="invalid", outcome="refused", detail=redact(str(exc))[:500])
                reply = render.text_reply("That is not a command line I can read.", str(exc))
                return
            spec = self.runtime.registry.get(name)
            if spec is None:
                fields.update(decision="invalid", outcome="refused", detail="unknown command")
                reply = render.text_reply(f"Unknown command {name[:100]}. Send help for the list.")
                return
            fields["command"] = spec.name
            decision = self.access.decide(oid, spec)
            if not decision.allowed:
                fields.update(decision="denied", outcome="refused", detail=decision.reason)
                reply = render.text_reply(f"Sorry, you may not run {spec.name} from Teams.")
                return
            store.audit_update(audit_id, command=spec.name, decision="allowed", outcome="running",
                               detail="roles: " + ", ".join(decision.roles))
            fields.update(decision="allowed")
            with self.runtime.delivery(("teams", activity.get("id") or audit_id)):
                result = execute(spec.name, args, self.runtime)
            rows = len(result.outputs or [])
            fields.update(outcome="ok", detail=redact(result.message or f"{rows} result(s)")[:500])
            reply = render.result_reply(text, result)
        except IntegrationError as exc:
            message = redact(exc.message)
            fields.update(outcome="error", detail=message[:500])
            reply = render.text_reply(f"{fields.get('command') or 'The command'} failed.",
                                      message + (f"\nhint: {redact(exc.hint)}" if exc.hint else ""))
        except Exception as exc:  # noqa: BLE001 - a bug: say so, without internals
            log.debug("internal error running a command from Teams", exc_info=True)
            fields.update(outcome="error", detail=f"internal error: {type(exc).__name__}")
            reply = render.text_reply("Internal error: the command could not run. It was logged.")
        finally:
            fields["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            if reply is not None and not self._send(activity, reply):
                fields["detail"] = (fields.get("detail") or "") + " (the reply could not be sent)"
            store.audit_update(audit_id, **fields)
            if row is not None:
                self._emit_command(audit_id, row, fields)

    def _send(self, activity: dict, reply: dict) -> bool:
        """Answer in the activity's conversation (a channel thread stays a thread)."""
        from integration.engine.redact import redact

        conv = _dict(activity.get("conversation"))
        service_url = activity.get("serviceUrl")
        body = dict(reply, conversation={"id": conv.get("id")}, recipient=_dict(activity.get("from")),
                    **{"from": _dict(activity.get("recipient"))})
        if isinstance(activity.get("id"), str):
            body["replyToId"] = activity["id"]
        try:
            client = conversations.bot_client_for(self.runtime, service_url)
            sent = client.post(conversations.activities_url(service_url, conv.get("id")), body) or {}
        except Exception as exc:  # noqa: BLE001 - logged and audited; the endpoint goes on
            log.error("could not answer in %s: %s", str(conv.get("id"))[:100], redact(str(exc)))
            return False
        self.sent.append({"conversationId": conv.get("id"), "activityId": sent.get("id")})
        return True


_REFS = object()  # a lane group's kept conversation references, in its shared dict


def _first_word(text: str) -> str:
    word = text.lstrip("!").split(None, 1)
    return word[0][:100] if word else ""


def _place(where: dict) -> str:
    if where["type"] == "personal":
        return "personal chat"
    if where["type"] == "channel":
        team = where.get("teamName") or where.get("teamId") or "?"
        return f"{team} / {where.get('channelName') or where.get('channelId') or '?'}"
    return f"group chat {where['baseId']}"
