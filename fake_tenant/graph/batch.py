"""JSON batching: ``POST /$batch``.

At most :data:`MAX_REQUESTS` requests; ids unique; relative URLs only; ``dependsOn`` names
other ids of the batch without cycles (any of these wrong: 400 for the whole batch). An item
with a body but no ``Content-Type`` header gets its own 400. Each item runs through the full
pipeline (permission, throttling, faults) via ``ctx.dispatch`` as the batch's caller, so a
throttled item carries its own 429 and ``Retry-After``. Items run in dependency order (request
order otherwise); an item whose dependency failed (status >= 400) is answered 424
``FailedDependency`` without running. The batch itself answers 200.
"""
from __future__ import annotations

import base64
from typing import Any

from ..core import Context, GraphError, Request, Response, graph_route, new_guid, utcnow_iso
from .common import bad, json_object

MAX_REQUESTS = 20
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _item_error(status: int, code: str, message: str) -> dict:
    return {"status": status, "headers": {"Content-Type": "application/json"},
            "body": {"error": {"code": code, "message": message,
                               "innerError": {"date": utcnow_iso()[:-5], "request-id": new_guid(),
                                              "client-request-id": new_guid()}}}}


def _validate(reqs: Any) -> list[dict]:
    if not isinstance(reqs, list):
        raise bad("Invalid batch payload format: 'requests' must be an array.")
    if not reqs:
        raise bad("Invalid batch payload format: 'requests' must contain at least one request.")
    if len(reqs) > MAX_REQUESTS:
        raise bad(f"The number of requests in the batch ({len(reqs)}) exceeds the limit: "
                  f"a batch can contain at most {MAX_REQUESTS} requests.")
    items: list[dict] = []
    ids: set[str] = set()
    for i, r in enumerate(reqs):
        if not isinstance(r, dict):
            raise bad(f"Invalid batch payload format: request {i} is not an object.")
        rid = r.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid) == "":
            raise bad(f"Invalid batch payload format: request {i} needs a string 'id'.")
        rid = str(rid)
        if rid in ids:
            raise bad(f"Batch request ids must be unique: the id '{rid}' is used more than once.")
        ids.add(rid)
        method = r.get("method")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise bad(f"Invalid batch payload format: request '{rid}' has an invalid 'method' ({method!r}).")
        url = r.get("url")
        if not isinstance(url, str) or not url.strip():
            raise bad(f"Invalid batch payload format: request '{rid}' needs a 'url'.")
        u = url.strip()
        if "://" in u or u.lower().startswith(("http:", "https:", "//")):
            raise bad(f"Invalid batch payload format: request '{rid}' has an absolute url; batch urls are "
                      "relative to the version root, e.g. \"/users\".")
        headers = r.get("headers")
        if headers is None:
            headers = {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise bad(f"Invalid batch payload format: the headers of request '{rid}' must be an object of strings.")
        deps = r.get("dependsOn")
        if deps is None:
            deps = []
        if not isinstance(deps, list) or not all(isinstance(d, (str, int)) and not isinstance(d, bool) for d in deps):
            raise bad(f"Invalid batch payload format: 'dependsOn' of request '{rid}' must be an array of ids.")
        items.append({"id": rid, "method": method.upper(), "url": u, "headers": headers,
                      "has_body": "body" in r and r["body"] is not None, "body": r.get("body"),
                      "dependsOn": [str(d) for d in deps]})
    for it in items:
        for d in it["dependsOn"]:
            if d not in ids:
                raise bad(f"Request '{it['id']}' depends on '{d}', which is not in the batch.")
            if d == it["id"]:
                raise bad(f"Request '{it['id']}' depends on itself.")
    return items


def _order(items: list[dict]) -> list[dict]:
    """Dependency order, request order among ready items; 400 on a cycle."""
    done: set[str] = set()
    out: list[dict] = []
    pending = list(items)
    while pending:
        ready = [it for it in pending if all(d in done for d in it["dependsOn"])]
        if not ready:
            raise bad("The dependsOn of the batch requests form a cycle.")
        it = ready[0]
        out.append(it)
        done.add(it["id"])
        pending.remove(it)
    return out


def _body_out(resp: Response) -> tuple[dict, Any]:
    headers = {str(k): str(v) for k, v in (resp.headers or {}).items()}
    body = resp.body
    if isinstance(body, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        return headers, body
    if body is None or body == b"" or body == "":
        return headers, None
    if isinstance(body, str):
        return headers, body
    headers.setdefault("Content-Type", "application/octet-stream")
    return headers, base64.b64encode(bytes(body)).decode()


@graph_route("POST", "/$batch", permission_key="none")
def batch(ctx: Context, req: Request) -> Response:
    payload = json_object(req)
    items = _order(_validate(payload.get("requests")))
    results: dict[str, int] = {}
    responses: list[dict] = []
    for it in items:
        failed = [d for d in it["dependsOn"] if results.get(d, 0) >= 400]
        if failed:
            out = _item_error(424, "FailedDependency",
                              f"The request depends on {', '.join(repr(f) for f in failed)}, which failed.")
        elif it["has_body"] and not any(k.lower() == "content-type" for k in it["headers"]):
            out = _item_error(400, "BadRequest", "Content-Type header is required for a request with a body.")
        elif it["url"].lstrip("/").split("?", 1)[0].lower().rstrip("/") in ("$batch", "v1.0/$batch"):
            out = _item_error(400, "BadRequest", "A batch cannot contain another batch.")
        else:
            try:
                resp = ctx.dispatch(it["method"], it["url"], it["headers"],
                                    it["body"] if it["has_body"] else None, req.token)
            except GraphError as e:
                resp = e.to_response()
            headers, body = _body_out(resp)
            out = {"status": resp.status, "headers": headers}
            if body is not None:
                out["body"] = body
        results[it["id"]] = out["status"]
        responses.append({"id": it["id"], **out})
    return Response(200, {"responses": responses})
