"""The HTTP client MSAL is given: requests.Session underneath, with the same retry rule and
bounded budget as the Graph client (graph.py), applied to the sign-in endpoints.

429, 503 and 504 from the token (or discovery) endpoint are retried: Retry-After honoured,
exponential backoff where it is missing, jitter, at most ``max_retries`` retries and
``retry_budget_seconds`` of waiting per request, through an injectable sleep. When they run
out, a typed error says so (ThrottledError for 429, GraphError otherwise) instead of MSAL's
bare error dict. Nothing else is retried here: ``invalid_client`` and ``invalid_grant`` are
answers, not accidents (auth.py turns them into what to do), and a token POST whose connection
dropped may have been redeemed already.

Logs name the endpoint's path and the status, never a form field (secret, code, refresh token).
"""
from __future__ import annotations

import logging
import random
import time
from typing import Callable
from urllib.parse import urlsplit

from integration.delivery.backoff import retry_delay
from integration.engine.errors import GraphError, ThrottledError

log = logging.getLogger("msteams.auth")

RETRY_STATUSES = frozenset({429, 503, 504})


class RetryingHttp:
    """A requests.Session-like object (``get``, ``post``, ``close``) for MSAL's ``http_client``."""

    def __init__(self, session, *, timeout: float = 30.0, max_retries: int = 5, budget: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None):
        self.session = session
        self.timeout = timeout
        self.max_retries = max_retries
        self.budget = budget
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.retries = 0  # over this client's life (tests, health)

    def get(self, url, **kwargs):
        return self._send("GET", url, kwargs)

    def post(self, url, **kwargs):
        return self._send("POST", url, kwargs)

    def close(self) -> None:
        self.session.close()

    def _send(self, method: str, url: str, kwargs: dict):
        kwargs.setdefault("timeout", self.timeout)  # MSAL sets none on a client it is given
        attempt, waited = 0, 0.0
        while True:
            resp = self.session.request(method, url, **kwargs)
            status = resp.status_code
            if status not in RETRY_STATUSES:
                return resp
            delay = retry_delay(resp.headers.get("Retry-After"), attempt, self.rng)
            if attempt >= self.max_retries or waited + delay > self.budget:
                raise self._error(method, url, resp, attempt, waited)
            log.info("sign-in: %s %s answered HTTP %s; retrying in %.1f s", method, urlsplit(url).path, status, delay)
            self.sleep(delay)
            waited += delay
            attempt += 1
            self.retries += 1

    @staticmethod
    def _error(method: str, url: str, resp, attempts: int, waited: float) -> Exception:
        status = resp.status_code
        try:
            body = resp.json()
            code = body.get("error") if isinstance(body, dict) else None
            code = code if isinstance(code, str) else None
        except ValueError:
            code = None
        request_id = resp.headers.get("x-ms-request-id") or resp.headers.get("request-id")
        what = f"sign-in: {method} {urlsplit(url).path}"
        tried = f"after {attempts} retr{'y' if attempts == 1 else 'ies'} and {waited:.0f} s of waiting"
        hint = ("try again later; max_retries and retry_budget_seconds in the config bound how long sign-in "
                "retries")
        if status == 429:
            return ThrottledError(f"{what}: still throttled {tried}", status=status, code=code,
                                  request_id=request_id, hint=hint)
        return GraphError(f"{what}: the sign-in service is unavailable {tried}", status=status, code=code,
                          request_id=request_id, hint=hint)
