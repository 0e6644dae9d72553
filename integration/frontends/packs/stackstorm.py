"""`msteams pack stackstorm --out DIR`: the StackStorm pack, generated from commands.yml.

``DIR/msteams_soar/`` holds ``pack.yaml``, ``config.schema.yaml`` (a config file for the Python API,
or the URL and API key of ``msteams serve``; the key and the webhook secret are ``secret: true``),
``requirements.txt``, one action per command (``actions/<command, dashes as underscores>.yaml`` on
the ``python-script`` runner, its parameters from the command's JSON Schema plus an immutable
``command`` parameter naming our command) sharing one entry point, ``actions/run_command.py``: an
``Action`` whose ``run(**params)`` calls ``msteams serve`` when the pack's config has a ``url``
(with the config's ``tenant``, when set, as ``X-Msteams-Tenant``: a ``msteams serve`` with several
tenants), else the Python API (for that tenant profile), and returns StackStorm's
``(ok, result)`` (a partial fan-out, exit code 6, is a failure unless the action is given
``fail_on=none``).

Events come in through a sensor (``sensors/webhook_sensor.py``): it listens for our webhooks,
verifies their Standard Webhooks signature with the endpoint's ``whsec_`` secret (the
``standardwebhooks`` library), drops a ``webhook-id`` it has already seen, and dispatches
``question.answered`` and ``command.received`` as the triggers ``msteams_soar.question_answered``
and ``msteams_soar.command_received`` (payload: the event's ``data`` plus ``webhook_id``,
``type`` and ``timestamp``). A sensor rather than a rule on ``core.st2.webhook``: st2's own webhook
endpoint authenticates with an st2 API key and cannot check our signature. ``rules/`` holds one
example rule per trigger, disabled.

A command added to the registry appears in the pack without an edit here.
"""
from __future__ import annotations

import json
from pathlib import Path

from integration import __version__
from .files import described, pack_command, tenant_headers_py, write_files

PACK = "msteams_soar"
ENTRY_POINT = "run_command.py"
# the python-script runner's own parameters: an argument of ours by one of these names is the
# action's parameter `arg_<name>` (run_command.py maps it back)
RUNNER_PARAMETERS = ("env", "timeout", "log_level", "debug", "content_version")
TYPES = ("string", "integer", "number", "boolean", "array", "object")
TRIGGERS = {
    "question.answered": ("question_answered", "A question (ask) was answered, or expired with its default answer."),
    "command.received": ("command_received", "A command from Teams was decided: run, refused or failed."),
}


def _registry():
    from integration.engine import registry

    return registry.default_registry()


def _plain(value):
    """The registry's read-only mappings and tuples as YAML-ready dicts and lists."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def action_name(command: str) -> str:
    return command.replace("-", "_")


def parameter_name(argument: str) -> str:
    return f"arg_{argument}" if argument in RUNNER_PARAMETERS else argument


def _description(text: str | None, fallback: str) -> str:
    return " ".join((text or "").split()) or fallback


def _type(prop: dict) -> str:
    typ = prop.get("type", "string")
    if isinstance(typ, (list, tuple)):
        typ = next((t for t in typ if t != "null"), "string")
    return typ if typ in TYPES else "string"


def parameter(name: str, prop: dict, required: bool) -> dict:
    """One StackStorm action parameter from the argument's JSON Schema."""
    prop = _plain(prop)
    out = {"type": _type(prop), "description": _description(prop.get("description"), name.replace("_", " "))}
    if required:
        out["required"] = True
    if prop.get("enum"):
        out["enum"] = list(prop["enum"])
    if "default" in prop and prop["default"] is not None:
        out["default"] = prop["default"]
    if out["type"] == "array":
        items = prop.get("items") or {}
        out["items"] = {"type": _type(items)} if isinstance(items, dict) else {"type": "string"}
        if isinstance(items, dict) and items.get("enum"):
            out["items"]["enum"] = list(items["enum"])
    for key in ("minimum", "maximum", "minLength", "maxLength"):
        if key in prop and out["type"] in (("integer", "number") if key in ("minimum", "maximum") else ("string",)):
            out[key] = prop[key]
    return out


def action(spec) -> dict:
    props = spec.arguments.get("properties", {})
    required = set(spec.arguments.get("required", ()))
    params = {"command": {"type": "string", "default": spec.name, "immutable": True,
                          "description": "The msteams-soar command this action runs (fixed)."}}
    for name, prop in props.items():
        params[parameter_name(name)] = parameter(name, prop, name in required)
    desc = _description(described(spec), spec.name)
    if spec.destructive:
        desc = "DESTRUCTIVE: " + desc
    return {"name": action_name(spec.name), "pack": PACK, "description": desc, "runner_type": "python-script",
            "entry_point": ENTRY_POINT, "enabled": True, "parameters": params}


def pack_yaml() -> dict:
    return {
        "ref": PACK,
        "name": PACK,
        "description": "Microsoft Teams for security automation (msteams-soar): chats, channels, teams, messages, "
                       "questions and approvals, through its Python API or its HTTP service (msteams serve).",
        "keywords": ["microsoft teams", "teams", "chatops", "soar", "msteams-soar"],
        "version": _semver(__version__),
        "author": "msteams-soar",
        "email": "msteams-soar@example.com",
        "python_versions": ["3"],
    }


def _semver(version: str) -> str:
    import re

    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    return ".".join(g or "0" for g in m.groups()) if m else "1.0.0"


def config_schema() -> dict:
    return {
        "config_path": {"type": "string", "required": False,
                        "description": "The msteams-soar config file for the Python API (when url is empty); empty: "
                                       "$MSTEAMS_CONFIG and the MSTEAMS_* variables."},
        "url": {"type": "string", "required": False,
                "description": "The base URL of msteams serve (without /v1); given, every action calls it."},
        "api_key": {"type": "string", "required": False, "secret": True,
                    "description": "A key from `msteams api-key create` whose scopes allow the actions used "
                                   "(with url)."},
        "tenant": {"type": "string", "required": False,
                   "description": "Tenant profile (msteams serve with several tenants): the customer's profile, "
                                  "sent as X-Msteams-Tenant (with config_path: the config's profile). Empty: one "
                                  "tenant."},
        "verify_tls": {"type": "boolean", "required": False, "default": True,
                       "description": "Check msteams serve's TLS certificate."},
        "use_system_proxy": {"type": "boolean", "required": False, "default": True,
                             "description": "Reach msteams serve through the proxy of the environment (HTTPS_PROXY)."},
        "request_timeout": {"type": "integer", "required": False, "default": 120,
                            "description": "Seconds to wait for msteams serve."},
        "webhook_host": {"type": "string", "required": False, "default": "0.0.0.0",
                         "description": "The address the webhook sensor listens on."},
        "webhook_port": {"type": "integer", "required": False, "default": 9876,
                         "description": "The port the webhook sensor listens on (`msteams webhook add "
                                        "https://st2.example.com:PORT/ ...`)."},
        "webhook_secret": {"type": "string", "required": False, "secret": True,
                           "description": "The whsec_ secret `msteams webhook add` printed: the sensor refuses "
                                          "deliveries not signed with it."},
    }


def sensor_yaml() -> dict:
    return {
        "class_name": "MsteamsWebhookSensor",
        "entry_point": "webhook_sensor.py",
        "description": "Receives msteams-soar's signed webhooks (Standard Webhooks) and dispatches question.answered "
                       "and command.received as triggers.",
        "enabled": True,
        "trigger_types": [
            {"name": name, "description": desc,
             "payload_schema": {"type": "object", "properties": {
                 "type": {"type": "string"}, "timestamp": {"type": "string"}, "webhook_id": {"type": "string"},
                 **({"id": {"type": "string"}, "status": {"type": "string"}, "question": {"type": "string"},
                     "answer": {"type": ["string", "null"]}, "responder": {"type": ["string", "null"]}}
                    if event == "question.answered" else
                    {"command": {"type": "string"}, "text": {"type": "string"}, "decision": {"type": "string"},
                     "outcome": {"type": ["string", "null"]}, "sender": {"type": "object"}})}}}
            for event, (name, desc) in TRIGGERS.items()],
    }


def rules() -> dict[str, dict]:
    return {
        "on_question_answered": {
            "name": "on_question_answered", "pack": PACK, "enabled": False,
            "description": "Example: post the answer of an answered question to a chat (enable and edit it).",
            "trigger": {"type": f"{PACK}.question_answered"},
            "criteria": {"trigger.status": {"type": "equals", "pattern": "answered"}},
            "action": {"ref": f"{PACK}.message_send_to_chat",
                       "parameters": {"chat": "IR-42 war room",
                                      "content": "{{ trigger.responder }} answered {{ trigger.answer }}"}},
        },
        "on_command_received": {
            "name": "on_command_received", "pack": PACK, "enabled": False,
            "description": "Example: log every command run from Teams (enable and edit it).",
            "trigger": {"type": f"{PACK}.command_received"},
            "criteria": {"trigger.decision": {"type": "equals", "pattern": "run"}},
            "action": {"ref": "core.echo",
                       "parameters": {"message": "{{ trigger.sender.name }} ran {{ trigger.command }}"}},
        },
    }


RUN_COMMAND_PY = '''"""Runs one msteams-soar command: the entry point of every action of this pack.

Generated from commands.yml by `msteams pack stackstorm` (msteams-soar __VERSION__): do not edit by hand.
With `url` in the pack's config: POST {url}/v1/commands/{command} with the API key (msteams serve);
otherwise the Python API (`from integration import api`) with `config_path`. The config's `tenant`,
when set, names the tenant profile: the X-Msteams-Tenant header (or the Python API's tenant).
Returns (ok, result): ok is False for an error and for a partial fan-out (exit code 6) unless
fail_on=none was given.
"""
import json
import re

from st2common.runners.base_action import Action

RENAMED = __RENAMED__  # action parameter -> our argument (the runner's own parameter names)

__TENANT_HEADERS__


class RunCommand(Action):
    def run(self, command, **params):
        args = {RENAMED.get(k, k): v for k, v in params.items() if v is not None}
        config = self.config or {}
        try:
            tenant = tenant_headers(config.get("tenant"))  # a bad tenant setting: refused before any request
        except ValueError as exc:
            return False, {"code": "input", "message": str(exc), "exit_code": 2}
        if config.get("url"):
            return self._http(config, command, args, tenant)
        return self._api(config, command, args, tenant.get(TENANT_HEADER))

    @staticmethod
    def _outcome(body):
        return not body.get("exit_code"), body  # 6: a partial fan-out (0 with fail_on=none)

    def _http(self, config, command, args, tenant):
        import requests

        url = config["url"].rstrip("/") + "/v1/commands/" + command
        headers = {"Authorization": "Bearer " + (config.get("api_key") or ""), "Accept": "application/json",
                   "User-Agent": "msteams-soar-stackstorm/__VERSION__"}
        headers.update(tenant)
        session = requests.Session()
        session.trust_env = bool(config.get("use_system_proxy", True))
        try:
            response = session.post(url, json=args, headers=headers, verify=config.get("verify_tls", True),
                                    timeout=config.get("request_timeout") or 120)
        except requests.RequestException as exc:
            return False, {"code": "unreachable", "message": "msteams serve did not answer: {}".format(exc),
                           "exit_code": 1}
        finally:
            session.close()
        try:
            body = response.json()
        except ValueError:
            body = {"code": "error", "message": (response.text or "")[:500]}
        if response.status_code >= 400:
            if not isinstance(body, dict):
                body = {"body": body}
            body.setdefault("status", response.status_code)
            body.setdefault("message", body.get("detail") or body.get("title") or "HTTP {}".format(response.status_code))
            return False, body
        return self._outcome(body)

    def _api(self, config, command, args, tenant):
        from integration import api

        try:
            with api.Client(config.get("config_path") or None, tenant=tenant) as teams:
                result = teams.execute(command, args)
        except api.IntegrationError as exc:
            return False, exc.to_dict()
        body = result.to_dict()
        body["outputs"] = result.outputs
        body["next_link"] = result.next_link
        body["failed"] = getattr(result, "failed", 0) or 0
        return self._outcome(json.loads(json.dumps(body, default=str)))
'''

WEBHOOK_SENSOR_PY = '''"""Receives msteams-soar's webhooks and dispatches question.answered and command.received as triggers.

Generated by `msteams pack stackstorm` (msteams-soar __VERSION__): do not edit by hand.
Each delivery is verified on the Standard Webhooks spec (webhook-id, webhook-timestamp,
webhook-signature: HMAC-SHA256 under the whsec_ secret of `msteams webhook add`, a timestamp
within 5 minutes) with the standardwebhooks library; a bad or missing signature answers 401 and
dispatches nothing. A webhook-id already seen answers 204 again without dispatching (retries).
Other events answer 204 and are ignored.
"""
import collections
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from st2reactor.sensor.base import Sensor

PACK = "__PACK__"
TRIGGERS = __TRIGGERS__  # event type -> trigger name
MAX_BODY = 1024 * 1024


class MsteamsWebhookSensor(Sensor):
    def __init__(self, sensor_service, config=None):
        super(MsteamsWebhookSensor, self).__init__(sensor_service=sensor_service, config=config)
        self._server = None
        self._seen = collections.OrderedDict()
        self._lock = threading.Lock()

    def setup(self):
        from standardwebhooks.webhooks import Webhook

        config = self.config or {}
        secret = config.get("webhook_secret")
        if not secret:
            raise ValueError("webhook_secret is not set in the msteams_soar pack config")
        self._webhook = Webhook(secret)
        sensor = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    return self._answer(413)
                body = self.rfile.read(length)
                self._answer(sensor.receive(body, {k.lower(): v for k, v in self.headers.items()}))

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer((config.get("webhook_host") or "0.0.0.0",
                                            int(config.get("webhook_port") or 9876)), Handler)

    def receive(self, body, headers):
        """One delivery: the HTTP status to answer."""
        try:
            event = self._webhook.verify(body, headers)
        except Exception:  # noqa: BLE001 - a missing header, a bad signature or timestamp
            return 401
        if isinstance(event, (bytes, str)):
            event = json.loads(event)
        trigger = TRIGGERS.get((event or {}).get("type"))
        webhook_id = headers.get("webhook-id")
        with self._lock:
            if webhook_id in self._seen:
                return 204
            self._seen[webhook_id] = True
            while len(self._seen) > 10000:
                self._seen.popitem(last=False)
        if trigger:
            payload = dict(event.get("data") or {})
            payload.update({"type": event["type"], "timestamp": event.get("timestamp"), "webhook_id": webhook_id})
            self.sensor_service.dispatch(trigger=PACK + "." + trigger, payload=payload, trace_tag=webhook_id)
        return 204

    def run(self):
        self._server.serve_forever()

    def cleanup(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_trigger(self, trigger):
        pass

    def update_trigger(self, trigger):
        pass

    def remove_trigger(self, trigger):
        pass
'''


def run_command_py(reg) -> str:
    renamed = {parameter_name(n): n for spec in reg for n in spec.arguments.get("properties", {})
               if parameter_name(n) != n}
    return (RUN_COMMAND_PY.replace("__RENAMED__", json.dumps(dict(sorted(renamed.items()))))
            .replace("__TENANT_HEADERS__", tenant_headers_py()).replace("__VERSION__", __version__))


def webhook_sensor_py() -> str:
    triggers = {event: name for event, (name, _) in TRIGGERS.items()}
    return (WEBHOOK_SENSOR_PY.replace("__TRIGGERS__", json.dumps(triggers)).replace("__PACK__", PACK)
            .replace("__VERSION__", __version__))


README = """# msteams_soar: Microsoft Teams for StackStorm

Generated from msteams-soar's commands.yml by `msteams pack stackstorm` (msteams-soar __VERSION__).
One action per command (`__COUNT__` actions), run by `actions/run_command.py` through `msteams serve`
(config `url` + `api_key`, and `tenant` for a `msteams serve` with several tenants) or the Python
API (config `config_path`, msteams-soar installed in the pack's virtualenv). The sensor turns msteams-soar's signed webhooks into the triggers
`msteams_soar.question_answered` and `msteams_soar.command_received`.

    st2 pack install file://$PWD/msteams_soar
    st2 pack config msteams_soar
    st2 run msteams_soar.channel_list team="Security Operations"

See docs/stackstorm-pack.md in msteams-soar.
"""


def pack_files(reg=None) -> dict[str, str]:
    """Every file of the pack: path under DIR -> content."""
    import yaml

    reg = reg or _registry()

    def dump(data) -> str:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)

    files = {
        f"{PACK}/pack.yaml": dump(pack_yaml()),
        f"{PACK}/config.schema.yaml": dump(config_schema()),
        f"{PACK}/requirements.txt": "requests>=2.25\nstandardwebhooks>=1.0\n"
                                    "# with config_path (the Python API): msteams-soar itself, e.g.\n"
                                    "# msteams-soar @ file:///opt/msteams-soar\n",
        f"{PACK}/README.md": README.replace("__VERSION__", __version__).replace("__COUNT__", str(len(list(reg)))),
        f"{PACK}/actions/{ENTRY_POINT}": run_command_py(reg),
        f"{PACK}/sensors/webhook_sensor.yaml": dump(sensor_yaml()),
        f"{PACK}/sensors/webhook_sensor.py": webhook_sensor_py(),
    }
    for spec in reg:
        files[f"{PACK}/actions/{action_name(spec.name)}.yaml"] = dump(action(spec))
    for name, rule in rules().items():
        files[f"{PACK}/rules/{name}.yaml"] = dump(rule)
    return files


def write(out_dir: str | Path, reg=None) -> list[Path]:
    return write_files(out_dir, pack_files(reg))


def main(argv: list[str], out=print) -> int:
    return pack_command(argv, out, platform="stackstorm", what="the StackStorm pack", root=PACK, write=write)
