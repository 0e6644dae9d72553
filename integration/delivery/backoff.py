"""The one retry rule for Graph, the Bot Connector and the sign-in endpoints: how long to wait
before the next attempt (the service's Retry-After, else exponential backoff, plus jitter)."""
from __future__ import annotations

import math
import random
import time

MAX_BACKOFF_SECONDS = 32.0


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After in seconds, given as seconds (Graph) or as an HTTP date (RFC 9110 10.2.3;
    proxies and the Bot Connector may send one): the seconds from ``now`` until that date, 0 for
    a date past. None when absent or unreadable (the caller backs off exponentially instead)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # only for the rare date form

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is read as such
            from datetime import timezone

            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def retry_delay(retry_after: str | None, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 first). Some Teams endpoints omit
    Retry-After: back off exponentially then; jitter spreads a herd of retrying workers."""
    delay = retry_after_seconds(retry_after)
    if delay is None:
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** attempt)
    return delay + rng.uniform(0, min(1.0, delay * 0.1 + 0.1))
