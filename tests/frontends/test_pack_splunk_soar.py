"""`msteams pack splunk-soar --out DIR` (issue 26): the Splunk SOAR (Phantom) app generated from
commands.yml. No SDK of Splunk's is on the package index, so the app JSON is checked against the
fields their app-structure docs list ("Configure metadata in a JSON schema to define your app's
configuration"), written below as JSON Schema; every command is an action with a readable name,
its identifier, a type from what it does, parameters from its JSON Schema and `action_result.data.*`
paths from its context; a command added to the registry appears without an edit. The connector
compiles, imports only what Splunk SOAR provides, and runs here against a live `msteams serve` on
the fake tenant with a stand-in for `phantom.app`, `phantom.base_connector` and
`phantom.action_result` (a few lines of ours): test connectivity, channel-list (its data paths
present), a send retried once and sent once, and an error carrying our message and hint; the
asset's tenant names the tenant profile of a `msteams serve` with several tenants
(X-Msteams-Tenant), a bad one failing the action before any request."""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import jsonschema
import pytest

from pack_helpers import (chat_messages, imports_of, no_requests, registry_with_extra_command, team_ids,
                          tenants_config_and_key)
from service_helpers import Service, cli, make_key

APP = "microsoftteamssoar"
CONOR = "conor.obrien@contoso.example"
ZOE = "zoe.muller@contoso.example"
SOAR_PROVIDES = {"phantom", "requests", "hashlib", "json", "re", "sys", "argparse"}

_DATA_TYPE = {"enum": ["string", "numeric", "boolean"]}
_CONFIG_TYPE = {"enum": ["string", "password", "numeric", "boolean", "ph", "file"]}

# Splunk SOAR's app JSON, as its developer docs describe it (top level, configuration, actions,
# parameters, output, render): the fields we write and the values they allow.
APP_SCHEMA = {
    "type": "object",
    "required": ["appid", "name", "description", "type", "main_module", "app_version", "product_vendor",
                 "product_name", "product_version_regex", "publisher", "package_name", "license",
                 "min_phantom_version", "configuration", "actions"],
    "properties": {
        "appid": {"type": "string",
                  "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"},
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
        "main_module": {"type": "string", "pattern": r"^[a-z0-9_]+_connector\.py$"},
        "app_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "product_vendor": {"type": "string"}, "product_name": {"type": "string"},
        "product_version_regex": {"type": "string"}, "publisher": {"type": "string"},
        "package_name": {"type": "string", "pattern": "^phantom_[a-z0-9_]+$"},
        "license": {"type": "string"},
        "min_phantom_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "logo": {"type": "string"}, "logo_dark": {"type": "string"},
        "python_version": {"type": "string"}, "fips_compliant": {"type": "boolean"},
        "utctime_updated": {"type": "string"}, "app_wizard_version": {"type": "string"},
        "pip_dependencies": {"type": "object"},
        "configuration": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["data_type", "description"], "additionalProperties": False,
            "properties": {"data_type": _CONFIG_TYPE, "description": {"type": "string"}, "required": {"type": "boolean"},
                           "default": {}, "value_list": {"type": "array"}, "order": {"type": "integer"}}}},
        "actions": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["action", "identifier", "description", "type", "read_only", "parameters", "output",
                         "versions"],
            "properties": {
                "action": {"type": "string", "pattern": "^[a-z][a-z0-9 ]*$"},
                "identifier": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "description": {"type": "string", "minLength": 1}, "verbose": {"type": "string"},
                "type": {"enum": ["test", "investigate", "generic", "contain", "correct", "ingest"]},
                "read_only": {"type": "boolean"},
                "versions": {"type": "string"},
                "parameters": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["description", "data_type"], "additionalProperties": False,
                    "properties": {"description": {"type": "string"}, "data_type": _DATA_TYPE,
                                   "required": {"type": "boolean"}, "primary": {"type": "boolean"},
                                   "contains": {"type": "array", "items": {"type": "string"}},
                                   "value_list": {"type": "array", "items": {"type": "string"}},
                                   "default": {}, "order": {"type": "integer"}}}},
                "output": {"type": "array", "items": {
                    "type": "object", "required": ["data_path", "data_type"], "additionalProperties": False,
                    "properties": {"data_path": {"type": "string", "pattern": r"^(action_result|summary)\.[\w.*]+$"},
                                   "data_type": _DATA_TYPE,
                                   "contains": {"type": "array", "items": {"type": "string"}},
                                   "column_name": {"type": "string"}, "column_order": {"type": "integer"},
                                   "example_values": {"type": "array"}}}},
                "render": {"type": "object", "required": ["type"], "properties": {
                    "type": {"enum": ["table", "json", "custom"]}, "width": {"type": "integer"},
                    "height": {"type": "integer"}, "title": {"type": "string"}, "view": {"type": "string"}}},
            }}},
    },
}


def generate(out: Path) -> Path:
    from integration.frontends import cli as cli_mod

    said: list[str] = []
    assert cli_mod.main(["pack", "splunk-soar", "--out", str(out)], out=said.append, err=said.append) == 0, said
    assert said and APP in said[-1]
    return out


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("splunk")) / APP


def app_json(app_dir: Path) -> dict:
    return json.loads((app_dir / f"{APP}.json").read_text())


def test_the_app_json_follows_splunk_soars_documented_fields(app_dir):
    app = app_json(app_dir)
    jsonschema.validate(app, APP_SCHEMA)
    for rel in (app["main_module"], app["logo"], app["logo_dark"], "__init__.py", "README.md"):
        assert (app_dir / rel).is_file(), rel
    assert (app_dir / app["logo"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (app["product_vendor"], app["product_name"]) == ("Microsoft", "Teams")
    assert app["configuration"]["api_key"]["data_type"] == "password"
    assert app["configuration"]["verify_server_cert"]["data_type"] == "boolean"
    assert app["configuration"]["service_url"]["required"]
    tenant = app["configuration"]["tenant"]  # optional: a msteams serve with one tenant needs none
    assert (tenant["data_type"], tenant["required"]) == ("string", False)
    assert tenant["description"].startswith("Tenant profile (msteams serve with several tenants)")
    assert sorted(c["order"] for c in app["configuration"].values()) == list(range(len(app["configuration"])))
    assert "| tenant | Tenant profile (msteams serve with several tenants)" in (app_dir / "README.md").read_text()
    # stable: a second generation writes the same appid (an upgrade replaces the installed app)
    from integration.frontends.packs import splunk_soar

    assert app["appid"] == splunk_soar.APPID
    names = [a["action"] for a in app["actions"]]
    ids = [a["identifier"] for a in app["actions"]]
    assert len(set(names)) == len(names) and len(set(ids)) == len(ids)
    for act in app["actions"]:
        orders = sorted(p["order"] for p in act["parameters"].values())
        assert orders == list(range(len(orders))), act["identifier"]
        if "render" in act:
            assert any("column_name" in o for o in act["output"]), act["identifier"]


def test_every_command_is_an_action(app_dir):
    from integration.engine import registry

    reg = registry.default_registry()
    acts = {a["identifier"]: a for a in app_json(app_dir)["actions"]}
    test = acts.pop("test_connectivity")
    assert test["action"] == "test connectivity" and test["type"] == "test"
    assert set(acts) == {s.name.replace("-", "_") for s in reg}
    names = {a["identifier"]: a["action"] for a in acts.values()}
    assert names["channel_list"] == "list channels" and names["send_notification"] == "send notification"
    assert names["chat_create"] == "create chat" and names["message_send_to_chat"] == "send message to chat"
    assert names["team_member_list"] == "list team members" and names["chat_add_user"] == "add chat user"
    for spec in reg:  # destructive -> contain; changes nothing -> investigate (read only); sends -> generic
        act = acts[spec.name.replace("-", "_")]
        if spec.destructive:
            assert act["type"] == "contain" and not act["read_only"], spec.name
    assert acts["channel_list"]["type"] == "investigate" and acts["channel_list"]["read_only"]
    assert acts["send_notification"]["type"] == "generic" and not acts["send_notification"]["read_only"]
    assert acts["team_delete"]["type"] == "contain"
    chat = acts["chat_create"]["parameters"]
    assert chat["member"]["required"] and chat["member"]["data_type"] == "string"
    assert chat["chat_type"]["value_list"] == ["group", "oneOnOne"] and chat["chat_type"]["default"] == "group"
    ask = acts["ask"]["parameters"]
    assert ask["question"]["required"] and ask["reason"]["data_type"] == "boolean"
    listing = acts["channel_list"]
    paths = {o["data_path"]: o for o in listing["output"]}
    for p in ("action_result.status", "action_result.message", "action_result.parameter.team",
              "action_result.data.*.channelId", "action_result.data.*.channelName", "action_result.data.*.teamId",
              "action_result.data.*.membershipType", "action_result.summary.total_objects"):
        assert p in paths, p
    columns = sorted((o["column_order"], o["data_path"]) for o in listing["output"] if "column_name" in o)
    assert [p for _, p in columns] == ["action_result.data.*." + c for c in
                                       ("channelName", "membershipType", "description", "channelId")]
    assert listing["render"] == {"type": "table", "width": 12, "height": 5, "title": "Channels of team"}
    members = {o["data_path"] for o in acts["channel_user_list"]["output"]}
    assert "action_result.data.*.members.*.displayName" in members




def test_the_connector_compiles_and_imports_only_what_splunk_soar_provides(app_dir):
    source = (app_dir / f"{APP}_connector.py").read_text()
    compile(source, f"{APP}_connector.py", "exec")
    assert imports_of(source) <= SOAR_PROVIDES, imports_of(source) - SOAR_PROVIDES
    assert re.search(r"class \w+\(BaseConnector\)", source) and "def handle_action(self, param)" in source




def test_a_new_registry_command_appears_in_the_app_without_edits(tmp_path, monkeypatch):
    registry_with_extra_command(tmp_path, monkeypatch)
    app = app_json(generate(tmp_path / "out") / APP)
    jsonschema.validate(app, APP_SCHEMA)
    [probe] = [a for a in app["actions"] if a["identifier"] == "pack_probe"]
    assert probe["action"] == "pack probe" and probe["type"] == "investigate"
    assert probe["parameters"]["target"]["required"] and probe["parameters"]["depth"]["value_list"] == ["shallow", "deep"]
    assert probe["parameters"]["depth"]["default"] == "shallow"
    assert {"action_result.data.*.id", "action_result.data.*.depth"} <= {o["data_path"] for o in probe["output"]}


# ---- the connector, run as Splunk SOAR's actiond would, against a live msteams serve ----

def phantom_modules(monkeypatch) -> None:
    """Just enough of phantom.app, phantom.action_result and phantom.base_connector."""
    app = types.ModuleType("phantom.app")
    app.APP_SUCCESS, app.APP_ERROR = True, False

    class ActionResult:
        def __init__(self, param=None):
            self.param, self.data, self.summary, self.status, self.message = dict(param or {}), [], {}, None, ""

        def add_data(self, item):
            self.data.append(item)

        def update_summary(self, summary):
            self.summary.update(summary)
            return self.summary

        def set_status(self, status, message=""):
            self.status, self.message = status, message
            return status

    class BaseConnector:
        def __init__(self):
            self._config, self._action, self.results, self.progress, self._ids = {}, None, [], [], {}
            self._status, self._message = app.APP_SUCCESS, ""

        def set_status(self, status, message=None, exception=None):
            self._status, self._message = status, message or ""
            return status

        def get_config(self):
            return self._config

        def get_action_identifier(self):
            return self._action

        def get_asset_id(self):
            return self._ids.get("asset_id")

        def get_container_id(self):
            return self._ids.get("container_id")

        def add_action_result(self, result):
            self.results.append(result)
            return result

        def save_progress(self, message, *a, **kw):
            self.progress.append(message)

        def debug_print(self, *a, **kw):
            pass

        def _handle_action(self, in_json, handle):
            run = json.loads(in_json)
            self._config, self._action = run["config"], run["identifier"]
            self._ids = {k: run.get(k) for k in ("asset_id", "container_id")}
            if not self.initialize():  # the connector's status: the action fails, nothing run
                return json.dumps([{"status": "failed", "message": self._message, "data": [], "summary": {},
                                    "parameter": param} for param in run.get("parameters") or [{}]])
            for param in run.get("parameters") or [{}]:
                self.handle_action(param)
            self.finalize()
            return json.dumps([{"status": "success" if r.status else "failed", "message": r.message, "data": r.data,
                                "summary": r.summary, "parameter": r.param} for r in self.results])

    app.BaseConnector, app.ActionResult = BaseConnector, ActionResult
    action_result = types.ModuleType("phantom.action_result")
    action_result.ActionResult = ActionResult
    base_connector = types.ModuleType("phantom.base_connector")
    base_connector.BaseConnector = BaseConnector
    phantom = types.ModuleType("phantom")
    phantom.__path__ = []
    phantom.app, phantom.action_result, phantom.base_connector = app, action_result, base_connector
    for name, mod in (("phantom", phantom), ("phantom.app", app), ("phantom.action_result", action_result),
                      ("phantom.base_connector", base_connector)):
        monkeypatch.setitem(sys.modules, name, mod)


class Soar:
    def __init__(self, monkeypatch, app_dir: Path, url: str, key: str):
        phantom_modules(monkeypatch)
        ns = {"__name__": "microsoftteamssoar_connector"}
        path = app_dir / f"{APP}_connector.py"
        exec(compile(path.read_text(), str(path), "exec"), ns)
        self.connector_class = [v for k, v in ns.items() if k.endswith("Connector") and k != "BaseConnector"][0]
        self.config = {"service_url": url, "api_key": key, "verify_server_cert": True}

    def run(self, identifier: str, container_id: int = 42, **param) -> dict:
        """One action on one asset, as actiond runs it (the parameters with Splunk SOAR's context)."""
        connector = self.connector_class()
        param["context"] = {"artifact_id": 0, "guid": "a-new-guid-each-run", "parent_action_run": []}
        in_json = {"identifier": identifier, "config": self.config, "parameters": [param], "asset_id": "7",
                   "container_id": container_id}
        [result] = json.loads(connector._handle_action(json.dumps(in_json), None))
        result["progress"] = connector.progress
        return result




def _resolve(row: dict, path: str) -> bool:
    """Whether a data path (after action_result.data.*.) is present in one data row."""
    value = [row]
    for part in path.split("."):
        if part == "*":
            value = [v for item in value if isinstance(item, list) for v in item]
        else:
            value = [item[part] for item in value if isinstance(item, dict) and part in item]
    return bool(value)


def test_the_connector_forwards_actions_to_msteams_serve(emu, cfg_file, tmp_path, monkeypatch, app_dir):
    key = make_key(cfg_file, "splunk-soar", "*")
    code, out, err = cli(cfg_file, "auth", "login")  # the delegated flow, for posting to a chat
    assert code == 0, err
    acts = {a["identifier"]: a for a in app_json(app_dir)["actions"]}
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        soar = Soar(monkeypatch, app_dir, svc.url, key)
        r = soar.run("test_connectivity")
        assert r["status"] == "success" and "Test Connectivity Passed" in r["progress"], r
        # channel-list: one data row per channel, with the data paths the app JSON declares
        r = soar.run("channel_list", team="Security Operations")
        assert r["status"] == "success", r
        assert r["data"] and r["summary"]["total_objects"] == len(r["data"])
        assert r["message"] == f"Channels of team Security Operations: {len(r['data'])} row(s)", r["message"]
        declared = [o["data_path"][len("action_result.data.*."):] for o in acts["channel_list"]["output"]
                    if o["data_path"].startswith("action_result.data.")]
        for path in declared:
            assert any(_resolve(row, path) for row in r["data"]), path
        assert all(row["channelId"] and row["teamId"] for row in r["data"])
        r = soar.run("chat_create", chat_type="group", member=f"{CONOR},{ZOE}", chat_name="IR-42 war room")
        assert r["status"] == "success", r
        assert r["data"][0]["topic"] == "IR-42 war room" and r["data"][0]["chatId"]
        # numeric and boolean parameters as SOAR passes them (a float, a bool)
        r = soar.run("chat_list", limit=1.0)
        assert r["status"] == "success" and len(r["data"]) == 1, r
        r = soar.run("team_member_list", team="Security Operations")
        assert r["status"] == "success" and r["data"], r
        r = soar.run("chat_add_user", chat="IR-42 war room", member="bob.smith@contoso.example", share_history=False)
        assert r["status"] == "success", r
        # a send retried (the same asset, container and parameters): sent once
        for _ in range(2):
            r = soar.run("message_send_to_chat", chat="IR-42 war room", content="Containment started")
            assert r["status"] == "success", r
            assert r["data"] and r["data"][0]["chatId"]
        assert chat_messages(emu, "Containment started") == 1
        # an error: our message and hint, as the action's failure message
        r = soar.run("chat_create", member="nobody.here@contoso.example")
        assert r["status"] == "failed" and "nobody.here" in r["message"] and "HTTP 404" in r["message"], r
        assert ". Hint: " in r["message"] and r["message"].endswith("(not_found, HTTP 404)"), r
        # an unknown argument: refused with our message
        r = soar.run("channel_list", tem="Security Operations")
        assert r["status"] == "failed" and "tem" in r["message"], r
        # a key that is refused
        soar.config["api_key"] = "mst_" + "A" * 43
        r = soar.run("test_connectivity")
        assert r["status"] == "failed" and "unauthorized" in r["message"] and "Test Connectivity Failed" in r["progress"]
        assert "unauthorized" in soar.run("chat_list")["message"]


def test_the_asset_tenant_names_the_tenant_profile(tenants3, tmp_path, monkeypatch, app_dir):
    cfg, key = tenants_config_and_key(tenants3, tmp_path)
    with Service(cfg, tmp_path, "--port", "0") as svc:
        soar = Soar(monkeypatch, app_dir, svc.url, key)
        for name in ("fabrikam", "contoso"):  # X-Msteams-Tenant: each tenant's own teams
            soar.config["tenant"] = name
            r = soar.run("team_list")
            assert r["status"] == "success", r
            assert {row["id"] for row in r["data"]} == team_ids(tenants3, name), name
        # none: no header, refused by a service with several tenants, as the action's failure message
        for empty in ("", None):
            soar.config["tenant"] = empty
            r = soar.run("team_list")
            assert r["status"] == "failed" and r["message"].endswith("(tenant_required, HTTP 400)"), r
            assert "X-Msteams-Tenant" in r["message"], r
    # a bad value: the action fails before any request
    sent = no_requests(monkeypatch)
    soar.config["tenant"] = "Fabrikam Ltd"
    for action in ("team_list", "test_connectivity"):
        r = soar.run(action)
        assert r["status"] == "failed" and "'Fabrikam Ltd' is not a tenant profile name" in r["message"], r
    assert sent == []
