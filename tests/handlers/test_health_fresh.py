"""integration-health checks for real (issue 9, part 6): a fresh token per configured flow,
bypassing the caches, so a wrong secret or a revoked sign-in is found while a cached token is
still valid; through the CLI, exit 3 for a flow without a token, 4 for missing permissions
only, 0 only when all is well, and the table lists every check either way."""
from __future__ import annotations

import pytest
import yaml

from integration.frontends.cli import main


def run(cfg_file, *argv):
    out, err = [], []
    code = main(["--config", str(cfg_file), *argv], out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def health(cfg_file):
    code, out, err = run(cfg_file, "--output", "json", "integration-health")
    import json

    return code, {r["check"]: r for r in json.loads(out)}, out + err


def with_settings(cfg_file, tmp_path, name, **settings):
    data = yaml.safe_load(cfg_file.read_text())
    data.update(settings)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def token_posts(emu) -> int:
    return sum(1 for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token"))


def test_all_good_is_exit_0_and_every_token_is_fresh(emu, cfg_file):
    assert run(cfg_file, "auth", "login")[0] == 0
    assert run(cfg_file, "channel-list", "--team", "IT Helpdesk")[0] == 0  # app token cached
    before = token_posts(emu)
    code, rows, _ = health(cfg_file)
    assert code == 0
    assert set(rows) == {"app", "delegated", "bot", "store"}
    assert all(r["status"] == "ok" for r in rows.values())
    assert token_posts(emu) == before + 3  # one per flow, none served from a cache
    code, out, _ = run(cfg_file, "integration-health")
    assert code == 0 and "No problems found" in out and all(f"| {c} | ok |" in out for c in rows)


def test_a_wrong_client_secret_is_found_while_a_cached_token_is_valid(emu, cfg_file, tmp_path):
    assert run(cfg_file, "auth", "login")[0] == 0
    assert run(cfg_file, "channel-list", "--team", "IT Helpdesk")[0] == 0
    wrong = with_settings(cfg_file, tmp_path, "wrong.yml", client_secret="wrong-client-secret-value-9")
    # Commands still run on the cached token: only a fresh one shows the secret is wrong.
    assert run(wrong, "channel-list", "--team", "IT Helpdesk")[0] == 0
    code, rows, text = health(wrong)
    assert code == 3
    assert rows["app"]["status"] == "token error"
    assert "invalid_client" in rows["app"]["detail"] and "client_secret" in rows["app"]["detail"]
    assert rows["delegated"]["status"] == "token error"  # the refresh presents the same secret
    assert rows["bot"]["status"] == "ok" and rows["store"]["status"] == "ok"
    assert "wrong-client-secret-value-9" not in text and emu.config()["client_secret"] not in text
    code, out, _ = run(wrong, "integration-health")  # the table lists each check too
    assert code == 3 and "app: token error" in out and "| bot | ok |" in out and "(exit 3)" in out


def test_a_revoked_sign_in_is_found_while_its_access_token_is_valid(emu, cfg_file):
    assert run(cfg_file, "auth", "login")[0] == 0
    emu.revoke_refresh_tokens()
    assert run(cfg_file, "--flow", "delegated", "channel-list", "--team", "IT Helpdesk")[0] == 0  # cached
    code, rows, _ = health(cfg_file)
    assert code == 3
    assert rows["delegated"]["status"] == "token error" and "msteams auth login" in rows["delegated"]["detail"]
    assert rows["app"]["status"] == "ok"


def test_missing_permission_is_exit_4(emu, cfg_file):
    client_id = emu.config()["client_id"]
    granted = set(emu.state.app(client_id).application_permissions)
    emu.set_permissions(client_id, application=granted - {"Calls.Initiate.All"})
    code, rows, _ = health(cfg_file)
    assert code == 4
    assert rows["app"]["status"] == "missing permissions" and rows["app"]["missing"] == ["Calls.Initiate.All"]
    assert "ring-user" in rows["app"]["affectedCommands"]
    assert rows["bot"]["status"] == "ok"


def test_a_token_error_outranks_missing_permissions(emu, cfg_file, tmp_path):
    client_id = emu.config()["client_id"]
    granted = set(emu.state.app(client_id).application_permissions)
    emu.set_permissions(client_id, application=granted - {"Calls.Initiate.All"})
    broken_bot = with_settings(cfg_file, tmp_path, "bot.yml", bot_secret="wrong-bot-secret-value")
    code, rows, _ = health(broken_bot)
    assert code == 3 and rows["app"]["status"] == "missing permissions" and rows["bot"]["status"] == "token error"
    assert "bot_secret" in rows["bot"]["detail"]


@pytest.mark.parametrize("status", [429, 503])
def test_a_throttled_token_endpoint_is_retried_before_reporting(emu, cfg_file, tmp_path, status):
    quick = with_settings(cfg_file, tmp_path, "quick.yml", retry_budget_seconds=1)
    emu.faults.add(method="POST", path=r"oauth2/v2.0/token", status=status, retry_after=0, count=1, target="entra")
    code, rows, _ = health(quick)
    assert code == 0 and rows["app"]["status"] == "ok"
