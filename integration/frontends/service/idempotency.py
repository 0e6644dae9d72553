"""``Idempotency-Key`` (the IETF httpapi draft) for ``POST /v1/commands/{name}``: a platform that
timed out and retries gets the first answer, and never sends twice.

- The same key with the same body (the same command and arguments) within 24 hours answers
  what the first request answered, without running again (``Idempotent-Replayed: true``).
- The same key with another body: 422 (``idempotency_mismatch``).
- The same key while the first request still runs (in any process sharing the store): 409
  (``idempotency_in_progress``), with ``Retry-After``.

Keys are per API key (two callers never see each other's answers): the record is kept under
sha256(API key name, Idempotency-Key) in the store's key/value kind ``http_idempotency``
(state: ``cache-reset`` never removes it), with a TTL of 24 hours. The "running" claim is the
outbox's atomic cross-process claim (``outbox_claim``) on ``http-idem:`` + that digest; it is
dropped when the answer is recorded, and a holder that died loses it at once on its own host
(or when its lease ends elsewhere).

What is kept: a result (2xx) and a refusal of the input (400, 422), which a retry cannot
change. Anything else (a throttled, failing or unreachable Microsoft, a missing permission, a
time limit) is not kept: the retry runs again. A command that accepts ``dedupe_key`` gets one
derived from the Idempotency-Key when the body gives none, so even a command that ran again
(its first run died mid-send) never sends twice: the outbox knows the send.
"""
from __future__ import annotations

import hashlib
import json
import re

from integration.delivery.owners import alive, owner_id
from .problems import Problem

HEADER = "Idempotency-Key"
KIND = "http_idempotency"
CLAIM_PREFIX = "http-idem:"
TTL = 24 * 3600.0
KEPT = (400, 422)  # besides every 2xx: what a retry with the same body cannot change
_VALID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")  # 1-255 visible ASCII characters (spaces inside)


def check_header(value: str) -> str:
    value = value.strip()
    if not _VALID.fullmatch(value):
        raise Problem(400, "input", f"the {HEADER} header must be 1 to 255 visible ASCII characters",
                      hint="a UUID per logical operation is a good key", details={"header": HEADER})
    return value


def scoped(key_name: str, idempotency_key: str) -> str:
    return hashlib.sha256(f"{key_name}\0{idempotency_key}".encode()).hexdigest()


def fingerprint(command: str, args: dict) -> str:
    blob = json.dumps([command, args], sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def dedupe_key(scope: str) -> str:
    """The outbox dedupe_key a send under this Idempotency-Key uses when its body gives none."""
    return "http-idem-" + scope[:40]


def kept(status: int) -> bool:
    return 200 <= status < 300 or status in KEPT


class Idempotency:
    def __init__(self, store, *, lease: float):
        self.store = store
        self.lease = lease

    def begin(self, scope: str, fp: str) -> dict | None:
        """The recorded answer to replay, or None: the caller holds the claim and runs (then
        calls :meth:`finish`). Problem 422 for another body under the key, 409 while it runs."""
        record = self._recorded(scope, fp)
        if record is not None:
            return record
        claim = self._claim(scope, fp)
        if claim["prior"] is not None and claim["prior"] not in ("sent", "pending") \
                and (claim.get("row") or {}).get("target") != fp:
            # taken over from a holder that died running another body: the claim says ours
            self.store.outbox_delete(CLAIM_PREFIX + scope)
            claim = self._claim(scope, fp)
        if claim["prior"] in ("sent", "pending"):  # another request holds it
            record = self._recorded(scope, fp)
            if record is not None:
                return record
            if (claim.get("row") or {}).get("target") not in (None, "", fp):
                raise _mismatch()
            raise Problem(409, "idempotency_in_progress",
                          f"a request with this {HEADER} is still running", headers={"Retry-After": "1"},
                          hint="retry with the same key and body: once it is done, its answer comes back")
        record = self._recorded(scope, fp)  # answered between our read and our claim
        if record is not None:
            self.store.outbox_delete(CLAIM_PREFIX + scope)
            return record
        return None

    def _claim(self, scope: str, fp: str) -> dict:
        return self.store.outbox_claim(CLAIM_PREFIX + scope, target=fp, lease=self.lease, owner=owner_id(),
                                       holder_alive=alive)

    def finish(self, scope: str, fp: str, status: int, body: bytes, headers: dict, media_type: str) -> None:
        """Record the answer (when it is one to keep) and drop the claim: recorded first, so a
        request that claims after the drop finds the answer."""
        try:
            if kept(status):
                self.store.put(KIND, scope, {"fingerprint": fp, "status": status, "media_type": media_type,
                                             "headers": headers, "body": body.decode("utf-8", "surrogateescape"),
                                             "created": self.store.now()}, ttl=TTL)
        finally:
            self.store.outbox_delete(CLAIM_PREFIX + scope)

    def release(self, scope: str) -> None:
        self.store.outbox_delete(CLAIM_PREFIX + scope)

    def _recorded(self, scope: str, fp: str) -> dict | None:
        record = self.store.get(KIND, scope)
        if not isinstance(record, dict):
            return None
        if record.get("fingerprint") != fp:
            raise _mismatch()
        return record


def _mismatch() -> Problem:
    return Problem(422, "idempotency_mismatch", f"this {HEADER} was used with another body (or command)",
                   hint="use a new key for a new request; a retry must send the same body as the first")
