"""`msteams pack xsoar --out DIR`: the Cortex XSOAR content pack, generated from commands.yml.

``DIR/Packs/MicrosoftTeamsSOAR/`` holds the pack metadata, README, ``.pack-ignore`` and
``.secrets-ignore``; ``Integrations/MicrosoftTeamsSOAR/`` an integration whose YAML declares every
command of the registry under the name XSOAR knows it by (our alias from XSOAR's own Teams
integrations, else ours), with XSOAR's argument names (the aliases the registry gives them),
required arguments, defaults and predefined values from the JSON Schema, and the context outputs;
its Python forwards each command to a ``msteams serve`` URL (``POST /v1/commands/{name}`` with the
API key of the instance's credentials as ``Authorization: Bearer``, the instance's ``tenant``
parameter, when set, as ``X-Msteams-Tenant`` (a ``msteams serve`` with several tenants), an
``Idempotency-Key`` derived from the incident, the task and the arguments for commands that change
something), and ``test-module`` calls ``GET /v1/ready``. ``Scripts/MicrosoftTeamsAsk/`` is XSOAR's
approval script with XSOAR's arguments, calling the integration's ``ask`` with the task's
entitlement: our ``ask`` records it, the ``question.answered`` webhook carries it back, and the
integration completes the task (``demisto.handleEntitlementForUser``) when ``ask-status`` or ``ask-wait`` sees the answer.

The pack is named ``MicrosoftTeamsSOAR`` (integration "Microsoft Teams SOAR") so that it installs
beside XSOAR's own ``MicrosoftTeams`` pack. The generated Python imports only what XSOAR provides
(``demistomock``, ``CommonServerPython``, ``requests``) and the standard library.
"""
from __future__ import annotations

import json
from pathlib import Path

from integration import __version__
from .files import PROBLEM_MESSAGE_PY, changes_something, described, pack_command, tenant_headers_py, write_files

PACK = "MicrosoftTeamsSOAR"
INTEGRATION = "MicrosoftTeamsSOAR"
BRAND = "Microsoft Teams SOAR"  # the integration's id and name: `using-brand` in scripts
SCRIPT = "MicrosoftTeamsAsk"
DOCKER_IMAGE = "demisto/python3:3.11.10.115186"
FROM_VERSION = "6.10.0"
ASK_COMMAND = "ask"

# XSOAR's MicrosoftTeamsAsk arguments (demisto/content Packs/MicrosoftTeams/Scripts/MicrosoftTeamsAsk),
# each passed to our ask under the same name (commands.yml gives ask these names or aliases).
ASK_ARGS = [
    {"name": "message", "description": "Question (message) to send to the team member or channel.", "required": True},
    {"name": "team_member", "default": True, "description": "The question recipient: the team member's email "
                                                          "address, UPN or display name."},
    {"name": "user_id", "description": "The question recipient: the user's email address or object id."},
    {"name": "channel", "description": "The channel to send the question to (with team when given by name)."},
    {"name": "team", "description": "The team of the channel given by name."},
    {"name": "option1", "defaultValue": "yes", "description": "First reply option (form_type predefined-options)."},
    {"name": "option2", "defaultValue": "no", "description": "Second reply option (form_type predefined-options)."},
    {"name": "additional_options", "isArray": True,
     "description": "A CSV list of more reply options (form_type predefined-options)."},
    {"name": "form_type", "auto": "PREDEFINED", "predefined": ["predefined-options", "open-answer"],
     "defaultValue": "predefined-options",
     "description": "predefined-options: one button per option; open-answer: a text box and a Submit button."},
    {"name": "persistent", "auto": "PREDEFINED", "predefined": ["true", "false"], "defaultValue": "false",
     "description": "Whether to use a persistent entitlement (else one-time)."},
    {"name": "task_id", "description": "The playbook task to close with the reply (none: no task is closed)."},
    {"name": "adaptive_card", "description": "An Adaptive Card (JSON) whose Action.Submit titles are the reply "
                                             "options."},
]


def _registry():
    from integration.engine import registry

    return registry.default_registry()


def _xsoar_names() -> dict[str, list[str]]:
    """XSOAR's command names -> their argument names, from both of XSOAR's Teams integrations."""
    return {name: list(c["arguments"]) for name, c in _xsoar_defs().items()}


def _xsoar_defs() -> dict[str, dict]:
    """XSOAR's command names -> their definitions (arguments, required, documented outputs)."""
    from integration.frontends.docs import xsoar_commands

    return {c["name"]: c for cmds in xsoar_commands()["integrations"].values() for c in cmds}


def command_names(spec, known: dict) -> list[str]:
    """Every name XSOAR knows the command by (ours or our aliases that are XSOAR commands: one
    command of ours can be a command of both of XSOAR's Teams integrations), else ours."""
    return [n for n in (spec.name, *spec.aliases) if n in known] or [spec.name]


def command_name(spec, known: dict) -> str:
    """The name XSOAR knows the command by: ours or our alias that is an XSOAR command, else ours."""
    if spec.name in known:
        return spec.name
    return next((a for a in spec.aliases if a in known), spec.name)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, (dict,)):
        return json.dumps(value)
    return str(value)


def _description(text: str | None, fallback: str) -> str:
    text = " ".join((text or "").split()) or fallback
    return text if text.endswith(".") else text + "."


def arguments(spec, xsoar_args: list[str] | None) -> list[dict]:
    """XSOAR's argument definitions for a command, from its JSON Schema."""
    props = spec.arguments.get("properties", {})
    required = set(spec.arguments.get("required", ()))
    out = []
    for name, p in props.items():
        # XSOAR's names for it (each its own argument: XSOAR's send-notification takes `to` and
        # `team_member` for our `user`), else ours
        shown = [n for n in (name, *p.get("aliases", ())) if xsoar_args is not None and n in xsoar_args] or [name]
        desc = p.get("description", "")
        typ = p.get("type", "string")
        if typ == "object" or (typ == "array" and p.get("items", {}).get("type") == "object"):
            desc += " (JSON)"
        for i, shown_name in enumerate(shown):
            arg = {"name": shown_name, "description": _description(desc, f"The {name.replace('_', ' ')}."),
                   "required": name in required and i == 0, "isArray": typ == "array"}
            enum = p.get("enum") or p.get("items", {}).get("enum")
            if enum:
                arg["auto"], arg["predefined"] = "PREDEFINED", [_text(v) for v in enum]
            elif typ == "boolean":
                arg["auto"], arg["predefined"] = "PREDEFINED", ["true", "false"]
            if "default" in p and p["default"] not in (None, "", [], {}) and i == 0:
                arg["defaultValue"] = _text(p["default"])
            out.append(arg)
    return out


_TYPES = {"Id": "String", "id": "String", "DateTime": "Date", "Count": "Number", "count": "Number"}


def _type(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    for suffix, typ in _TYPES.items():
        if last.endswith(suffix):
            return typ
    return "String" if last in ("displayName", "topic", "name", "mail", "webUrl", "status", "content") else "Unknown"


def outputs(spec, documented: list[str] | None = None) -> list[dict]:
    """XSOAR's context outputs of a command, from the registry's outputs (fields, and columns
    inside a whole Graph object), and the paths XSOAR documents for its command of that name
    (``documented``, from xsoar_commands.json: tests/frontends/test_xsoar_migration.py checks
    that we write each of them)."""
    from integration.frontends.docs import field_source

    out = spec.outputs
    rows: list[dict] = []
    groups = [out] + list(out.get("also") or ()) if out.get("prefix") else []
    for group in groups:
        prefix = group["prefix"]
        fields = group.get("fields") or {c: c for c in group.get("columns") or ()}
        for key, source in fields.items():
            if key == "*":
                continue
            rows.append({"contextPath": f"{prefix}.{key}",
                         "description": _description(f"From {field_source(source)}".replace("`", "'"),
                                                     key),
                         "type": _type(key)})
        for column in group.get("columns") or ():
            if column not in fields and "." in column:
                rows.append({"contextPath": f"{prefix}.{column}", "description": _description(
                    f"The {column.rsplit('.', 1)[-1]} of each of {column.split('.', 1)[0]}", column), "type": _type(column)})
    for path in documented or ():
        rows.append({"contextPath": path, "description": _description(
            f"{path.rsplit('.', 1)[-1]}, as XSOAR's Microsoft Teams integration documents it", path), "type": _type(path)})
    if out.get("prefix") and (out.get("next_link") or "next_link" in spec.argument_names):
        rows.append({"contextPath": out.get("next_link") or out["prefix"] + "NextLink",
                     "description": "The link to the next page (give it as next_link).", "type": "String"})
    seen, unique = set(), []
    for r in rows:
        if r["contextPath"] not in seen:
            seen.add(r["contextPath"])
            unique.append(r)
    return unique


def integration_yml(reg) -> dict:
    known = _xsoar_names()
    commands, seen = [], set()
    for spec in reg:
        for name in command_names(spec, known):
            if name in seen:  # two of ours under one XSOAR name: the first keeps it
                continue
            seen.add(name)
            cmd = {"name": name, "description": _description(described(spec), spec.name),
                   "arguments": arguments(spec, known.get(name)),
                   "outputs": outputs(spec, _xsoar_defs().get(name, {}).get("outputs"))}
            if spec.destructive:
                cmd["execution"] = True
            if not cmd["arguments"]:
                del cmd["arguments"]
            if not cmd["outputs"]:
                del cmd["outputs"]
            commands.append(cmd)
    return {
        "commonfields": {"id": BRAND, "version": -1},
        "name": BRAND, "display": BRAND, "category": "Messaging",
        "description": "Microsoft Teams for security automation through the msteams-soar HTTP API (msteams serve): "
                       "chats, channels, teams, messages, questions and approvals, under the command and argument "
                       "names of XSOAR's Microsoft Teams integrations.",
        "sectionOrder": ["Connect", "Collect"],
        "configuration": [
            {"display": "Service URL", "name": "url", "type": 0, "required": True, "section": "Connect",
             "defaultvalue": "https://msteams-soar.example.com",
             "additionalinfo": "The base URL of msteams serve (without /v1)."},
            {"display": "API key", "displaypassword": "API key", "name": "credentials", "type": 9, "required": True,
             "hiddenusername": True, "section": "Connect",
             "additionalinfo": "A key from `msteams api-key create` whose scopes allow the commands used."},
            {"display": "Tenant profile (msteams serve with several tenants)", "name": "tenant", "type": 0,
             "required": False, "section": "Connect",
             "additionalinfo": "The customer's tenant profile in msteams serve's config (sent as X-Msteams-Tenant). "
                               "Empty for a msteams serve with one tenant."},
            {"display": "Trust any certificate (not secure)", "name": "insecure", "type": 8, "required": False,
             "section": "Connect", "advanced": True},
            {"display": "Use system proxy settings", "name": "proxy", "type": 8, "required": False,
             "section": "Connect", "advanced": True},
        ],
        "script": {"script": "-", "type": "python", "subtype": "python3", "dockerimage": DOCKER_IMAGE,
                   "commands": commands},
        "fromversion": FROM_VERSION,
        "tests": ["No tests (auto formatted)"],
    }


def _command_tables(reg) -> tuple[dict, list, dict]:
    known = _xsoar_names()
    names, changes, keys = {}, [], {}
    for spec in reg:
        for name in command_names(spec, known):
            names.setdefault(name, spec.name)
        names.setdefault(spec.name, spec.name)
        if changes_something(spec):
            changes.append(spec.name)
        out = spec.outputs
        for group in [out] + list(out.get("also") or ()) if out.get("prefix") else []:
            if group.get("key"):
                keys[group["prefix"]] = group["key"]
    return dict(sorted(names.items())), sorted(changes), dict(sorted(keys.items()))


INTEGRATION_PY = '''"""Microsoft Teams SOAR: every command forwarded to the msteams-soar HTTP API (msteams serve).

Generated from commands.yml by `msteams pack xsoar` (msteams-soar __VERSION__): do not edit by hand.
POST {url}/v1/commands/{name} with the instance's API key; test-module calls GET {url}/v1/ready.
"""
import demistomock as demisto  # noqa: F401
from CommonServerPython import *  # noqa: F401

import hashlib
import json
import re

import requests

COMMANDS = __COMMANDS__  # XSOAR's name (or ours) -> our command
CHANGES = set(__CHANGES__)  # commands that change something: a retried task must not send twice
CONTEXT_KEYS = __KEYS__  # context path -> the key XSOAR merges entries by
TIMEOUT = 120


__TENANT_HEADERS__


class Client:
    def __init__(self, url, key, verify=True, proxy=False, tenant=None):
        tenant_header = tenant_headers(tenant)  # a bad tenant parameter: refused before any request
        self.url = (url or "").rstrip("/")
        self.session = requests.Session()
        self.session.verify = verify
        self.session.trust_env = bool(proxy)
        self.session.headers.update({"Authorization": "Bearer " + (key or ""), "Accept": "application/json",
                                     "User-Agent": "msteams-soar-xsoar/__VERSION__"})
        self.session.headers.update(tenant_header)

    def call(self, method, path, body=None, idempotency_key=None):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.session.request(method, self.url + path, json=body, headers=headers, timeout=TIMEOUT)


__PROBLEM_MESSAGE__


def idempotency_key(command, args):
    """The same incident, task, command and arguments: the same key, so a retried task never sends twice."""
    incident = demisto.incident() or {}
    investigation = demisto.investigation() or {}
    calling = getattr(demisto, "callingContext", None) or {}
    task = (calling.get("context") or {}).get("TaskID") if isinstance(calling, dict) else None
    material = json.dumps({"incident": incident.get("id"), "investigation": investigation.get("id"), "task": task,
                           "command": command, "args": args}, sort_keys=True, default=str)
    return "xsoar-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:48]


def context_of(context):
    """Our context under XSOAR's paths, each merged by its key (val.id == obj.id)."""
    out = {}
    for path, value in (context or {}).items():
        key = CONTEXT_KEYS.get(path)
        out["{0}(val.{1} && val.{1} == obj.{1})".format(path, key) if key else path] = value
    return out


def complete_tasks(outputs):
    """A question asked by MicrosoftTeamsAsk and now answered completes its playbook task."""
    rows = outputs if isinstance(outputs, list) else [outputs] if isinstance(outputs, dict) else []
    for row in rows:
        task = row.get("xsoarTask") if isinstance(row, dict) else None
        if not task or row.get("status") not in ("answered", "expired") or not task.get("entitlement"):
            continue
        if hasattr(demisto, "handleEntitlementForUser"):
            demisto.handleEntitlementForUser(task.get("investigationId"), task["entitlement"],
                                             row.get("responder") or "", row.get("answer") or "", task.get("taskId"))


def run_command(client, command, args):
    name = COMMANDS.get(command, command)
    key = idempotency_key(command, args) if name in CHANGES else None
    response = client.call("POST", "/v1/commands/" + name, args, key)
    if response.status_code >= 400:
        raise DemistoException(problem_message(response))
    body = response.json()
    complete_tasks(body.get("outputs"))
    readable = body.get("readable") or ""
    if body.get("failed"):
        readable += "\\n\\n**{} item(s) failed** (exit code {}).".format(body["failed"], body.get("exit_code"))
    return CommandResults(outputs=context_of(body.get("context")) or None, readable_output=readable,
                          raw_response=body.get("raw"))


def test_module(client):
    response = client.call("GET", "/v1/ready")
    if response.status_code == 200:
        return "ok"
    try:
        report = response.json()
    except ValueError:
        report = {}
    if response.status_code == 503 and isinstance(report, dict) and report.get("readable"):
        return "msteams serve is not ready: " + report["readable"]
    return problem_message(response)


def main():
    params = demisto.params()
    command = demisto.command()
    try:
        client = Client(params.get("url"), (params.get("credentials") or {}).get("password"),
                        verify=not params.get("insecure", False), proxy=params.get("proxy", False),
                        tenant=params.get("tenant"))
        if command == "test-module":
            return_results(test_module(client))
        elif command in COMMANDS:
            return_results(run_command(client, command, demisto.args()))
        else:
            raise NotImplementedError("Command {} is not implemented".format(command))
    except Exception as exc:  # noqa: BLE001 - XSOAR shows the error in the war room
        return_error("Failed to execute {}: {}".format(command, exc))


if __name__ in ("__main__", "__builtin__", "builtins"):
    main()
'''

SCRIPT_PY = '''"""MicrosoftTeamsAsk: ask a team member or a channel a question with reply options on Microsoft Teams;
the reply completes the playbook task (task_id) through the entitlement it carries.

Generated by `msteams pack xsoar` (msteams-soar __VERSION__): calls the __BRAND__ integration's
__ASK__ command, which asks through msteams serve and records the entitlement with the question.
"""
import demistomock as demisto  # noqa: F401
from CommonServerPython import *  # noqa: F401

BRAND = "__BRAND__"
ASK = "__ASK__"
PASSED = __PASSED__  # the script's arguments our ask takes under the same names


def main():
    args = demisto.args()
    if not (args.get("team_member") or args.get("user_id") or args.get("channel")):
        return_error("Either team_member, user_id or channel must be provided.")
        return
    persistent = str(args.get("persistent") or "false").lower() == "true"
    response = demisto.executeCommand("addEntitlement", {"persistent": persistent})
    if isError(response[0]):
        return_results(response)
        return
    command_args = {k: v for k, v in args.items() if k in PASSED and v not in (None, "")}
    command_args["entitlement"] = response[0]["Contents"]
    command_args["investigation_id"] = (demisto.investigation() or {}).get("id")
    command_args["using-brand"] = BRAND
    return_results(demisto.executeCommand(ASK, command_args))


if __name__ in ("__main__", "__builtin__", "builtins"):
    main()
'''


def integration_py(reg) -> str:
    names, changes, keys = _command_tables(reg)
    return (INTEGRATION_PY.replace("__COMMANDS__", json.dumps(names, indent=4))
            .replace("__CHANGES__", json.dumps(changes)).replace("__KEYS__", json.dumps(keys))
            .replace("__PROBLEM_MESSAGE__", PROBLEM_MESSAGE_PY).replace("__TENANT_HEADERS__", tenant_headers_py())
            .replace("__VERSION__", __version__))


def _ask_name(reg) -> str:
    spec = reg.get(ASK_COMMAND)
    return command_name(spec, _xsoar_names()) if spec else ASK_COMMAND


def script_yml(reg) -> dict:
    args = []
    for a in ASK_ARGS:
        arg = {"name": a["name"], "description": a["description"]}
        for k in ("required", "default", "isArray", "auto", "predefined", "defaultValue"):
            if k in a:
                arg[k] = a[k]
        args.append(arg)
    return {
        "commonfields": {"id": SCRIPT, "version": -1},
        "name": SCRIPT,
        "comment": "Send a team member or a channel a question with reply options on Microsoft Teams, through "
                   "msteams serve. The reply can close a playbook task (task_id).",
        "args": args,
        "outputs": [{"contextPath": p["contextPath"], "description": p["description"], "type": p["type"]}
                    for p in (outputs(reg.get(ASK_COMMAND)) if reg.get(ASK_COMMAND) else [])],
        "script": "-", "type": "python", "subtype": "python3", "dockerimage": DOCKER_IMAGE,
        "tags": ["microsoftteams"], "timeout": "0",
        "dependson": {"must": [f"{BRAND}|||{_ask_name(reg)}"]},
        "enabled": True,
        "fromversion": FROM_VERSION,
        "tests": ["No tests (auto formatted)"],
    }


def script_py(reg) -> str:
    spec = reg.get(ASK_COMMAND)
    taken = set()
    if spec is not None:
        from integration.engine.arguments import canonical_name

        taken = {a["name"] for a in ASK_ARGS if canonical_name(spec, a["name"])}
    return (SCRIPT_PY.replace("__BRAND__", BRAND).replace("__ASK__", _ask_name(reg))
            .replace("__PASSED__", json.dumps(sorted(taken))).replace("__VERSION__", __version__))


def _readme_commands(reg, yml: dict) -> str:
    lines = []
    for cmd in yml["script"]["commands"]:
        lines += [f"### {cmd['name']}", "", "***", cmd["description"], "", "#### Base Command", "",
                  f"`{cmd['name']}`", "", "#### Input", ""]
        if cmd.get("arguments"):
            lines += ["| **Argument Name** | **Description** | **Required** |", "| --- | --- | --- |"]
            lines += [f"| {a['name']} | {a['description'].replace('|', '/')} | {'Required' if a['required'] else 'Optional'} |"
                      for a in cmd["arguments"]]
        else:
            lines.append("There are no input arguments for this command.")
        lines += ["", "#### Context Output", ""]
        if cmd.get("outputs"):
            lines += ["| **Path** | **Type** | **Description** |", "| --- | --- | --- |"]
            lines += [f"| {o['contextPath']} | {o['type']} | {o['description'].replace('|', '/')} |"
                      for o in cmd["outputs"]]
        else:
            lines.append("There is no context output for this command.")
        lines.append("")
    return "\n".join(lines)


INTEGRATION_README = """Microsoft Teams for security automation through the msteams-soar HTTP API (`msteams serve`):
every command of msteams-soar under the command and argument names of XSOAR's Microsoft Teams integrations.
Generated by `msteams pack xsoar`.

## Configure Microsoft Teams SOAR on Cortex XSOAR

1. Run `msteams serve` where XSOAR can reach it, and make a key: `msteams api-key create --name xsoar --scope '*'`.
2. Navigate to **Settings** > **Integrations** > **Servers & Services**.
3. Search for Microsoft Teams SOAR.
4. Click **Add instance** to create and configure a new integration instance.

    | **Parameter** | **Description** | **Required** |
    | --- | --- | --- |
    | Service URL | The base URL of msteams serve (without /v1). | True |
    | API key | A key from `msteams api-key create` whose scopes allow the commands used. | True |
    | Tenant profile (msteams serve with several tenants) | The customer's tenant profile in msteams serve's config (sent as X-Msteams-Tenant). Empty for a msteams serve with one tenant. | False |
    | Trust any certificate (not secure) | | False |
    | Use system proxy settings | | False |

5. Click **Test** to validate the URL and the key (GET /v1/ready).

## Commands

You can execute these commands from the CLI, as part of an automation, or in a playbook.
After you successfully execute a command, a DBot message appears in the War Room with the command details.

"""

DESCRIPTION_MD = """## Microsoft Teams SOAR

Forwards every command to the msteams-soar HTTP API (`msteams serve`).

- **Service URL**: the base URL of `msteams serve` (for example `https://msteams-soar.example.com`).
- **API key**: a key from `msteams api-key create --name xsoar --scope '*'` (a destructive command needs a
  scope naming it).
- **Tenant profile**: for a `msteams serve` with several tenants, the customer's tenant profile (sent as the
  `X-Msteams-Tenant` header; one instance per customer). Empty for a `msteams serve` with one tenant.

Approval playbooks use the **MicrosoftTeamsAsk** script: the answer completes the task through its entitlement.
"""


def _script_readme(yml: dict) -> str:
    lines = ["Send a team member or a channel a question with reply options on Microsoft Teams, through the "
             f"{BRAND} integration (msteams serve). The reply can close a playbook task: give `task_id`; the answer "
             "completes it through the task's entitlement, which the question carries.", "",
             "## Script Data", "", "---", "", "| **Name** | **Description** |", "| --- | --- |",
             "| Script Type | python3 |", "| Tags | microsoftteams |", "", "## Dependencies", "", "---", "",
             "This script uses the following commands and scripts.", "", f"* {_ask_name_from(yml)}", "",
             "## Inputs", "", "---", "", "| **Argument Name** | **Description** |", "| --- | --- |"]
    lines += [f"| {a['name']} | {a['description']} |" for a in yml["args"]]
    lines += ["", "## Outputs", "", "---", ""]
    if yml.get("outputs"):
        lines += ["| **Path** | **Description** | **Type** |", "| --- | --- | --- |"]
        lines += [f"| {o['contextPath']} | {o['description']} | {o['type']} |" for o in yml["outputs"]]
    else:
        lines.append("There are no outputs for this script.")
    return "\n".join(lines) + "\n"


def _ask_name_from(yml: dict) -> str:
    return yml["dependson"]["must"][0].split("|||")[-1]


def pack_files(reg=None) -> dict[str, str | bytes]:
    """Every file of the pack: path under DIR -> content."""
    import yaml

    from integration.frontends.app_package import png

    reg = reg or _registry()
    base = f"Packs/{PACK}"
    integ = f"{base}/Integrations/{INTEGRATION}"
    scr = f"{base}/Scripts/{SCRIPT}"
    iyml, syml = integration_yml(reg), script_yml(reg)

    def dump(data) -> str:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)

    metadata = {
        "name": "Microsoft Teams SOAR",
        "description": "Microsoft Teams for security automation through the msteams-soar HTTP API: chats, channels, "
                       "teams, messages, questions and approvals (MicrosoftTeamsAsk), under XSOAR's command names.",
        "support": "community",
        "currentVersion": "1.0.0",
        "author": "msteams-soar",
        "url": "https://github.com/msteams-soar/msteams-soar",
        "email": "",
        "created": "2026-01-01T00:00:00Z",
        "categories": ["Messaging"],
        "tags": [],
        "useCases": [],
        "keywords": ["Microsoft Teams", "Teams", "msteams-soar"],
        "marketplaces": ["xsoar", "marketplacev2"],
    }
    readme = (f"# Microsoft Teams SOAR\n\nMicrosoft Teams for security automation through the msteams-soar HTTP API "
              f"(`msteams serve`), generated from its commands.yml by `msteams pack xsoar` (msteams-soar "
              f"{__version__}).\n\n## What does this pack do?\n\n- The **{BRAND}** integration runs every msteams-soar "
              "command (chats, channels, teams, messages, questions) under the names of XSOAR's Microsoft Teams "
              "integrations.\n- The **MicrosoftTeamsAsk** script asks a team member or a channel a question; the answer "
              "completes the playbook task.\n")
    return {
        f"{base}/pack_metadata.json": json.dumps(metadata, indent=4) + "\n",
        f"{base}/README.md": readme,
        f"{base}/.pack-ignore": f"[file:{INTEGRATION}.yml]\nignore=BA124\n\n[file:{SCRIPT}.yml]\nignore=BA124\n",
        f"{base}/.secrets-ignore": "https://msteams-soar.example.com\nhttps://github.com/msteams-soar/msteams-soar\n",
        f"{integ}/{INTEGRATION}.yml": dump(iyml),
        f"{integ}/{INTEGRATION}.py": integration_py(reg),
        f"{integ}/{INTEGRATION}_description.md": DESCRIPTION_MD,
        f"{integ}/{INTEGRATION}_image.png": png(120, 50, _image_pixel),
        f"{integ}/README.md": INTEGRATION_README + _readme_commands(reg, iyml),
        f"{scr}/{SCRIPT}.yml": dump(syml),
        f"{scr}/{SCRIPT}.py": script_py(reg),
        f"{scr}/README.md": _script_readme(syml),
    }


def _image_pixel(x: int, y: int) -> tuple:
    """The integration's 120x50 logo: Teams purple with a white band."""
    return (255, 255, 255, 255) if 20 <= y < 30 and 10 <= x < 110 else (80, 89, 201, 255)


def write(out_dir: str | Path, reg=None) -> list[Path]:
    return write_files(out_dir, pack_files(reg))


def main(argv: list[str], out=print) -> int:
    return pack_command(argv, out, platform="xsoar", what="the Cortex XSOAR content pack", root=f"Packs/{PACK}", write=write)
