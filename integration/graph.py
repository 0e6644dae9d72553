"""HTTP client for Microsoft Graph and the Bot Connector: one session, a timeout on every
request, our own retry loop (429/503 always, 504 and dropped connections only for idempotent
methods; Retry-After honoured, jitter, bounded budget, injectable sleep), `@odata.nextLink`
paging with a limit and a resumable next link, `$batch` packing, and Graph errors mapped to
the typed hierarchy in `errors.py`.

The bearer token is sent only to the configured base URL's origin: a next link pointing
anywhere else is refused.
"""
from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

from .errors import (AuthError, GraphError, NotFound, PermissionDenied, RequestRejected, ThrottledError)

log = logging.getLogger("msteams.graph")

RETRY_ALWAYS = {429, 503}
RETRY_IDEMPOTENT = {504}
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
BATCH_MAX = 20
_PERM_RE = re.compile(r"requires one of '([^']*)'")


def seg(value: str) -> str:
    """Percent-encode one URL path segment (ids such as '19:abc@thread.v2', names with '/')."""
    return quote(str(value), safe="")


def odata_literal(value: str) -> str:
    """An OData string literal: single-quoted, inner quotes doubled (O'Brien -> 'O''Brien')."""
    return "'" + str(value).replace("'", "''") + "'"


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:
        return None


@dataclass
class Page:
    items: list = field(default_factory=list)
    next_link: str | None = None


class TokenProvider:
    """What the client needs from auth: a token, and a forced refresh after a 401."""

    flow: str = "app"

    def token(self, force_refresh: bool = False) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class Client:
    def __init__(self, base_url: str, tokens: TokenProvider, *, verify: str | bool = True, timeout: float = 30.0,
                 max_retries: int = 5, retry_budget: float = 120.0, sleep: Callable[[float], None] = time.sleep,
                 session=None, service: str = "Graph", rng: random.Random | None = None, pacer=None):
        import requests

        self.base_url = base_url.rstrip("/")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
        self.tokens = tokens
        self.verify = verify
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_budget = retry_budget
        self.sleep = sleep
        self.service = service
        self.rng = rng or random.Random()
        self.session = session or requests.Session()
        # REQUESTS_CA_BUNDLE would override our verify= otherwise.
        self.session.trust_env = False
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status): for dry runs and tests
        # Pacing to the published limits (pacer.py): one pacer shared by every client of a runtime.
        self.pacer = pacer
        if pacer is not None:
            from .pacer import bot_windows, graph_windows

            self._windows = bot_windows if service == "Bot Connector" else graph_windows

    # ---- core ----
    def url(self, path: str) -> str:
        if path.startswith("https://") or path.startswith("http://"):
            if not path.startswith(self.origin + "/"):
                raise GraphError(f"refusing to send credentials to {urlsplit(path).netloc!r}: "
                                 f"not the configured {self.service} endpoint")
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
                headers: dict | None = None) -> "Reply":
        import requests

        method = method.upper()
        url = self.url(path)
        waited = [0.0]
        attempt = 0
        refreshed = force = False
        while True:
            hdrs = {"Authorization": f"Bearer {self.tokens.token(force_refresh=force)}", "Accept": "application/json"}
            force = False
            if headers:
                hdrs.update(headers)
            windows = self._windows(method, url) if self.pacer is not None else ()
            ticket = self.pacer.acquire(windows) if windows else None
            t0 = time.monotonic()
            try:
                resp = self.session.request(method, url, params=params, json=json, headers=hdrs,
                                            timeout=self.timeout, verify=self.verify)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if ticket is not None:
                    self.pacer.done(ticket)
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if method in IDEMPOTENT and attempt < self.max_retries and self._wait(None, attempt, waited):
                    attempt += 1
                    continue
                hint = None if method in IDEMPOTENT else "the write may still have been applied: check before retrying"
                raise GraphError(f"{self.service} {method} {self._short(url)}: {kind}", hint=hint) from None
            if ticket is not None:
                self.pacer.done(ticket)
            status = resp.status_code
            self.calls.append((method, self._short(url), status))
            log.debug("%s %s -> %s in %.0f ms", method, self._short(url), status, (time.monotonic() - t0) * 1000)
            if status == 401 and not refreshed:  # an expired or revoked token: one fresh try
                refreshed = force = True
                continue
            if status == 429 and windows:  # the service's word beats our count: every sender here waits
                self.pacer.pause(windows, _seconds(resp.headers.get("Retry-After")) or min(32.0, 2.0 ** attempt))
            retryable = status in RETRY_ALWAYS or (status in RETRY_IDEMPOTENT and method in IDEMPOTENT)
            if retryable and attempt < self.max_retries and self._wait(resp.headers.get("Retry-After"), attempt, waited):
                attempt += 1
                continue
            if status >= 400:
                raise self.error(method, url, resp)
            return Reply(status, resp)

    def _wait(self, retry_after: str | None, attempt: int, waited: list) -> bool:
        """Sleep before the next attempt; False when the waits would exceed the budget.

        ``waited`` is a one-item list accumulating this request's waiting time: the budget
        counts time spent waiting, so it holds the same with an injected sleep."""
        delay = None
        if retry_after:
            try:
                delay = max(0.0, float(retry_after))
            except ValueError:
                delay = None
        if delay is None:  # no Retry-After (some Teams endpoints omit it): exponential backoff
            delay = min(32.0, 2 ** attempt)
        delay += self.rng.uniform(0, min(1.0, delay * 0.1 + 0.1))  # jitter spreads a herd of retries
        if waited[0] + delay > self.retry_budget:
            return False
        log.info("retrying in %.1f s", delay)
        waited[0] += delay
        # through the pacer, so that its clock knows this sender has waited out its own pause
        (self.pacer.sleep_for if self.pacer is not None else self.sleep)(delay)
        return True

    def _short(self, url: str) -> str:
        return url[len(self.base_url):] if url.startswith(self.base_url) else urlsplit(url).path

    def error(self, method: str, url: str, resp) -> Exception:
        status = resp.status_code
        code, message = None, resp.reason or "error"
        try:
            body = resp.json()
            err = body.get("error") if isinstance(body, dict) else None
            if isinstance(err, dict):
                code, message = err.get("code"), err.get("message") or message
                inner = err.get("innerError") or err.get("innererror") or {}
            else:
                inner = {}
        except ValueError:
            inner = {}
        request_id = resp.headers.get("request-id") or inner.get("request-id")
        what = f"{self.service} {method} {self._short(url)}"
        if status == 401:
            return AuthError(f"{what}: the token was refused ({code or 'Unauthorized'}: {message})",
                             hint="run `msteams auth status`; `msteams auth login` signs the delegated flow in again")
        if status == 403:
            m = _PERM_RE.search(message or "")
            perms = [p.strip() for p in m.group(1).split(",")] if m else []
            flow = getattr(self.tokens, "flow", None)
            kind = "application" if flow == "app" else "delegated" if flow == "delegated" else flow
            if perms:
                hint = (f"grant one of these {kind} permissions to the app registration and give admin consent: "
                        f"{', '.join(perms)} (see `msteams permissions`)")
                msg = f"{what}: missing permission: needs one of {', '.join(perms)} ({kind})"
            else:
                hint, msg = "check the app's permissions and the caller's access to this resource", f"{what}: forbidden: {message}"
            return PermissionDenied(msg, permissions=perms, flow=flow, hint=hint)
        if status == 404:
            return NotFound(f"{what}: not found ({message})")
        if status == 429:
            return ThrottledError(f"{what}: still throttled after retries", status=status, code=code, request_id=request_id,
                                  hint="lower the request rate or raise retry_budget_seconds")
        if status in (400, 409, 413):
            return RequestRejected(f"{what}: {message}", status=status, code=code, request_id=request_id)
        hint = "the write may still have been applied: check before retrying" if method not in IDEMPOTENT and status >= 500 else None
        return GraphError(f"{what}: {message}", status=status, code=code, request_id=request_id, hint=hint)

    # ---- conveniences ----
    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, json=body, **kw).json()

    def patch(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("PATCH", path, json=body, **kw).json()

    def put(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("PUT", path, json=body, **kw).json()

    def delete(self, path: str, **kw) -> Any:
        return self.request("DELETE", path, **kw).json()

    def paged(self, path: str, *, params: dict | None = None, limit: int | None = None,
              page_size: int | None = None, next_link: str | None = None) -> Page:
        """Follow @odata.nextLink verbatim until done or ``limit`` items; the returned
        ``next_link`` resumes where this stopped."""
        params = dict(params or {})
        if page_size:
            params["$top"] = page_size
        page = Page()
        url, first = (next_link, False) if next_link else (path, True)
        while url:
            data = self.request("GET", url, params=params if first else None).json() or {}
            first = False
            items = data.get("value", [])
            room = None if limit is None else limit - len(page.items)
            if room is not None and len(items) >= room:
                # Resuming continues with the next page: a limit that ends mid-page skips the
                # rest of that page, so callers that resume pick a page_size dividing the limit.
                page.items.extend(items[:room])
                page.next_link = data.get("@odata.nextLink")
                return page
            page.items.extend(items)
            url = data.get("@odata.nextLink")
        return page

    def pages(self, path: str, *, params: dict | None = None, page_size: int | None = None,
              next_link: str | None = None) -> Iterator[list]:
        """Each page's items as it arrives, following @odata.nextLink verbatim: for callers
        that handle a page and let it go (a whole directory never sits in memory)."""
        params = dict(params or {})
        if page_size:
            params["$top"] = page_size
        url, first = (next_link, False) if next_link else (path, True)
        while url:
            data = self.request("GET", url, params=params if first else None).json() or {}
            first = False
            url = data.get("@odata.nextLink")
            yield data.get("value", [])

    def batch(self, requests_: list[dict]) -> list[dict]:
        """Run Graph requests through `$batch` in packs of 20; throttled items are retried
        (Retry-After honoured) within the budget. Returns responses in request order."""
        results: dict[str, dict] = {}
        pending = list(requests_)
        waited = [0.0]
        attempt = 0
        while pending:
            retry, wait_hint = [], None
            for i in range(0, len(pending), BATCH_MAX):
                pack = pending[i:i + BATCH_MAX]
                reply = self.post("/$batch", {"requests": pack}) or {}
                by_id = {r["id"]: r for r in pack}
                for r in reply.get("responses", []):
                    if r.get("status") in RETRY_ALWAYS and r["id"] in by_id:
                        retry.append(by_id[r["id"]])
                        ra = (r.get("headers") or {}).get("Retry-After")
                        wait_hint = max(wait_hint or 0, float(ra)) if ra else wait_hint
                    else:
                        results[r["id"]] = r
            if retry and attempt < self.max_retries and self._wait(str(wait_hint) if wait_hint else None, attempt, waited):
                attempt += 1
                pending = retry
                continue
            for r in retry:
                results[r["id"]] = {"id": r["id"], "status": 429, "body": {"error": {"code": "TooManyRequests"}}}
            pending = []
        return [results[r["id"]] for r in requests_ if r["id"] in results]


class Reply:
    def __init__(self, status: int, resp):
        self.status = status
        self.headers = resp.headers
        self._resp = resp

    def json(self) -> Any:
        if not self._resp.content:
            return None
        try:
            return self._resp.json()
        except ValueError:
            return None
