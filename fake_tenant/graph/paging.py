"""Server-driven paging: ``@odata.nextLink`` carrying an opaque ``$skiptoken``.

Pages are keyset based: the token holds the sort key of the last item returned, so an item is
never returned twice and inserting items between pages does not shift later pages. The token is
bound to the path it was issued for; a token that does not decode, or that was issued for another
path, is a 400 as Graph answers for a mangled skip token.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlencode

from ..core import GraphError, Request
from .odata import qopt

_SECRET = b"msteams-emulator-skiptoken"  # integrity only: a token is opaque, not a secret


def _sig(payload: bytes) -> str:
    return hmac.new(_SECRET, payload, hashlib.sha256).hexdigest()[:16]


def encode_token(path: str, key: Any) -> str:
    payload = json.dumps({"p": path.lower(), "k": key}, separators=(",", ":"), ensure_ascii=True).encode()
    blob = payload + b"." + _sig(payload).encode()
    return "RFNwdAIAAQAAA" + base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_token(path: str, token: str) -> Any:
    bad = GraphError(400, "BadRequest", "The $skiptoken is invalid or expired: follow @odata.nextLink verbatim.")
    if not isinstance(token, str) or not token.startswith("RFNwdAIAAQAAA") or len(token) > 4096:
        raise bad
    raw = token[len("RFNwdAIAAQAAA"):]
    try:
        blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        payload, _, sig = blob.rpartition(b".")
        if not hmac.compare_digest(sig.decode(), _sig(payload)):
            raise bad
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, TypeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("p") != path.lower():
        raise bad
    return _tuplify(data.get("k"))


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def base_of(req: Request, ctx: Any = None) -> str:
    return (req.base_url or getattr(ctx, "base_url", "") or "").rstrip("/")


def url_path(path: str) -> str:
    return quote(path, safe="/:@!$'()*+,;=-._~")


def next_link(req: Request, ctx: Any, token: str) -> str:
    params = [(k, v) for k, v in (req.query or {}).items() if str(k).lower() != "$skiptoken"]
    params.append(("$skiptoken", token))
    qs = urlencode(params, quote_via=quote, safe="$'(),:@")
    return f"{base_of(req, ctx)}{url_path(req.path)}?{qs}"


def paginate(req: Request, ctx: Any, items: Sequence[Any], key: Callable[[Any], Any], top: int,
             descending: bool = False) -> tuple[list[Any], str | None]:
    """One page of ``items`` (already sorted by ``key``, ascending or descending) after the
    request's ``$skiptoken``; and the nextLink when more remain."""
    token = qopt(req.query, "$skiptoken")
    start = 0
    if token is not None:
        last = decode_token(req.path, token)
        # first index whose key comes strictly after `last` in the sort order (binary search)
        lo, hi = 0, len(items)
        while lo < hi:
            mid = (lo + hi) // 2
            k = key(items[mid])
            try:
                after = (k < last) if descending else (k > last)
            except TypeError:
                raise GraphError(400, "BadRequest", "The $skiptoken is invalid or expired: follow @odata.nextLink verbatim.") from None
            if after:
                hi = mid
            else:
                lo = mid + 1
        start = lo
    page = list(items[start:start + top])
    link = None
    if start + top < len(items) and page:
        link = next_link(req, ctx, encode_token(req.path, key(page[-1])))
    return page, link


def collection(value: list, context: str | None = None, next_link_url: str | None = None, **extra: Any) -> dict:
    body: dict = {}
    if context:
        body["@odata.context"] = context
    body.update(extra)
    body["value"] = value
    if next_link_url:
        body["@odata.nextLink"] = next_link_url
    return body
