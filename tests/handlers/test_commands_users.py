"""User commands end to end against the emulator: user-get (id, mail, UPN, display name) and
user-list (filters built from escaped literals, paging)."""
import uuid
from urllib.parse import unquote

import pytest

from integration.dispatch import execute
from integration.engine.errors import AmbiguousError, NotFound, PermissionDenied
from integration.handlers.users import user_filter
from teams_helpers import grant_exactly, graph_calls, uid

CONOR = "conor.obrien@contoso.example"


def add_user(emu, name: str, mail: str) -> str:
    u = str(uuid.uuid4())
    with emu.state.lock:
        emu.state.users[u] = {"id": u, "displayName": name, "mail": mail, "userPrincipalName": mail,
                              "jobTitle": None, "businessPhones": []}
    return u


@pytest.mark.parametrize("key", ["id", CONOR, CONOR.upper(), "Conor O'Brien"])
def test_user_get_by_any_name(emu, runtime, key):
    key = uid(emu, CONOR) if key == "id" else key
    r = execute("user-get", {"user": key}, runtime)
    u = r.outputs[0]
    assert u["id"] == uid(emu, CONOR) and u["jobTitle"] == "Incident Responder" and u["officeLocation"] == "Dublin"
    assert r.prefix == "MicrosoftTeams.User" and r.key == "id"


def test_user_get_unknown(runtime):
    with pytest.raises(NotFound) as e:
        execute("user-get", {"user": "nobody@contoso.example"}, runtime)
    assert e.value.exit_code == 5


def test_user_get_same_display_name_is_ambiguous(emu, runtime):
    add_user(emu, "Bob Smith", "robert.smith@contoso.example")
    with pytest.raises(AmbiguousError) as e:
        execute("user-get", {"user": "Bob Smith"}, runtime)
    assert len(e.value.candidates) == 2 and any("robert.smith" in c for c in e.value.candidates)
    assert execute("user-get", {"user": "robert.smith@contoso.example"}, runtime).outputs[0]["displayName"] == "Bob Smith"


def test_user_get_delegated(signed_in):
    r = execute("user-get", {"user": "Zoë Müller"}, signed_in, flow="delegated")
    assert r.outputs[0]["mail"] == "zoe.muller@contoso.example"


def test_user_list_filters(emu, runtime):
    r = execute("user-list", {"name": "Zo"}, runtime)
    assert [u["displayName"] for u in r.outputs] == ["Zoë Müller"]
    r = execute("user-list", {"mail": "conor"}, runtime)
    assert [u["mail"] for u in r.outputs] == [CONOR]
    r = execute("user-list", {"job_title": "Security", "name": "Bob"}, runtime)
    assert [u["displayName"] for u in r.outputs] == ["Bob Smith"]
    everyone = execute("user-list", {"limit": 100}, runtime)
    assert len(everyone.outputs) == len(emu.state.users) and everyone.next_link is None


def test_user_list_pages_and_resumes(emu, runtime):
    first = execute("user-list", {"limit": 5, "page_size": 5}, runtime)
    assert len(first.outputs) == 5 and first.next_link
    assert first.context()["MicrosoftTeams.UserNextLink"] == first.next_link
    # With next_link, page_size means one page (one request), as in XSOAR: follow page by page.
    ids, link = [u["id"] for u in first.outputs], first.next_link
    while link:
        rest = execute("user-list", {"next_link": link, "limit": 100, "page_size": 5}, runtime)
        assert 0 < len(rest.outputs) <= 5
        ids += [u["id"] for u in rest.outputs]
        link = rest.next_link
    assert len(ids) == len(set(ids)) == len(emu.state.users)


@pytest.mark.parametrize("hostile", ["O'Brien", "') or startswith(displayName,'", "x' or 1 eq 1 or mail eq 'y",
                                     "\\'; $top=999", "%27 or true"])
def test_user_list_sends_text_only_as_escaped_literals(emu, runtime, hostile):
    r = execute("user-list", {"name": hostile}, runtime)  # never a 400, never everyone
    assert all(u["displayName"].startswith(hostile) for u in r.outputs)
    assert len(r.outputs) < len(emu.state.users)


def test_user_list_apostrophe_prefix_matches(emu, runtime):
    add_user(emu, "O'Hara Test", "ohara@contoso.example")
    assert [u["displayName"] for u in execute("user-list", {"name": "O'Ha"}, runtime).outputs] == ["O'Hara Test"]


def test_user_filter_text():
    assert user_filter(name="O'Brien") == "startswith(displayName,'O''Brien')"
    assert user_filter(mail="a'b") == "(startswith(mail,'a''b') or startswith(userPrincipalName,'a''b'))"
    assert user_filter() is None


def test_user_list_missing_permission(emu, runtime):
    grant_exactly(emu, runtime, "app", ["Team.ReadBasic.All"])
    with pytest.raises(PermissionDenied) as e:
        execute("user-list", {}, runtime)
    assert "User.Read.All" in e.value.permissions and e.value.exit_code == 4
    assert graph_calls(emu)[-1]["status"] == 403
    assert unquote(graph_calls(emu)[-1]["path"]) == "/v1.0/users"
