"""The HTTP API's OpenAPI document (issue 25): generated from commands.yml (one operation per
command, its argument schema, its outputs), valid OpenAPI 3.1 (openapi-spec-validator), cached
per registry content; and a bounded schemathesis run against a live `msteams serve --bot` on the
fake tenant finds no 5xx and no answer outside its schema."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from service_helpers import Service, cli, make_key


def test_the_document_is_valid_openapi_with_one_operation_per_command(tmp_path):
    from openapi_spec_validator import validate

    from integration.engine import registry
    from integration.frontends.service import openapi

    doc = json.loads(openapi.document())
    validate(doc)
    reg = registry.default_registry()
    ops = {op["operationId"]: (path, op) for path, item in doc["paths"].items() for op in item.values()}
    for spec in reg:
        path, op = ops[spec.name]
        assert path == f"/v1/commands/{spec.name}"
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == set(spec.argument_names) and body["additionalProperties"] is False
        assert body.get("required", []) == list(spec.arguments.get("required", []))
        assert op["x-destructive"] == spec.destructive
        for status in ("400", "401", "403", "404", "409", "422", "429", "502", "503", "504"):
            assert op["responses"][status]["content"]["application/problem+json"]["schema"] == \
                {"$ref": "#/components/schemas/Problem"}
        context = op["responses"]["200"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["context"]
        if spec.outputs.get("prefix"):
            assert spec.outputs["prefix"] in context["properties"]
    assert ops["channel-list"][1]["requestBody"]["content"]["application/json"]["schema"]["properties"]["team"][
        "type"] == "string"
    assert "x-aliases" in json.dumps(ops["channel-delete"][1]["requestBody"])  # XSOAR's argument names
    assert {"list-commands", "openapi", "health", "ready", "metrics"} <= set(ops)
    assert doc["paths"]["/v1/health"]["get"]["security"] == [] and doc["security"]


def test_the_document_is_cached_per_registry_content(tmp_path, monkeypatch):
    from integration.engine import registry
    from integration.frontends.service import openapi

    first = openapi.document()
    assert openapi.document() is first  # this process: built once
    files = list(registry.cache_dir().glob("openapi-*.json"))
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
    openapi._memory.clear()
    assert openapi.document() == first  # another process: read from the cache file
    # another registry content: another document
    other = tmp_path / "commands.yml"
    text = open(registry.COMMANDS_FILE, encoding="utf-8").read()
    other.write_text(text.replace("List the channels of a team", "Channels of a team, listed"), encoding="utf-8")
    monkeypatch.setenv(registry.REGISTRY_ENV, str(other))
    registry.default_registry.cache_clear()
    try:
        changed = openapi.document()
        assert changed != first and b"Channels of a team, listed" in changed
        assert len(list(registry.cache_dir().glob("openapi-*.json"))) == 1  # the older one replaced
    finally:
        monkeypatch.delenv(registry.REGISTRY_ENV)
        registry.default_registry.cache_clear()
        openapi._memory.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(emu, cfg_file, tmp_path):
    pytest.importorskip("schemathesis")
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis's command line (st) is not installed")
    port = _free_port()
    data = yaml.safe_load(cfg_file.read_text())
    data["bot_public_url"] = f"http://127.0.0.1:{port}"  # the endpoint --bot serves on the same port
    cfg_file.write_text(yaml.safe_dump(data))
    assert cli(cfg_file, "auth", "login")[0] == 0  # the delegated flow signed in: no 503 for want of it
    # every command but signing in and out (auth-*: they would change the flows under the others'
    # feet); destructive ones only by a glob, so they answer 403
    key = make_key(cfg_file, "fuzz", "*")
    with Service(cfg_file, tmp_path, "--port", str(port), "--bot", "--no-register", "--rate", "10000",
                 "--burst", "10000", "--time-limit", "30") as svc:
        assert svc.get("/healthz").status_code == 200  # the bot endpoint, mounted
        assert svc.http.post(svc.url + "/api/messages", json={}, timeout=30).status_code == 401
        r = subprocess.run(
            [st, "run", f"{svc.url}/v1/openapi.json", "-H", f"Authorization: Bearer {key}",
             "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                         "response_schema_conformance,response_headers_conformance",
             "--max-examples", "5", "--phases", "examples,fuzzing", "--seed", "25", "--no-color",
             "--generation-database", "none", "--request-timeout", "60", "--workers", "4",
             "--exclude-operation-id-regex", "^auth-", "--report", "junit",
             "--report-junit-path", str(tmp_path / "schemathesis.xml")],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=dict(os.environ, NO_COLOR="1"))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", r.stdout)
    assert tested and int(tested.group(1)) >= 55, r.stdout[-3000:]  # every operation but auth-*


def _request_schema(doc: dict, command: str) -> dict:
    return doc["paths"][f"/v1/commands/{command}"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_the_rules_between_arguments_are_in_the_document_and_the_service_keeps_them(emu, cfg_file, tmp_path):
    """commands.yml's rules (`arguments.allOf`) in both versions of the document, keeping and
    refusing the same bodies as the service, which refuses a body breaking one before it runs."""
    import jsonschema

    from integration.frontends.service import openapi

    doc31, doc30 = (json.loads(openapi.document(version=v)) for v in ("3.1", "3.0"))
    schema31, schema30 = _request_schema(doc31, "channel-delete"), _request_schema(doc30, "channel-delete")
    assert {"dependentRequired": {"channel": ["team"]},
            "description": "is required with channel (Graph names a channel within its team)"} in schema31["allOf"]
    assert "dependentRequired" not in json.dumps(schema30)  # 3.0 says it with anyOf and not
    checks = [jsonschema.Draft202012Validator(schema31), jsonschema.Draft4Validator(schema30)]
    for body, valid in (({"channel": "General"}, False), ({}, False), ({"incident_id": "IR-1"}, True),
                        ({"team": "Security Operations", "channel": "General"}, True)):
        assert [v.is_valid(body) for v in checks] == [valid, valid], body
    lists = [jsonschema.Draft202012Validator(_request_schema(d, "message-list")) for d in (doc31, doc30)]
    assert not any(v.is_valid({"chat": "IR 42", "team": "Security Operations"}) for v in lists)
    assert not any(v.is_valid({"team": "Security Operations"}) for v in lists)  # dependentSchemas (3.0: anyOf)
    assert all(v.is_valid({"team": "Security Operations", "conversation": "General"}) for v in lists)

    key = make_key(cfg_file, "rules", "channel-delete", "message-list")
    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        graph = lambda: [e for e in emu.request_log if e["path"].startswith("/v1.0")]  # noqa: E731
        before = len(graph())
        r = svc.post("channel-delete", {"channel": "General"}, key=key)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["details"]["argument"] == "team"
        assert "is required with channel" in r.json()["detail"]
        r = svc.post("message-list", {"chat": "IR 42", "team": "Security Operations"}, key=key)
        assert r.status_code == 422 and r.json()["details"]["argument"] == "chat"
        assert r.json()["detail"].endswith("give either a chat, or a team and a channel, not both")
        assert len(graph()) == before  # refused before any call to Microsoft
