"""Recipient routing (integration/graph/recipients.py) and `recipients-resolve` against the emulator."""
import json
from urllib.parse import quote

import pytest

from integration.dispatch import execute
from integration.engine.errors import ArgumentError, InputError, NotFound, PermissionDenied
from integration.graph.recipients import RecipientError, classify, parse_channel_url, route_entries

TEAM = "11111111-2222-3333-4444-555555555555"
TENANT = "8f6c2a4e-1b3d-4e5f-9a7b-0c2d4e6f8a1b"
CHAN = "19:abc123@thread.tacv2"


def link(channel_id=CHAN, name="Incident%20Response", team=TEAM, tenant=TENANT, host="teams.microsoft.com"):
    q = f"groupId={team}" + (f"&tenantId={tenant}" if tenant else "")
    return f"https://{host}/l/channel/{quote(channel_id, safe='')}/{name}?{q}"


def team_of(emu, name):
    return next(t for t in emu.state.teams.values() if t.display_name == name)


def channel_of(emu, team, name):
    return next(c for c in team_of(emu, team).channels.values() if c.display_name == name)


def uid(emu, mail):
    return emu.state.user(mail)["id"]


def graph_gets(emu):
    return [e["path"] for e in emu.request_log if e["method"] == "GET" and e["path"].startswith("/v1.0")]


# ------------------------------------------------------------------ parsing, no Graph

def test_channel_link_parsed():
    ref = parse_channel_url(link())
    assert (ref.team_id, ref.channel_id, ref.name, ref.tenant_id) == (TEAM, CHAN, "Incident Response", TENANT)
    assert parse_channel_url(link(tenant=None, name="")).name is None


@pytest.mark.parametrize("url, why", [
    (link(host="evil.example"), "not a Teams host"),
    (link(host="teams.microsoft.com.evil.example"), "not a Teams host"),
    (link().replace("https://", "http://"), "https"),
    (link().replace("https://", "https://user@"), "must not carry"),
    (link().replace("teams.microsoft.com", "teams.microsoft.com:8443"), "must not carry"),
    (link().replace("/l/channel/", "/l/chat/"), "not a channel link"),
    (link(channel_id="not-a-channel"), "not a Teams channel id"),
    (link(channel_id="19:x/../../users@thread.tacv2"), "not a Teams channel id"),
    (link(channel_id="19:x\x00y@thread.tacv2"), "not a Teams channel id"),
    (link().replace("19%3Aabc123", "19%3Aabc%FF"), "not a Teams channel id"),
    (link(team="not-a-guid"), "groupId"),
    (link() + f"&groupId={TEAM}", "exactly one groupId"),
    (link(tenant="nope"), "tenantId is not a GUID"),
    ("https://teams.microsoft.com/l/channel/", "not a channel link"),
    ("https://[::1/x", "not a valid URL"),
])
def test_malformed_channel_links_are_refused(url, why):
    with pytest.raises(RecipientError, match=why):
        parse_channel_url(url)


def test_channel_link_for_another_tenant_is_refused():
    with pytest.raises(RecipientError, match="another tenant"):
        parse_channel_url(link(), tenant_id="00000000-0000-0000-0000-000000000000")
    assert parse_channel_url(link(), tenant_id=TENANT.upper()).team_id == TEAM


def test_classify():
    assert classify(link()) == "url"
    assert classify("ftp://x/y") == "url"
    assert classify("Security Operations/Incident Response") == "channel"
    assert [classify(x) for x in ("a@b.example", "Conor O'Brien", TEAM)] == ["user"] * 3


def test_route_entries_star_and_order():
    routes = {"admin": ["a", "b"], "dev": "c", "*": ["z"]}
    assert route_entries(routes, ["admin", "intern", "dev", "admin"]) == [
        ("a", "admin", "admin"), ("b", "admin", "admin"), ("z", "intern", "*"), ("c", "dev", "dev")]
    assert route_entries(routes, []) == [("z", "*", "*")]
    assert route_entries({"admin": ["a"]}, ["intern"]) == []  # no "*": an unlisted key routes nowhere
    with pytest.raises(InputError, match="list of recipients"):
        route_entries({"admin": 5}, ["admin"])


# ------------------------------------------------------------------ the command, against the emulator

def test_roles_star_suggested_and_duplicates(emu, runtime):
    routes = {"admin": ["grace.kim@contoso.example", "Alice Johnson"],
              "*": ["alice.johnson@contoso.example", "Security Operations/Incident Response"]}
    r = execute("recipients-resolve", {"routes": json.dumps(routes), "keys": "admin,contractor",
                                       "suggested_reviewers": ["Alice Johnson", "bob.smith@contoso.example"]}, runtime)
    assert r.flow == "app"
    resolved = [x for x in r.outputs if x["status"] == "resolved"]
    assert [(x["kind"], x["name"], x["source"]) for x in resolved] == [
        ("user", "Grace Kim", "admin"), ("user", "Alice Johnson", "admin"),
        ("channel", "Incident Response", "contractor"), ("user", "Bob Smith", "suggested")]
    alice = resolved[1]
    assert alice["id"] == uid(emu, "alice.johnson@contoso.example")
    assert alice["sources"] == ["admin", "contractor", "suggested"]  # one entry, every route that reached her
    chan = resolved[2]
    ir = channel_of(emu, "Security Operations", "Incident Response")
    assert (chan["id"], chan["teamId"], chan["via"]) == (ir.id, ir.team_id, "*")
    assert r.raw["users"] == [uid(emu, m) for m in ("grace.kim@contoso.example", "alice.johnson@contoso.example",
                                                    "bob.smith@contoso.example")]
    assert r.raw["channels"] == [{"teamId": ir.team_id, "channelId": ir.id, "name": "Incident Response"}]
    assert not r.raw["unresolved"] and r.raw["fallbackUsed"] is False
    assert r.context()["MicrosoftTeams.Recipients"][0]["id"] == uid(emu, "grace.kim@contoso.example")


def test_unknown_user_falls_back_and_is_reported(emu, runtime):
    routes = {"critical": ["nobody@contoso.example", "Priya Patel"], "*": ["bob.smith@contoso.example"]}
    r = execute("recipients-resolve", {"routes": routes, "keys": ["critical"],
                                       "fallback": ["alice.johnson@contoso.example"]}, runtime)
    resolved = [(x["name"], x["source"]) for x in r.outputs if x["status"] == "resolved"]
    assert resolved == [("Priya Patel", "critical"), ("Alice Johnson", "fallback")]
    assert r.raw["recipients"][1]["fallbackFor"] == ["nobody@contoso.example"]
    [miss] = r.raw["unresolved"]
    assert miss["recipient"] == "nobody@contoso.example" and miss["source"] == "critical"
    assert miss["reason"].startswith("not found") and miss["error"] == "not_found"
    assert r.raw["fallbackUsed"] is True and "fallback recipients used" in r.message


def test_fallback_not_used_when_every_primary_resolves(runtime):
    r = execute("recipients-resolve", {"routes": {"*": ["bob.smith@contoso.example"]},
                                       "fallback": ["alice.johnson@contoso.example"]}, runtime)
    assert [x["name"] for x in r.outputs] == ["Bob Smith"] and not r.raw["fallbackUsed"]


def test_fallback_when_keys_route_to_nobody(runtime):
    r = execute("recipients-resolve", {"routes": {"admin": ["grace.kim@contoso.example"]}, "keys": ["intern"],
                                       "fallback": "Alice Johnson"}, runtime)
    assert [(x["name"], x["source"]) for x in r.outputs] == [("Alice Johnson", "fallback")]


def test_channel_link_resolved_and_malformed_link_reported(emu, runtime):
    ir = channel_of(emu, "Security Operations", "Incident Response")
    good = link(ir.id, team=ir.team_id, tenant=emu.state.tenant_id)
    evil = link(ir.id, team=ir.team_id, host="teams.evil.example")
    deleted = link("19:gone@thread.tacv2", team=ir.team_id, tenant=None)
    r = execute("recipients-resolve", {"routes": {"*": [good, evil, deleted, good]},
                                       "fallback": ["Security Operations/General"]}, runtime)
    chans = [x for x in r.outputs if x["status"] == "resolved"]
    assert [(c["name"], c["source"]) for c in chans] == [("Incident Response", "*"), ("General", "fallback")]
    assert chans[0]["id"] == ir.id and chans[0]["teamId"] == ir.team_id
    reasons = {u["recipient"]: u["reason"] for u in r.raw["unresolved"]}
    assert "not a Teams host" in reasons[evil] and reasons[evil].startswith("malformed")
    assert reasons[deleted].startswith("not found")
    assert len(r.raw["unresolved"]) == 2  # the duplicate good link is one recipient, not an error


def test_hostile_names_go_to_graph_escaped(emu, runtime):
    hostile = "x' or 1 eq 1 or displayName eq 'y"
    r = execute("recipients-resolve", {"routes": {"*": [hostile, "Security Operations/No'such ${x}"]},
                                       "fallback": ["Conor O'Brien"]}, runtime)
    assert [x["name"] for x in r.outputs if x["status"] == "resolved"] == ["Conor O'Brien"]
    assert {u["recipient"] for u in r.raw["unresolved"]} == {hostile, "Security Operations/No'such ${x}"}


def test_nothing_resolved_is_not_found_with_reasons(emu, runtime):
    with pytest.raises(NotFound) as e:
        execute("recipients-resolve", {"routes": {"*": ["nobody@contoso.example"]},
                                       "fallback": ["https://evil.example/l/channel/x"]}, runtime)
    assert "nobody@contoso.example: not found" in str(e.value) and "not a Teams host" in str(e.value)
    assert e.value.exit_code == 5


def test_nobody_to_route_is_an_input_error_before_any_request(emu, runtime):
    with pytest.raises(InputError, match='"\\*" entry'):
        execute("recipients-resolve", {"routes": {"admin": ["grace.kim@contoso.example"]}, "keys": "intern"}, runtime)
    assert not graph_gets(emu)


def test_routes_must_be_a_json_object(runtime):
    with pytest.raises(ArgumentError, match="routes"):
        execute("recipients-resolve", {"routes": "{not json"}, runtime)
    with pytest.raises(ArgumentError, match="routes"):
        execute("recipients-resolve", {"routes": json.dumps({"admin": 5})}, runtime)


def test_cached_names_make_no_second_lookup(emu, runtime):
    args = {"routes": {"*": ["Priya Patel", "Security Operations/Incident Response"]}}
    execute("recipients-resolve", args, runtime)
    before = len(graph_gets(emu))
    execute("recipients-resolve", args, runtime)
    assert len(graph_gets(emu)) == before


def test_missing_permission_is_raised_not_swallowed(emu, runtime):
    app = emu.config()["client_id"]
    granted = set(emu.state.apps[app].application_permissions) - {"User.Read.All", "Directory.Read.All"}
    emu.set_permissions(app, application=sorted(granted))
    with pytest.raises(PermissionDenied):
        execute("recipients-resolve", {"routes": {"*": ["Priya Patel"]}, "fallback": ["Bob Smith"]}, runtime)


def test_cli_passes_routes_as_json(emu, tmp_path, monkeypatch):
    from integration.frontends import cli

    monkeypatch.setenv("MSTEAMS_STORE_PATH", str(tmp_path / "cli-store.sqlite3"))
    conf = emu.write_config(str(tmp_path / "emu.yml"))
    out, err = [], []
    code = cli.main(["--config", conf, "-o", "json", "recipients-resolve", "--routes", '{"*": ["Zoë Müller"]}',
                     "--keys", "analyst"], out=out.append, err=err.append)
    assert code == 0, err
    assert json.loads(out[-1])["recipients"][0]["displayName"] == "Zoë Müller"
    code = cli.main(["--config", conf, "recipients-resolve", "--routes", "[1, 2]"], out=out.append, err=err.append)
    assert code == 2 and "routes" in err[-1] and "Traceback" not in "".join(err)


def test_registry_example_runs(runtime):
    from integration.engine.arguments import parse_warroom

    name, args = parse_warroom(runtime.registry.get("recipients-resolve").example)
    r = execute(name, args, runtime)
    assert [(x["name"], x["source"]) for x in r.outputs] == [
        ("Grace Kim", "admin"), ("Incident Response", "dev"), ("Alice Johnson", "suggested")]
