"""Auth flows over MSAL against the emulator: unattended auth-code login through the loopback
listener, device code, silent refresh, token caches persisted in the store (0600), reset,
revoked refresh tokens, and the login URL."""
import os
import stat

import pytest
from urllib.parse import parse_qs, urlsplit

from integration.dispatch import Runtime, execute
from integration.engine.errors import AuthError

from engine_fixtures import STORE_BACKEND, make_config


def token_requests(emu):
    return [e for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token")]


def test_device_code_login(emu, runtime):
    shown = []
    runtime.echo = shown.append
    r = execute("auth-login", {"device_code": True}, runtime)
    assert "Signed in as soar-svc@contoso.example" in r.message
    assert shown and "code" in shown[0].lower()
    assert runtime.auth.ready("delegated")


def test_tokens_persist_across_processes_and_file_is_private(emu, tmp_path, sleeps):
    rt1 = Runtime(make_config(emu, tmp_path), sleep=sleeps)
    execute("auth-login", {}, rt1)
    execute("channel-list", {"team": "IT Helpdesk"}, rt1)
    rt1.close()
    if STORE_BACKEND == "sqlite":  # in Redis the caches are encrypted instead (test_redis_store)
        assert stat.S_IMODE(os.stat(tmp_path / "store.sqlite3").st_mode) == 0o600
    before = len(token_requests(emu))
    rt2 = Runtime(make_config(emu, tmp_path), sleep=sleeps)  # a new process: cache comes from the store
    assert rt2.auth.ready("delegated")
    execute("channel-list", {"team": "IT Helpdesk"}, rt2, flow="delegated")
    execute("channel-list", {"team": "IT Helpdesk"}, rt2, flow="app")
    assert len(token_requests(emu)) == before  # both served from the persisted caches
    rt2.close()


def test_silent_refresh_after_expiry(emu, signed_in):
    execute("cache-reset", {}, signed_in)
    emu.expire_tokens()
    before = len(token_requests(emu))
    r = execute("channel-list", {"team": "IT Helpdesk"}, signed_in, flow="delegated")
    assert r.outputs and len(token_requests(emu)) > before


def test_revoked_refresh_token_asks_for_login(emu, signed_in):
    emu.revoke_refresh_tokens()
    emu.expire_tokens()
    signed_in.auth._memo.clear()
    with pytest.raises(AuthError) as e:
        signed_in.auth.acquire("delegated", force_refresh=True)
    assert "msteams auth login" in str(e.value)


def test_auth_reset_signs_out(emu, signed_in):
    r = execute("auth-reset", {}, signed_in)
    assert "Signed out" in r.message
    assert not signed_in.auth.ready("delegated")
    with pytest.raises(AuthError, match="auth login"):
        execute("message-send-to-chat", {"chat": "x", "content": "y"}, signed_in)


def test_cache_reset_include_tokens(emu, signed_in):
    execute("channel-list", {"team": "IT Helpdesk"}, signed_in)
    r = execute("cache-reset", {"include_tokens": True}, signed_in)
    assert r.raw["team"] == 1 and r.raw["token_caches"] >= 2
    assert not signed_in.auth.ready("delegated")


def test_generate_login_url(emu, runtime):
    r = execute("generate-login-url", {}, runtime)
    q = parse_qs(urlsplit(r.raw["url"]).query)
    assert r.raw["url"].startswith(emu.authority)
    assert q["client_id"] == [emu.config()["client_id"]] and q["response_type"] == ["code"]
    assert "client_secret" not in r.raw["url"]


def test_auth_status_reports_flows(emu, signed_in):
    rows = {r["flow"]: r for r in execute("auth-status", {}, signed_in).outputs}
    assert rows["app"]["detail"] == "ready" and "Calls.Initiate.All" in rows["app"]["permissions"]
    assert rows["delegated"]["account"] == "soar-svc@contoso.example"
    assert "ChatMessage.Send" in rows["delegated"]["permissions"]


def test_unreachable_authority_is_auth_error(tmp_path, emu):
    cfg = make_config(emu, tmp_path, authority="https://127.0.0.1:9/nowhere")
    rt = Runtime(cfg)
    with pytest.raises(AuthError):
        execute("channel-list", {"team": "x"}, rt)


def test_login_url_then_finish_with_redirect_url(emu, runtime, http):
    url = execute("generate-login-url", {"redirect_uri": "http://localhost:8765/cb"}, runtime).raw["url"]
    r = http.get(url, allow_redirects=False)  # the admin's browser
    location = r.headers["Location"]
    assert location.startswith("http://localhost:8765/cb?")
    done = execute("auth-login", {"redirect_url": location}, runtime)
    assert "Signed in" in done.message and runtime.auth.ready("delegated")
    with pytest.raises(AuthError, match="no sign-in is pending"):
        execute("auth-login", {"redirect_url": location}, runtime)
