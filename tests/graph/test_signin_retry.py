"""Sign-in retried like Graph (issue 9, part 5): 429/503/504 from the token endpoint retried
with Retry-After (or backoff without it) within max_retries and retry_budget_seconds, through
the runtime's injected sleep (no real waiting); invalid_client and invalid_grant not retried
and saying what to do; no secret, token or code in a message or a log line."""
from __future__ import annotations

import json
import logging

import pytest

from engine_fixtures import make_config
from integration.dispatch import Runtime, execute
from integration.engine.errors import AuthError, GraphError, ThrottledError

TOKEN = r"oauth2/v2.0/token"


def token_posts(emu) -> list[int]:
    return [e["status"] for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token")]


def fault(emu, status, count=1, retry_after=None):
    return emu.faults.add(method="POST", path=TOKEN, status=status, count=count, retry_after=retry_after,
                          target="entra")


def jittered(waits, expected):
    """Each wait is the expected delay plus at most a second of jitter."""
    return len(waits) == len(expected) and all(e <= w <= e + 1.0 for w, e in zip(waits, expected))


def test_429_with_retry_after_is_waited_out(emu, runtime, sleeps):
    fault(emu, 429, count=2, retry_after=7)
    assert runtime.auth.acquire("app").token
    assert jittered(sleeps, [7, 7])
    assert token_posts(emu) == [429, 429, 200]


def test_429_without_retry_after_backs_off(emu, runtime, sleeps):
    fault(emu, 429, count=3)
    runtime.auth.acquire("bot")
    assert jittered(sleeps, [1, 2, 4])


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_retried(emu, runtime, sleeps, status):
    fault(emu, status, count=1, retry_after=2)
    r = execute("channel-list", {"team": "IT Helpdesk"}, runtime)
    assert r.outputs and jittered(sleeps, [2])
    assert token_posts(emu) == [status, 200]


def test_a_refresh_is_retried_without_burning_the_refresh_token(emu, signed_in, sleeps):
    emu.expire_tokens()
    stats = emu.tokens.refresh_stats()
    fault(emu, 503, count=2)
    info = signed_in.auth.acquire("delegated", force_refresh=True)
    assert info.account == emu.config()["service_account"]
    assert jittered(sleeps, [1, 2])
    after = emu.tokens.refresh_stats()
    assert (after["redeemed"] - stats["redeemed"], after["refused"] - stats["refused"]) == (1, 0)


def test_the_budget_bounds_the_waiting(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, retry_budget_seconds=10), sleep=sleeps)
    try:
        fault(emu, 429, count=5, retry_after=6)
        with pytest.raises(ThrottledError) as e:
            rt.auth.acquire("app")
        assert jittered(sleeps, [6])  # a second 6 s wait would pass the 10 s budget
        msg = str(e.value)
        assert "still throttled after 1 retry" in msg and "HTTP 429" in msg and "retry_budget_seconds" in msg
        assert e.value.exit_code == 1
    finally:
        rt.close()


def test_max_retries_bounds_the_attempts(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, max_retries=2), sleep=sleeps)
    try:
        fault(emu, 503, count=5)
        with pytest.raises(GraphError) as e:
            rt.auth.acquire("app")
        assert len(sleeps) == 2 and token_posts(emu) == [503, 503, 503]
        assert "unavailable after 2 retries" in str(e.value) and "HTTP 503" in str(e.value)
    finally:
        rt.close()


def test_a_wrong_client_secret_is_not_retried_and_names_the_setting(emu, tmp_path, sleeps, caplog):
    wrong = "wrong-client-secret-value-123"
    rt = Runtime(make_config(emu, tmp_path, client_secret=wrong), sleep=sleeps)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AuthError) as e:
            execute("channel-list", {"team": "IT Helpdesk"}, rt)
    finally:
        rt.close()
    assert sleeps == [] and token_posts(emu) == [401]
    text = str(e.value)
    assert "invalid_client" in text and "client_secret" in text and "MSTEAMS_CLIENT_SECRET" in text
    assert e.value.exit_code == 3
    assert wrong not in text and wrong not in caplog.text


def test_a_wrong_bot_secret_names_the_bot_setting(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, bot_secret="wrong-bot-secret-value"), sleep=sleeps)
    try:
        with pytest.raises(AuthError) as e:
            rt.auth.acquire("bot")
    finally:
        rt.close()
    assert "bot_secret" in str(e.value) and "wrong-bot-secret-value" not in str(e.value) and sleeps == []


def test_a_revoked_sign_in_is_not_retried_and_says_to_sign_in_again(emu, signed_in, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    emu.revoke_refresh_tokens()
    emu.expire_tokens()
    n = len(token_posts(emu))
    with pytest.raises(AuthError) as e:
        execute("message-send-to-chat", {"chat": "x", "content": "y"}, signed_in)
    assert sleeps == [] and len(token_posts(emu)) == n + 1
    text = str(e.value)
    assert "invalid_grant" in text and "`msteams auth login`" in text and e.value.exit_code == 3
    rts = [v["secret"] for v in json.loads(signed_in.store.load_tokens("delegated"))["RefreshToken"].values()]
    for secret in rts + [emu.config()["client_secret"]]:
        assert secret not in text and secret not in caplog.text
    assert "eyJ" not in text


def test_retries_log_the_endpoint_never_the_form(emu, signed_in, sleeps, caplog):
    caplog.set_level(logging.DEBUG, logger="msteams")
    emu.expire_tokens()
    fault(emu, 429, count=1, retry_after=1)
    signed_in.auth.acquire("delegated", force_refresh=True)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("msteams")]
    assert any("answered HTTP 429; retrying in" in m and "/oauth2/v2.0/token" in m for m in lines)
    blob = signed_in.store.load_tokens("delegated")
    rts = [v["secret"] for v in json.loads(blob)["RefreshToken"].values()]
    for m in lines:
        assert "refresh_token" not in m and "client_secret" not in m and not any(rt in m for rt in rts)
