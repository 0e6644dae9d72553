"""The OpenAPI 3.1 document of the HTTP API (``GET /v1/openapi.json``), generated from
``commands.yml``: one operation per command (``POST /v1/commands/<name>``, ``operationId`` the
command's name, the request body its argument schema, the 200 reply the common result fields
with ``context`` shaped by its ``outputs``, every error the problem schema), plus the service's
own routes.

``GET /v1/openapi.json?version=3.0`` is the same document in OpenAPI 3.0.3 (:func:`to_openapi_30`),
for importers that read no 3.1 (Shuffle, Tines, n8n): ``type: [x, "null"]`` becomes ``nullable``,
``const`` a one-value ``enum``, a ``$ref`` with siblings an ``allOf``, and so on.

Built once per registry content and cached, as the registry check is (engine/registry.py): in
memory for the process, and as JSON in the same cache directory under a sha256 of the registry
file's bytes, the package version and this module's size and time; a cache file that is not the
user's own or not what is expected is ignored and rebuilt.
"""
from __future__ import annotations

import json
import os

from integration import __version__

from .tenancy import HEADER as TENANT_HEADER

FORMAT = "msteams-soar openapi cache 1"
VERSIONS = ("3.1", "3.0")  # ?version=: the first is the default
_memory: dict[str, bytes] = {}
_memory_30: list = []  # [(the 3.1 bytes, their 3.0 bytes)]

ERROR_STATUSES = {
    "400": "Bad input: the body is not JSON, a header is malformed, or the command refused what it was given",
    "401": "No API key, or one that is unknown, revoked or expired (WWW-Authenticate says which)",
    "403": "The key's scopes do not allow this command (scope), or Microsoft refused it (permission)",
    "404": "No such command, or what it names does not exist",
    "409": "A request with this Idempotency-Key is still running (idempotency_in_progress), or the command "
           "cannot do it in the present state (error: a mirror closed, another sender holding the delivery)",
    "413": "The body is over the service's limit",
    "422": "The body is JSON but its arguments are wrong (unknown argument, schema violation), or this "
           "Idempotency-Key was used with another body",
    "429": "This key's rate limit, or Microsoft throttling beyond the retry budget (Retry-After says when)",
    "502": "Microsoft failed (an error answer, a connection that never opened, a delivery of unknown outcome)",
    "503": "Not signed in, or the configuration or the context store is not usable",
    "504": "No answer from Microsoft, or the command outran the service's time limit (it goes on: retry "
           "with the same Idempotency-Key for its answer)",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "string"}}}


def _problem_ref() -> dict:
    return {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _errors(*statuses: str) -> dict:
    out = {}
    for s in statuses:
        resp: dict = {"description": ERROR_STATUSES[s], "content": _problem_ref()}
        if s in ("429", "409", "503"):
            resp["headers"] = dict(RETRY_AFTER)
        if s == "401":
            resp["headers"] = {"WWW-Authenticate": {"description": "The Bearer challenge (RFC 6750)",
                                                    "schema": {"type": "string"}}}
        out[s] = resp
    out["default"] = {"description": "Any other failure, as a problem", "content": _problem_ref()}
    return out


AUTHED = ("401", "403", "429")


def _schemas() -> dict:
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details with the integration's error code, message and hint.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "description": "urn:msteams-soar:problem:<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "What went wrong (escaped, redacted)"},
            "code": {"type": "string", "description": "The error's kind: input, config, auth, permission, "
                                                      "not_found, graph, throttled, partial, error, or the "
                                                      "service's own (unauthorized, scope, unknown_command, "
                                                      "rate_limited, too_large, idempotency_in_progress, "
                                                      "idempotency_mismatch, timeout, internal)"},
            "hint": {"type": ["string", "null"], "description": "What to do about it"},
            "exit_code": {"type": "integer", "description": "What `msteams` would exit with"},
            "details": {"type": "object", "description": "The argument, candidates, permissions, Graph's status "
                                                         "and request id, ... when known"},
            "instance": {"type": "string"},
        },
    }
    result = {
        "type": "object",
        "description": "What the Python API's CommandResult holds.",
        "required": ["command", "flow", "context", "readable", "raw", "outputs", "exit_code", "failed"],
        "properties": {
            "command": {"type": "string"},
            "flow": {"type": ["string", "null"], "description": "The auth flow it ran with (null: local)"},
            "context": {"type": "object", "description": "XSOAR-style context: output paths to entries"},
            "readable": {"type": "string", "description": "The markdown the CLI prints"},
            "raw": {"description": "Microsoft's reply (or the handler's data), as parsed JSON"},
            "outputs": {"type": "array", "items": {"type": "object"}, "description": "The entries under the prefix"},
            "next_link": {"type": ["string", "null"], "description": "Pass as next_link for the next page"},
            "exit_code": {"type": "integer", "description": "0; 6 when some items of a fan-out failed (each is in "
                                                            "outputs with its status); 3 or 4 for a health report "
                                                            "that found a problem"},
            "failed": {"type": "integer", "description": "Items of a fan-out that failed or whose outcome is unknown"},
        },
    }
    return {"Problem": problem, "Result": result}


def _context_schema(spec) -> dict:
    out = spec.outputs
    props: dict = {}
    if out.get("prefix"):
        fields = [k.split(".")[0] for k in (out.get("fields") or {}) if k != "*"]
        item: dict = {"type": "object"}
        if fields:
            item["properties"] = {f: ({"type": "array"} if f == out.get("nest") else {}) for f in dict.fromkeys(fields)}
        props[out["prefix"]] = {"type": "array", "items": item}
        props[out.get("next_link") or out["prefix"] + "NextLink"] = {"type": "string"}
        for more in out.get("also") or ():
            props[more["prefix"]] = {"type": "array", "items": {"type": "object"}}
    schema: dict = {"type": "object"}
    if props:
        schema["properties"] = props
    return schema


def _argument_schema(spec) -> dict:
    from integration.engine.registry import thaw

    schema = thaw(spec.arguments)
    for prop in schema.get("properties", {}).values():
        if "aliases" in prop:  # XSOAR's names for the argument: accepted in the body too
            prop["x-aliases"] = prop.pop("aliases")
    schema.setdefault("additionalProperties", False)
    return schema


# Which tenant profile a call runs against (a config with `tenants:`; tenancy.py): a header, so
# the paths and bodies stay those of a single-tenant deployment.
TENANT_PARAMETER = {"name": TENANT_HEADER, "in": "header", "required": False,
                    "description": "The tenant profile to run against: required when the service's config has "
                                   "tenant profiles, and the API key must be allowed that tenant",
                    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}}


def _operation(spec) -> dict:
    desc = spec.description
    if spec.destructive:
        desc += "\n\nDestructive: an API key needs a scope naming this command (not a glob)."
    if spec.aliases:
        desc += "\n\nAlso at: " + ", ".join(f"/v1/commands/{a}" for a in spec.aliases)
    body_required = bool(spec.arguments.get("required"))
    return {
        "operationId": spec.name,
        "summary": spec.description.split(". ")[0].rstrip("."),
        "description": desc,
        "tags": [spec.category or "admin"],
        "x-destructive": bool(spec.destructive),
        "parameters": [
            TENANT_PARAMETER,
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "description": "Retry safely: the same key and body within 24 h answer the first answer without "
                            "running again (sends use it as their dedupe_key)",
             "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~][ -~]*$"}},
            {"name": "Prefer", "in": "header", "required": False,
             "description": "respond-async (RFC 7240): run as a job, answered 202 with Location: /v1/jobs/{id}",
             "schema": {"type": "string"}},
            {"name": "flow", "in": "query", "required": False,
             "description": "Force an auth flow instead of the first one ready",
             "schema": {"type": "string", "enum": list(spec.flow_names) or ["app", "delegated", "bot"]}},
        ],
        "requestBody": {"required": body_required, "description": "The command's arguments (XSOAR's names also "
                                                                   "accepted; strings are read as the CLI reads them)",
                        "content": {"application/json": {"schema": _argument_schema(spec)}}},
        "responses": {
            "200": {"description": "The command ran (exit_code 6: some items of a fan-out failed, each listed "
                                   "with its status)",
                    "headers": {"Idempotent-Replayed": {"description": "true when this is a recorded answer",
                                                        "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {
                        "allOf": [{"$ref": "#/components/schemas/Result"},
                                  {"type": "object", "properties": {"context": _context_schema(spec)}}]}}}},
            "202": JOB_STARTED,
            **_errors("400", *AUTHED, "404", "409", "413", "422", "502", "503", "504"),
        },
    }


JOB = {"type": "object", "required": ["id", "command", "status", "created", "finished"], "properties": {
    "id": {"type": "string"}, "command": {"type": "string"},
    "status": {"type": "string", "enum": ["running", "done", "failed", "interrupted"]},
    "result": {"$ref": "#/components/schemas/Result", "description": "done: what the synchronous call answers"},
    "problem": {"$ref": "#/components/schemas/Problem",
                "description": "failed: the command's problem; interrupted: run it again with the same "
                               "Idempotency-Key"},
    "created": {"type": ["string", "null"]}, "finished": {"type": ["string", "null"]},
    "location": {"type": "string"}}}
JOB_STARTED = {"description": "With Prefer: respond-async: the command runs as a job (with an Idempotency-Key "
                              "already used: that job)",
               "headers": {"Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}},
                           "Preference-Applied": {"description": "respond-async", "schema": {"type": "string"}}},
               "content": {"application/json": {"schema": JOB}}}


def _service_paths(registry) -> dict:
    open_ = []  # no key needed
    listing = {"type": "object", "required": ["commands"], "properties": {"commands": {"type": "array", "items": {
        "type": "object", "required": ["name", "description", "category", "destructive", "allowed"],
        "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "category": {"type": "string"},
                       "aliases": {"type": "array", "items": {"type": "string"}},
                       "destructive": {"type": "boolean"},
                       "allowed": {"type": "boolean", "description": "whether this key's scopes allow it"}}}}}}
    report = {"type": "object", "required": ["status", "exit_code", "checks"], "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready"]}, "exit_code": {"type": "integer"},
        "checks": {"type": "array", "items": {"type": "object"}}, "readable": {"type": "string"}}}
    run = {"type": "object", "required": ["id", "playbook", "status"], "properties": {
        "id": {"type": "string"}, "playbook": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "waiting", "failed", "ok"]},
        "waiting_for": {"type": ["string", "null"], "description": "the question the run waits on"},
        "run_key": {"type": ["string", "null"]}, "created": {"type": ["string", "null"]},
        "updated": {"type": ["string", "null"]}, "inputs": {"type": "object"},
        "steps": {"type": "array", "items": {"type": "object"}}, "context": {"type": "object"}}}
    listed = {"type": "object", "required": ["runs"], "properties": {"runs": {"type": "array", "items": {
        "type": "object", "required": ["id", "playbook", "status", "location"], "properties": {
            "id": {"type": "string"}, "playbook": {"type": "string"}, "status": {"type": "string"},
            "waiting_for": {"type": ["string", "null"]}, "run_key": {"type": ["string", "null"]},
            "created": {"type": ["string", "null"]}, "updated": {"type": ["string", "null"]},
            "location": {"type": "string"}}}}}}
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    started = {"description": "Started (or, with a run_key already used, that run)",
               "headers": {"Location": {"description": "/v1/runs/{id}", "schema": {"type": "string"}}},
               "content": {"application/json": {"schema": run}}}
    try:
        from integration.playbooks.loader import shipped

        books = sorted(shipped())
    except Exception:  # noqa: BLE001 - the document without the list rather than none
        books = []
    return {
        "/v1/playbooks/{name}/runs": {"post": {
            "operationId": "start-run", "summary": "Start a shipped playbook (a key with the scope playbook:NAME)",
            "tags": ["playbooks"],
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", **({"enum": books} if books else {})}},
                           TENANT_PARAMETER,
                           {"name": "Idempotency-Key", "in": "header", "required": False,
                            "description": "the run's run_key when the body gives none: a retry never starts twice",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                                       "pattern": "^[!-~][ -~]*$"}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": {
                    "inputs": {"type": "object", "description": "the playbook's inputs"},
                    "run_key": {"type": "string", "minLength": 1, "maxLength": 200,
                                "description": "the same key again: that run, not a new one"}}}}}},
            "responses": {"202": started, **_errors("400", *AUTHED, "404", "409", "413", "422", "502", "503",
                                                     "504")}}},
        "/v1/runs": {"get": {
            "operationId": "list-runs", "summary": "The runs of the playbooks this key may start, newest first",
            "tags": ["playbooks"],
            "parameters": [TENANT_PARAMETER, {"name": "status", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["running", "waiting", "failed", "ok"]}},
                           {"name": "limit", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": {"200": {"description": "The runs", "content": {"application/json": {"schema": listed}}},
                          **_errors("400", *AUTHED)}}},
        "/v1/runs/{run_id}": {"get": {
            "operationId": "get-run", "summary": "A run: its status, what it waits for, its steps and context",
            "tags": ["playbooks"], "parameters": [TENANT_PARAMETER, run_id],
            "responses": {"200": {"description": "The run", "content": {"application/json": {"schema": run}}},
                          **_errors(*AUTHED, "404")}}},
        "/v1/runs/{run_id}/resume": {"post": {
            "operationId": "resume-run", "summary": "Continue a run after a crash or a failed step",
            "tags": ["playbooks"], "parameters": [TENANT_PARAMETER, run_id],
            "responses": {"202": started, **_errors("400", *AUTHED, "404", "409", "502", "503", "504")}}},
        "/v1/jobs/{job_id}": {"get": {
            "operationId": "get-job",
            "summary": "A command started with Prefer: respond-async: its status, then its result or problem "
                       "(the key that started it, or one allowed the command)",
            "tags": ["service"],
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The job", "content": {"application/json": {"schema": JOB}}},
                          **_errors(*AUTHED, "404")}}},
        "/v1/commands": {"get": {
            "operationId": "list-commands", "summary": "The commands, and whether this key may run each",
            "tags": ["service"],
            "responses": {"200": {"description": "The commands",
                                  "content": {"application/json": {"schema": listing}}}, **_errors(*AUTHED)}}},
        "/v1/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["service"], "security": open_,
            "parameters": [{"name": "version", "in": "query", "required": False,
                            "description": "3.0: the same document in OpenAPI 3.0.3, for importers that read no "
                                           "3.1 (Shuffle, Tines, n8n)",
                            "schema": {"type": "string", "enum": list(VERSIONS)}}],
            "responses": {"200": {"description": "OpenAPI 3.1 (3.0.3 with version=3.0)",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "400": {"description": "An unknown version", "content": _problem_ref()}}}},
        "/v1/health": {"get": {
            "operationId": "health", "summary": "Alive (no key needed; nothing checked)", "tags": ["service"],
            "security": open_,
            "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}}}}}}},
        "/v1/ready": {"get": {
            "operationId": "ready", "summary": "The integration-health checks (a key allowed integration-health)",
            "tags": ["service"],
            "responses": {"200": {"description": "Every check passed",
                                  "content": {"application/json": {"schema": report}}},
                          **_errors(*AUTHED),
                          "503": {"description": "A check found a problem (the report), or the service cannot run "
                                                 "the checks (a problem)",
                                  "headers": dict(RETRY_AFTER),
                                  "content": {"application/json": {"schema": report}, **_problem_ref()}}}}},
        "/metrics": {"get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (no key on a service bound to loopback; else a key with the scope 'metrics')",
            "tags": ["service"],
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}, **_errors(*AUTHED)}}},
    }


def build(registry) -> dict:
    """The document for a registry (not cached: :func:`document` is)."""
    paths = {f"/v1/commands/{spec.name}": {"post": _operation(spec)} for spec in registry}
    paths.update(_service_paths(registry))
    tags = sorted({spec.category or "admin" for spec in registry}) + ["playbooks", "service"]
    return {
        "openapi": "3.1.0",
        "info": {"title": "msteams-soar HTTP API", "version": __version__,
                 "description": "Microsoft Teams commands for security automation, one operation per command of "
                                "commands.yml. Authenticate with an API key (`msteams api-key create`) as "
                                "`Authorization: Bearer KEY` or `X-API-Key: KEY`. Errors are RFC 9457 problems. "
                                "See docs/http-api.md.",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in tags],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key (mst_...), or, on a service with api_entra_audience, an "
                                          "Entra ID access token for the integration's API (its app roles are "
                                          "the scopes)"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


# ---------------------------------------------------------------- OpenAPI 3.0

# 3.1 (JSON Schema 2020-12) keywords with no 3.0 counterpart, dropped from a 3.0 schema
_DROPPED = frozenset({
    "$schema", "$id", "$anchor", "$dynamicAnchor", "$dynamicRef", "$comment", "$defs", "$vocabulary",
    "contentMediaType", "contentEncoding", "contentSchema", "dependentRequired", "dependentSchemas",
    "unevaluatedProperties", "unevaluatedItems", "if", "then", "else", "patternProperties", "propertyNames",
    "contains", "minContains", "maxContains", "examples"})
# what a 3.0 Schema Object may hold (besides x-...)
_SCHEMA_30 = frozenset({
    "title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "required",
    "enum", "type", "allOf", "oneOf", "anyOf", "not", "items", "properties", "additionalProperties",
    "description", "format", "default", "nullable", "discriminator", "readOnly", "writeOnly", "xml",
    "externalDocs", "example", "deprecated", "$ref"})


def _schema_30(schema):
    """One JSON Schema 2020-12 schema as an OpenAPI 3.0 Schema Object (a new dict)."""
    if not isinstance(schema, dict):
        return {} if schema is True else {"not": {}} if schema is False else schema
    s = dict(schema)
    if "$ref" in s and len(s) > 1:  # 3.0 ignores a $ref's siblings: keep them beside an allOf
        ref = s.pop("$ref")
        s = {"allOf": [{"$ref": ref}], **s}
    if "examples" in s and "example" not in s and isinstance(s["examples"], list) and s["examples"]:
        s["example"] = s["examples"][0]
    if "const" in s:
        s["enum"] = [s.pop("const")]
        if s["enum"] == [None]:
            s["nullable"] = True
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = s.get(bound)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            other = s.get(inclusive)
            tighter = other is not None and (other > value if inclusive == "minimum" else other < value)
            if tighter:
                del s[bound]
            else:
                s[inclusive], s[bound] = value, True
    if "prefixItems" in s:
        first = [_schema_30(p) for p in s.pop("prefixItems")]
        rest = s.get("items")
        if rest is not False and rest is not None:
            first.append(_schema_30(rest))
        s["items"] = first[0] if len(first) == 1 else {"anyOf": first}
    types = s.get("type")
    if isinstance(types, str):
        types = [types]
    if types is not None:
        nullable = "null" in types
        rest = [t for t in dict.fromkeys(types) if t != "null"]
        if nullable:  # (an enum without null still refuses it, in 3.0 as in 3.1)
            s["nullable"] = True
        if not rest:  # only null
            s.pop("type")
            s["enum"] = [None]
        elif len(rest) == 1:
            s["type"] = rest[0]
        else:
            s.pop("type")
            branches = [{"type": t, **({"items": {}} if t == "array" else {}),
                         **({"nullable": True} if nullable else {})} for t in rest]
            if "anyOf" in s:  # it has an anyOf of its own: both must hold
                s["allOf"] = [*s.get("allOf", []), {"anyOf": branches}]
            else:
                s["anyOf"] = branches
    if s.get("type") == "array" and "items" not in s:
        s["items"] = {}
    for key in ("properties",):
        if isinstance(s.get(key), dict):
            s[key] = {name: _schema_30(sub) for name, sub in s[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(s.get(key), dict):
            s[key] = _schema_30(s[key])
        elif key == "items" and isinstance(s.get(key), list):  # draft-4 tuple form
            s[key] = {"anyOf": [_schema_30(p) for p in s[key]]} if s[key] else {}
    # 3.0 has neither keyword: the same said with anyOf (the argument not given, or what it needs holds)
    for keyword, needs in (("dependentRequired", lambda names: {"required": list(names)}),
                           ("dependentSchemas", lambda sub: sub)):
        if isinstance(s.get(keyword), dict):
            s["allOf"] = [*s.get("allOf", []), *({"anyOf": [{"not": {"required": [name]}}, needs(value)]}
                                                 for name, value in s.pop(keyword).items())]
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(key), list):
            s[key] = [_schema_30(sub) for sub in s[key]]
    return {k: v for k, v in s.items() if k not in _DROPPED and (k in _SCHEMA_30 or k.startswith("x-"))}


def _walk_30(node):
    """The document's objects with every Schema Object (a ``schema`` value) made 3.0."""
    if isinstance(node, dict):
        return {k: (_schema_30(v) if k == "schema" and isinstance(v, dict) else _walk_30(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_30(v) for v in node]
    return node


def to_openapi_30(doc: dict) -> dict:
    """An OpenAPI 3.1 document in the OpenAPI 3.0.3 subset (a new dict; ``doc`` is not changed)."""
    out = _walk_30({k: v for k, v in doc.items() if k not in ("openapi", "components", "webhooks",
                                                              "jsonSchemaDialect")})
    out = {"openapi": "3.0.3", **out}
    info = dict(out.get("info") or {})
    info.pop("summary", None)
    if isinstance(info.get("license"), dict):
        lic = dict(info["license"])
        ident = lic.pop("identifier", None)
        if ident and "url" not in lic:
            lic["url"] = f"https://spdx.org/licenses/{ident}.html"
        info["license"] = lic
    out["info"] = info
    components = dict(doc.get("components") or {})
    components.pop("pathItems", None)
    if "schemas" in components:
        components["schemas"] = {n: _schema_30(s) for n, s in components["schemas"].items()}
    out["components"] = _walk_30({k: v for k, v in components.items() if k != "schemas"}) | (
        {"schemas": components["schemas"]} if "schemas" in components else {})
    out.setdefault("paths", {})
    return out


# ---------------------------------------------------------------- cached per registry content

def _key(raw: bytes) -> str | None:
    import hashlib

    h = hashlib.sha256(f"{FORMAT}\0{__version__}\0".encode())
    h.update(hashlib.sha256(raw).digest())
    try:
        from integration.playbooks.loader import shipped

        h.update("\0".join(sorted(shipped())).encode())  # the playbooks a run may start
    except Exception:  # noqa: BLE001
        pass
    try:
        for p in (__file__, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                                         "engine", "registry.py")):
            st = os.stat(p)
            h.update(f"{os.path.basename(p)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    except OSError:
        return None
    return h.hexdigest()


def document(registry=None, version: str = "3.1") -> bytes:
    """The document as JSON bytes, for the registry in use (or ``registry``, uncached); ``version``
    "3.0": in OpenAPI 3.0.3 (:func:`to_openapi_30`), built from the 3.1 bytes once per their content."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}")
    if version == "3.0":
        source = document(registry)
        if _memory_30 and _memory_30[0][0] is source:
            return _memory_30[0][1]
        text = json.dumps(to_openapi_30(json.loads(source)), ensure_ascii=False).encode()
        if registry is None:
            _memory_30[:] = [(source, text)]
        return text
    return _document_31(registry)


def _document_31(registry=None) -> bytes:
    from integration.engine import registry as reg_mod

    if registry is not None:
        return json.dumps(build(registry), ensure_ascii=False).encode()
    path = reg_mod.registry_path()
    try:
        raw = path.read_bytes()
    except OSError:
        return json.dumps(build(reg_mod.default_registry()), ensure_ascii=False).encode()
    key = _key(raw)
    if key is not None and key in _memory:
        return _memory[key]
    text = _read(key) if key else None
    if text is None:
        doc = build(reg_mod.default_registry())
        if key:
            doc["x-cache"] = {"format": FORMAT, "key": key}
        text = json.dumps(doc, ensure_ascii=False).encode()
        if key:
            _write(key, text)
    if key:
        _memory.clear()
        _memory[key] = text
    return text


def _file(key: str):
    from integration.engine.registry import cache_dir

    return cache_dir() / f"openapi-{key[:40]}.json"


def _read(key: str) -> bytes | None:
    from integration.engine.registry import read_private

    data = read_private(_file(key))
    try:
        doc = json.loads(data) if data is not None else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("x-cache") != {"format": FORMAT, "key": key}:
        return None
    return data


def _write(key: str, text: bytes) -> None:
    """Atomically, mode 0600 (registry.write_private); older documents removed."""
    from integration.engine.registry import write_private

    target = _file(key)
    if not write_private(target, text):
        return
    try:
        for e in os.scandir(target.parent):
            if e.name.startswith("openapi-") and e.name.endswith(".json") and e.path != str(target):
                os.unlink(e.path)
    except OSError:
        pass
