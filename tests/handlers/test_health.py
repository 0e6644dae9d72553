"""integration-health, token-permissions-list and cache-preload against the emulator, and the
check that every command of the bot/admin set succeeds with exactly the permissions it declares."""
import io
import json
import math
import sys

import pytest

from engine_fixtures import make_config
from integration.engine import registry
from integration.dispatch import Runtime, execute
from integration.engine.errors import AmbiguousError, PermissionDenied
from integration.handlers.health import covers
from integration.graph.resolve import Resolver
from teams_helpers import duplicate_team


def rows_by_check(result):
    return {r["check"]: r for r in result.outputs}


def app_ids(emu):
    cfg = emu.config()
    return cfg["client_id"], cfg["bot_id"]


def test_health_reports_each_flow_the_bot_and_the_store(emu, runtime):
    r = execute("integration-health", {}, runtime)
    rows = rows_by_check(r)
    assert set(rows) == {"app", "delegated", "bot", "store"}
    app = rows["app"]
    assert app["configured"] and app["status"] in ("ok", "missing permissions") and app["expiresOn"]
    assert "Calls.Initiate.All" in app["needed"] and "Calls.Initiate.All" in app["granted"]
    assert rows["delegated"]["status"] == "not signed in" and "auth login" in rows["delegated"]["detail"]
    assert rows["bot"]["status"] == "ok" and rows["bot"]["needed"] == []
    store = rows["store"]
    assert store["status"] == "ok" and store["writable"] and store["path"] == str(runtime.store.path)
    assert "health_probe" not in store["counts"]


def test_health_lists_missing_permissions_with_the_commands_they_block(emu, runtime):
    client_id, _ = app_ids(emu)
    granted = set(emu.state.app(client_id).application_permissions)
    emu.set_permissions(client_id, application=granted - {"Calls.Initiate.All", "TeamMember.ReadWrite.All"})
    app = rows_by_check(execute("integration-health", {}, runtime))["app"]
    assert app["status"] == "missing permissions"
    assert {"Calls.Initiate.All", "TeamMember.Read.All"} <= set(app["missing"])
    assert {"ring-user", "cache-preload"} <= set(app["affectedCommands"])
    assert "Calls.Initiate.All" in app["detail"]


def test_health_after_sign_in_and_with_a_broken_bot_never_shows_secrets(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path, bot_secret="wrong-bot-secret-value"), sleep=sleeps)
    rt.echo = lambda s: None
    try:
        execute("auth-login", {}, rt)
        r = execute("integration-health", {}, rt)
        rows = rows_by_check(r)
        assert rows["delegated"]["status"] in ("ok", "missing permissions")
        assert rows["delegated"]["account"] == emu.config()["service_account"]
        assert rows["bot"]["status"] == "token error" and "invalid_client" in rows["bot"]["detail"]
        text = r.render("table") + r.render("json") + r.render("context") + (r.message or "")
        for secret in (emu.config()["client_secret"], "wrong-bot-secret-value", emu.config()["bot_secret"]):
            assert secret not in text
        assert "eyJ" not in text  # no token
    finally:
        rt.close()


def test_health_with_nothing_but_the_store_configured(emu, tmp_path):
    rt = Runtime(make_config(emu, tmp_path, client_id=None, client_secret=None, bot_id=None, bot_secret=None))
    try:
        rows = rows_by_check(execute("microsoft-teams-integration-health", {}, rt))
        assert [rows[f]["status"] for f in ("app", "delegated", "bot")] == ["not configured"] * 3
        assert rows["store"]["status"] == "ok"
    finally:
        rt.close()
    assert not emu.request_log


def test_permission_levels():
    assert covers({"TeamMember.ReadWrite.All"}, "TeamMember.Read.All")
    assert covers({"User.Read.All"}, "User.ReadBasic.All") and covers({"User.ReadWrite"}, "User.Read")
    assert not covers({"TeamMember.Read.All"}, "TeamMember.ReadWrite.All")
    assert not covers({"Chat.Read"}, "Chat.Read.All")


def test_token_permissions_list(emu, signed_in):
    client_id, _ = app_ids(emu)
    r = execute("token-permissions-list", {}, signed_in)
    by_flow = {row["flow"]: row for row in r.outputs}
    assert set(by_flow) == {"app", "delegated", "bot"}
    assert by_flow["app"]["claim"] == "roles"
    assert set(by_flow["app"]["permissions"]) == set(emu.state.app(client_id).application_permissions)
    assert by_flow["delegated"]["claim"] == "scp" and "ChatMessage.Send" in by_flow["delegated"]["permissions"]
    assert by_flow["app"]["appId"] == client_id
    assert "eyJ" not in r.render("json")
    only = execute("token-permissions-list", {"flow": "app"}, signed_in)
    assert [row["flow"] for row in only.outputs] == ["app"]


def test_token_permissions_list_when_no_flow_is_ready(emu, tmp_path):
    rt = Runtime(make_config(emu, tmp_path, client_secret=None, bot_id=None, bot_secret=None))
    try:
        r = execute("token-permissions-list", {"flow": "delegated"}, rt)
        assert r.outputs == [] and "auth login" in r.message
    finally:
        rt.close()


def test_cache_preload_pages_and_fills_the_store(emu, runtime, capsys):
    r = execute("cache-preload", {"page_size": 2}, runtime)
    counts = {row["kind"]: row["count"] for row in r.outputs}
    st = emu.state
    assert counts == {"teams": len(st.teams), "channels": sum(len(t.channels) for t in st.teams.values()),
                      "members": sum(len(t.members) for t in st.teams.values()), "users": len(st.users)}
    users_gets = [e for e in emu.request_log if e["method"] == "GET" and e["path"] == "/v1.0/users"]
    assert len(users_gets) >= math.ceil(len(st.users) / 2)  # paged 2 at a time
    assert capsys.readouterr().err == ""  # stderr is not a terminal: no progress noise
    store = runtime.store
    team = next(t for t in st.teams.values() if t.display_name == "Security Operations")
    assert [t["id"] for t in store.get("team_name", "Security Operations")] == [team.id]
    ch = next(c for c in team.channels.values() if c.display_name == "Incident Response")
    assert [c["id"] for c in store.get("channel_name", f"{team.id}/Incident Response")] == [ch.id]
    assert store.get("channel", f"{team.id}/{ch.id}")["id"] == ch.id
    bob = st.user("bob.smith@contoso.example")
    assert [u["id"] for u in store.get("user_name", "Bob Smith")] == [bob["id"]]
    assert store.get("user", bob["mail"])["id"] == bob["id"] == store.get("user", bob["id"])["id"]
    m = team.members[0]
    assert store.get("member", f"{team.id}/{m.user_id}")["id"] == m.id
    # Names now resolve from the store: channel-list makes no team lookup.
    before = len(emu.request_log)
    execute("channel-list", {"team": "Security Operations"}, runtime)
    assert [e["path"] for e in emu.request_log[before:]] == [f"/v1.0/teams/{team.id}/channels"]




BOB_TWIN = "11111111-2222-3333-4444-555555555555"


def add_bob_twin(emu) -> dict:
    twin = dict(emu.state.user("bob.smith@contoso.example"), id=BOB_TWIN, mail="bob.smith2@contoso.example",
                userPrincipalName="bob.smith2@contoso.example")
    with emu.state.lock:
        emu.state.users[twin["id"]] = twin
    return twin


def test_cache_preload_caches_namesakes_with_every_candidate(emu, runtime):
    twin = add_bob_twin(emu)
    bob = emu.state.user("bob.smith@contoso.example")
    execute("cache-preload", {"include": "users", "page_size": 2}, runtime)  # the two on different pages
    assert sorted(u["id"] for u in runtime.store.get("user_name", "Bob Smith")) == sorted([bob["id"], twin["id"]])
    assert runtime.store.get("user", "bob.smith2@contoso.example")["id"] == twin["id"]
    shown = execute("cache-show", {"kind": "user_name"}, runtime).outputs
    row = next(r for r in shown if r["key"] == "bob smith")
    assert set(row["id"].split(", ")) == {bob["id"], twin["id"]}
    # a later preload replaces the list: a namesake who left drops out of it
    with emu.state.lock:
        del emu.state.users[twin["id"]]
    execute("cache-preload", {"include": "users"}, runtime)
    assert [u["id"] for u in runtime.store.get("user_name", "Bob Smith")] == [bob["id"]]


def test_preloaded_names_resolve_without_a_graph_request(emu, runtime):
    add_bob_twin(emu)
    execute("cache-preload", {"include": "users,teams"}, runtime)
    resolver = Resolver(runtime.client("app"), runtime.store)
    before = len(emu.request_log)
    assert resolver.user("Zoë Müller")["mail"] == "zoe.muller@contoso.example"
    with pytest.raises(AmbiguousError) as e:
        resolver.user("bob smith")
    assert len(e.value.candidates) == 2 and any("bob.smith2@contoso.example" in c for c in e.value.candidates)
    with pytest.raises(AmbiguousError) as e:  # a command reports it the same way, before any request
        execute("user-get", {"user": "Bob Smith"}, runtime)
    assert e.value.exit_code == 2
    assert resolver.team("Security Operations")["displayName"] == "Security Operations"
    assert emu.request_log[before:] == []


def test_a_same_named_team_is_ambiguous_from_the_cache(emu, runtime):
    tid = duplicate_team(emu, "Security Operations")
    execute("cache-preload", {"include": "teams"}, runtime)
    before = len(emu.request_log)
    with pytest.raises(AmbiguousError) as e:
        Resolver(runtime.client("app"), runtime.store).team("Security Operations")
    assert len(e.value.candidates) == 2 and any(tid in c for c in e.value.candidates)
    assert emu.request_log[before:] == []


def test_a_name_resolved_through_graph_is_cached_with_its_namesakes(emu, runtime):
    add_bob_twin(emu)
    with pytest.raises(AmbiguousError):
        execute("user-get", {"user": "Bob Smith"}, runtime)
    before = len(emu.request_log)
    with pytest.raises(AmbiguousError) as e:
        Resolver(runtime.client("app"), runtime.store).user("Bob Smith")
    assert len(e.value.candidates) == 2 and emu.request_log[before:] == []


def test_a_stale_preloaded_name_is_looked_up_again(emu, runtime):
    from integration.engine.errors import NotFound

    execute("cache-preload", {"include": "users"}, runtime)
    old = emu.state.user("zoe.muller@contoso.example")
    with emu.state.lock:  # she left: the cached id is stale
        del emu.state.users[old["id"]]
    before = len(emu.request_log)
    with pytest.raises(NotFound) as e:
        execute("user-get", {"user": "Zoë Müller"}, runtime)
    assert "Zoë Müller" in str(e.value) and "not found" in str(e.value)  # the resolver's word, after Graph
    calls = [(r["path"], r["status"]) for r in emu.request_log[before:]]
    assert calls == [(f"/v1.0/users/{old['id']}", 404), ("/v1.0/users", 200)]  # the cached id, then a fresh lookup
    assert runtime.store.get("user_name", "Zoë Müller") is None


def test_cache_preload_progress_on_a_terminal(emu, runtime, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    execute("cache-preload", {"include": "teams,users", "page_size": 3}, runtime)
    text = tty.getvalue()
    assert text.startswith("\rpreloading: ") and "teams" in text and "users" in text and text.endswith("\n")
    assert "/s" in text  # the shared progress line: counts and rate


def test_cache_preload_missing_permission_fails_with_exit_4(emu, runtime):
    client_id, _ = app_ids(emu)
    granted = set(emu.state.app(client_id).application_permissions)
    emu.set_permissions(client_id, application=granted - {"TeamMember.ReadWrite.All", "TeamMember.Read.All",
                                                          "Group.Read.All"})
    with pytest.raises(PermissionDenied) as e:
        execute("cache-preload", {"include": "members"}, runtime)
    assert e.value.exit_code == 4 and "TeamMember.Read.All" in str(e.value)


def test_cache_preload_delegated_skips_teams_the_account_cannot_read(emu, signed_in):
    r = execute("cache-preload", {}, signed_in, flow="delegated")
    assert r.flow == "delegated"
    svc = emu.state.user(emu.config()["service_account"])["id"]
    hidden = [t.display_name for t in emu.state.teams.values()
              if t.visibility.lower() != "public" and all(m.user_id != svc for m in t.members)]
    assert r.raw["skippedTeams"] == hidden
    if hidden:
        assert "Skipped" in r.message


# ---- each command succeeds with exactly the permissions it declares ----
SIGN_IN = ["openid", "profile", "offline_access"]  # sign-in scopes, not Graph permissions


def _spec(name):
    return registry.load().get(name)


def test_send_notification_with_exactly_its_declared_lookup_permissions(emu, runtime):
    client_id, _ = app_ids(emu)
    assert _spec("send-notification").flow_names == ("bot",)
    emu.set_permissions(client_id, application=dict(_spec("send-notification").lookups)["app"])
    r = execute("send-notification", {"user": "Conor O'Brien,priya.patel@contoso.example",
                                      "message": "cc @Bob Smith;"}, runtime)
    assert [o["status"] for o in r.outputs] == ["sent", "sent"]
    r = execute("send-notification", {"team": "Security Operations", "channel": "Incident Response",
                                      "message": "x"}, runtime)
    assert r.outputs[0]["status"] == "sent"


def test_message_update_with_exactly_its_declared_lookup_permissions(emu, runtime):
    client_id, _ = app_ids(emu)
    sent = execute("send-notification", {"user": "bob.smith@contoso.example", "message": "x"}, runtime).outputs[0]
    emu.set_permissions(client_id, application=dict(_spec("message-update").lookups)["app"])
    execute("message-update", {"message_ref": sent["messageRef"], "message": "done, @Conor O'Brien;"}, runtime)
    assert emu.state.activities[sent["activityId"]]["edits"] == 1


def test_cache_preload_app_with_exactly_its_declared_permissions(emu, runtime):
    client_id, _ = app_ids(emu)
    emu.set_permissions(client_id, application=_spec("cache-preload").permissions("app"))
    r = execute("cache-preload", {}, runtime, flow="app")
    assert {row["kind"] for row in r.outputs} == {"teams", "channels", "members", "users"}


def test_cache_preload_delegated_with_exactly_its_declared_permissions(emu, runtime):
    client_id, _ = app_ids(emu)
    emu.set_permissions(client_id, delegated=list(_spec("cache-preload").permissions("delegated")) + SIGN_IN)
    execute("auth-login", {}, runtime)
    r = execute("cache-preload", {}, runtime, flow="delegated")
    assert r.flow == "delegated" and r.outputs[-1] == {"kind": "users", "count": len(emu.state.users)}


def test_declared_lookups_are_in_the_permissions_totals():
    from integration.frontends import docs

    by_flow = registry.load().permissions_by_flow()
    assert by_flow["bot"]["send-notification"] == []
    assert by_flow["app"]["send-notification"] == ["User.Read.All", "Team.ReadBasic.All", "Channel.ReadBasic.All",
                                                   # reading an ambiguous send back (teams/readback.py)
                                                   "TeamsAppInstallation.ReadForUser.All", "Chat.Read.All",
                                                   "ChannelMessage.Read.All"]
    md = docs.command_markdown(registry.load().get("send-notification"))
    assert "only to look names up" in md
    assert json.dumps(by_flow)  # plain data


def _writer_alive() -> bool:
    import threading

    return any(t.name == "preload-writer" for t in threading.enumerate())


def test_cache_preload_store_failure_stops_the_run_with_the_store_error(emu, runtime, monkeypatch):
    from integration.engine.errors import ConfigError

    calls = []
    Store = type(runtime.store)  # SQLite's or Redis's, whichever the suite runs on
    real = Store.put_entries

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise ConfigError("context store error: database or disk is full")
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "put_entries", failing)
    monkeypatch.setattr("integration.handlers.health._AHEAD_USERS", 2)  # a commit per 2-user page
    with pytest.raises(ConfigError, match="disk is full"):
        execute("cache-preload", {"include": "users", "page_size": 2}, runtime)
    assert not _writer_alive()
    # Paging stopped soon after the writer failed instead of reading the whole directory.
    gets = [e for e in emu.request_log if e["method"] == "GET" and e["path"] == "/v1.0/users"]
    assert len(gets) < math.ceil(len(emu.state.users) / 2)


def test_cache_preload_graph_failure_mid_directory_keeps_the_pages_written(emu, runtime, monkeypatch):
    from integration.engine.errors import GraphError
    from integration.graph.client import Client

    real = Client.pages

    def two_then_fail(self, *a, **k):
        for i, items in enumerate(real(self, *a, **k)):
            if i == 2:
                raise GraphError("Graph answered 503 for page 3", status=503)
            yield items

    monkeypatch.setattr(Client, "pages", two_then_fail)
    with pytest.raises(GraphError, match="page 3"):
        execute("cache-preload", {"include": "users", "page_size": 2}, runtime)
    assert not _writer_alive()
    written = [u for u in emu.state.users.values() if runtime.store.get("user", u["id"])]
    assert len(written) == 4  # the two pages read before the failure, complete
    # Name lists are built from a complete directory only: this run wrote none.
    assert all(runtime.store.get("user_name", u["displayName"]) is None for u in written)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values are per thread only on Linux")
def test_cache_preload_writer_runs_at_nice_19_and_the_paging_thread_is_untouched(emu, runtime, monkeypatch):
    import os
    import threading

    from integration.handlers import health

    seen = {}
    real = health._lower_this_threads_priority

    def lowered():
        real()
        seen[threading.current_thread().name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    monkeypatch.setattr(health, "_lower_this_threads_priority", lowered)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    execute("cache-preload", {"include": "users"}, runtime)
    assert seen == {"preload-writer": 19}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
