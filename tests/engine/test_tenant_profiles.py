"""Tenant profiles (issue 27): `tenants:` in the config, --tenant / tenant= / MSTEAMS_TENANT,
each tenant's own runtime and store, refusals that name what was wrong, and the guards that
keep one tenant's tokens and conversations away from another's. Real config files, the real
CLI, the fake tenant over HTTP, real SQLite (or Redis under MSTEAMS_TEST_STORE=redis)."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from engine_fixtures import store_settings
from integration.engine import config as config_mod
from integration.engine.errors import AuthError, ConfigError, ConfigFileError, InputError, PermissionDenied
from tenant_helpers import OTHER, cli, write_profiles

# ---------------------------------------------------------------- reading profiles

def test_a_profile_overlays_the_shared_settings_and_gets_its_own_store(emu, tmp_path):
    path = write_profiles(emu, tmp_path, store_path=str(tmp_path / "store.sqlite3"), timeout=20)
    contoso = config_mod.load(path, env={}, tenant="contoso")
    assert contoso.tenant == "contoso" and contoso.tenant_names == ("contoso", "fabrikam")
    assert contoso.tenant_id == emu.config()["tenant_id"] and contoso.client_id == emu.config()["client_id"]
    assert contoso.timeout == 20  # shared
    assert contoso.store_path == str(tmp_path / "store.contoso.sqlite3")
    assert contoso.store_namespace == f"{store_settings(tmp_path).get('store_namespace', 'msteams')}:tenant:contoso"
    fabrikam = config_mod.load(path, env={}, tenant="fabrikam")
    assert fabrikam.tenant_id == OTHER and fabrikam.store_path == str(tmp_path / "store.fabrikam.sqlite3")
    provider = config_mod.load(path, env={})
    assert provider.tenant is None and provider.tenant_id is None
    assert provider.store_path == str(tmp_path / "store.sqlite3")  # the provider's own (API keys, jobs)


def test_msteams_tenant_names_the_profile_and_the_argument_wins(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    assert config_mod.load(path, env={"MSTEAMS_TENANT": "fabrikam"}).tenant == "fabrikam"
    assert config_mod.load(path, env={"MSTEAMS_TENANT": "fabrikam"}, tenant="contoso").tenant == "contoso"


@pytest.mark.parametrize("profiles, words", [
    ({"Contoso": {"tenant_id": OTHER}}, ["tenant profile name 'Contoso'", "lowercase"]),
    ({"contoso": {"store_path": "/tmp/x.sqlite3"}}, ["setting 'store_path' is not set per tenant"]),
    ({"contoso": {"tenant_idd": OTHER}}, ["unknown setting 'tenant_idd'", "did you mean 'tenant_id'"]),
    ({"contoso": {"timeout": "soon"}}, ["setting 'timeout': must be a number"]),
    ({"contoso": "fabrikam"}, ["must be a mapping of settings"]),
    ([], ["must be a mapping of profile names"]),
    ({"contoso": {"service_account": "a@b.example"}}, ["tenant profile 'contoso': set its tenant_id"]),
])
def test_a_bad_profile_names_file_line_and_setting(emu, tmp_path, profiles, words):
    path = write_profiles(emu, tmp_path, profiles=profiles)
    with pytest.raises(ConfigFileError) as e:
        config_mod.load(path, env={}, tenant="contoso")
    text = e.value.message
    assert all(w in text for w in words), text
    assert e.value.line is not None


def test_a_profile_must_set_its_own_authority_when_the_top_level_sets_one(emu, tmp_path):
    path = write_profiles(emu, tmp_path, profiles={"fabrikam": {"tenant_id": OTHER}},
                          authority=emu.config()["authority"])
    with pytest.raises(ConfigFileError, match="tenant profile 'fabrikam': set its own authority"):
        config_mod.load(path, env={}, tenant="fabrikam")


def test_an_unknown_tenant_names_the_profiles(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    with pytest.raises(InputError) as e:
        config_mod.load(path, env={}, tenant="northwind")
    assert "no tenant profile 'northwind'" in e.value.message and "contoso, fabrikam" in e.value.hint


def test_a_tenant_named_without_profiles_is_an_error(emu, tmp_path):
    path = tmp_path / "one.yml"
    path.write_text(yaml.safe_dump(dict(emu.config(), **store_settings(tmp_path))))
    with pytest.raises(InputError, match="has no tenant profiles"):
        config_mod.load(str(path), env={}, tenant="contoso")
    code, out, err = cli(str(path), "--tenant", "contoso", "team-list")
    assert code == 2 and "has no tenant profiles" in err and "Traceback" not in err


def test_a_tenant_identity_from_the_environment_is_refused_with_profiles(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    with pytest.raises(ConfigError) as e:
        config_mod.load(path, env={"MSTEAMS_TENANT_ID": OTHER}, tenant="contoso")
    assert "MSTEAMS_TENANT_ID" in e.value.message and "each profile names its own tenant" in e.value.message


# ---------------------------------------------------------------- the command line

def test_no_tenant_named_exits_2_naming_the_choices(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    for argv in (["cache-show"], ["team-list"], ["!team-list"], ["-o", "json", "user-list"]):
        code, out, err = cli(path, *argv)
        assert code == 2 and not out, argv
        assert "tenant profiles (contoso, fabrikam)" in err and "--tenant NAME" in err, err


def test_tenant_flag_war_room_argument_and_variable_run_against_the_profile(emu, tmp_path, monkeypatch):
    path = write_profiles(emu, tmp_path)
    runs = [cli(path, "--tenant", "contoso", "-o", "json", "team-list"),
            cli(path, "-o", "json", "team-list", "--tenant", "contoso"),
            cli(path, "-o", "json", "!team-list tenant=contoso")]
    monkeypatch.setenv("MSTEAMS_TENANT", "contoso")
    runs.append(cli(path, "-o", "json", "team-list"))
    for code, out, err in runs:
        assert code == 0, err
        assert "Security Operations" in [t["displayName"] for t in json.loads(out)]
    code, out, err = cli(path, "--tenant", "Bad Name", "team-list")
    assert code == 2 and "--tenant: must name a tenant profile" in err
    code, out, err = cli(path, "!team-list tenant=northwind")
    assert code == 2 and "no tenant profile 'northwind'" in err and "contoso, fabrikam" in err


@pytest.mark.skipif(os.environ.get("MSTEAMS_TEST_STORE") == "redis", reason="SQLite files are what is looked at")
def test_each_tenant_writes_its_own_store_and_cache_reset_leaves_the_other(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    for tenant in ("contoso", "fabrikam"):
        # a name lookup caches what it found (fabrikam's tokens fail: nothing of it is cached)
        cli(path, "--tenant", tenant, "channel-list", "--team", "Security Operations")
    code, out, err = cli(path, "--tenant", "contoso", "cache-show")
    assert code == 0 and f"Context store {tmp_path / 'store.contoso.sqlite3'}" in out
    from integration.store.sqlite import SQLiteStore

    assert SQLiteStore(tmp_path / "store.contoso.sqlite3").counts()["team"] == 1
    fab = SQLiteStore(tmp_path / "store.fabrikam.sqlite3")
    assert fab.counts()["team"] == 0 and not os.path.exists(tmp_path / "store.sqlite3")
    code, out, err = cli(path, "--tenant", "contoso", "cache-reset")
    assert code == 0, err
    assert SQLiteStore(tmp_path / "store.contoso.sqlite3").counts()["team"] == 0
    fab.put("team", "kept", {"id": "kept"})
    code, out, err = cli(path, "--tenant", "contoso", "cache-reset")
    assert fab.get("team", "kept") == {"id": "kept"}  # another tenant's cache is not touched


def test_a_token_of_another_tenant_is_refused_and_tenants_shows_it(emu, tmp_path):
    path = write_profiles(emu, tmp_path)
    code, out, err = cli(path, "--tenant", "fabrikam", "team-list", "--flow", "app")
    assert code == 3 and f"not '{OTHER}'" in err and "tenant profile 'fabrikam'" in err, err
    code, out, err = cli(path, "-o", "json", "tenants")
    rows = {r["tenant"]: r for r in json.loads(out)}
    assert code == 3 and set(rows) == {"contoso", "fabrikam"}
    assert rows["contoso"]["app"] == "ok" and rows["contoso"]["bot"] == "ok"
    assert rows["fabrikam"]["app"] == "token error" and rows["fabrikam"]["status"] == "problems"
    assert OTHER in rows["fabrikam"]["detail"]
    code2, out2, _ = cli(path, "-o", "json", "integration-health", "--all-tenants")
    assert code2 == 3 and [r["tenant"] for r in json.loads(out2)] == ["contoso", "fabrikam"]


def test_tenants_without_profiles_says_so(emu, tmp_path):
    path = tmp_path / "one.yml"
    path.write_text(yaml.safe_dump(dict(emu.config(), **store_settings(tmp_path))))
    code, out, err = cli(str(path), "tenants")
    assert code == 2 and "has no tenant profiles" in err


# ---------------------------------------------------------------- the Python API

def test_python_api_names_the_tenant_per_client_or_per_call(emu, tmp_path):
    from integration import api

    path = write_profiles(emu, tmp_path)
    with api.Client(path) as client:
        with pytest.raises(InputError, match=r"tenant profiles \(contoso, fabrikam\)"):
            client.execute("team-list")
        teams = client.execute("team-list", tenant="contoso").outputs
        assert "Security Operations" in [t["displayName"] for t in teams]
        with pytest.raises(AuthError, match="not '" + OTHER):
            client.execute("team-list", {"tenant": "fabrikam"}, flow="app")
    with api.Client(path, tenant="contoso") as client:
        assert client.execute("team-list").outputs


# ---------------------------------------------------------------- conversations keep their tenant

def test_a_stored_conversation_of_another_tenant_is_refused_before_sending(emu, tmp_path):
    from integration.dispatch import Runtime, execute

    path = write_profiles(emu, tmp_path)
    rt = Runtime(config_path=path, tenant="contoso")
    try:
        channel_id = "19:foreign-thread@thread.tacv2"
        rt.store.conversation_put(f"channel/{rt.cfg.bot_id}/{channel_id}", "channel",
                                  {"conversationId": channel_id, "serviceUrl": rt.cfg.bot_service_url,
                                   "tenantId": OTHER, "botId": rt.cfg.bot_id})
        rt.auth.acquire("bot")  # its token got first: what follows would be the send itself
        before = len(emu.request_log)
        with pytest.raises(PermissionDenied) as e:
            execute("send-notification", {"channel": channel_id, "message": "hello"}, rt)
        assert f"belongs to tenant '{OTHER}'" in e.value.message and "not sent" in e.value.message
        assert not [r for r in emu.request_log[before:] if "/v3/conversations" in r["path"]]
    finally:
        rt.close()
