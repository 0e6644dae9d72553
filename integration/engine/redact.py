"""Keeps secrets out of everything a user or a log can see.

Configuration registers each secret it loads (client secret, bot secret); token-shaped strings
(JWTs, long opaque grants) are masked by pattern. The CLI passes every message and the logging
setup installs :class:`RedactingFilter`, so a secret that slips into an exception is still masked.
"""
from __future__ import annotations

import functools
import logging
import re

_secrets: set[str] = set()
MASK = "***"


@functools.cache
def _patterns() -> list:
    """JWTs (three base64url parts) and the parameter forms in which grants travel; compiled on
    first use (every CLI start imports this module, few runs print anything to redact)."""
    return [
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        re.compile(r"(?i)\b(client_secret|access_token|refresh_token|id_token|code|code_verifier|assertion|password)"
                   r"(=|\"\s*:\s*\"|':\s*')([^&\s\"',]+)"),
        re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"),
    ]


def register(secret: str | None) -> None:
    """Mask this exact value wherever it appears from now on (values under 4 chars are ignored)."""
    if secret and len(secret) >= 4:
        _secrets.add(secret)


def redact(text: str) -> str:
    if not text:
        return text
    for s in sorted(_secrets, key=len, reverse=True):
        text = text.replace(s, MASK)
    jwt, grant, bearer = _patterns()
    text = jwt.sub(MASK, text)
    text = grant.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = bearer.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            msg = str(record.msg)
        record.msg, record.args = redact(msg), None
        return True
