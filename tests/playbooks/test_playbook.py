"""Playbooks without a tenant: templates substitute data and never evaluate it, conditions
follow their small grammar, `validate` reports problems as FILE:LINE, and the runner's
when / foreach / on_error / retries semantics (commands replaced by a scripted fake)."""
import json
import subprocess
import sys
import textwrap

import pytest

from integration import dispatch
from integration.engine import registry
from integration.frontends.cli import main
from integration.engine.errors import FileError, InputError, NotFound, GraphError, ArgumentError
from integration.playbooks import load, run_playbook
from integration.playbooks import templates as T
from integration.engine.results import Result

HOSTILE = "${inputs.secret} {{7*7}} $${x} \"double\" 'single' <script>alert('x')</script> & ; `id`"


def write(tmp_path, text, name="pb.yml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def run_cli(argv):
    out, err = [], []
    code = main(argv, out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


# ------------------------------------------------------------------ templates


def resolver(scope):
    return lambda ref: T.walk(scope[ref.root], ref.parts)


def test_exact_template_keeps_type_and_embedded_is_stringified():
    scope = {"inputs": {"users": ["a@x", "b@x"], "n": 3, "flag": True, "obj": {"k": [1]}}}
    r = resolver(scope)
    assert T.render("${inputs.users}", r) == ["a@x", "b@x"]
    assert T.render("${ inputs.n }", r) == 3
    assert T.render("${inputs.obj}", r) == {"k": [1]}
    assert T.render("n=${inputs.n} f=${inputs.flag} u=${inputs.users} o=${inputs.obj}", r) == \
        'n=3 f=true u=a@x, b@x o={"k": [1]}'
    assert T.render({"a": ["${inputs.n}", "x"], "b": 5}, r) == {"a": [3, "x"], "b": 5}
    assert T.render("cost: $${inputs.n}", r) == "cost: ${inputs.n}"  # $${ is a literal ${
    assert T.render("${inputs.missing}", r) is None and T.render("[${inputs.missing}]", r) == "[]"


def test_substituted_values_are_never_rescanned():
    scope = {"inputs": {"note": HOSTILE, "secret": "S3CRET"}}
    r = resolver(scope)
    assert T.render("${inputs.note}", r) == HOSTILE
    assert T.render("note: ${inputs.note}!", r) == f"note: {HOSTILE}!"
    assert "S3CRET" not in T.render("${inputs.note}", r)


def test_walk_dotted_context_keys_and_indexes():
    ctx = {"MicrosoftTeams.ChatList": [{"chatId": "c1", "messages": {"id": "m1"}}, {"chatId": "c2"}]}
    assert T.walk(ctx, T.parse_ref("context.MicrosoftTeams.ChatList.0.chatId").parts) == "c1"
    assert T.walk(ctx, T.parse_ref("context.MicrosoftTeams.ChatList[-1].chatId").parts) == "c2"
    assert T.walk(ctx, T.parse_ref("context.MicrosoftTeams.ChatList.0.messages.id").parts) == "m1"
    assert T.walk(ctx, T.parse_ref("context.MicrosoftTeams.ChatList.7").parts) is T.MISSING
    assert T.walk(ctx, T.parse_ref("context.Nope").parts) is T.MISSING


@pytest.mark.parametrize("bad", ["${nope.x}", "${inputs.a b}", "${inputs.x", "${}", "${inputs.[x]}"])
def test_template_syntax_errors(bad):
    with pytest.raises(InputError):
        T.parse(bad)


# ------------------------------------------------------------------ conditions


@pytest.mark.parametrize("cond,expected", [
    ("${inputs.sev} == critical", True),
    ("${inputs.sev} != critical", False),
    ("${inputs.sev} in [high, critical]", True),
    ("${inputs.sev} not in [high, critical]", False),
    ("'critical' == ${inputs.sev}", True),
    ("${inputs.n} > 2 and ${inputs.n} <= 3", True),
    ("${inputs.n} == 3", True),
    ("${inputs.flag}", True),
    ("not ${inputs.flag}", False),
    ("${inputs.off}", False),
    ("${inputs.empty}", False),
    ("${inputs.users}", True),
    ("${inputs.missing} == null", True),
    ("${inputs.flag} == true", True),
    ("a@x in ${inputs.users}", True),
    ("(${inputs.sev} == low or ${inputs.n} == 3) and not ${inputs.off}", True),
    ("${inputs.sev} == low or ${inputs.sev} == medium", False),
    ('"IR ${inputs.n}" == "IR 3"', True),
    # a hostile value is compared, never parsed as part of the condition
    ("${inputs.evil} == x", False),
    ("${inputs.evil}", True),
])
def test_conditions(cond, expected):
    scope = {"inputs": {"sev": "critical", "n": 3, "flag": True, "off": "false", "empty": "", "users": ["a@x"],
                        "evil": "x or true) or (1 == 1"}}
    assert T.Condition(cond).evaluate(resolver(scope)) is expected


@pytest.mark.parametrize("bad", ["${inputs.a} ==", "and x", "(${inputs.a} == b", "x in", "${inputs.a} = b",
                                 "${inputs.a} == b c"])
def test_condition_syntax_errors(bad):
    with pytest.raises(InputError):
        T.Condition(bad)


def test_condition_type_errors_are_input_errors():
    with pytest.raises(InputError, match="compares numbers"):
        T.Condition("${inputs.a} > 2").evaluate(resolver({"inputs": {"a": "many"}}))


# ------------------------------------------------------------------ validate

BROKEN = """\
    name: broken
    inputs:
      incident: {type: string, required: true}
    steps:
      - id: room
        command: chat-craete
        args: {member: "${inputs.responders}"}
      - id: brief
        command: message-send-to-chat
        args:
          chat: ${steps.rooom.outputs.chat_id}
          content: ${inputs.incident}
    """


def test_validate_reports_misspelt_command_and_dangling_references_with_file_and_line(tmp_path):
    p = write(tmp_path, BROKEN)
    with pytest.raises(FileError) as e:
        load(p)
    lines = [str(x) for x in e.value.problems]
    assert any(x.startswith(f"{p}:6: step 'room': unknown command 'chat-craete' (did you mean: chat-create") for x in lines)
    assert any(x.startswith(f"{p}:7: step 'room': ${{inputs.responders}} refers to an input that is not declared")
               for x in lines)
    assert any(x.startswith(f"{p}:11: step 'brief': ${{steps.rooom.outputs.chat_id}} refers to a step that does "
                            f"not exist: 'rooom' (did you mean: room?)") for x in lines)
    assert e.value.exit_code == 2


def test_validate_cli_prints_file_line_messages_and_exits_2(tmp_path):
    p = write(tmp_path, BROKEN)
    code, out, err = run_cli(["playbook", "validate", str(p)])
    assert code == 2 and "Traceback" not in err
    assert f"{p}:6: step 'room': unknown command 'chat-craete'" in err
    assert f"{p}:11: step 'brief':" in err
    good = write(tmp_path, """\
        inputs: {who: {type: string, required: true}}
        steps:
          - {id: ring, command: microsoft-teams-ring-user, args: {username: "${inputs.who}"}}
        """, "good.yml")
    code, out, err = run_cli(["playbook", "validate", str(good)])
    assert code == 0 and "good.yml: ok (1 step; inputs: who*)" in out


@pytest.mark.parametrize("body,line,text", [
    # a step that runs later cannot be referenced
    ("""\
     steps:
       - {id: a, command: ring-user, args: {username: "${steps.b.outputs.x}"}}
       - {id: b, command: ring-user, args: {username: x}, outputs: {x: "${result.outputs.0.callId}"}}
     """, 2, "refers to step 'b' before it runs"),
    ("""\
     steps:
       - {id: a, command: ring-user, args: {username: x}}
       - {id: a, command: ring-user, args: {username: y}}
     """, 3, "duplicate step id 'a'"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: x}
         on_error: recover
     """, 5, "on_error: no step 'recover'"),
    ("""\
     steps:
       - {id: a, command: ring-user, args: {username: x}}
       - {id: b, command: ring-user, args: {username: x}, on_error: a}
     """, 3, "must come after this step"),
    # unknown argument names are reported even when the value is a template
    ("""\
     inputs: {who: {type: string}}
     steps:
       - id: a
         command: ring-user
         args:
           username: x
           user: ${inputs.who}
     """, 7, "unknown argument 'user' for 'ring-user' (did you mean: username?)"),
    ("""\
     steps:
       - id: a
         command: chat-create
         args: {member: [a@x], chat_type: triple}
     """, 4, "argument 'chat_type': expected one of group, oneOnOne"),
    ("""\
     steps:
       - id: a
         command: ring-user
     """, 3, "argument 'username': is required"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: x}
         retrys: 2
     """, 5, "unknown field 'retrys' (did you mean 'retries'?)"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: x}
         when: ${inputs.x} ==
     """, 5, "ends too early"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: "${item}"}
     """, 4, "${item} is only available in a step with foreach"),
    ("""\
     steps:
       - id: a
         command: chat-create
         args: {member: [x]}
       - id: b
         command: ring-user
         args: {username: "${steps.a.context.MicrosoftTeams.Call.0.userId}"}
     """, 7, "writes its context under 'MicrosoftTeams.ChatList'"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: x}
         args: {username: y}
     """, 5, "duplicate key 'args'"),
    ("""\
     steps:
       - id: a
         command: ring-user
         args: {username: [x}
     """, 4, "not valid YAML"),
    ("""\
     inputs:
       n: {type: integer, default: many}
     steps:
       - {id: a, command: ring-user, args: {username: x}}
     """, 2, "default 'many' is not of type integer"),
])
def test_validate_problems_name_the_line(tmp_path, body, line, text):
    p = write(tmp_path, body)
    with pytest.raises(FileError) as e:
        load(p)
    problems = getattr(e.value, "problems", [e.value])
    assert any(x.line == line and text in str(x) for x in problems), [str(x) for x in problems]


def test_static_args_skip_templates_but_required_still_checked(tmp_path):
    p = write(tmp_path, """\
        inputs: {members: {type: array, default: [a@x]}, kind: {type: string, default: group}}
        steps:
          - id: a
            command: chat-create
            args: {member: "${inputs.members}", chat_type: "${inputs.kind}", chat_name: "IR ${inputs.kind}"}
        """)
    assert load(p).steps[0].spec.name == "chat-create"


# ------------------------------------------------------------------ inputs and dry run

PLAN = """\
    name: plan
    inputs:
      note: {type: string, required: true}
      team: {type: string, default: Security Operations}
      users: {type: array, default: [a@x, b@x]}
      notify: {type: boolean, default: true}
      severity: {type: string, enum: [low, critical], default: low}
    steps:
      - id: chans
        command: channel-list
        args: {team: "${inputs.team}"}
        outputs: {first: "${result.outputs.0.channelId}"}
      - id: room
        command: chat-create
        args: {member: "${inputs.users}", chat_name: "IR: ${inputs.note}"}
      - id: brief
        command: message-send-to-chat
        when: ${inputs.notify}
        foreach: ${inputs.users}
        args: {chat: "${item}", content: "${inputs.note}"}
      - id: ring
        command: ring-user
        when: ${inputs.severity} == critical
        args: {username: "${steps.room.context.MicrosoftTeams.ChatList.0.chatId}"}
      - id: later
        command: message-send-to-chat
        when: ${steps.chans.status} == ok
        args: {chat: "${steps.chans.outputs.first}", content: done}
    outputs:
      first: ${steps.chans.outputs.first}
      note: ${inputs.note}
    """


@pytest.fixture
def no_http(monkeypatch):
    """Any attempt to run a command, build a client or get a token fails the test."""
    def boom(*a, **k):
        raise AssertionError("a dry run must make no request")

    monkeypatch.setattr(dispatch, "execute", boom)
    monkeypatch.setattr(dispatch.Runtime, "client", boom)
    monkeypatch.setattr(dispatch.Runtime, "auth", property(boom))
    monkeypatch.setattr(dispatch.Runtime, "store", property(boom))


def test_dry_run_delivers_hostile_input_literally_and_makes_no_request(tmp_path, no_http):
    p = write(tmp_path, PLAN)
    lines = []
    r = run_playbook(p, {"note": HOSTILE}, dry_run=True, out=lines.append)
    assert r.status == "planned" and r.ok and r.context == {}
    brief = r.step("brief")
    assert [e["args"] for e in brief["plan"]] == [{"chat": "a@x", "content": HOSTILE}, {"chat": "b@x", "content": HOSTILE}]
    assert r.step("room")["plan"][0]["args"]["chat_name"] == f"IR: {HOSTILE}"
    assert r.outputs == {"first": "<steps.chans.outputs.first>", "note": HOSTILE}
    chans = r.step("chans")["plan"][0]["calls"]
    assert chans == ["GET /teams (find team 'Security Operations', unless cached)",
                     "GET /teams/<id of team 'Security Operations'>/channels (paged)"]
    assert "POST /chats" in r.step("room")["plan"][0]["calls"]
    assert r.step("ring")["status"] == "skipped"
    assert r.step("later")["condition"] == "${steps.chans.status} == ok"
    text = "\n".join(lines)
    assert "no request made" in text and json.dumps(HOSTILE)[1:-1] in text


def test_dry_run_cli_json_and_invalid_argument(tmp_path, no_http):
    p = write(tmp_path, PLAN)
    code, out, err = run_cli(["playbook", "run", str(p), "--input", f"note={HOSTILE}", "--dry-run", "--output", "json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dry_run"] is True and doc["steps"][2]["plan"][0]["args"]["content"] == HOSTILE
    code, out, err = run_cli(["playbook", "run", str(p), "--input", "note=x", "--input", "severity=critical",
                              "--dry-run"])
    assert code == 0 and "ring (ring-user)" in out and "<steps.room.context.MicrosoftTeams.ChatList.0.chatId>" in out
    bad = write(tmp_path, """\
        inputs: {kind: {type: string, default: triple}}
        steps:
          - {id: a, command: chat-create, args: {member: [a@x], chat_type: "${inputs.kind}"}}
        """, "bad.yml")
    code, out, err = run_cli(["playbook", "run", str(bad), "--dry-run"])
    assert code == 2 and "would fail: argument 'chat_type'" in out and "Traceback" not in err


def test_inputs_missing_coerced_and_checked(tmp_path, no_http):
    p = write(tmp_path, PLAN)
    code, out, err = run_cli(["playbook", "run", str(p), "--dry-run"])
    assert code == 2 and "missing required input: note" in err and "--input note=VALUE" in err
    with pytest.raises(InputError, match="input 'severity': expected one of low, critical"):
        run_playbook(p, {"note": "x", "severity": "meh"}, dry_run=True, out=lambda s: None)
    with pytest.raises(InputError, match="unknown input 'sevrity'"):
        run_playbook(p, {"note": "x", "sevrity": "low"}, dry_run=True, out=lambda s: None)
    with pytest.raises(InputError, match="input 'notify': expected a boolean"):
        run_playbook(p, {"note": "x", "notify": "perhaps"}, dry_run=True, out=lambda s: None)
    r = run_playbook(p, {"note": "x", "notify": "no", "users": "c@x, d@x"}, dry_run=True, out=lambda s: None)
    assert r.step("brief")["status"] == "skipped"
    assert r.step("room")["plan"][0]["args"]["member"] == ["c@x", "d@x"]
    code, out, err = run_cli(["playbook", "run", str(p), "--dry-run", "--input", "note=x", "--input", "users=e@x",
                              "--input", "users=f@x"])
    assert code == 0 and '"member": ["e@x", "f@x"]' in out


# ------------------------------------------------------------------ the runner, with scripted commands


class Script:
    """Stands in for dispatch.execute: records calls; `plan[command]` is a list of outcomes
    (an exception to raise, or outputs for a Result), used in order, the last one repeating."""

    PREFIX = {"chat-create": ("MicrosoftTeams.ChatList", "chatId"), "message-send-to-chat": ("MicrosoftTeams.ChatList", "chatId"),
              "ring-user": ("MicrosoftTeams.Call", "callId"), "channel-list": ("MicrosoftTeams.ChannelList", "channelId")}

    def __init__(self, **plan):
        self.plan = {k.replace("_", "-"): list(v) for k, v in plan.items()}
        self.calls = []

    def __call__(self, name, args, runtime=None, **kw):
        self.calls.append((name, args))
        outcomes = self.plan.get(name) or [[{}]]
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        prefix, key = self.PREFIX.get(name, (None, None))
        return Result(name, outcome, prefix, key, flow="app")


@pytest.fixture
def rt(tmp_path):
    """A runtime whose commands are scripted (no tenant), with a real store for the run's journal."""
    from integration.engine.config import Config
    from integration.dispatch import Runtime

    sleeps = []
    runtime = Runtime(Config(store_path=str(tmp_path / "store.sqlite3")), sleep=sleeps.append,
                      registry_=registry.default_registry())
    runtime.sleeps = sleeps
    yield runtime
    runtime.close()


def go(monkeypatch, tmp_path, body, script, rt, inputs=None):
    monkeypatch.setattr(dispatch, "execute", script)
    lines = []
    r = run_playbook(write(tmp_path, body), inputs or {}, rt, out=lines.append)
    r.lines = lines
    return r


def test_when_foreach_outputs_and_context_merge(monkeypatch, tmp_path, rt):
    script = Script(chat_create=[[{"chatId": "c1", "topic": "IR"}]],
                    message_send_to_chat=[[{"chatId": "c1", "messages": {"id": "m1"}}],
                                          [{"chatId": "c1", "messages": {"id": "m2"}}]])
    r = go(monkeypatch, tmp_path, """\
        inputs:
          notes: {type: array, default: [first, second]}
          sev: {type: string, default: low}
        steps:
          - id: room
            command: chat-create
            args: {member: [a@x]}
            outputs: {id: "${result.outputs.0.chatId}"}
          - id: ring
            command: ring-user
            when: ${inputs.sev} == critical
            args: {username: x}
          - id: say
            command: message-send-to-chat
            foreach: ${inputs.notes}
            when: ${item} != skipme
            args: {chat: "${steps.room.outputs.id}", content: "${item} (${steps.ring.status})"}
            outputs: {msg: "${result.outputs.0.messages.id}"}
        outputs:
          msgs: ${steps.say.outputs.msg}
          topic: ${context.MicrosoftTeams.ChatList.0.topic}
        """, script, rt, {"notes": ["first", "skipme", "second"]})
    assert r.status == "ok"
    assert [c for c in script.calls if c[0] == "message-send-to-chat"] == [
        ("message-send-to-chat", {"chat": "c1", "content": "first (skipped)"}),
        ("message-send-to-chat", {"chat": "c1", "content": "second (skipped)"})]
    assert not [c for c in script.calls if c[0] == "ring-user"]
    assert r.outputs == {"msgs": ["m1", None, "m2"], "topic": "IR"}
    # the same chat (key chatId) is one context entry, updated by each step
    assert r.context == {"MicrosoftTeams.ChatList": [{"chatId": "c1", "topic": "IR", "messages": {"id": "m2"}}]}
    assert [s["status"] for s in r.steps] == ["ok", "skipped", "ok"]
    assert [i["status"] for i in r.step("say")["items"]] == ["ok", "skipped", "ok"]


def test_on_error_fail_stops_with_the_errors_exit_code(monkeypatch, tmp_path, rt):
    script = Script(ring_user=[NotFound("user 'x' not found")])
    r = go(monkeypatch, tmp_path, """\
        steps:
          - {id: ring, command: ring-user, args: {username: x}}
          - {id: after, command: chat-create, args: {member: [a@x]}}
        """, script, rt)
    assert r.status == "failed" and r.failed_step == "ring" and r.exit_code == 5
    assert r.step("after")["status"] == "skipped" and len(script.calls) == 1
    assert any("ring (ring-user) failed" in x and "user 'x' not found" in x for x in r.lines)


def test_on_error_continue_and_jump_to_recovery(monkeypatch, tmp_path, rt):
    script = Script(ring_user=[GraphError("boom", status=500)], chat_create=[[{"chatId": "c9"}]])
    r = go(monkeypatch, tmp_path, """\
        inputs: {who: {type: string, default: priya}}
        steps:
          - {id: ring, command: ring-user, args: {username: "${inputs.who}"}, on_error: dm}
          - {id: jumped, command: channel-list, args: {team: T}}
          - id: dm
            command: message-send-to-chat
            when: ${steps.ring.status} == failed
            args: {chat: "${inputs.who}", content: "call failed: ${steps.ring.error}"}
          - {id: again, command: ring-user, args: {username: z}, on_error: continue}
          - {id: last, command: chat-create, args: {member: [a@x]}}
        """, script, rt)
    assert r.status == "ok" and r.exit_code == 0
    assert [s["status"] for s in r.steps] == ["failed", "skipped", "ok", "failed", "ok"]
    assert "jumped over" in r.step("jumped")["reason"]
    dm = [a for n, a in script.calls if n == "message-send-to-chat"][0]
    assert dm == {"chat": "priya", "content": "call failed: boom (HTTP 500)"}


def test_foreach_on_error_continue_collects_failed_items(monkeypatch, tmp_path, rt):
    script = Script(message_send_to_chat=[[{"chatId": "a"}], NotFound("chat 'b' not found"), [{"chatId": "c"}]])
    r = go(monkeypatch, tmp_path, """\
        steps:
          - id: notify
            command: message-send-to-chat
            foreach: [a, b, c]
            args: {chat: "${item}", content: hi}
            on_error: fallback
          - id: fallback
            command: message-send-to-chat
            foreach: ${steps.notify.failed}
            args: {chat: "fallback-for-${item}", content: hi}
        """, script, rt)
    assert r.status == "ok"
    # Some items failed, not all: the step is partial (on_error sees it as it sees a failure).
    assert r.step("notify")["status"] == "partial" and r.step("notify")["failed"] == ["b"]
    assert r.step("notify")["error"].startswith("1 of 3 items failed")
    assert [a["chat"] for n, a in script.calls] == ["a", "b", "c", "fallback-for-b"]


def test_retries_rerun_transient_errors_but_not_input_mistakes(monkeypatch, tmp_path, rt):
    script = Script(ring_user=[GraphError("unavailable", status=503), GraphError("unavailable", status=503),
                               [{"callId": "k1"}]],
                    chat_create=[ArgumentError("member", "is required")])
    r = go(monkeypatch, tmp_path, """\
        steps:
          - {id: ring, command: ring-user, args: {username: x}, retries: 2, retry_delay: 0.5}
          - {id: room, command: chat-create, args: {member: [x]}, retries: 3, on_error: continue}
        """, script, rt)
    assert r.step("ring")["status"] == "ok" and r.step("ring")["attempts"] == 3
    assert rt.sleeps == [0.5, 0.5]
    assert r.step("room")["attempts"] == 1 and r.step("room")["status"] == "failed"
    assert any("attempt 1 of 3 failed" in x for x in r.lines)


def test_retries_exhausted_fail_the_playbook(monkeypatch, tmp_path, rt):
    script = Script(ring_user=[GraphError("unavailable", status=503)])
    r = go(monkeypatch, tmp_path, """\
        steps:
          - {id: ring, command: ring-user, args: {username: x}, retries: 1, retry_delay: 0}
        """, script, rt)
    assert r.status == "failed" and r.step("ring")["attempts"] == 2 and r.exit_code == 1 and rt.sleeps == []


def test_a_bug_in_a_command_is_a_step_failure_not_a_crash(monkeypatch, tmp_path, rt):
    script = Script(ring_user=[KeyError("oops")])
    r = go(monkeypatch, tmp_path, """\
        steps:
          - {id: ring, command: ring-user, args: {username: x}}
        """, script, rt)
    assert r.status == "failed" and "internal error: KeyError" in r.step("ring")["error"] and r.exit_code == 1


def test_playbook_help_is_fast_path():
    r = subprocess.run([sys.executable, "-m", "integration.frontends.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "playbook" in r.stdout and "shell" in r.stdout
    r = subprocess.run([sys.executable, "-c", "import sys, integration.frontends.cli; "
                        "print(sorted(m for m in sys.modules if m.startswith(('yaml', 'jsonschema', 'requests'))))"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "[]"


def test_every_shipped_playbook_and_the_readme_example_validate(tmp_path):
    from integration.playbooks.loader import LIBRARY_DIR as root

    files = sorted(root.rglob("*.yml"))
    assert files
    for f in files:
        load(f)
    example = (root / "README.md").read_text().split("```yaml\n")[1].split("```")[0]
    pb = load(write(tmp_path, example))
    assert [s.id for s in pb.steps] == ["ring", "dm"]
