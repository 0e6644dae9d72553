"""The OpenAPI document in the 3.0 subset that Shuffle, Tines and n8n import (issue 26, item 3):
`GET /v1/openapi.json?version=3.0` is valid OpenAPI 3.0 (openapi-spec-validator), holds no 3.1-only
keyword, describes the same operations; every operationId is unique, short, stable (the command's
name) and plain enough for an importer to make a name of it."""
from __future__ import annotations

import json
import re

import pytest

from service_helpers import Service

# the service's own operations: their ids are part of the interface (an imported action keeps its id)
SERVICE_OPERATIONS = {"start-run", "list-runs", "get-run", "resume-run", "get-job", "list-commands", "openapi",
                      "health", "ready", "metrics"}
ONLY_31 = {"const", "examples", "prefixItems", "$schema", "$id", "$defs", "$anchor", "$dynamicRef",
           "unevaluatedProperties", "unevaluatedItems", "dependentRequired", "dependentSchemas",
           "contentMediaType", "contentEncoding", "if", "then", "else", "patternProperties", "propertyNames",
           "contains"}


def _documents():
    from integration.frontends.service import openapi

    return json.loads(openapi.document()), json.loads(openapi.document(version="3.0"))


def _schemas(node, inside=False):
    """Every Schema Object of a document (a `schema` value, a component schema, and what they hold)."""
    if isinstance(node, dict):
        if inside:
            yield node
        for key, value in node.items():
            if inside and key in ("properties",) and isinstance(value, dict):
                for sub in value.values():
                    yield from _schemas(sub, True)
            elif inside and key in ("items", "additionalProperties", "not") and isinstance(value, dict):
                yield from _schemas(value, True)
            elif inside and key in ("allOf", "anyOf", "oneOf"):
                for sub in value:
                    yield from _schemas(sub, True)
            elif not inside and key == "schema" and isinstance(value, dict):
                yield from _schemas(value, True)
            elif not inside:
                yield from _schemas(value, False)
    elif isinstance(node, list) and not inside:
        for value in node:
            yield from _schemas(value, False)


def test_version_30_is_valid_openapi_30_without_31_features():
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV30SpecValidator

    doc31, doc30 = _documents()
    assert doc30["openapi"] == "3.0.3" and doc31["openapi"] == "3.1.0"
    validate(doc30, cls=OpenAPIV30SpecValidator)
    validate(doc31)  # the 3.1 document is untouched
    component_schemas = {"schemas": doc30["components"]["schemas"]}
    schemas = list(_schemas(doc30["paths"])) + [s for c in component_schemas["schemas"].values()
                                                for s in _schemas({"schema": c})]
    assert len(schemas) > 1000
    for schema in schemas:
        assert not ONLY_31 & set(schema), schema
        assert not isinstance(schema.get("type"), list), schema
        assert schema.get("type") != "null", schema
        if schema.get("type") == "array":
            assert "items" in schema, schema
        if "$ref" in schema:
            assert set(schema) == {"$ref"}, schema  # 3.0 ignores a $ref's siblings
    assert "identifier" not in doc30["info"]["license"]
    # the same operations, the same bodies' properties
    assert {p: set(i) for p, i in doc30["paths"].items()} == {p: set(i) for p, i in doc31["paths"].items()}
    channel_list = doc30["paths"]["/v1/commands/channel-list"]["post"]
    assert set(channel_list["requestBody"]["content"]["application/json"]["schema"]["properties"]) == set(
        doc31["paths"]["/v1/commands/channel-list"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"])
    # what the 3.1 document said with a type list, the 3.0 one says with nullable
    hint = doc30["components"]["schemas"]["Problem"]["properties"]["hint"]
    assert hint["type"] == "string" and hint["nullable"] is True
    health = doc30["paths"]["/v1/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert health["properties"]["status"] == {"enum": ["ok"]}


def test_every_operation_id_is_unique_short_stable_and_plain():
    from integration.engine import registry

    commands = {spec.name for spec in registry.default_registry()}
    for doc in _documents():
        ids = [(path, op["operationId"]) for path, item in doc["paths"].items() for op in item.values()]
        names = [i for _, i in ids]
        assert len(names) == len(set(names)), "operationIds repeat"
        for path, op_id in ids:
            assert re.fullmatch(r"[A-Za-z0-9_-]+", op_id) and len(op_id) <= 64, op_id
            if path.startswith("/v1/commands/"):
                assert op_id == path.rsplit("/", 1)[1]  # the command's name: stable across releases
        assert set(names) == commands | SERVICE_OPERATIONS
        # case-insensitively unique too (some importers make function names of them)
        assert len({n.lower().replace("-", "_") for n in names}) == len(names)


def test_the_conversion_of_31_features():
    from integration.frontends.service.openapi import to_openapi_30

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x", "type": "object",
        "properties": {
            "a": {"type": ["integer", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 10},
            "b": {"const": "x", "examples": ["x"]},
            "c": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
            "d": {"type": ["string", "integer"]},
            "e": {"type": "null"},
            "f": {"$ref": "#/components/schemas/S", "description": "see S"},
            "g": {"type": "array"},
            "h": {"type": "string", "contentMediaType": "text/plain", "x-kept": 1},
        }}
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1", "summary": "s",
                                        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
           "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
           "paths": {"/x": {"post": {"operationId": "x", "requestBody": {
               "content": {"application/json": {"schema": schema}}}, "responses": {"200": {"description": "ok"}}}}},
           "webhooks": {}, "components": {"schemas": {"S": {"type": ["string", "null"]}}}}
    out = to_openapi_30(doc)
    assert doc["openapi"] == "3.1.0" and "$schema" in schema  # the input is not changed
    props = out["paths"]["/x"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "$schema" not in props and "$id" not in props
    p = props["properties"]
    assert p["a"] == {"type": "integer", "nullable": True, "minimum": 0, "exclusiveMinimum": True, "maximum": 10,
                      "exclusiveMaximum": True}
    assert p["b"] == {"enum": ["x"], "example": "x"}
    assert p["c"] == {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}
    assert p["d"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert p["e"] == {"nullable": True, "enum": [None]}
    assert p["f"] == {"allOf": [{"$ref": "#/components/schemas/S"}], "description": "see S"}
    assert p["g"] == {"type": "array", "items": {}}
    assert p["h"] == {"type": "string", "x-kept": 1}
    assert out["components"]["schemas"]["S"] == {"type": "string", "nullable": True}
    assert out["openapi"] == "3.0.3" and "webhooks" not in out and "jsonSchemaDialect" not in out
    assert out["info"]["license"] == {"name": "Apache-2.0", "url": "https://spdx.org/licenses/Apache-2.0.html"}
    assert "summary" not in out["info"]
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV30SpecValidator

    validate(out, cls=OpenAPIV30SpecValidator)


def test_the_service_answers_either_version(emu, cfg_file, tmp_path):
    from integration.frontends.service import openapi

    with Service(cfg_file, tmp_path, "--port", "0") as svc:
        default = svc.get("/v1/openapi.json")
        assert default.status_code == 200 and default.json()["openapi"] == "3.1.0"
        assert svc.get("/v1/openapi.json?version=3.1").json() == default.json()
        r = svc.get("/v1/openapi.json?version=3.0")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json() == json.loads(openapi.document(version="3.0"))
        bad = svc.get("/v1/openapi.json?version=2.0")
        assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["details"] == {"parameter": "version"}


def test_an_unknown_version_is_refused_in_python_too():
    from integration.frontends.service import openapi

    with pytest.raises(ValueError):
        openapi.document(version="2.0")
