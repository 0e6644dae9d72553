"""Questions asked in Teams (``ask``) and their answers.

A question is a row of the store's ``questions`` table: its text, options (title shown on the
button, value recorded as the answer), who may answer (object ids of users; channel ids whose
members may), its expiry and default answer, and the message references of the cards that carry
it. Each button's ``Action.Submit`` data holds the question id, the option's value and a token:
an HMAC-SHA256 of both under a secret of the store (made once, kept in the store file, mode 0600,
never printed). A submit whose token does not match is forged and changes nothing; once the
question is answered (one ``UPDATE ... WHERE status='open'``, atomic across processes) every
other submit, the same one replayed included, changes nothing either.

Expiry is applied lazily (``expire``), by whoever looks next: ``ask-status``, ``ask-wait``, the
bot endpoint, ``msteams playbook worker``; the question then takes its default answer.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from . import render

log = logging.getLogger("msteams.questions")

SUBMIT_KEY = "msteamsQuestion"  # the Action.Submit data field naming the question
REASON_INPUT = "reason"
DEFAULT_OPTIONS = ("Yes", "No")
_PAST = {"approve": "Approved", "deny": "Denied", "reject": "Rejected", "accept": "Accepted",
         "decline": "Declined", "approved": "Approved", "denied": "Denied", "yes": "Yes", "no": "No"}


def _key(store) -> bytes:
    return base64.urlsafe_b64decode(store.secret("ask-hmac", lambda: base64.urlsafe_b64encode(
        secrets.token_bytes(32)).decode()))


def token(store, qid: str, value: str) -> str:
    mac = hmac.new(_key(store), f"{qid}\n{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_ok(store, qid: str, value: Any, tok: Any) -> bool:
    if not isinstance(value, str) or not isinstance(tok, str) or len(tok) > 100:
        return False
    return hmac.compare_digest(token(store, qid, value), tok)


def parse_options(raw: list | None) -> list[dict]:
    """Options as [{title, value}]: "Approve" or "Approve=approved"."""
    out = []
    for o in raw or DEFAULT_OPTIONS:
        title, _, value = str(o).partition("=")
        title = title.strip()
        out.append({"title": title, "value": value.strip() or title})
    return out


def label(answer: str | None) -> str:
    return _PAST.get(str(answer or "").strip().lower(), str(answer or ""))


def hhmm(ts: float | None) -> str:
    return time.strftime("%H:%M", time.gmtime(ts)) if ts else "?"


def outcome_line(q: dict) -> str:
    if q["status"] == "answered":
        line = f"{label(q['answer'])} by {q.get('responder_name') or 'someone'} at {hhmm(q.get('answered'))} UTC"
        return line + (f": {q['reason']}" if q.get("reason") else "")
    if q["status"] == "expired":
        return f"Expired at {hhmm(q.get('answered'))} UTC" + (
            f": default answer {q['answer']}" if q.get("answer") else "")
    return "Waiting for an answer"


def card(store, q: dict) -> dict:
    """The question's card: buttons while open; the outcome, without buttons, once closed."""
    v = q["value"]
    body = [render.run(v["text"], weight="Bolder", size="Medium")]
    for title, value in (v.get("facts") or {}).items():
        body.append({"type": "RichTextBlock", "inlines": [
            {"type": "TextRun", "text": render._text(title, 200) + ": ", "weight": "Bolder"},
            {"type": "TextRun", "text": render._text(value, 1000)}]})
    content = {"type": "AdaptiveCard", "version": "1.4", "body": body}
    if q["status"] == "open":
        if v.get("reason"):
            body.append({"type": "Input.Text", "id": REASON_INPUT, "placeholder": "Reason (optional)",
                         "isMultiline": True, "maxLength": 500})
        if q.get("expires"):
            body.append(render.run(f"Answer by {time.strftime('%Y-%m-%d %H:%M', time.gmtime(q['expires']))} UTC"
                                   + (f" (then: {v['default_answer']})" if v.get("default_answer") else ""),
                                   subtle=True))
        content["actions"] = [{"type": "Action.Submit", "title": o["title"],
                               "data": {SUBMIT_KEY: q["id"], "answer": o["value"],
                                        "token": token(store, q["id"], o["value"])}}
                              for o in v["options"]]
    else:
        body.append(render.run(outcome_line(q), weight="Bolder"))
    return content


def public(q: dict) -> dict:
    """The question as ask / ask-status report it (MicrosoftTeams.Ask)."""
    v = q["value"]
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None  # noqa: E731
    return {"id": q["id"], "status": q["status"], "question": v.get("text"), "answer": q.get("answer"),
            "responder": q.get("responder_name"), "responderId": q.get("responder_id"), "reason": q.get("reason"),
            "answeredAt": iso(q.get("answered")) if q["status"] != "open" else None,
            "expiresAt": iso(q.get("expires")), "options": [o["value"] for o in v.get("options") or []],
            "defaultAnswer": v.get("default_answer"), "messageRefs": list(v.get("refs") or []),
            "recipients": list(v.get("recipients") or []),
            **({"xsoarTask": dict(v["xsoar"])} if v.get("xsoar") else {})}


def update_cards(runtime, q: dict) -> int:
    """Edit every card of the question in place to show its outcome; the number updated."""
    from integration.engine.redact import redact

    done = 0
    content = card(runtime.store, q)
    for ref in q["value"].get("refs") or []:
        try:
            runtime.execute("message-update", {"message_ref": ref, "adaptive_card": content})
            done += 1
        except Exception as exc:  # noqa: BLE001 - one card that cannot change does not stop the others
            log.warning("could not update the card %s of question %s: %s", ref, q["id"], redact(str(exc)))
    return done


def expire(runtime, qid: str | None = None, *, cards: bool = True) -> list[str]:
    """Apply the default answer to the open questions past expiry (``qid``: that one only)."""
    ids = runtime.store.questions_expire(qid)
    for i in ids:
        q = runtime.store.question_get(i)
        log.info("question %s expired (default answer %s)", i, q.get("answer"))
        emit_answered(runtime, q)
        if cards:
            update_cards(runtime, q)
    return ids


def emit_answered(runtime, q: dict, *, send: bool = True) -> None:
    """The ``question.answered`` webhook event (delivery/webhooks.py), once per question: its
    answer, or its default answer when it expired (status says which). Never raises."""
    try:
        from integration.delivery import webhooks

        p = public(q)
        data = {k: p[k] for k in ("id", "status", "question", "answer", "responder", "responderId", "reason",
                                  "answeredAt", "xsoarTask") if k in p}
        webhooks.emit(runtime.store, runtime.cfg, "question.answered", data, key=(q["id"],), send=send)
    except Exception as exc:  # noqa: BLE001 - the answer stands whatever the webhook does
        log.warning("could not emit question.answered for %s: %s", q.get("id"), type(exc).__name__)


def current(runtime, qid: str) -> dict | None:
    """The question, with its expiry applied first."""
    expire(runtime, qid)
    return runtime.store.question_get(qid)


# ---- answers from Teams (bot/activities.py) ----
def submit_data(activity: dict) -> dict | None:
    """The data of a card button pressed: a message with ``value`` (Action.Submit), or an
    ``invoke`` adaptiveCard/action (Action.Execute); None when it is not a question's."""
    value = activity.get("value")
    if activity.get("type") == "invoke":
        if activity.get("name") != "adaptiveCard/action" or not isinstance(value, dict):
            return None
        action = value.get("action") if isinstance(value.get("action"), dict) else {}
        value = action.get("data")
    elif activity.get("type") != "message":
        return None
    if not isinstance(value, dict) or SUBMIT_KEY not in value:
        return None
    return value


def may_answer(q: dict, sender_oid: str | None, conversation_id: str) -> bool:
    v = q["value"]
    if sender_oid and sender_oid.lower() in {r.lower() for r in v.get("responders") or []}:
        return True
    base = conversation_id.split(";", 1)[0]
    return bool(v.get("channel_members")) and base in (v.get("channels") or [])


def answer_from_teams(runtime, data: dict, sender_oid: str | None, sender_name: str,
                      conversation_id: str) -> tuple[str, str, dict | None]:
    """(outcome, reply text, the question when this answer won). Outcomes: answered, forged,
    unknown, closed, expired, not-allowed, lost (another answer won first)."""
    from integration.engine.untrusted import clean

    store = runtime.store
    qid = data.get(SUBMIT_KEY)
    if not isinstance(qid, str) or len(qid) > 100:
        return "forged", "This button is not valid.", None
    q = store.question_get(qid)
    if q is None:
        return "unknown", "This question is not known here.", None
    answer = data.get("answer")
    if answer not in [o["value"] for o in q["value"]["options"]] or not token_ok(store, qid, answer, data.get("token")):
        return "forged", "This button is not valid.", None
    q = current(runtime, qid)
    if q["status"] == "expired":
        return "expired", "Too late: this question expired. " + outcome_line(q) + ".", None
    if q["status"] != "open":
        return "closed", "Already answered: " + outcome_line(q) + ".", None
    if not may_answer(q, sender_oid, conversation_id):
        return "not-allowed", "You may not answer this question.", None
    reason = data.get(REASON_INPUT) if q["value"].get("reason") else None
    reason = clean(reason, 500) if isinstance(reason, str) and reason.strip() else None
    if not store.question_answer(qid, answer, sender_oid or "", clean(sender_name or "", 200), reason):
        q = current(runtime, qid)
        return ("expired" if q["status"] == "expired" else "lost"), "Already answered: " + outcome_line(q) + ".", None
    q = store.question_get(qid)
    emit_answered(runtime, q, send=False)  # recorded with the answer; sent by the endpoint's worker
    return "answered", outcome_line(q), q
