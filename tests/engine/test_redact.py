"""Secrets are masked in any text that reaches a user or a log."""
import logging

from integration.engine import redact


def test_registered_secret_and_token_shapes_masked():
    redact.register("s3cr3t-value-xyz")
    text = ("secret s3cr3t-value-xyz token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl "
            "form client_secret=abc123&code=0.AXYZ refresh_token=rt-1 Bearer abcdefghijklmnop")
    out = redact.redact(text)
    for leaked in ("s3cr3t-value-xyz", "eyJhbGci", "abc123", "0.AXYZ", "rt-1", "abcdefghijklmnop"):
        assert leaked not in out


def test_logging_filter(caplog):
    redact.register("another-secret-123")
    logger = logging.getLogger("msteams.test")
    logger.addFilter(redact.RedactingFilter())
    with caplog.at_level(logging.INFO, logger="msteams.test"):
        logger.info("value %s", "another-secret-123")
    assert "another-secret-123" not in caplog.text and "***" in caplog.text
