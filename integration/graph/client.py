"""HTTP client for Microsoft Graph and the Bot Connector: one session, a timeout on every
request, our own retry loop (429/503 and a connection that never opened always, 504 and dropped
connections only for idempotent methods; Retry-After honoured, jitter, bounded budget, injectable
sleep), `@odata.nextLink`
paging with a limit and a resumable next link, `$batch` packing, and Graph errors mapped to
the typed hierarchy in `errors.py`.

The bearer token is sent only to the configured base URL's origin: a next link pointing
anywhere else is refused.
"""
from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlsplit

from integration.delivery.backoff import MAX_BACKOFF_SECONDS, retry_after_seconds, retry_delay
from integration.delivery.outbox import before_write
from integration.engine.errors import (
    AuthError,
    GraphError,
    NotFound,
    NotSent,
    PermissionDenied,
    RequestRejected,
    ThrottledError,
)

log = logging.getLogger("msteams.graph")

RETRY_ALWAYS = {429, 503}


def never_sent(exc: BaseException) -> str | None:
    """Why a failed request certainly never reached the service (the connection never opened:
    refused, no such host, connect timeout, TLS handshake), or None when it may have: a read
    timeout or a reset after the request was written is ambiguous."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy refused the connection"
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NameResolutionError):  # (a NewConnectionError, itself a ConnectTimeoutError)
        return "host name not resolved"
    if isinstance(reason, NewConnectionError):
        return "connection refused"
    if isinstance(reason, ConnectTimeoutError):
        return "connect timed out"
    return None


def _note(what: str, *args) -> None:
    """Count an event in the service metrics (metrics.py), when a service turned them on."""
    metrics = sys.modules.get("integration.engine.metrics")
    if metrics is not None and metrics.enabled:
        getattr(metrics, what)(*args)
RETRY_IDEMPOTENT = {504}
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
BATCH_MAX = 20
_PERM_RE = re.compile(r"requires one of '([^']*)'")

# The most items one page of a listing may hold ($top), from Microsoft's Graph documentation.
# A listing not named here is sent no $top: Graph does not page it (channels, chat and channel
# members, joined teams) or pages it its own way; a limit then ends within Graph's page.
PAGE_MAX = (
    (re.compile(r"^/(?:me|users/[^/]+)/chats$"), 50),
    (re.compile(r"^/chats/[^/]+/messages$"), 50),
    (re.compile(r"^/teams/[^/]+/channels/[^/]+/messages(?:/[^/]+/replies)?$"), 50),
    (re.compile(r"^/(?:users|groups|teams)$"), 999),
    (re.compile(r"^/teams/[^/]+/members$"), 999),
)
# Our own resumable link for a limit that ended inside Graph's page: the URL of that page, and
# after '#' where to resume in it (the fragment never reaches Graph).
_CURSOR_MARK = "#msteams:"


def page_max(path: str) -> int | None:
    """The largest $top the listing at ``path`` (relative to the Graph base) takes, or None."""
    bare = path.split("?", 1)[0].rstrip("/")
    return next((top for rx, top in PAGE_MAX if rx.match(bare)), None)


def page_top(path: str, limit: int | None = None, page_size: int | None = None) -> int | None:
    """The $top a listing is asked for: the page size or the limit, whichever is smaller, within
    the endpoint's maximum; None when neither is given or the listing takes no $top."""
    most = page_max(path)
    wanted = [n for n in (limit, page_size) if n]
    return min(min(wanted), most) if most and wanted else None


def make_cursor(page_url: str, skip: int, after_id: str | None) -> str:
    """A next link resuming inside the page at ``page_url``: after the item ``after_id`` when
    it is still there, else after the first ``skip`` items. Other tools that follow it as a
    plain Graph link see the page again from its start (items repeated, never lost)."""
    frag = f"skip={int(skip)}" + (f"&after={quote(str(after_id), safe='')}" if after_id else "")
    return page_url.split("#", 1)[0] + _CURSOR_MARK + frag


def parse_cursor(link: str) -> tuple[str, int, str | None]:
    """(URL to request, items of its page to skip, id of the last item returned before)."""
    from urllib.parse import parse_qs

    url, mark, frag = link.partition(_CURSOR_MARK)
    if not mark:
        return link.split("#", 1)[0], 0, None
    q = parse_qs(frag)
    try:
        skip = max(0, int((q.get("skip") or ["0"])[0]))
    except ValueError:
        skip = 0
    return url, skip, (q.get("after") or [None])[0]


def items_of(data: Any, what: str = "the reply") -> list:
    """The items of a Graph collection reply: ``value`` as a list, with null items dropped.
    ``{"value": null}`` and a reply without ``value`` are empty; anything that is not a JSON
    object (an empty body, a list) is a GraphError naming ``what``."""
    if not isinstance(data, dict):
        raise GraphError(f"{what}: Graph answered without a collection "
                         f"({'an empty body' if data is None else type(data).__name__})")
    value = data.get("value")
    if value is None:
        return []
    if not isinstance(value, list):
        raise GraphError(f"{what}: Graph's 'value' is not a list ({type(value).__name__})")
    return [v for v in value if v is not None]


def need_id(obj: Any, what: str) -> str:
    """The ``id`` of a Graph object, or a GraphError saying the reply is unusable without it."""
    oid = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(oid, str) or not oid:
        raise GraphError(f"{what}: Graph's reply has no id "
                         f"({'an empty body' if obj is None else 'keys: ' + ', '.join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__})",
                         hint="try again; if it persists, the object may be incomplete on Microsoft's side")
    return oid


def seg(value: str) -> str:
    """Percent-encode one URL path segment (ids such as '19:abc@thread.v2', names with '/')."""
    return quote(str(value), safe="")


def odata_literal(value: str) -> str:
    """An OData string literal: single-quoted, inner quotes doubled (O'Brien -> 'O''Brien')."""
    return "'" + str(value).replace("'", "''") + "'"


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
        # (method, path, status) of the latest calls, to look at: bounded, as a service's client
        # lives for weeks (an unbounded list grew by every request a service ever made).
        self.calls: deque[tuple[str, str, int]] = deque(maxlen=256)
        # Pacing to the published limits (pacer.py): one pacer shared by every client of a runtime.
        self.pacer = pacer
        if pacer is not None:
            from integration.delivery.pacer import bot_windows, graph_windows

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
            if ticket is not None and ticket.waited:
                _note("paced", ticket.waited)
            t0 = time.monotonic()
            if method not in IDEMPOTENT:
                before_write()  # the delivery this request sends (if any) is pending from here on
            try:
                try:
                    resp = self.session.request(method, url, params=params, json=json, headers=hdrs,
                                                timeout=self.timeout, verify=self.verify)
                finally:  # answered, failed or interrupted: the slot counts from now
                    if ticket is not None:
                        self.pacer.done(ticket)
            except (requests.ConnectionError, requests.Timeout) as exc:
                unsent = never_sent(exc)
                if unsent:  # nothing was written: safe to try again whatever the method
                    if unsent != "TLS handshake failed" and attempt < self.max_retries and self._wait(None, attempt, waited):
                        attempt += 1
                        continue
                    raise NotSent(f"{self.service} {method} {self._short(url)}: not sent ({unsent})",
                                  hint="nothing reached the service: check the URL, the network and the CA "
                                       "bundle, then retry") from None
                kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
                if method in IDEMPOTENT and attempt < self.max_retries and self._wait(None, attempt, waited):
                    attempt += 1
                    continue
                hint = None if method in IDEMPOTENT else "the write may still have been applied: check before retrying"
                raise GraphError(f"{self.service} {method} {self._short(url)}: {kind}", hint=hint) from None
            status = resp.status_code
            self.calls.append((method, self._short(url), status))
            log.debug("%s %s -> %s in %.0f ms", method, self._short(url), status, (time.monotonic() - t0) * 1000)
            if status == 401 and not refreshed:  # an expired or revoked token: one fresh try
                refreshed = force = True
                continue
            if status == 429 and windows:  # the service's word beats our count: every sender here waits
                self.pacer.pause(windows, retry_after_seconds(resp.headers.get("Retry-After")) or min(MAX_BACKOFF_SECONDS, 2.0 ** attempt))
            retryable = status in RETRY_ALWAYS or (status in RETRY_IDEMPOTENT and method in IDEMPOTENT)
            before = waited[0]
            if retryable and attempt < self.max_retries and self._wait(resp.headers.get("Retry-After"), attempt, waited):
                if status == 429:
                    _note("throttled", waited[0] - before, "bot" if self.service != "Graph" else "graph")
                attempt += 1
                continue
            if status >= 400:
                raise self.error(method, url, resp)
            return Reply(status, resp)

    def _wait(self, retry_after: str | None, attempt: int, waited: list) -> bool:
        """Sleep before the next attempt; False when the waits would exceed the budget.

        ``waited`` is a one-item list accumulating this request's waiting time: the budget
        counts time spent waiting, so it holds the same with an injected sleep."""
        delay = retry_delay(retry_after, attempt, self.rng)
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
            denied = PermissionDenied(msg, permissions=perms, flow=flow, hint=hint)
            denied.code = code
            return denied
        if status == 404:
            missing = NotFound(f"{what}: not found ({message})")
            missing.code = code
            return missing
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

    def create(self, path: str, body: Any, what: str | None = None) -> dict:
        """POST a new object and return it. A 201 may come without a body (or without the id):
        then the object is read from the Location header; with neither, a GraphError says the
        reply is unusable (the object may have been created)."""
        reply = self.request("POST", path, json=body)
        obj = reply.json()
        if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"]:
            return obj
        loc = reply.headers.get("Location") or reply.headers.get("Content-Location")
        if loc:
            got = self.get(self._location(loc))
            if isinstance(got, dict) and got.get("id"):
                return {**(obj if isinstance(obj, dict) else {}), **got}
        try:
            need_id(obj, what or f"{self.service} POST {self._short(self.url(path))}")
        except GraphError as exc:
            exc.hint = "it may have been created all the same: look for it before trying again"
            raise
        raise AssertionError("unreachable")

    def _location(self, loc: str) -> str:
        """A Location header as a path for get(): absolute URLs stay (same origin only, as
        every URL), '/v1.0/x' and '/x' are taken relative to the configured base."""
        if "://" in loc:
            return loc
        base_path = urlsplit(self.base_url).path.rstrip("/")
        if base_path and loc.startswith(base_path + "/"):
            loc = loc[len(base_path):]
        return loc if loc.startswith("/") else "/" + loc

    def paged(self, path: str, *, params: dict | None = None, limit: int | None = None,
              page_size: int | None = None, next_link: str | None = None) -> Page:
        """Up to ``limit`` items of a listing, following @odata.nextLink verbatim. ``$top`` is
        the smaller of the limit and ``page_size``, within the endpoint's maximum (PAGE_MAX),
        so a small limit costs one small page. The returned ``next_link`` resumes right after
        the last item returned: Graph's own link when the limit ended with a page, else our
        cursor into that page (``make_cursor``). With ``next_link`` and ``page_size``, exactly
        one page is fetched (one request) and at most ``page_size`` of its items returned."""
        page = Page()
        if next_link:
            url, skip, after = parse_cursor(next_link)
            query, one_page = None, bool(page_size)
            wanted = [n for n in (limit, page_size) if n]
            want = min(wanted) if wanted else None
        else:
            url, skip, after = path, 0, None
            query, one_page, want = dict(params or {}), False, limit
            top = page_top(path, limit, page_size)
            if top:
                query["$top"] = top
        while url:
            page_url = url if "://" in url else self.page_url(url, query)
            data = self.request("GET", url, params=query).json()
            items = items_of(data, f"{self.service} GET {self._short(self.url(url))}")
            nxt = data.get("@odata.nextLink")
            nxt = nxt if isinstance(nxt, str) and nxt else None
            start = _resume_at(items, skip, after)
            rest = items[start:]
            room = None if want is None else want - len(page.items)
            if room is not None and len(rest) > room:
                taken = rest[:room]
                page.items.extend(taken)
                last = taken[-1] if taken else None
                page.next_link = make_cursor(page_url, start + room, last.get("id") if isinstance(last, dict) else None)
                return page
            page.items.extend(rest)
            if one_page or (room is not None and len(rest) == room):
                page.next_link = nxt
                return page
            url, query, skip, after = nxt, None, 0, None
        return page

    def page_url(self, path: str, params: dict | None) -> str:
        """The absolute URL of a GET with these query parameters (for a resumable cursor)."""
        from urllib.parse import urlencode

        url = self.url(path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode({k: str(v) for k, v in params.items()},
                                                            quote_via=quote, safe="$'(),:@")
        return url

    def pages(self, path: str, *, params: dict | None = None, page_size: int | None = None,
              next_link: str | None = None) -> Iterator[list]:
        """Each page's items as it arrives, following @odata.nextLink verbatim: for callers
        that handle a page and let it go (a whole directory never sits in memory)."""
        params = dict(params or {})
        top = page_top(path, None, page_size)
        if top:
            params["$top"] = top
        url, skip, after = parse_cursor(next_link) if next_link else (path, 0, None)
        first = not next_link
        while url:
            data = self.request("GET", url, params=params if first else None).json()
            items = items_of(data, f"{self.service} GET {self._short(self.url(url))}")
            first = False
            nxt = data.get("@odata.nextLink")
            url = nxt if isinstance(nxt, str) and nxt else None
            yield items[_resume_at(items, skip, after):]
            skip, after = 0, None

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
                reply = self.post("/$batch", {"requests": pack})
                by_id = {r["id"]: r for r in pack}
                answers = reply.get("responses") if isinstance(reply, dict) else None
                for r in answers if isinstance(answers, list) else []:
                    if not isinstance(r, dict) or r.get("id") not in by_id:
                        continue  # not an answer to this pack: the request stays unanswered
                    if r.get("status") in RETRY_ALWAYS:
                        retry.append(by_id[r["id"]])
                        ra = retry_after_seconds(str((r.get("headers") or {}).get("Retry-After") or "")) \
                            if isinstance(r.get("headers"), dict) else None
                        wait_hint = max(wait_hint or 0, ra) if ra is not None else wait_hint
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


def _resume_at(items: list, skip: int, after: str | None) -> int:
    """Where in a re-read page to resume: right after the item ``after`` when it is still
    there (items added before it do not shift us), else after the first ``skip`` items."""
    if after:
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("id") == after:
                return i + 1
    return min(skip, len(items))


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
