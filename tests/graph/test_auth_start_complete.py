"""The device-code sign-in in two steps, as a war room needs it (XSOAR's microsoft-teams-auth-start
and microsoft-teams-auth-complete): `auth-start` prints the URL and code and returns at once,
keeping MSAL's flow in the store as state (not the directory cache, not a token cache) until the
code expires; `auth-complete` finishes it: before the person has signed in, exit 3 with a hint to
run it again and the flow kept; after, signed in (the tokens kept as `auth login` keeps them) and
the flow dropped; an expired or missing flow is a clear error. The fake tenant approves a device
code for its service account after the first poll (fake_tenant/entra.py), which is how these
tests play the person signing in."""
from __future__ import annotations

import json
import time

import pytest

from integration.dispatch import Runtime, execute
from integration.engine.errors import AuthError
from integration.frontends.cli import main
from integration.graph.auth import DEVICE_FLOW

SVC = "soar-svc@contoso.example"


def run(cfg_file, *argv):
    out, err = [], []
    code = main(["--config", str(cfg_file), *argv], out=out.append, err=err.append)
    return code, "\n".join(out), "\n".join(err)


def pending(cfg_file):
    rt = Runtime(config_path=str(cfg_file))
    try:
        return rt.auth.device_pending()
    finally:
        rt.close()


def device_polls(emu):
    return [e for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token")]


def test_auth_start_returns_at_once_with_the_url_and_the_code(emu, cfg_file):
    started = time.monotonic()
    code, out, err = run(cfg_file, "auth-start")
    assert code == 0, err
    assert time.monotonic() - started < 5  # nobody is waited for
    flow = pending(cfg_file)
    assert flow is not None
    assert flow["verification_uri"] in out and flow["user_code"] in out and "auth-complete" in out
    assert not device_polls(emu)  # nothing asked of the token endpoint yet
    # kept as a token cache is (the device code can redeem the sign-in): 0600 on disk,
    # encrypted in a shared store, beside the delegated cache that is still empty
    rt = Runtime(config_path=str(cfg_file))
    try:
        assert rt.store.load_tokens("delegated") is None and not rt.auth.signed_in()
        kept = json.loads(rt.store.load_tokens(DEVICE_FLOW))
        assert kept["user_code"] == flow["user_code"] and kept["expires_at"] > time.time()
    finally:
        rt.close()
    # the JSON output carries the URL and code, never the device code itself
    code, out, err = run(cfg_file, "--output", "json", "auth-start")
    assert code == 0 and "device_code" not in out and pending(cfg_file)["device_code"] not in out
    data = json.loads(out)
    assert data == {"verificationUri": pending(cfg_file)["verification_uri"],
                    "userCode": pending(cfg_file)["user_code"], "expiresOn": data["expiresOn"]}


def test_auth_complete_before_and_after_the_person_signed_in(emu, cfg_file):
    assert run(cfg_file, "auth-start")[0] == 0
    user_code = pending(cfg_file)["user_code"]
    # the person has not finished yet: exit 3, a hint to run it again, the flow kept
    code, out, err = run(cfg_file, "auth-complete", "--wait", "0")
    assert code == 3 and not out
    assert "not finished yet" in err and user_code in err and "run auth-complete again" in err
    assert pending(cfg_file)["user_code"] == user_code
    code, out, err = run(cfg_file, "--output", "json", "auth", "status", "--no-check")
    assert code == 0 and next(r for r in json.loads(out) if r["flow"] == "delegated")["signedIn"] is False
    # signed in now (the fake tenant approves after the first poll): the tokens kept, the flow dropped
    code, out, err = run(cfg_file, "auth-complete")
    assert code == 0, err
    assert f"Signed in as {SVC}" in out
    assert pending(cfg_file) is None
    code, out, err = run(cfg_file, "--output", "json", "auth", "status")
    delegated = next(r for r in json.loads(out) if r["flow"] == "delegated")
    assert code == 0 and delegated["signedIn"] is True and delegated["account"] == SVC
    code, out, err = run(cfg_file, "--flow", "delegated", "channel-list", "--team", "IT Helpdesk")
    assert code == 0 and "Escalations" in out, err
    # nothing is pending any more
    code, out, err = run(cfg_file, "auth-complete")
    assert code == 3 and "no device-code sign-in is pending" in err and "auth-start" in err


def test_xsoars_names_in_war_room_form(emu, cfg_file):
    code, out, err = run(cfg_file, "!microsoft-teams-auth-start")
    assert code == 0 and pending(cfg_file)["user_code"] in out, err
    code, out, err = run(cfg_file, "!microsoft-teams-auth-complete")
    assert code == 0 and f"Signed in as {SVC}" in out, err


def test_auth_complete_without_a_start_says_what_to_run(emu, runtime):
    with pytest.raises(AuthError) as e:
        execute("auth-complete", {}, runtime)
    assert e.value.exit_code == 3 and "no device-code sign-in is pending" in e.value.message
    assert "msteams auth-start" in e.value.hint
    assert not device_polls(emu)


def test_a_flow_past_its_expiry_is_not_pending(emu, runtime):
    execute("auth-start", {}, runtime)
    flow = runtime.auth.device_pending()
    runtime.store.save_tokens(DEVICE_FLOW, json.dumps({**flow, "expires_at": time.time() - 1}))
    with pytest.raises(AuthError) as e:
        execute("auth-complete", {}, runtime)
    assert "no device-code sign-in is pending" in e.value.message and "expired" in e.value.message
    assert not device_polls(emu)


def test_a_code_the_tenant_says_has_expired_is_dropped(emu, runtime):
    execute("auth-start", {}, runtime)
    emu.entra.clock = lambda: time.time() + 3600  # the fake tenant's code lives 15 minutes
    with pytest.raises(AuthError) as e:
        execute("auth-complete", {"wait": 0}, runtime)
    assert "has expired" in e.value.message and "auth-start" in e.value.hint and e.value.exit_code == 3
    assert runtime.auth.device_pending() is None and not runtime.auth.ready("delegated")


def test_the_stored_flow_expires_with_the_code(emu, runtime, monkeypatch):
    execute("auth-start", {}, runtime)
    flow = json.loads(runtime.store.load_tokens(DEVICE_FLOW))
    assert flow["expires_in"] == 900  # the fake tenant's lifetime, as Entra's
    later = time.time() + 901
    monkeypatch.setattr("integration.graph.auth.time.time", lambda: later)
    assert runtime.auth.device_pending() is None


def test_starting_again_replaces_the_pending_sign_in(emu, runtime):
    first = execute("auth-start", {}, runtime).outputs[0]["userCode"]
    second = execute("auth-start", {}, runtime).outputs[0]["userCode"]
    assert first != second and runtime.auth.device_pending()["user_code"] == second
    r = execute("auth-complete", {}, runtime)
    assert r.message.startswith(f"Signed in as {SVC}") and runtime.auth.ready("delegated")


def test_auth_reset_forgets_a_pending_sign_in(emu, runtime):
    execute("auth-start", {}, runtime)
    execute("auth-reset", {}, runtime)
    assert runtime.auth.device_pending() is None
    with pytest.raises(AuthError):
        execute("auth-complete", {}, runtime)
    assert not runtime.auth.ready("delegated")
