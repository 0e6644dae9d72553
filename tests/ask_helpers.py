"""What the tests of questions share with others that wait on one (webhooks, the worker): who
approves, the shipped playbook library, the access-request role map, and a playbook that asks
and then tells."""
from __future__ import annotations

import os

GRACE = "grace.kim@contoso.example"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = os.path.join(REPO, "integration", "playbooks", "library")
ROLE_MAP = {"prod-admin": [GRACE], "*": ["Security Operations/Incident Response"]}

WAITING_PLAYBOOK = """
name: ask-then-tell
inputs:
  who: {type: string, required: true}
steps:
  - id: q
    command: ask
    args:
      question: Contain the host?
      user: ["${inputs.who}"]
      reason: true
      expires_in: 600
      default_answer: "No"
    outputs:
      answer: ${result.outputs.0.answer}
      by: ${result.outputs.0.responder}
      why: ${result.outputs.0.reason}
  - id: tell
    command: send-notification
    args:
      user: ["${inputs.who}"]
      message: "Decision: ${steps.q.outputs.answer} (${steps.q.outputs.by})"
      message_format: text
outputs:
  answer: ${steps.q.outputs.answer}
  by: ${steps.q.outputs.by}
  why: ${steps.q.outputs.why}
"""
