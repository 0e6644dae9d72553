"""``ask``, ``ask-status`` and ``ask-wait``: a question card sent as the bot, answered by a
button press that reaches the bot's messaging endpoint (see integration/teams/questions.py).

Inside a playbook run, ``ask`` is idempotent: the question id comes from the run, step and item,
so a resumed run finds its question (and its cards, already sent) instead of asking again, and
the step's result carries the answer once there is one.
"""
from __future__ import annotations


from integration.teams import questions as Q
from integration.engine.errors import ArgumentError, IntegrationError, NotFound
from integration.delivery.outbox import delivery_key, delivery_scope, failure_of
from integration.engine.redact import redact
from integration.graph.resolve import is_thread_id
from . import notify

HANDLERS = ("ask", "ask_status", "ask_wait")


def _row(ctx, q: dict, message: str, not_reached: list | None = None):
    row = Q.public(q)
    if not_reached:  # every recipient is in the output: those the question did not reach, with why
        row["notReached"] = not_reached
    return ctx.result(row, row, message=message, failed=len(not_reached or ()))


def _targets(ctx) -> list[tuple[str, str]]:
    """(kind, name) in the order given: recipients first (as routed), then users, then channels."""
    a = ctx.args
    out = []
    for r in a.get("recipients") or []:
        if not isinstance(r, dict):
            raise ArgumentError("recipients", "each recipient is an object with userId or channelId "
                                              "(as recipients-resolve returns them)")
        if r.get("userId"):
            # the name the router found, when there is one: the card's recipient reads well
            out.append(("user", str(r.get("mail") or r.get("userPrincipalName") or r["userId"]).strip()))
        elif r.get("channelId"):
            out.append(("channel", str(r["channelId"]).strip()))
    out += [("user", u.strip()) for u in a.get("user") or []] + [("channel", c.strip()) for c in a.get("channel") or []]
    out = list(dict.fromkeys(out))
    if not out:
        raise ArgumentError("user", "ask someone: give users, channels, or recipients")
    return out


def _card_options(card) -> list[str]:
    """The Action.Submit buttons of an Adaptive Card (XSOAR's MicrosoftTeamsAsk adaptive_card) as
    options: "Title=response" when the action's data gives a response."""
    if isinstance(card, dict) and isinstance(card.get("content"), dict):  # already wrapped
        card = card["content"]
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "Action.Submit" and str(node.get("title") or "").strip():
                data = node.get("data")
                response = data.get("response") if isinstance(data, dict) else None
                title = str(node["title"]).strip()
                found.append(f"{title}={response}" if response not in (None, "") else title)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    if not found:
        raise ArgumentError("adaptive_card", "the card has no Action.Submit button with a title to answer with")
    return found


def _xsoar_ask(a: dict) -> tuple[list | None, bool]:
    """The options and reason box from XSOAR's MicrosoftTeamsAsk arguments (option1, option2,
    additional_options, form_type, adaptive_card), or (options, reason) as given."""
    given = [k for k in ("option1", "option2", "additional_options", "adaptive_card") if a.get(k)]
    reason = bool(a.get("reason"))
    if a.get("form_type") == "open-answer":
        if a.get("options") or given:
            raise ArgumentError("form_type", "open-answer asks for text: give no options with it")
        return ["Submit"], True
    if not given:
        return a.get("options"), reason
    if a.get("options"):
        raise ArgumentError("options", f"give options or {', '.join(given)} (XSOAR's names), not both")
    if a.get("adaptive_card"):
        if any(a.get(k) for k in ("option1", "option2", "additional_options")):
            raise ArgumentError("adaptive_card", "the card's buttons are the options: give no option1/option2 with it")
        return _card_options(a["adaptive_card"]), reason
    return [a.get("option1") or "yes", a.get("option2") or "no", *(a.get("additional_options") or [])], reason


def _xsoar_task(a: dict) -> dict | None:
    """What completes the XSOAR task when the answer comes (recorded with the question)."""
    if not (a.get("entitlement") or a.get("task_id")):
        return None
    return {"entitlement": a.get("entitlement"), "investigationId": a.get("investigation_id"),
            "taskId": a.get("task_id"), "persistent": bool(a.get("persistent"))}


def ask(ctx):
    a = ctx.args
    raw_options, with_reason = _xsoar_ask(a)
    options = Q.parse_options(raw_options)
    if len({o["value"] for o in options}) != len(options) or not all(o["title"] and o["value"] for o in options):
        raise ArgumentError("options", "each option needs a title (and a distinct value)")
    wanted = _targets(ctx)
    qid = "q" + delivery_key("ask", *delivery_scope(ctx))[:19]
    existing = ctx.store.question_get(qid)
    if existing is not None and existing["value"].get("refs"):  # asked before (a resumed run): its status
        q = Q.current(ctx.runtime, qid)
        return _row(ctx, q, f"Question {qid}: {q['status']}.")
    tenant = notify._tenant(ctx)
    lookups = notify._Lookups(ctx)
    targets: list[tuple[str, str]] = []
    names: dict[str, str] = {}  # user id -> the name given (the recipient's label reads better)
    for kind, name in wanted:
        if kind == "user":
            uid = lookups.user(name)["id"]
            names.setdefault(uid, name)
            targets.append(("user", uid))
        elif is_thread_id(name):
            targets.append(("channel", name))
        else:
            sub = ctx.replace(args=dict(a, channel=name))
            targets.append(("channel", notify._channel_conversation(sub, lookups)[1]))
    targets = list(dict.fromkeys(targets))
    user_ids = [t for k, t in targets if k == "user"]
    channel_ids = [t for k, t in targets if k == "channel"]
    if a.get("responders"):
        responders = [lookups.user(r, "responders")["id"] for r in a["responders"]]
        channel_members = False
    else:
        responders, channel_members = user_ids, True
    expires = ctx.store.now() + a["expires_in"] if a.get("expires_in") else None
    value = {"text": a["question"], "options": options, "default_answer": a.get("default_answer"),
             "responders": responders, "channels": channel_ids, "channel_members": channel_members,
             "reason": with_reason, "facts": a.get("facts") or {}, "refs": [], "recipients": []}
    if _xsoar_task(a):
        value["xsoar"] = _xsoar_task(a)
    q, _ = ctx.store.question_create(qid, value, expires)
    activity = {"type": "message", "attachments": [notify.adaptive_attachment(Q.card(ctx.store, q))]}
    refs, recipients, errors = [], [], []
    for kind, name in targets:
        sub = ctx.replace(args=dict(a, channel=name if kind == "channel" else None, team=None,
                                                 message_id=None))
        try:
            row = notify._notify_one(sub, lookups, activity, tenant, ("ask", qid), (kind, names.get(name, name)))
        except Exception as exc:  # noqa: BLE001 - one recipient failing does not stop the others
            status, err = failure_of(exc)
            errors.append({"recipient": names.get(name, name), "status": status, "error": redact(err.message)})
            continue
        refs.append(row["messageRef"])
        recipients.append(row["recipient"])
    if not refs and a.get("fail_on") != "none":
        raise IntegrationError("the question reached nobody: " + "; ".join(f"{e['recipient']}: {e['error']}"
                                                                         for e in errors))
    value.update(refs=refs, recipients=recipients)
    ctx.store.question_set_value(qid, value)
    q = ctx.store.question_get(qid)
    note = f"Question {qid} sent to {len(refs)} of {len(targets)} recipient(s)."
    if errors:
        note += " Not sent: " + "; ".join(f"{e['recipient']}: {e['error']}" for e in errors)
    return _row(ctx, q, note, errors)


def _get(ctx) -> dict:
    qid = ctx.args["id"].strip()
    q = Q.current(ctx.runtime, qid)
    if q is None:
        raise NotFound(f"no question '{qid[:100]}' in the context store",
                       hint="use the id ask returned, with the same store_path")
    return q


def ask_status(ctx):
    q = _get(ctx)
    return _row(ctx, q, f"Question {q['id']}: {Q.outcome_line(q)}.")


def ask_wait(ctx):
    """Poll the store until the question is answered or expired (or the timeout passes). In a
    playbook run it does not block: the run waits instead (the runner suspends it)."""
    q = _get(ctx)
    interval = max(0.05, float(ctx.args.get("poll_interval") or 2.0))
    polls = 0 if ctx.runtime.delivery_scope else int(float(ctx.args.get("timeout") or 0) / interval)
    for _ in range(polls):
        if q["status"] != "open":
            break
        ctx.runtime.sleep(interval)
        q = Q.current(ctx.runtime, q["id"])
    if q["status"] == "open":
        return _row(ctx, q, f"Question {q['id']}: not answered yet.")
    return _row(ctx, q, f"Question {q['id']}: {Q.outcome_line(q)}.")
