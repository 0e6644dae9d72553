"""Pure unit tests of the emulator's OData query options: the $filter tokenizer and parser,
$select / $top / $orderby / $expand, and the keyset $skiptoken paging."""
from __future__ import annotations

import pytest

from fake_tenant.core import GraphError, Request
from fake_tenant.graph.odata import (Schema, compile_filter, parse_expand, parse_orderby, parse_select,
                                              parse_top, tokenize)
from fake_tenant.graph.paging import decode_token, encode_token, paginate
from fake_tenant.graph.users import USER_SCHEMA

USERS = [
    {"id": "1", "displayName": "Conor O'Brien", "mail": "conor.obrien@contoso.example",
     "userPrincipalName": "conor.obrien@contoso.example"},
    {"id": "2", "displayName": "Zoë Müller", "mail": "zoe.muller@contoso.example",
     "userPrincipalName": "zoe.muller@contoso.example"},
    {"id": "3", "displayName": "Alice Johnson", "mail": "alice.johnson@contoso.example",
     "userPrincipalName": "alice.johnson@contoso.example"},
    {"id": "4", "displayName": "Alice Cooper", "mail": None, "userPrincipalName": "acooper@contoso.example"},
]


def ids(expr: str, schema: Schema = USER_SCHEMA, items=USERS) -> list[str]:
    pred = compile_filter(expr, schema)
    return [u["id"] for u in items if pred(u)]


def bad(expr: str, schema: Schema = USER_SCHEMA) -> GraphError:
    with pytest.raises(GraphError) as e:
        compile_filter(expr, schema)
    assert e.value.status == 400
    assert e.value.code == "BadRequest"
    return e.value


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_doubled_quote_and_unicode():
    toks = tokenize("displayName eq 'Conor O''Brien' and mail eq 'zoë@x'")
    strs = [t.value for t in toks if t.kind == "STR"]
    assert strs == ["Conor O'Brien", "zoë@x"]


def test_tokenizer_literals():
    kinds = [t.kind for t in tokenize("a eq 12 or b eq 2024-01-02T03:04:05.1234567Z or c eq true or d eq null "
                                      "or e eq 6d2b6c36-0f36-4f5f-9a5e-0b3a0e3f1f11")]
    assert kinds.count("NUM") == 1 and kinds.count("DT") == 1 and kinds.count("BOOL") == 1
    assert kinds.count("NULL") == 1 and kinds.count("GUID") == 1


# ---------------------------------------------------------------- filters that match

def test_eq_with_apostrophe():
    assert ids("displayName eq 'Conor O''Brien'") == ["1"]


def test_eq_is_case_insensitive_in_the_directory():
    assert ids("mail eq 'ZOE.MULLER@contoso.example'") == ["2"]
    assert ids("userPrincipalName eq 'Alice.Johnson@Contoso.Example'") == ["3"]


def test_startswith_and_or_not_parentheses():
    assert ids("startswith(displayName,'alice')") == ["3", "4"]
    assert ids("startswith(displayName,'Alice') and mail eq null") == ["4"]
    assert ids("(displayName eq 'Zoë Müller' or id eq '1') and not (id eq '2')") == ["1"]
    assert ids("not startswith(displayName, 'A')") == ["1", "2"]


def test_in_operator_and_endswith():
    assert ids("mail in ('zoe.muller@contoso.example', 'nobody@x')") == ["2"]
    assert ids("endswith(userPrincipalName,'@contoso.example') and startswith(displayName,'Z')") == ["2"]


def test_lambda_any_on_primitive_collection():
    schema = Schema("microsoft.graph.group", props={"displayname": lambda g: g["displayName"]},
                    collections={"resourceprovisioningoptions": (lambda g: g["rpo"], None)})
    groups = [{"id": "a", "displayName": "Sec Ops", "rpo": ["Team"]}, {"id": "b", "displayName": "Plain", "rpo": []}]
    assert ids("resourceProvisioningOptions/Any(x:x eq 'Team')", schema, groups) == ["a"]
    assert ids("resourceProvisioningOptions/any(x: x eq 'Team') and startswith(displayName,'Sec')", schema,
               groups) == ["a"]


def test_lambda_any_on_object_collection():
    member = Schema("conversationMember", props={"userid": lambda m: m["userId"]})
    schema = Schema("chat", props={"topic": lambda c: c["topic"]},
                    collections={"members": (lambda c: c["members"], member)})
    chats = [{"id": "c1", "topic": "x", "members": [{"userId": "u1"}, {"userId": "u2"}]},
             {"id": "c2", "topic": "y", "members": [{"userId": "u3"}]}]
    assert ids("members/any(m: m/userId eq 'u2')", schema, chats) == ["c1"]
    assert ids("members/all(m: m/userId eq 'u3')", schema, chats) == ["c2"]


def test_datetime_comparison_with_iso_strings():
    schema = Schema("msg", props={"lastmodifieddatetime": lambda m: m["t"]}, operators=frozenset({"gt", "lt", "eq"}))
    msgs = [{"id": "1", "t": "2024-01-01T10:00:00.000Z"}, {"id": "2", "t": "2024-01-03T10:00:00.000Z"}]
    assert ids("lastModifiedDateTime gt 2024-01-02T00:00:00Z", schema, msgs) == ["2"]
    assert ids("lastModifiedDateTime gt 2024-01-01T00:00:00Z and lastModifiedDateTime lt 2024-01-02T00:00:00Z",
               schema, msgs) == ["1"]


def test_hostile_values_are_just_strings():
    for v in ["__import__('os')", "'; DROP TABLE users; --", "${x}{{y}}<script>", "\\", "a)b(c"]:
        literal = "'" + v.replace("'", "''") + "'"
        assert ids(f"displayName eq {literal}") == []


# ---------------------------------------------------------------- malformed filters

@pytest.mark.parametrize("expr", [
    "displayName eq 'Conor O'Brien'",  # undoubled quote
    "displayName eq 'unterminated",
    "displayName eq",
    "eq 'x'",
    "displayName 'x'",
    "(displayName eq 'x'",
    "displayName eq 'x')",
    "displayName eq 'x' and",
    "displayName eq 'x' or or mail eq 'y'",
    "favouriteColour eq 'red'",  # unknown property
    "substringof('x', displayName)",  # unknown function
    "contains(displayName,'x')",  # function not offered by the schema
    "startswith(displayName)",
    "startswith(displayName,'a','b')",
    "displayName",  # not a boolean
    "'a' eq 'a'",  # no property
    "displayName eq 'x' # comment",
    "displayName eq \"x\"",
    "displayName gt 'x'",  # operator not offered for users
    "members/any(m: m/userId eq 'x')",  # unknown collection
    "",
    "   ",
])
def test_malformed_filters_are_400(expr):
    bad(expr)


def test_deep_nesting_is_a_400_not_a_crash():
    bad("(" * 500 + "displayName eq 'x'" + ")" * 500)
    bad("not " * 500 + "displayName eq 'x'")


def test_too_long_filter():
    bad("displayName eq '" + "x" * 10_000 + "'")


def test_error_message_names_the_clause():
    e = bad("favouriteColour eq 'red'")
    assert "Invalid filter clause" in e.message and "favouriteColour" in e.message


# ---------------------------------------------------------------- other options

def test_top():
    assert parse_top(None, 100, 999) == 100
    assert parse_top("999", 100, 999) == 999
    for v in ["0", "1000", "-1", "abc", "1e3", "99999999999999999999", ""]:
        with pytest.raises(GraphError) as e:
            parse_top(v, 100, 999)
        assert e.value.status == 400


def test_select():
    assert parse_select("displayName,MAIL", ["id", "displayName", "mail"], "t") == ["id", "displayName", "mail"]
    assert parse_select(None, ["id"], "t") is None
    with pytest.raises(GraphError):
        parse_select("displayName,nope", ["id", "displayName"], "t")
    with pytest.raises(GraphError):
        parse_select("displayName,", ["id", "displayName"], "t")


def test_orderby_and_expand():
    allowed = {"lastmodifieddatetime": ("desc",)}
    assert parse_orderby("lastModifiedDateTime desc", allowed, "m") == ("lastModifiedDateTime", True)
    for v in ["lastModifiedDateTime asc", "lastModifiedDateTime", "subject desc", "a b c", "x desc,y desc"]:
        with pytest.raises(GraphError):
            parse_orderby(v, allowed, "m")
    assert parse_expand("members,lastMessagePreview", ["members", "lastMessagePreview"], "c") == \
        ["members", "lastMessagePreview"]
    for v in ["members($select=id)", "owners", "members,"]:
        with pytest.raises(GraphError):
            parse_expand(v, ["members"], "c")


# ---------------------------------------------------------------- paging

def _req(path: str, query: dict) -> Request:
    return Request("GET", path, dict(query), {}, base_url="https://127.0.0.1:1/v1.0")


def test_keyset_paging_returns_everything_once_and_carries_the_query():
    items = [{"id": f"{i:04d}"} for i in range(257)]
    key = lambda x: x["id"]
    query = {"$top": "50", "$filter": "displayName eq 'O''Brien'", "$select": "id"}
    seen, pages = [], 0
    while True:
        page, link = paginate(_req("/users", query), None, items, key, 50)
        seen += [x["id"] for x in page]
        pages += 1
        if not link:
            break
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(link)
        assert parts.path == "/v1.0/users"
        query = dict(parse_qsl(parts.query))
        assert query["$filter"] == "displayName eq 'O''Brien'" and query["$top"] == "50"
    assert seen == [x["id"] for x in items] and pages == 6


def test_keyset_paging_descending_and_insertions():
    items = [{"id": i} for i in range(10, 0, -1)]
    key = lambda x: x["id"]
    page, link = paginate(_req("/m", {}), None, items, key, 4, descending=True)
    assert [x["id"] for x in page] == [10, 9, 8, 7]
    tok = dict(__import__("urllib.parse").parse.parse_qsl(link.split("?", 1)[1]))["$skiptoken"]
    items2 = [{"id": 11}] + items  # a newer item arrived: the next page is unaffected
    page2, _ = paginate(_req("/m", {"$skiptoken": tok}), None, items2, key, 4, descending=True)
    assert [x["id"] for x in page2] == [6, 5, 4, 3]


def test_skiptoken_is_bound_and_tamper_evident():
    tok = encode_token("/users", "abc")
    assert decode_token("/users", tok) == "abc"
    assert decode_token("/USERS", tok) == "abc"
    for bad_tok, path in [(tok, "/groups"), (tok[:-2], "/users"), ("garbage", "/users"), (tok + "x", "/users"),
                          ("RFNwdAIAAQAAA!!!", "/users")]:
        with pytest.raises(GraphError) as e:
            decode_token(path, bad_tok)
        assert e.value.status == 400
