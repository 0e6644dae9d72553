"""The one retry rule for Graph, the Bot Connector and the sign-in endpoints: how long to wait
before the next attempt (the service's Retry-After, else exponential backoff, plus jitter)."""
from __future__ import annotations

import random

MAX_BACKOFF_SECONDS = 32.0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds; None when absent or an HTTP date (the caller backs off instead)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def retry_delay(retry_after: str | None, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 first). Some Teams endpoints omit
    Retry-After: back off exponentially then; jitter spreads a herd of retrying workers."""
    delay = retry_after_seconds(retry_after)
    if delay is None:
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** attempt)
    return delay + rng.uniform(0, min(1.0, delay * 0.1 + 0.1))
