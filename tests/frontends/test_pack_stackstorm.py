"""`msteams pack stackstorm --out DIR` (issue 26): the StackStorm pack generated from commands.yml.

StackStorm's runtime (st2common) is not on the package index in a usable form, so the few rules of
its pack, config schema, action, sensor and rule metadata are written here as JSON Schema from its
documentation (docs.stackstorm.com: "Create and Contribute a Pack", "Actions", "Sensors and
Triggers", "Rules") and every generated YAML is checked against them. The generated Python
compiles; the action's entry point runs here against a live `msteams serve` on the fake tenant and
through the Python API, with a stand-in for `st2common.runners.base_action.Action`; the sensor
receives deliveries signed as our webhooks sign them, with a stand-in for
`st2reactor.sensor.base.Sensor`. The config's `tenant` names the tenant profile of a `msteams serve`
with several tenants (X-Msteams-Tenant) or of the Python API's config; a bad one is refused before
any request."""
from __future__ import annotations

import json
import sys
import threading
import time
import types
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from pack_helpers import (chat_messages, imports_of, no_requests, registry_with_extra_command, team_ids,
                          tenants_config_and_key)
from service_helpers import Service, cli, make_key

PACK = "msteams_soar"
CONOR = "conor.obrien@contoso.example"
ZOE = "zoe.muller@contoso.example"

_NAME = {"type": "string", "pattern": "^[a-zA-Z0-9_-]+$"}
_TYPE = {"enum": ["string", "integer", "number", "boolean", "array", "object", "null"]}
_PARAM = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": _TYPE, "description": {"type": "string"}, "required": {"type": "boolean"},
        "default": {}, "enum": {"type": "array", "minItems": 1}, "immutable": {"type": "boolean"},
        "secret": {"type": "boolean"}, "position": {"type": "integer", "minimum": 0},
        "items": {"type": "object", "properties": {"type": _TYPE}},
        "minimum": {"type": "number"}, "maximum": {"type": "number"},
        "minLength": {"type": "integer"}, "maxLength": {"type": "integer"},
    },
}
SCHEMAS = {
    # pack.yaml: ref (lowercase, digits, underscores), name, description, version (semver), author, ...
    "pack": {
        "type": "object",
        "required": ["ref", "name", "description", "version", "author"],
        "additionalProperties": False,
        "properties": {
            "ref": {"type": "string", "pattern": "^[a-z0-9_]+$"}, "name": {"type": "string", "minLength": 1},
            "description": {"type": "string", "minLength": 1},
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "author": {"type": "string", "minLength": 1},
            "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
            "keywords": {"type": "array", "items": {"type": "string"}},
            "python_versions": {"type": "array", "minItems": 1, "items": {"enum": ["2", "3"]}},
            "stackstorm_version": {"type": "string"}, "contributors": {"type": "array"},
            "dependencies": {"type": "array"}, "system": {"type": "object"},
        },
    },
    # config.schema.yaml: config key -> a parameter definition (secret keys are masked by st2)
    "config": {"type": "object", "additionalProperties": _PARAM},
    # actions/*.yaml
    "action": {
        "type": "object",
        "required": ["name", "runner_type", "entry_point", "parameters"],
        "additionalProperties": False,
        "properties": {
            "name": _NAME, "pack": {"type": "string"}, "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "runner_type": {"enum": ["python-script", "local-shell-cmd", "local-shell-script", "remote-shell-cmd",
                                     "remote-shell-script", "orquesta", "action-chain", "http-request"]},
            "entry_point": {"type": "string", "minLength": 1}, "tags": {"type": "array"},
            "parameters": {"type": "object", "additionalProperties": _PARAM},
            "output_schema": {"type": "object"},
        },
    },
    # sensors/*.yaml
    "sensor": {
        "type": "object",
        "required": ["class_name", "entry_point"],
        "additionalProperties": False,
        "properties": {
            "class_name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "entry_point": {"type": "string"}, "description": {"type": "string"}, "enabled": {"type": "boolean"},
            "poll_interval": {"type": "integer"},
            "trigger_types": {"type": "array", "items": {
                "type": "object", "required": ["name"], "additionalProperties": False,
                "properties": {"name": _NAME, "description": {"type": "string"},
                               "payload_schema": {"type": "object"}, "parameters_schema": {"type": "object"}}}},
        },
    },
    # rules/*.yaml
    "rule": {
        "type": "object",
        "required": ["name", "pack", "trigger", "action"],
        "additionalProperties": False,
        "properties": {
            "name": _NAME, "pack": {"type": "string"}, "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "trigger": {"type": "object", "required": ["type"],
                        "properties": {"type": {"type": "string"}, "parameters": {"type": "object"}}},
            "criteria": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["type", "pattern"],
                "properties": {"type": {"type": "string"}, "pattern": {}}}},
            "action": {"type": "object", "required": ["ref"],
                       "properties": {"ref": {"type": "string", "pattern": r"^[a-z0-9_]+\.[a-zA-Z0-9_-]+$"},
                                      "parameters": {"type": "object"}}},
        },
    },
}


def generate(out: Path) -> Path:
    from integration.frontends import cli as cli_mod

    said: list[str] = []
    assert cli_mod.main(["pack", "stackstorm", "--out", str(out)], out=said.append, err=said.append) == 0, said
    assert said and f"{PACK}" in said[-1]
    return out / PACK


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("st2"))


def load(path: Path):
    return yaml.safe_load(path.read_text())


def check(kind: str, doc) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMAS[kind])
    jsonschema.validate(doc, SCHEMAS[kind])
    if kind in ("action", "config"):  # each parameter's default and enum are valid for its type
        params = doc["parameters"] if kind == "action" else doc
        for name, p in params.items():
            schema = {k: v for k, v in p.items() if k not in ("required", "immutable", "secret", "position",
                                                              "description", "default")}
            if "default" in p:
                jsonschema.validate(p["default"], schema)


def test_every_yaml_of_the_pack_follows_stackstorms_schema(pack):
    for rel in ("pack.yaml", "config.schema.yaml", "requirements.txt", "README.md", "actions/run_command.py",
                "sensors/webhook_sensor.yaml", "sensors/webhook_sensor.py"):
        assert (pack / rel).is_file(), rel
    meta = load(pack / "pack.yaml")
    check("pack", meta)
    assert meta["ref"] == PACK and meta["python_versions"] == ["3"]
    config = load(pack / "config.schema.yaml")
    check("config", config)
    assert config["api_key"]["secret"] and config["webhook_secret"]["secret"]
    assert {"config_path", "url", "api_key"} <= set(config)
    assert config["tenant"]["type"] == "string" and config["tenant"]["required"] is False  # one tenant: none
    assert "secret" not in config["tenant"] and "several tenants" in config["tenant"]["description"]
    actions = sorted((pack / "actions").glob("*.yaml"))
    for path in actions:
        doc = load(path)
        check("action", doc)
        assert path.stem == doc["name"] and doc["entry_point"] == "run_command.py"
        assert doc["runner_type"] == "python-script"
    sensor = load(pack / "sensors/webhook_sensor.yaml")
    check("sensor", sensor)
    assert {t["name"] for t in sensor["trigger_types"]} == {"question_answered", "command_received"}
    rules = sorted((pack / "rules").glob("*.yaml"))
    assert rules
    names = {p.stem for p in actions}
    for path in rules:
        rule = load(path)
        check("rule", rule)
        assert rule["enabled"] is False
        assert rule["trigger"]["type"] in {f"{PACK}.question_answered", f"{PACK}.command_received"}
        ref_pack, ref_action = rule["action"]["ref"].split(".")
        assert ref_pack == "core" or ref_action in names
    assert "standardwebhooks" in (pack / "requirements.txt").read_text()
    # and the schemas do refuse: a parameter of an unknown type, a pack ref with a dash
    with pytest.raises(jsonschema.ValidationError):
        check("action", {**load(actions[0]), "parameters": {"x": {"type": "text"}}})
    with pytest.raises(jsonschema.ValidationError):
        check("pack", {**meta, "ref": "msteams-soar"})


def test_one_action_per_command_with_its_parameters(pack):
    from integration.engine import registry

    reg = registry.default_registry()
    actions = {load(p)["parameters"]["command"]["default"]: load(p) for p in (pack / "actions").glob("*.yaml")}
    assert set(actions) == {spec.name for spec in reg}
    for spec in reg:
        params = actions[spec.name]["parameters"]
        assert params["command"]["immutable"] is True
        props = spec.arguments.get("properties", {})
        assert set(params) - {"command"} == {("arg_" + n if n == "timeout" else n) for n in props}, spec.name
        for name in spec.arguments.get("required", ()):
            assert params[name]["required"] is True, (spec.name, name)
    chat = actions["chat-create"]["parameters"]
    assert chat["member"]["type"] == "array" and chat["member"]["items"] == {"type": "string"}
    assert chat["member"]["required"] is True
    assert chat["chat_type"]["enum"] == ["group", "oneOnOne"] and chat["chat_type"]["default"] == "group"
    send = actions["message-send-to-chat"]["parameters"]
    assert send["fail_on"] == {"type": "string", "description": send["fail_on"]["description"], "enum": ["any", "none"],
                               "default": "any"}
    assert send["resend_unknown"]["type"] == "boolean" and send["resend_unknown"]["default"] is False
    wait = actions["ask-wait"]["parameters"]
    assert "timeout" not in wait and wait["arg_timeout"]["type"] == "number"  # the runner's own `timeout`
    types_ = {p["type"] for a in actions.values() for p in a["parameters"].values()}
    assert {"string", "integer", "number", "boolean", "array", "object"} <= types_
    assert actions["team-delete"]["description"].startswith("DESTRUCTIVE")




def test_the_generated_python_compiles(pack):
    allowed = {"st2common", "st2reactor", "integration", "requests", "standardwebhooks", "json", "collections",
               "threading", "http", "re"}
    for rel in ("actions/run_command.py", "sensors/webhook_sensor.py"):
        source = (pack / rel).read_text()
        compile(source, rel, "exec")
        assert imports_of(source) <= allowed, (rel, imports_of(source) - allowed)
    assert '"arg_timeout": "timeout"' in (pack / "actions/run_command.py").read_text()




def test_a_new_registry_command_appears_in_the_pack_without_edits(tmp_path, monkeypatch):
    registry_with_extra_command(tmp_path, monkeypatch)
    out = generate(tmp_path / "out")
    probe = load(out / "actions/pack_probe.yaml")
    check("action", probe)
    params = probe["parameters"]
    assert params["command"]["default"] == "pack-probe"
    assert params["target"]["required"] is True and params["target"]["type"] == "string"
    assert params["depth"]["enum"] == ["shallow", "deep"] and params["depth"]["default"] == "shallow"


# ---- the action's entry point, run as StackStorm runs it ----

class Action:
    """Stand-in for st2common.runners.base_action.Action: the pack's config as self.config."""

    def __init__(self, config=None, action_service=None):
        self.config, self.action_service = config, action_service


def _runner(monkeypatch, pack: Path, config: dict):
    base = types.ModuleType("st2common.runners.base_action")
    base.Action = Action
    for name in ("st2common", "st2common.runners"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "st2common.runners.base_action", base)
    ns = {"__name__": "st2_action"}
    source = pack / "actions/run_command.py"
    exec(compile(source.read_text(), str(source), "exec"), ns)
    return ns["RunCommand"](config=config)


def _params(pack: Path, action: str, **given) -> dict:
    """What StackStorm passes to run(): every parameter, defaults filled in, unset optional ones None."""
    declared = load(pack / f"actions/{action}.yaml")["parameters"]
    return {name: given.get(name, p.get("default")) for name, p in declared.items()}




def test_the_action_runs_commands_through_msteams_serve(emu, cfg_file, tmp_path, monkeypatch, pack):
    key = make_key(cfg_file, "stackstorm", "*")
    code, out, err = cli(cfg_file, "auth", "login")  # the delegated flow, for posting to a chat
    assert code == 0, err
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        action = _runner(monkeypatch, pack, {"url": svc.url, "api_key": key, "use_system_proxy": False})
        ok, result = action.run(**_params(pack, "channel_list", team="Security Operations"))
        assert ok, result
        names = [c["channelName"] for c in result["context"]["MicrosoftTeams.ChannelList"]]
        assert "Incident Response" in names and result["readable"]
        ok, result = action.run(**_params(pack, "chat_create", member=[CONOR, ZOE], chat_name="IR-42 war room"))
        assert ok, result
        ok, result = action.run(**_params(pack, "message_send_to_chat", chat="IR-42 war room",
                                          content="Containment started"))
        assert ok, result
        assert result["outputs"][0]["deliveryStatus"] == "sent" and result["exit_code"] == 0
        assert chat_messages(emu, "Containment started") == 1
        # a partial fan-out is a failure (exit code 6), unless fail_on=none
        ok, result = action.run(**_params(pack, "message_send_to_chat", chats=["IR-42 war room", "No such chat 9"],
                                          content="Fan-out"))
        assert not ok and result["exit_code"] == 6 and result["failed"] == 1, result
        ok, result = action.run(**_params(pack, "message_send_to_chat", chats=["IR-42 war room", "No such chat 9"],
                                          content="Fan-out 2", fail_on="none"))
        assert ok and result["exit_code"] == 0 and result["failed"] == 1, result
        # an error: our problem+json, a failure
        ok, result = action.run(**_params(pack, "channel_list", team="No Such Team"))
        assert not ok and result["code"] == "not_found" and result["status"] == 404, result
        # a key that is refused
        action.config["api_key"] = "mst_" + "A" * 43
        ok, result = action.run(**_params(pack, "channel_list", team="Security Operations"))
        assert not ok and result["status"] == 401, result


def test_the_tenant_setting_names_the_tenant_profile(tenants3, tmp_path, monkeypatch, pack):
    cfg, key = tenants_config_and_key(tenants3, tmp_path)
    with Service(cfg, tmp_path, "--port", "0") as svc:
        action = _runner(monkeypatch, pack, {"url": svc.url, "api_key": key, "use_system_proxy": False})
        for name in ("fabrikam", "contoso"):  # X-Msteams-Tenant: each tenant's own teams
            action.config["tenant"] = name
            ok, result = action.run(**_params(pack, "team_list"))
            assert ok, result
            assert {t["id"] for t in result["context"]["MicrosoftTeams.Team"]} == team_ids(tenants3, name), name
        # none: no header, refused by a service with several tenants, a failure
        for empty in ("", None):
            action.config["tenant"] = empty
            ok, result = action.run(**_params(pack, "team_list"))
            assert not ok and (result["code"], result["status"]) == ("tenant_required", 400), result
            assert "X-Msteams-Tenant" in result["message"], result
    # the Python API (config_path): the config's tenant profile
    action = _runner(monkeypatch, pack, {"config_path": cfg, "tenant": "fabrikam"})
    ok, result = action.run(**_params(pack, "team_list"))
    assert ok and {t["id"] for t in result["context"]["MicrosoftTeams.Team"]} == team_ids(tenants3, "fabrikam"), result
    # a bad value: refused before any request
    sent = no_requests(monkeypatch)
    for config in ({"url": "http://127.0.0.1:9", "api_key": key}, {"config_path": cfg}):
        action = _runner(monkeypatch, pack, dict(config, tenant="Fabrikam Ltd"))
        ok, result = action.run(**_params(pack, "team_list"))
        assert not ok and result["code"] == "input" and result["exit_code"] == 2, result
        assert "'Fabrikam Ltd' is not a tenant profile name" in result["message"], result
    assert sent == []


def test_the_action_runs_commands_through_the_python_api(emu, cfg_file, monkeypatch, pack):
    action = _runner(monkeypatch, pack, {"config_path": str(cfg_file)})
    ok, result = action.run(**_params(pack, "channel_list", team="Security Operations"))
    assert ok, result
    assert "Incident Response" in [c["channelName"] for c in result["context"]["MicrosoftTeams.ChannelList"]]
    json.dumps(result)  # StackStorm stores the result as JSON
    ok, result = action.run(**_params(pack, "channel_list", team="No Such Team"))
    assert not ok and result["code"] == "not_found" and result["exit_code"] == 5, result
    ok, result = action.run(**_params(pack, "ask_wait", id="q-none", arg_timeout=0.1))
    # arg_timeout reached ask-wait as its timeout (else: unknown argument 'arg_timeout')
    assert not ok and result["code"] == "not_found" and "arg_timeout" not in json.dumps(result), result


# ---- the sensor: our signed webhooks in, StackStorm triggers out ----

class Sensor:
    """Stand-in for st2reactor.sensor.base.Sensor."""

    def __init__(self, sensor_service, config=None):
        self.sensor_service, self.config = sensor_service, config


def test_the_sensor_turns_signed_webhooks_into_triggers(monkeypatch, pack):
    import base64
    import os

    from integration.delivery.webhooks import signature_headers

    base = types.ModuleType("st2reactor.sensor.base")
    base.Sensor = Sensor
    for name in ("st2reactor", "st2reactor.sensor"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "st2reactor.sensor.base", base)
    ns = {"__name__": "st2_sensor"}
    source = pack / "sensors/webhook_sensor.py"
    exec(compile(source.read_text(), str(source), "exec"), ns)

    dispatched = []
    service = types.SimpleNamespace(dispatch=lambda trigger, payload, trace_tag=None: dispatched.append(
        (trigger, payload, trace_tag)))
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    sensor = ns["MsteamsWebhookSensor"](service, {"webhook_secret": secret, "webhook_host": "127.0.0.1",
                                                  "webhook_port": 0})
    sensor.setup()
    thread = threading.Thread(target=sensor.run, daemon=True)
    thread.start()
    url = "http://127.0.0.1:%d/" % sensor._server.server_address[1]
    http = requests.Session()
    http.trust_env = False

    def deliver(event: str, data: dict, msg_id: str, key: str = secret, tamper: bool = False) -> int:
        body = json.dumps({"type": event, "timestamp": "2026-12-07T13:00:00Z", "data": data}).encode()
        headers = signature_headers(key, msg_id, int(time.time()), body)
        return http.post(url, data=body + (b" " if tamper else b""),
                         headers={**headers, "Content-Type": "application/json"}, timeout=10).status_code

    try:
        answer = {"id": "q1", "status": "answered", "question": "Isolate?", "answer": "Isolate",
                  "responder": "Conor O'Brien"}
        assert deliver("question.answered", answer, "msg_" + "1" * 32) == 204
        assert deliver("question.answered", answer, "msg_" + "1" * 32) == 204  # a retry: not dispatched again
        assert deliver("command.received", {"command": "channel-list", "decision": "run", "text": "channel-list",
                                            "sender": {"id": "29:1", "name": "Zoe"}}, "msg_" + "2" * 32) == 204
        assert deliver("mirror.entry", {"incidentId": "42"}, "msg_" + "3" * 32) == 204  # not a trigger of ours
        other = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        assert deliver("question.answered", answer, "msg_" + "4" * 32, key=other) == 401
        assert deliver("question.answered", answer, "msg_" + "5" * 32, tamper=True) == 401
        assert http.post(url, json={"type": "question.answered"}, timeout=10).status_code == 401  # unsigned
    finally:
        sensor.cleanup()
        thread.join(10)
        http.close()
    assert [(t, p.get("type")) for t, p, _ in dispatched] == [(f"{PACK}.question_answered", "question.answered"),
                                                              (f"{PACK}.command_received", "command.received")]
    trigger, payload, tag = dispatched[0]
    assert payload["answer"] == "Isolate" and payload["webhook_id"] == "msg_" + "1" * 32 == tag
    assert dispatched[1][1]["sender"]["name"] == "Zoe"
