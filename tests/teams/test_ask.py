"""Questions and approvals end to end: `ask` sends a card through the fake tenant's Bot Connector,
a simulated user presses a button (the fake tenant signs and delivers the activity to a real
endpoint on loopback), the first valid answer wins, cards change in place, and playbook runs
waiting on the question resume (in the endpoint process, or through `playbook worker`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from engine_fixtures import Sleeps, make_config
from integration.teams import questions
from integration.frontends.bot import server as bot_server
from integration.dispatch import Runtime, execute

BOB = "bob.smith@contoso.example"
CONOR = "conor.obrien@contoso.example"
ZOE = "zoe.muller@contoso.example"
from ask_helpers import GRACE, LIBRARY, REPO, ROLE_MAP, WAITING_PLAYBOOK  # noqa: E402,F401


class Clock:
    def __init__(self, t: float | None = None):
        import time

        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t


class Rig:
    def __init__(self, emu, tmp_path):
        self.emu, self.tmp_path = emu, tmp_path
        self.cfg = make_config(emu, tmp_path)
        self.clock = Clock()
        self.server = None
        self.runtime = self._runtime()
        self.start()

    def _runtime(self) -> Runtime:
        rt = Runtime(self.cfg, sleep=Sleeps())
        rt.echo = lambda s: None
        rt.store._clock = self.clock
        return rt

    def start(self) -> None:
        self.endpoint = bot_server.build(self.runtime, workers=2)
        self.server = bot_server.BotServer(self.endpoint).start()
        self.emu.teams.register(self.server.messaging_endpoint)

    def stop(self) -> None:
        self.emu.teams.register(None)
        self.server.stop()

    def restart(self) -> None:
        """A new endpoint process, as far as the store is concerned: a fresh runtime and server."""
        self.stop()
        self.runtime.close()
        self.runtime = self._runtime()
        self.start()

    def click(self, user: str, choice: str, **kw) -> dict:
        rec = self.emu.teams.user_clicks(user, choice, **kw)
        assert self.endpoint.processor.drain(20)
        return rec

    def deliver(self, activity: dict) -> dict:
        rec = self.emu.teams.deliver(activity, self.runtime.cfg.bot_id)
        assert self.endpoint.processor.drain(20)
        return rec

    def card(self, ref: str) -> dict:
        aid = self.runtime.store.get_message_ref(ref)["activityId"]
        return self.emu.state.activities[aid]["activity"]["attachments"][0]["content"]

    def card_text(self, ref: str) -> str:
        return json.dumps(self.card(ref), ensure_ascii=False)

    def replies_to(self, rec: dict) -> list[str]:
        from fake_tenant.drive import _card_text

        return ["\n".join(_card_text(a["activity"])) for a in self.emu.state.activities.values()
                if a["activity"].get("replyToId") == rec["activityId"]]


@pytest.fixture
def rig(emu, tmp_path):
    r = Rig(emu, tmp_path)
    yield r
    r.stop()
    r.runtime.close()


def ask(rig, **args):
    return execute("ask", args, rig.runtime).outputs[0]


def status(rig, qid):
    return execute("ask-status", {"id": qid}, rig.runtime).outputs[0]


# ---- ask, answers, refusals ----

def test_ask_a_user_who_answers_with_a_reason_and_the_card_changes(rig):
    q = ask(rig, question="Isolate host WS-042?", user=[CONOR], reason=True, options=["Isolate", "Wait"])
    assert q["status"] == "open" and q["options"] == ["Isolate", "Wait"] and len(q["messageRefs"]) == 1
    card = rig.card(q["messageRefs"][0])
    assert [a["title"] for a in card["actions"]] == ["Isolate", "Wait"]
    assert any(b["type"] == "Input.Text" for b in card["body"])
    rec = rig.click(CONOR, "Isolate", question=q["id"], reason="seen <b>beaconing</b>")
    assert rec["status"] == 202
    s = status(rig, q["id"])
    assert (s["status"], s["answer"], s["responder"], s["reason"]) == ("answered", "Isolate", "Conor O'Brien",
                                                                        "seen <b>beaconing</b>")
    card = rig.card(q["messageRefs"][0])
    assert "actions" not in card
    text = rig.card_text(q["messageRefs"][0])
    assert "Isolate by Conor O'Brien at " in text and "seen <b>beaconing</b>" in text  # a TextRun: literal
    [row] = [r for r in rig.runtime.store.audit_list() if r["command"] == "ask-answer"]
    assert (row["decision"], row["outcome"]) == ("answered", "answered")


def test_invoke_action_execute_answers_too(rig):
    q = ask(rig, question="Proceed?", user=[CONOR])
    activity = rig.emu.teams.click(CONOR, "Yes", question=q["id"], invoke=True)
    assert rig.deliver(activity)["status"] == 200
    assert status(rig, q["id"])["answer"] == "Yes"


def test_forged_replayed_disallowed_and_late_clicks_change_nothing(rig):
    q = ask(rig, question="Approve?", user=[CONOR, ZOE], responders=[CONOR], options=["Approve", "Deny"])
    # forged: a token that is not the store's
    forged = rig.emu.teams.click(CONOR, "Approve", question=q["id"])
    forged["value"]["token"] = "A" * 43
    rec = rig.deliver(forged)
    assert status(rig, q["id"])["status"] == "open"
    assert any("not valid" in t for t in rig.replies_to(rec))
    # a token of another option with this option's answer
    swapped = rig.emu.teams.click(CONOR, "Approve", question=q["id"])
    swapped["value"]["token"] = rig.emu.teams.click(CONOR, "Deny", question=q["id"])["value"]["token"]
    rig.deliver(swapped)
    assert status(rig, q["id"])["status"] == "open"
    # not allowed: Zoë got the card but is not a responder
    rec = rig.click(ZOE, "Approve", question=q["id"])
    assert status(rig, q["id"])["status"] == "open"
    assert any("may not answer" in t for t in rig.replies_to(rec))
    # the allowed answer, then the same submit again (a new activity): replayed
    first = rig.emu.teams.click(CONOR, "Deny", question=q["id"])
    replay = dict(first, id=first["id"] + "x")
    rig.deliver(first)
    assert status(rig, q["id"])["answer"] == "Deny"
    rec = rig.deliver(replay)
    assert any("Already answered" in t for t in rig.replies_to(rec))
    again = rig.emu.teams.click  # the card has no buttons any more
    with pytest.raises(Exception, match="no such card|no button"):
        again(CONOR, "Approve", question=q["id"])
    s = status(rig, q["id"])
    assert (s["answer"], s["responder"]) == ("Deny", "Conor O'Brien")
    # a redelivered activity (same id) is taken once
    assert rig.deliver(first)["status"] == 200


def test_expiry_applies_the_default_answer_and_a_late_click_changes_nothing(rig):
    q = ask(rig, question="Block the sender?", user=[CONOR], expires_in=60, default_answer="No")
    late = rig.emu.teams.click(CONOR, "Yes", question=q["id"])
    rig.clock.t += 61
    rec = rig.deliver(late)
    s = status(rig, q["id"])
    assert (s["status"], s["answer"], s["responder"]) == ("expired", "No", None)
    assert any("expired" in t for t in rig.replies_to(rec))
    assert "Expired at" in rig.card_text(q["messageRefs"][0]) and "actions" not in rig.card(q["messageRefs"][0])


def test_ask_wait_polls_with_an_injected_sleep(rig):
    q = ask(rig, question="Go?", user=[CONOR], expires_in=10)
    out = execute("ask-wait", {"id": q["id"], "timeout": 4, "poll_interval": 1}, rig.runtime).outputs[0]
    assert out["status"] == "open" and rig.runtime.sleep == [1, 1, 1, 1]
    rig.runtime.sleep.clear()
    rig.runtime.sleep = lambda s: setattr(rig.clock, "t", rig.clock.t + 6)
    out = execute("ask-wait", {"id": q["id"], "timeout": 30, "poll_interval": 1}, rig.runtime).outputs[0]
    assert out["status"] == "expired"


def test_a_channel_question_any_member_may_answer(rig):
    q = ask(rig, question="Who takes IR-9?", channel=["Incident Response"], team="Security Operations",
            options=["Me", "Not me"])
    assert q["recipients"] and q["messageRefs"]
    rig.click(CONOR, "Me", question=q["id"])
    assert status(rig, q["id"])["responder"] == "Conor O'Brien"


def test_two_simultaneous_clicks_give_one_decision(rig):
    q = ask(rig, question="Approve?", user=[CONOR, GRACE], options=["Approve", "Deny"])
    acts = [rig.emu.teams.click(CONOR, "Approve", question=q["id"]),
            rig.emu.teams.click(GRACE, "Deny", question=q["id"])]
    barrier = threading.Barrier(2)
    recs = []

    def go(a):
        barrier.wait()
        recs.append(rig.emu.teams.deliver(a, rig.runtime.cfg.bot_id))

    threads = [threading.Thread(target=go, args=(a,)) for a in acts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rig.endpoint.processor.drain(20)
    rows = [r for r in rig.runtime.store.audit_list() if r["command"] == "ask-answer"]
    assert sorted(r["decision"] for r in rows) == ["answered", "refused"]
    s = status(rig, q["id"])
    winner = {"Approve": "Conor O'Brien", "Deny": "Grace Kim"}[s["answer"]]
    assert s["responder"] == winner
    for ref in q["messageRefs"]:  # both cards show the one decision
        assert f"by {winner} at" in rig.card_text(ref)


# ---- playbooks that wait ----



def _playbook(tmp_path):
    p = tmp_path / "ask-then-tell.yml"
    p.write_text(WAITING_PLAYBOOK)
    return p


def _texts(emu) -> list[str]:
    return [a["activity"].get("text") or "" for a in emu.state.activities.values()]


def test_an_answer_resumes_a_run_started_by_another_process(rig, cfg_file, tmp_path):
    pb = _playbook(tmp_path)
    env = dict(os.environ, MSTEAMS_CONFIG=str(cfg_file))
    proc = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "playbook", "run", str(pb), "--input",
                           f"who={CONOR}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("run ") and "waiting for question" in first
    run_id, qid = first.split()[1], first.split()[-1]
    [row] = rig.runtime.store.run_list("waiting")
    assert (row["id"], row["waiting_for"]) == (run_id, qid)
    rig.click(CONOR, "Yes", question=qid, reason="confirmed")
    assert rig.endpoint.processor.drain(20)
    done = rig.runtime.store.run_get(run_id)
    assert done["status"] == "ok", done["status"]
    assert "Decision: Yes (Conor O'Brien)" in _texts(rig.emu)
    # playbook runs shows what it waited for; a second resume finds nothing to do
    from integration.playbooks.runner import resume_waiting

    assert resume_waiting(run_id, rig.runtime, out=lambda s: None) is None


def test_an_endpoint_restarted_while_a_run_waits_still_resumes_it(rig, tmp_path):
    from integration.playbooks import run_playbook

    r = run_playbook(_playbook(tmp_path), {"who": CONOR}, rig.runtime, out=lambda s: None)
    assert r.status == "waiting" and r.ok and r.exit_code == 0 and r.waiting_for
    rig.restart()
    rig.click(CONOR, "No", question=r.waiting_for)
    assert rig.runtime.store.run_get(r.run_id)["status"] == "ok"
    assert "Decision: No (Conor O'Brien)" in _texts(rig.emu)


def test_the_worker_resumes_a_run_whose_question_expired_with_the_default_answer(rig, tmp_path, monkeypatch, cfg_file):
    from integration.frontends import cli
    from integration.playbooks import run_playbook

    rig.clock.t -= 3600  # asked an hour ago: its 600 s ran out long before the worker looks
    r = run_playbook(_playbook(tmp_path), {"who": CONOR}, rig.runtime, out=lambda s: None)
    assert r.status == "waiting"
    rig.stop()  # no endpoint: the worker does it
    rig.server = None
    monkeypatch.setenv("MSTEAMS_CONFIG", str(cfg_file))
    out, err = [], []
    assert cli.main(["playbook", "worker", "--once"], out=out.append, err=err.append) == 0, err
    assert any(f"run {r.run_id}" in line and ": ok" in line for line in out), out
    q = rig.runtime.store.question_get(r.waiting_for)
    assert (q["status"], q["answer"]) == ("expired", "No")
    assert "Decision: No (None)" in _texts(rig.emu) or any(t.startswith("Decision: No") for t in _texts(rig.emu))
    rig.start()


# ---- XSOAR's MicrosoftTeamsAsk arguments on our ask (issue 26) ----

XSOAR_ASK_PLAYBOOK = """
name: xsoar-style-ask
inputs:
  who: {type: string, required: true}
steps:
  - id: q
    command: ask
    args:
      message: Isolate host WS-042?
      team_member: "${inputs.who}"
      option1: Isolate
      option2: Wait
      additional_options: Escalate
      persistent: "false"
      task_id: "7"
      entitlement: 4f1e0c9a-guid
      investigation_id: "42"
    outputs:
      answer: ${result.outputs.0.answer}
outputs:
  answer: ${steps.q.outputs.answer}
"""


def test_ask_takes_xsoar_microsoftteamsask_arguments_as_strings(rig):
    q = ask(rig, message="Isolate host WS-042?", team_member=CONOR, option1="Isolate", option2="Wait",
            additional_options="Escalate,Ignore", persistent="true", task_id="7", entitlement="guid-1",
            investigation_id="42")
    assert q["options"] == ["Isolate", "Wait", "Escalate", "Ignore"] and q["question"] == "Isolate host WS-042?"
    assert q["xsoarTask"] == {"entitlement": "guid-1", "investigationId": "42", "taskId": "7", "persistent": True}
    rig.click(CONOR, "Escalate", question=q["id"])
    s = status(rig, q["id"])
    assert (s["answer"], s["xsoarTask"]["entitlement"]) == ("Escalate", "guid-1")
    # XSOAR's defaults when only option1 is given; user_id as the recipient
    q = ask(rig, message="Block?", user_id=ZOE, option1="Block")
    assert q["options"] == ["Block", "no"] and "xsoarTask" not in q


def test_ask_open_answer_and_an_adaptive_card_and_refusals(rig):
    from integration.engine.errors import ArgumentError

    q = ask(rig, message="Why was it allowed?", team_member=CONOR, form_type="open-answer")
    assert q["options"] == ["Submit"]
    assert any(b["type"] == "Input.Text" for b in rig.card(q["messageRefs"][0])["body"])
    card = {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "Approve?"}],
            "actions": [{"type": "Action.Submit", "title": "Approve", "data": {"response": "approved"}},
                        {"type": "Action.Submit", "title": "Deny"}]}
    q = ask(rig, message="Approve?", channel=["General"], team="Security Operations", adaptive_card=json.dumps(card))
    assert q["options"] == ["approved", "Deny"]
    with pytest.raises(ArgumentError, match="not both"):
        ask(rig, message="x", team_member=CONOR, options=["A", "B"], option1="C")
    with pytest.raises(ArgumentError, match="no options"):
        ask(rig, message="x", team_member=CONOR, form_type="open-answer", option1="C")
    with pytest.raises(ArgumentError, match="Action.Submit"):
        ask(rig, message="x", team_member=CONOR, adaptive_card={"type": "AdaptiveCard", "body": []})


def test_a_playbook_written_for_xsoar_runs_under_our_runner_and_the_webhook_carries_the_entitlement(rig, tmp_path,
                                                                                                   monkeypatch):
    from integration.playbooks import run_playbook

    p = tmp_path / "xsoar-ask.yml"
    p.write_text(XSOAR_ASK_PLAYBOOK)
    r = run_playbook(str(p), {"who": CONOR}, rig.runtime, out=lambda s: None)
    assert r.status == "waiting", r
    sent = []
    from integration.teams import questions as Q

    q = rig.runtime.store.question_get(r.waiting_for)
    assert q["value"]["xsoar"]["entitlement"] == "4f1e0c9a-guid"
    rig.click(CONOR, "Wait", question=r.waiting_for)
    assert rig.runtime.store.run_get(r.run_id)["status"] == "ok"
    import integration.delivery.webhooks as webhooks

    monkeypatch.setattr(webhooks, "emit", lambda store, cfg, event, data, **kw: sent.append((event, data)))
    Q.emit_answered(rig.runtime, rig.runtime.store.question_get(r.waiting_for), send=False)
    [(event, data)] = sent
    assert event == "question.answered" and data["answer"] == "Wait"
    assert data["xsoarTask"] == {"entitlement": "4f1e0c9a-guid", "investigationId": "42", "taskId": "7",
                                 "persistent": False}


# ---- access-request: approvals that resume the playbook ----



def _request(rig, **extra):
    from integration.playbooks import run_playbook

    inputs = {"request_id": "REQ-42", "requester": BOB, "roles": ["prod-admin", "db-reader"],
              "reason": "Hotfix for INC-7", "role_to_recipients": ROLE_MAP, "suggested_reviewers": [CONOR], **extra}
    return run_playbook(os.path.join(LIBRARY, "access-request.yml"), inputs, rig.runtime, out=lambda s: None)


def test_access_request_end_to_end_with_a_click(rig):
    r = _request(rig)
    assert r.status == "waiting", r.error
    q = rig.runtime.store.question_get(r.waiting_for)
    refs = q["value"]["refs"]
    assert len(refs) == 3  # Grace 1:1, the Incident Response channel, Conor 1:1
    for ref in refs:
        assert [a["title"] for a in rig.card(ref)["actions"]] == ["Approve", "Deny"]
    rig.click(GRACE, "Approve", question=r.waiting_for, reason="ok for 4h")
    run = rig.runtime.store.run_get(r.run_id)
    assert run["status"] == "ok"
    for ref in refs:
        card = rig.card(ref)
        assert card["body"][0]["text"] == "Access request REQ-42: approved"
        facts = card["body"][1]["facts"]
        assert {"title": "Reviewer", "value": "Grace Kim"} in facts and {"title": "Comment", "value": "ok for 4h"} in facts
        assert "actions" not in card
    # a later click by another reviewer changes nothing
    rec = rig.emu.teams.deliver(_late_click(rig, r.waiting_for), rig.runtime.cfg.bot_id)
    assert rig.endpoint.processor.drain(20) and rec["status"] == 202
    assert rig.runtime.store.question_get(r.waiting_for)["responder_name"] == "Grace Kim"


def _late_click(rig, qid):
    """Conor's press on the card as it was before it changed (a stale client)."""
    conor = rig.emu.state.user(CONOR)
    a = rig.emu.teams._envelope("message", conor, rig.emu.teams._bot(),
                                rig.emu.teams._personal(conor, rig.emu.teams._bot()), {})
    a["value"] = {"msteamsQuestion": qid, "answer": "denied", "token": questions.token(rig.runtime.store, qid, "denied")}
    return a


def test_access_request_two_reviewers_at_the_same_moment_one_decision(rig):
    r = _request(rig)
    acts = [rig.emu.teams.click(GRACE, "Approve", question=r.waiting_for),
            rig.emu.teams.click(CONOR, "Deny", question=r.waiting_for, reason="not during the freeze")]
    barrier = threading.Barrier(2)

    def go(a):
        barrier.wait()
        rig.emu.teams.deliver(a, rig.runtime.cfg.bot_id)

    threads = [threading.Thread(target=go, args=(a,)) for a in acts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rig.endpoint.processor.drain(30)
    q = rig.runtime.store.question_get(r.waiting_for)
    decision = {"approved": "Grace Kim", "denied": "Conor O'Brien"}
    assert q["status"] == "answered" and q["responder_name"] == decision[q["answer"]]
    assert rig.runtime.store.run_get(r.run_id)["status"] == "ok"
    for ref in q["value"]["refs"]:
        card = rig.card(ref)
        assert card["body"][0]["text"] == f"Access request REQ-42: {q['answer']}"
        assert {"title": "Reviewer", "value": q["responder_name"]} in card["body"][1]["facts"]
