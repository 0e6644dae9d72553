"""Playbooks: YAML files that chain registry commands, checked before they run.

    name: page-oncall
    inputs:
      user:     {type: string, required: true}
      severity: {type: string, enum: [low, high, critical], default: high}
    steps:
      - id: ring
        command: ring-user
        args: {username: "${inputs.user}"}
        when: ${inputs.severity} in [high, critical]
        retries: 1
        on_error: dm                      # fail (default) | continue | a later step's id
        outputs: {call_id: "${result.outputs.0.callId}"}
      - id: dm
        command: message-send-to-chat
        when: ${steps.ring.status} != ok
        args: {chat: "${inputs.user}", content: "Please call the SOC (${inputs.severity})"}
    outputs:
      call: ${steps.ring.outputs.call_id}

`loader` checks a file (schema.json, then commands, arguments, references: FILE:LINE errors),
`templates` substitutes `${...}` as data and parses `when` conditions, `runner` runs or plans
(dry run) it, and `tool` is `msteams playbook validate|run`.

Stage: above ``dispatch`` (a step is one ``execute()``) and below the front ends. Door:
``load``, ``run_playbook``, ``coerce_inputs`` below, and ``runs`` for persisted runs.
"""
from .loader import Playbook, load
from .runner import PlaybookResult, coerce_inputs, run_playbook

__all__ = ["Playbook", "PlaybookResult", "coerce_inputs", "load", "run_playbook"]
