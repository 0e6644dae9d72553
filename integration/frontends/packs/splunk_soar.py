"""`msteams pack splunk-soar --out DIR`: the Splunk SOAR (Phantom) app, generated from commands.yml.

``DIR/microsoftteamssoar/`` holds the app JSON (``microsoftteamssoar.json``: a stable appid, the
asset configuration: service URL, API key as a password, verify, tenant profile; a "test connectivity" action for
``GET /v1/ready`` and one action per command, its name read from the command's name ("list
channels" for channel-list), its identifier the command's name with underscores, its type from
what it does (destructive: contain, reads: investigate, the rest: generic), its parameters from
the JSON Schema and its output data paths ``action_result.data.*.<field>`` from the context
outputs, rendered as a table of the command's columns), the connector
(``microsoftteamssoar_connector.py``: a ``BaseConnector`` forwarding each action to ``msteams
serve`` with the asset's API key, its ``tenant``, when set, as ``X-Msteams-Tenant`` (a ``msteams
serve`` with several tenants; a bad one fails ``initialize`` before any request), an
``Idempotency-Key`` for commands that change something, each
context entry added with ``add_data``), the logos and a README. A command added to the registry
appears without an edit here. The connector imports only what Splunk SOAR provides (``phantom``,
``requests``) and the standard library.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from integration import __version__
from .files import PROBLEM_MESSAGE_PY, changes_something, described, pack_command, tenant_headers_py, write_files

APP = "microsoftteamssoar"
NAME = "Microsoft Teams SOAR"
APPID = "bc645856-dadb-46b6-81d7-bd6caa0685f6"  # a UUID4, as Splunk SOAR asks; fixed: an upgrade replaces the installed app
MIN_PHANTOM_VERSION = "6.1.0"
CONNECTIVITY = "test connectivity"

# words of a command's name that are verbs: moved to the front of the action's name
VERBS = ("list", "create", "delete", "get", "update", "add", "remove", "send", "archive", "unarchive", "clone",
         "preload", "reset", "show", "resolve", "close", "flush")


def _registry():
    from integration.engine import registry

    return registry.default_registry()


def _plural(word: str) -> str:
    if word.endswith("s"):
        return word
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def action_name(command: str) -> str:
    """A readable action name from a command's name: channel-list -> "list channels",
    chat-add-user -> "add chat user", send-notification -> "send notification"."""
    words = command.split("-")
    verb = next((i for i, w in enumerate(words) if w in VERBS), None)
    if verb is None or verb == 0:
        return " ".join(words)
    before, after = words[:verb], words[verb + 1:]
    if words[verb] == "list":
        before[-1] = _plural(before[-1])
    return " ".join([words[verb], *before, *after])


def identifier(command: str) -> str:
    return command.replace("-", "_")


def action_type(spec) -> str:
    """destructive: contain; changes nothing: investigate; the rest (sends, creates): generic."""
    if spec.destructive:
        return "contain"
    return "generic" if changes_something(spec) else "investigate"


def _data_type(p: dict) -> str:
    typ = p.get("type", "string")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "string")
    return {"integer": "numeric", "number": "numeric", "boolean": "boolean"}.get(typ, "string")


def _description(text: str | None, fallback: str) -> str:
    text = " ".join((text or "").split()) or fallback
    return text if text.endswith(".") else text + "."


def parameters(spec) -> dict:
    props = spec.arguments.get("properties", {})
    required = set(spec.arguments.get("required", ()))
    out = {}
    for order, (name, p) in enumerate(props.items()):
        typ = p.get("type", "string")
        desc = p.get("description", "")
        if typ == "array":
            desc += " (comma-separated)" if p.get("items", {}).get("type") != "object" else " (JSON)"
        elif typ == "object":
            desc += " (JSON)"
        param = {"description": _description(desc, f"The {name.replace('_', ' ')}."), "data_type": _data_type(p),
                 "required": name in required, "order": order}
        enum = p.get("enum") or p.get("items", {}).get("enum")
        if enum:
            param["value_list"] = [str(v) for v in enum]
        default = p.get("default")
        if default not in (None, "", [], {}) and not isinstance(default, (dict, list)):
            param["default"] = default
        out[name] = param
    return out


def _groups(spec) -> list[dict]:
    out = spec.outputs
    return [out, *(out.get("also") or ())] if out.get("prefix") else []


def data_fields(spec) -> list[str]:
    """The fields of each data row (each context entry): fields and columns of every group; a
    nested list's fields as ``nest.*.field``."""
    fields: list[str] = []
    for group in _groups(spec):
        nest = group.get("nest")
        for key in [*(group.get("fields") or {}), *(group.get("columns") or ())]:
            if key == "*":
                continue
            if nest and key.startswith(nest + "."):
                key = f"{nest}.*.{key[len(nest) + 1:]}"
            if key not in fields:
                fields.append(key)
    return fields


def _field_type(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    return "numeric" if last.lower().endswith("count") else "string"


def _contains(key: str) -> list[str]:
    last = key.rsplit(".", 1)[-1]
    if last in ("email", "mail", "userPrincipalName", "upn"):
        return ["email"]
    if last.endswith("Id") or last == "id":
        return ["msteams " + (last[:-2] or "object") + " id"]
    return []


def outputs(spec) -> list[dict]:
    columns = [c.replace(f"{spec.outputs.get('nest')}.", f"{spec.outputs.get('nest')}.*.", 1)
               if spec.outputs.get("nest") and c.startswith(spec.outputs["nest"] + ".") else c
               for c in spec.outputs.get("columns") or ()]
    rows = [{"data_path": "action_result.status", "data_type": "string", "example_values": ["success", "failed"]}]
    for name, p in parameters(spec).items():
        rows.append({"data_path": f"action_result.parameter.{name}", "data_type": p["data_type"]})
    for key in data_fields(spec):
        row = {"data_path": f"action_result.data.*.{key}", "data_type": _field_type(key)}
        if _contains(key):
            row["contains"] = _contains(key)
        if key in columns:
            row["column_name"] = key.rsplit(".", 1)[-1].replace("_", " ").title() if "." in key else key
            row["column_order"] = columns.index(key)
        rows.append(row)
    rows += [{"data_path": "action_result.summary.total_objects", "data_type": "numeric"},
             {"data_path": "action_result.summary.failed", "data_type": "numeric"},
             {"data_path": "action_result.summary.exit_code", "data_type": "numeric"}]
    if spec.outputs.get("next_link") or "next_link" in spec.argument_names:
        rows.append({"data_path": "action_result.summary.next_link", "data_type": "string"})
    rows += [{"data_path": "action_result.message", "data_type": "string"},
             {"data_path": "summary.total_objects", "data_type": "numeric"},
             {"data_path": "summary.total_objects_successful", "data_type": "numeric"}]
    return rows


def action(spec, names: set) -> dict:
    name = action_name(spec.name)
    if name in names or name == CONNECTIVITY:
        name = spec.name.replace("-", " ")
    names.add(name)
    act = {"action": name, "identifier": identifier(spec.name),
           "description": _description((spec.description or "").split(". ")[0], spec.name),
           "verbose": _description(described(spec), spec.name) + f" Runs msteams-soar's `{spec.name}` command.",
           "type": action_type(spec), "read_only": not changes_something(spec) and not spec.destructive,
           "parameters": parameters(spec), "output": outputs(spec), "versions": "EQ(*)"}
    if any("column_name" in o for o in act["output"]):
        act["render"] = {"type": "table", "width": 12, "height": 5,
                         "title": re.sub(r"\s*\{\w+\}", "", spec.outputs.get("title") or "") or name.title()}
    return act


def app_json(reg) -> dict:
    names: set = set()
    actions = [{"action": CONNECTIVITY, "identifier": "test_connectivity",
                "description": "Validate the asset configuration: the service URL and the API key (GET /v1/ready).",
                "verbose": "Calls msteams serve's readiness check, GET /v1/ready, with the asset's API key.",
                "type": "test", "read_only": True, "parameters": {}, "output": [], "versions": "EQ(*)"}]
    actions += [action(spec, names) for spec in reg]
    return {
        "appid": APPID,
        "name": NAME,
        "description": "Microsoft Teams for security automation through the msteams-soar HTTP API (msteams serve): "
                       "chats, channels, teams, messages, questions and approvals.",
        "type": "information",
        "product_vendor": "Microsoft",
        "product_name": "Teams",
        "product_version_regex": ".*",
        "publisher": "msteams-soar",
        "license": "Copyright (c) msteams-soar contributors",
        "app_version": __version__ if __version__.count(".") == 2 else "1.0.0",
        "utctime_updated": "2026-01-01T00:00:00.000000Z",
        "package_name": f"phantom_{APP}",
        "main_module": f"{APP}_connector.py",
        "min_phantom_version": MIN_PHANTOM_VERSION,
        "python_version": "3",
        "fips_compliant": False,
        "logo": f"logo_{APP}.png",
        "logo_dark": f"logo_{APP}_dark.png",
        "app_wizard_version": "1.0.0",
        "configuration": {
            "service_url": {"description": "The base URL of msteams serve (without /v1)", "data_type": "string",
                            "required": True, "order": 0, "default": "https://msteams-soar.example.com"},
            "api_key": {"description": "A key from `msteams api-key create` whose scopes allow the actions used",
                        "data_type": "password", "required": True, "order": 1},
            "verify_server_cert": {"description": "Verify the server's certificate", "data_type": "boolean",
                                   "required": False, "default": True, "order": 2},
            "tenant": {"description": "Tenant profile (msteams serve with several tenants): the customer's profile, "
                                      "sent as X-Msteams-Tenant; empty for one tenant",
                       "data_type": "string", "required": False, "order": 3},
        },
        "actions": actions,
        "pip_dependencies": {"wheel": []},
    }


def _tables(reg) -> tuple[list, dict]:
    changes = sorted(identifier(s.name) for s in reg if changes_something(s))
    nests = {identifier(s.name): s.outputs.get("prefix") for s in reg if s.outputs.get("prefix")}
    return changes, dict(sorted(nests.items()))


CONNECTOR_PY = '''"""Microsoft Teams SOAR: every action forwarded to the msteams-soar HTTP API (msteams serve).

Generated from commands.yml by `msteams pack splunk-soar` (msteams-soar __VERSION__): do not edit by hand.
POST {service_url}/v1/commands/{name} with the asset's API key; test connectivity calls GET {service_url}/v1/ready.
"""
import hashlib
import json
import re
import sys

import phantom.app as phantom
import requests
from phantom.action_result import ActionResult
from phantom.base_connector import BaseConnector

CHANGES = set(__CHANGES__)  # actions that change something: a retried action must not send twice
PRIMARY = __PRIMARY__  # action -> the context path of its table
TIMEOUT = 120


__PROBLEM_MESSAGE__


__TENANT_HEADERS__


def headline(readable, rows):
    """The action's message: the first line of our readable output (its title), and the rows added."""
    lines = [line.strip().lstrip("#*").strip() for line in (readable or "").splitlines()]
    first = next((line for line in lines if line and not line.startswith("|")), "")[:300]
    if rows:
        first = "{}{}{} row(s)".format(first, ": " if first else "", rows)
    return first or "Done"


class MicrosoftTeamsSoarConnector(BaseConnector):

    def __init__(self):
        super(MicrosoftTeamsSoarConnector, self).__init__()
        self._url = None
        self._session = None

    def initialize(self):
        config = self.get_config()
        try:
            tenant = tenant_headers(config.get("tenant"))
        except ValueError as exc:  # a bad tenant setting: the action fails before any request
            return self.set_status(phantom.APP_ERROR, str(exc))
        self._url = (config.get("service_url") or "").rstrip("/")
        self._session = requests.Session()
        self._session.verify = bool(config.get("verify_server_cert", True))
        self._session.headers.update({"Authorization": "Bearer " + (config.get("api_key") or ""),
                                      "Accept": "application/json",
                                      "User-Agent": "msteams-soar-splunk-soar/__VERSION__"})
        self._session.headers.update(tenant)
        return phantom.APP_SUCCESS

    def finalize(self):
        if self._session is not None:
            self._session.close()
        return phantom.APP_SUCCESS

    def _call(self, method, path, body=None, idempotency_key=None):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._session.request(method, self._url + path, json=body, headers=headers, timeout=TIMEOUT)

    def _idempotency_key(self, action, args):
        """The same asset, container, action and parameters: the same key, so a retry never sends twice."""
        material = json.dumps({"asset": self.get_asset_id(), "container": self.get_container_id(),
                               "action": action, "args": args}, sort_keys=True, default=str)
        return "splunk-soar-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:48]

    def _test_connectivity(self, param):
        action_result = self.add_action_result(ActionResult(dict(param)))
        self.save_progress("Connecting to msteams serve: GET /v1/ready")
        try:
            response = self._call("GET", "/v1/ready")
        except requests.RequestException as exc:
            self.save_progress("Test Connectivity Failed")
            return action_result.set_status(phantom.APP_ERROR, "Cannot reach msteams serve: {}".format(exc))
        if response.status_code != 200:
            self.save_progress("Test Connectivity Failed")
            try:
                report = response.json()
            except ValueError:
                report = {}
            if response.status_code == 503 and isinstance(report, dict) and report.get("readable"):
                return action_result.set_status(phantom.APP_ERROR, "msteams serve is not ready: " + report["readable"])
            return action_result.set_status(phantom.APP_ERROR, problem_message(response))
        self.save_progress("Test Connectivity Passed")
        return action_result.set_status(phantom.APP_SUCCESS, "msteams serve is ready")

    def _run_command(self, action, param):
        action_result = self.add_action_result(ActionResult(dict(param)))
        # SOAR's parameters, without its run context; a numeric parameter comes as a float (2.0)
        args = {k: int(v) if isinstance(v, float) and v.is_integer() else v
                for k, v in param.items() if k != "context" and v not in (None, "")}
        command = action.replace("_", "-")
        key = self._idempotency_key(action, args) if action in CHANGES else None
        try:
            response = self._call("POST", "/v1/commands/" + command, args, key)
        except requests.RequestException as exc:
            return action_result.set_status(phantom.APP_ERROR, "Cannot reach msteams serve: {}".format(exc))
        if response.status_code >= 400:
            return action_result.set_status(phantom.APP_ERROR, problem_message(response))
        body = response.json()
        rows, summary = 0, {}
        primary = PRIMARY.get(action)
        for path, value in sorted((body.get("context") or {}).items(), key=lambda kv: kv[0] != primary):
            for entry in (value if isinstance(value, list) else [value]):
                if isinstance(entry, dict):
                    action_result.add_data(entry)
                    rows += 1
                elif path.endswith("NextLink"):
                    summary["next_link"] = entry
        summary.update({"total_objects": rows, "failed": body.get("failed") or 0, "exit_code": body.get("exit_code")})
        action_result.update_summary(summary)
        message = headline(body.get("readable"), rows)
        if body.get("failed"):
            return action_result.set_status(phantom.APP_ERROR, "{} item(s) failed (exit code {}). {}".format(
                body["failed"], body.get("exit_code"), message))
        return action_result.set_status(phantom.APP_SUCCESS, message)

    def handle_action(self, param):
        action = self.get_action_identifier()
        self.debug_print("action_id", action)
        if action == "test_connectivity":
            return self._test_connectivity(param)
        return self._run_command(action, param)


def main():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("input_test_json", help="Input Test JSON file")
    args = parser.parse_args()
    with open(args.input_test_json) as f:
        in_json = json.load(f)
    connector = MicrosoftTeamsSoarConnector()
    connector.print_progress_message = True
    print(json.dumps(json.loads(connector._handle_action(json.dumps(in_json), None)), indent=4))
    sys.exit(0)


if __name__ == "__main__":
    main()
'''


def connector_py(reg) -> str:
    changes, primary = _tables(reg)
    return (CONNECTOR_PY.replace("__CHANGES__", json.dumps(changes)).replace("__PRIMARY__", json.dumps(primary, indent=4))
            .replace("__PROBLEM_MESSAGE__", PROBLEM_MESSAGE_PY).replace("__TENANT_HEADERS__", tenant_headers_py())
            .replace("__VERSION__", __version__))


def _readme(app: dict) -> str:
    lines = [f"# {NAME}", "", f"Generated from msteams-soar's commands.yml by `msteams pack splunk-soar` (msteams-soar "
             f"{__version__}). Every action is forwarded to the msteams-soar HTTP API (`msteams serve`).", "",
             "## Configure the asset", "", "| Field | Description |", "| --- | --- |"]
    lines += [f"| {k} | {v['description']} |" for k, v in app["configuration"].items()]
    lines += ["", "## Actions", "", "| Action | Identifier | Type | Description |", "| --- | --- | --- | --- |"]
    lines += [f"| {a['action']} | {a['identifier']} | {a['type']} | {a['description'].replace('|', '/')} |"
              for a in app["actions"]]
    return "\n".join(lines) + "\n"


def _logo_pixel(dark: bool):
    def pixel(x: int, y: int) -> tuple:
        band = 20 <= y < 30 and 10 <= x < 110
        if dark:
            return (80, 89, 201, 255) if band else (255, 255, 255, 255)
        return (255, 255, 255, 255) if band else (80, 89, 201, 255)
    return pixel


def app_files(reg=None) -> dict[str, str | bytes]:
    """Every file of the app: path under DIR -> content."""
    from integration.frontends.app_package import png

    reg = reg or _registry()
    app = app_json(reg)
    return {
        f"{APP}/{APP}.json": json.dumps(app, indent=4) + "\n",
        f"{APP}/{APP}_connector.py": connector_py(reg),
        f"{APP}/__init__.py": "",
        f"{APP}/{app['logo']}": png(120, 50, _logo_pixel(False)),
        f"{APP}/{app['logo_dark']}": png(120, 50, _logo_pixel(True)),
        f"{APP}/README.md": _readme(app),
    }


def write(out_dir: str | Path, reg=None) -> list[Path]:
    return write_files(out_dir, app_files(reg))


def main(argv: list[str], out=print) -> int:
    return pack_command(argv, out, platform="splunk-soar", what="the Splunk SOAR app", root=APP, write=write)
