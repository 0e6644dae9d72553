"""The worked artifacts of docs/platforms.md (issue 26, item 3): the n8n workflow and the Tines story
are JSON of the shape their platform imports, every URL of ours in them is an operation of the
OpenAPI document, the n8n Code node's JavaScript verifies a delivery signed by our webhooks code
(run with node when it is installed) and refuses a forged, altered, stale or repeated one, and the
Tines check (the formula's algorithm, re-implemented as the page describes it) does the same."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = ROOT / "docs" / "platforms"
N8N = PLATFORMS / "n8n-workflow.json"
TINES = PLATFORMS / "tines-story.json"
PAGE = ROOT / "docs" / "platforms.md"
SERVICE_HOST = "msteams.example.com"  # the placeholder the user replaces with their msteams serve URL


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _operations() -> set[tuple[str, str]]:
    from integration.frontends.service import openapi

    doc = json.loads(openapi.document(version="3.0"))
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def _urls(node) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+", json.dumps(node))


def _delivery(secret: str, *, data: dict | None = None, ts: int | None = None) -> tuple[bytes, dict]:
    """A delivery as integration/delivery/webhooks.py makes one: its body and signed headers."""
    from integration.delivery import webhooks

    body = json.dumps({"type": "question.answered", "timestamp": "2026-12-07T13:00:00.000000Z",
                       "data": data or {"id": "q1", "status": "answered", "answer": "Approve — ok <b>",
                                        "responder": "Grace Kim", "n": 3, "ok": True, "reason": None}},
                      ensure_ascii=False, separators=(",", ":"), default=str).encode()
    headers = webhooks.signature_headers(secret, "msg_" + "ab" * 16, int(ts if ts is not None else time.time()),
                                         body)
    return body, headers


# ------------------------------------------------------------------ n8n

def test_the_n8n_workflow_has_the_nodes_and_connections_n8n_imports():
    wf = _load(N8N)
    nodes = {n["name"]: n for n in wf["nodes"]}
    assert len(nodes) == len(wf["nodes"])
    for node in wf["nodes"]:
        assert node["type"].startswith("n8n-nodes-base.") and isinstance(node["parameters"], dict)
        assert isinstance(node["typeVersion"], (int, float)) and len(node["position"]) == 2
    by_type = {n["type"]: n for n in wf["nodes"]}
    http = by_type["n8n-nodes-base.httpRequest"]["parameters"]
    assert http["method"] == "POST" and urlsplit(http["url"]).path == "/v1/commands/channel-list"
    assert http["genericAuthType"] == "httpHeaderAuth" and json.loads(http["jsonBody"]) == {"team": "SOC"}
    hook = by_type["n8n-nodes-base.webhook"]["parameters"]
    assert hook["httpMethod"] == "POST" and hook["options"]["rawBody"] is True  # the body as sent: signed bytes
    code = by_type["n8n-nodes-base.code"]["parameters"]
    assert code["jsCode"] and code["mode"] == "runOnceForAllItems"
    # connections name existing nodes: the webhook feeds the check, the check feeds the handler
    for source, outputs in wf["connections"].items():
        assert source in nodes
        for branch in outputs["main"]:
            for target in branch:
                assert target["node"] in nodes and target["type"] == "main"
    hook_name = by_type["n8n-nodes-base.webhook"]["name"]
    assert wf["connections"][hook_name]["main"][0][0]["node"] == by_type["n8n-nodes-base.code"]["name"]


_HARNESS = r"""
const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const code = fs.readFileSync(process.argv[2], 'utf8');
const $env = { MSTEAMS_WEBHOOK_SECRET: input.secret };
const staticData = {};
const $getWorkflowStaticData = () => staticData;
const helpers = { getBinaryDataBuffer: async (i, name) => Buffer.from(input.runs[current][i].binary[name].data, 'base64') };
let current = 0;
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const node = new AsyncFunction('$input', '$env', '$getWorkflowStaticData', 'require', code);
(async () => {
  const results = [];
  for (current = 0; current < input.runs.length; current++) {
    const items = input.runs[current];
    results.push(await node.call({ helpers }, { all: () => items }, $env, $getWorkflowStaticData, require));
  }
  process.stdout.write(JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _item(body: bytes, headers: dict, *, raw: bool = True) -> dict:
    item = {"json": {"headers": {k.lower(): v for k, v in headers.items()}, "body": json.loads(body)}}
    if raw:
        item["binary"] = {"data": {"data": base64.b64encode(body).decode(), "mimeType": "application/json"}}
    return item


def test_the_n8n_code_node_verifies_our_signature(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the Python re-implementation below checks the algorithm)")
    from integration.delivery import webhooks

    secret = webhooks.new_secret()
    body, headers = _delivery(secret)
    code = next(n for n in _load(N8N)["nodes"] if n["type"] == "n8n-nodes-base.code")["parameters"]["jsCode"]
    (tmp_path / "code.js").write_text(code, encoding="utf-8")
    (tmp_path / "harness.js").write_text(_HARNESS, encoding="utf-8")
    altered = body.replace(b"Approve", b"Reject!")
    old_body, old_headers = _delivery(secret, ts=int(time.time()) - 3600)
    other_body, other_headers = _delivery(webhooks.new_secret())
    runs = [
        [_item(body, headers)],                            # 0: taken
        [_item(body, headers)],                            # 1: the same webhook-id again: a retry, dropped
        [_item(altered, headers)],                         # 2: body altered
        [_item(old_body, old_headers)],                    # 3: an hour old: a replay
        [_item(other_body, other_headers)],                # 4: signed with another secret
        [_item(body, {k: v for k, v in headers.items() if k != "webhook-signature"})],  # 5: unsigned
    ]
    # 6: without the Raw Body option, the parsed body re-encoded (our compact JSON) verifies too
    body2, headers2 = _delivery(secret, data={"id": "q2", "text": "é ✓ <x>"})
    headers2["webhook-id"] = "msg_" + "cd" * 16
    headers2.update(webhooks.signature_headers(secret, headers2["webhook-id"], int(headers2["webhook-timestamp"]),
                                               body2))
    runs.append([_item(body2, headers2, raw=False)])
    # 7: several signatures (a rotated secret): one valid is enough
    both = dict(headers, **{"webhook-id": "msg_" + "ef" * 16})
    both.update(webhooks.signature_headers(secret, both["webhook-id"], int(both["webhook-timestamp"]), body))
    both["webhook-signature"] = "v1,AAAA " + both["webhook-signature"]
    runs.append([_item(body, both)])
    r = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "code.js")],
                       input=json.dumps({"secret": secret, "runs": runs}), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert [len(x) for x in results] == [1, 0, 0, 0, 0, 0, 1, 1]
    event = results[0][0]["json"]
    assert event["webhookId"] == headers["webhook-id"] and event["type"] == "question.answered"
    assert event["data"]["answer"] == "Approve — ok <b>"
    assert results[6][0]["json"]["data"]["text"] == "é ✓ <x>"


def _n8n_check(secret: str, headers: dict, raw: bytes, seen: dict, now: float) -> dict | None:
    """The Code node's steps, re-implemented from docs/platforms.md (for a machine without node):
    the key is the base64 after whsec_, the signed bytes id.timestamp.raw body, any v1 entry of
    webhook-signature equal in constant time, the timestamp within 300 s, each webhook-id once."""
    key = base64.b64decode(secret[6:] if secret.startswith("whsec_") else secret)
    wid, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (wid and ts and sigs and key) or not ts.isdigit() or abs(now - int(ts)) > 300:
        return None
    expected = hmac.new(key, f"{wid}.{ts}.".encode() + raw, hashlib.sha256).digest()
    ok = False
    for entry in sigs.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and value:
            ok = hmac.compare_digest(base64.b64decode(value), expected) or ok
    if not ok or wid in seen:
        return None
    seen[wid] = now
    event = json.loads(raw)
    return {"webhookId": wid, "type": event["type"], "data": event["data"]}


def test_the_n8n_check_as_described_verifies_our_signature():
    from integration.delivery import webhooks

    code = next(n for n in _load(N8N)["nodes"] if n["type"] == "n8n-nodes-base.code")["parameters"]["jsCode"]
    for piece in ("createHmac('sha256', key)", "`${id}.${ts}.`", "timingSafeEqual", "TOLERANCE = 300",
                  "secret.slice(6)", "'base64'", "getBinaryDataBuffer(i, 'data')", "$env.MSTEAMS_WEBHOOK_SECRET"):
        assert piece in code, piece
    secret = webhooks.new_secret()
    body, headers = _delivery(secret)
    seen: dict = {}
    now = time.time()
    assert _n8n_check(secret, headers, body, seen, now)["webhookId"] == headers["webhook-id"]
    assert _n8n_check(secret, headers, body, seen, now) is None  # the retry: taken once
    assert _n8n_check(secret, headers, body.replace(b"Approve", b"Reject!"), {}, now) is None
    assert _n8n_check(webhooks.new_secret(), headers, body, {}, now) is None
    assert _n8n_check(secret, headers, body, {}, now + 3600) is None


# ------------------------------------------------------------------ Tines

def test_the_tines_story_has_the_agents_and_links_tines_imports():
    story = _load(TINES)
    agents = story["agents"]
    for agent in agents:
        assert agent["type"].startswith("Agents::") and isinstance(agent["options"], dict) and agent["name"]
    types = [a["type"] for a in agents]
    assert {"Agents::HTTPRequestAgent", "Agents::WebhookAgent", "Agents::TriggerAgent"} <= set(types)
    for link in story["links"]:
        assert 0 <= link["source"] < len(agents) and 0 <= link["receiver"] < len(agents)
    http = agents[types.index("Agents::HTTPRequestAgent")]["options"]
    assert http["method"] == "post" and urlsplit(http["url"]).path == "/v1/commands/channel-list"
    assert http["headers"]["Authorization"] == "Bearer <<CREDENTIAL.msteams_soar_api_key>>"  # a Tines credential
    assert http["content_type"] == "json" and http["payload"] == {"team": "SOC"}
    hook_i, trigger_i = types.index("Agents::WebhookAgent"), types.index("Agents::TriggerAgent")
    assert agents[hook_i]["options"]["include_headers"] is True  # the signature is in the headers
    assert {"source": hook_i, "receiver": trigger_i} in story["links"]
    # the trigger's formula references the webhook action by its slug, and the secret by a credential
    slug = re.sub(r"[^a-z0-9]+", "_", agents[hook_i]["name"].lower()).strip("_")
    check = agents[trigger_i]["options"]["rules"][0]["path"]
    for piece in ("HMAC_SHA256_BASE64(", f'{slug}.headers["webhook-id"]', f'{slug}.headers["webhook-timestamp"]',
                  f'{slug}.headers["webhook-signature"]', f"JSON_ENCODE({slug}.body)",
                  'BASE64_DECODE(REPLACE(CREDENTIAL.msteams_soar_webhook_secret, "whsec_", ""))', '"v1,"'):
        assert piece in check, piece


def _tines_check(secret: str, headers: dict, parsed_body) -> bool:
    """The Tines formula, step by step: JSON_ENCODE of the parsed body (compact, UTF-8 as is), the
    signed text id.timestamp.body, HMAC-SHA256 under BASE64_DECODE(the secret without whsec_), in
    base64, prefixed v1, and looked up among webhook-signature's space-separated entries."""
    encoded = json.dumps(parsed_body, ensure_ascii=False, separators=(",", ":"))
    signed = f'{headers["webhook-id"]}.{headers["webhook-timestamp"]}.{encoded}'.encode()
    key = base64.b64decode(secret.replace("whsec_", ""))
    mine = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 301
    return mine in headers["webhook-signature"].split(" ") and fresh


def test_the_tines_check_verifies_our_signature():
    from integration.delivery import webhooks

    secret = webhooks.new_secret()
    body, headers = _delivery(secret)
    assert _tines_check(secret, headers, json.loads(body))
    # re-encoding the parsed body gives our bytes back: what makes a check on a parsed body possible
    assert json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode() == body
    tampered = json.loads(body)
    tampered["data"]["answer"] = "Reject"
    assert not _tines_check(secret, headers, tampered)
    assert not _tines_check(webhooks.new_secret(), headers, json.loads(body))
    old_body, old_headers = _delivery(secret, ts=int(time.time()) - 3600)
    assert not _tines_check(secret, old_headers, json.loads(old_body))


def test_the_page_gives_a_test_vector_that_our_signing_reproduces():
    """docs/platforms.md prints a secret, an id, a timestamp, a body and the signature they make,
    for checking a formula in the platform's formula builder: our code must make that signature."""
    from integration.delivery import webhooks

    text = PAGE.read_text(encoding="utf-8")
    vector = dict(re.findall(r"^\| `(secret|webhook-id|webhook-timestamp|body|webhook-signature)` \| `([^`]*)` \|$",
                             text, re.M))
    assert set(vector) == {"secret", "webhook-id", "webhook-timestamp", "body", "webhook-signature"}, vector
    made = webhooks.signature_headers(vector["secret"], vector["webhook-id"], int(vector["webhook-timestamp"]),
                                      vector["body"].encode())
    assert made["webhook-signature"] == vector["webhook-signature"]


# ------------------------------------------------------------------ both, and the page

def test_every_url_of_ours_in_the_artifacts_is_an_operation():
    ops = _operations()
    found = 0
    for path, method_of in ((N8N, lambda n: n["parameters"].get("method", "GET")),
                            (TINES, lambda a: a["options"].get("method", "get"))):
        doc = _load(path)
        for step in doc.get("nodes") or doc.get("agents"):
            for url in _urls(step):
                parts = urlsplit(url)
                if parts.hostname == SERVICE_HOST:
                    found += 1
                    assert (method_of(step).upper(), parts.path) in ops, (path.name, url)
    assert found == 2
    # and every path the page names under /v1/ is one of the document's
    paths = {p for _, p in ops}
    for named in set(re.findall(r"(/v1/[a-z0-9/{}._-]+)", PAGE.read_text(encoding="utf-8"))):
        named = named.rstrip(".")
        assert named in paths or named == "/v1/openapi.json" or named.startswith("/v1/commands/") and \
            named.rsplit("/", 1)[1] in {p.rsplit("/", 1)[1] for p in paths}, named


def test_the_page_walks_each_platform_from_nothing_to_a_first_command():
    text = PAGE.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    for platform in ("Shuffle", "Tines", "n8n"):
        section = next(s for s in sections if s.startswith(platform))
        for step in ("msteams serve", "msteams api-key create", "channel-list", "msteams webhook add"):
            assert step in section, (platform, step)
    assert "/v1/openapi.json?version=3.0" in text
    assert "platforms/n8n-workflow.json" in text and "platforms/tines-story.json" in text
