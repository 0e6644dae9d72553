"""The product's table of Microsoft's published limits (``integration/delivery/limits.py``, what
the pacer sends by) and the fake tenant's own (``fake_tenant/limits.py``, what it enforces) are
two independent copies of the same published numbers: they must agree entry by entry.

A difference means one of them is wrong: check the number against Microsoft's page (the sources
are in fake_tenant/limits.py) and fix the wrong copy; never copy one table into the other.
"""
from __future__ import annotations

import pytest

import fake_tenant.limits as fake
import integration.delivery.limits as product

# Every name the fake tenant's table exports; each is a datum the product's table has too.
DATA = ["GLOBAL_PER_10S", "PER_RESOURCE_RPS", "CHANNEL_MESSAGES_PER_DAY", "TEAMS_SEGMENTS", "IDENTITY_ROOTS", "IDENTITY_UNITS_PER_10S",
        "IDENTITY_UNITS_PER_10S_SMALLEST", "BOT_PER_APP", "BOT_PER_CONVERSATION", "BOT_PER_CONVERSATION_ALL_BOTS",
        "BOT_RETRY_STATUSES"]


def test_the_fake_tenant_keeps_its_own_table():
    """Its own objects, not the product's re-exported: otherwise the comparison proves nothing."""
    assert fake.TEAMS_LIMITS is not product.TEAMS_LIMITS and fake.BOT_LIMITS is not product.BOT_LIMITS
    assert fake.teams_category is not product.teams_category
    assert fake.identity_units_per_10s is not product.identity_units_per_10s


def test_every_exported_name_is_compared():
    compared = set(DATA) | {"TEAMS_LIMITS", "BOT_LIMITS", "teams_category", "identity_units_per_10s"}
    assert set(fake.__all__) == compared


@pytest.mark.parametrize("name", DATA)
def test_datum_agrees(name):
    ours, theirs = getattr(fake, name), getattr(product, name, "<missing>")
    assert ours == theirs, f"{name}: fake tenant {ours!r}, product {theirs!r}"


def _category_names():
    return sorted(set(fake.TEAMS_LIMITS) | set(product.TEAMS_LIMITS))


@pytest.mark.parametrize("category", _category_names())
def test_teams_rate_agrees(category):
    # The rate is Microsoft's number; the label is wording for messages and may differ.
    ours = fake.TEAMS_LIMITS.get(category, ("<missing>",))[0]
    theirs = product.TEAMS_LIMITS.get(category, ("<missing>",))[0]
    assert ours == theirs, f"TEAMS_LIMITS[{category!r}]: fake tenant {ours!r} rps, product {theirs!r} rps"


@pytest.mark.parametrize("cls", sorted(set(fake.BOT_LIMITS) | set(product.BOT_LIMITS)))
def test_bot_windows_agree(cls):
    ours, theirs = fake.BOT_LIMITS.get(cls, "<missing>"), product.BOT_LIMITS.get(cls, "<missing>")
    assert ours == theirs, f"BOT_LIMITS[{cls!r}] (requests, per seconds): fake tenant {ours!r}, product {theirs!r}"


# Calls of each row of Microsoft's Teams table, as lower-cased path segments with ids replaced.
CALLS = [
    ("POST", "chats/{id}/messages"), ("POST", "teams/{id}/channels/{id}/messages"),
    ("POST", "teams/{id}/channels/{id}/messages/{id}/replies"), ("GET", "chats/{id}/messages"),
    ("GET", "chats/{id}/messages/{id}"), ("GET", "teams/{id}/channels/{id}/messages"),
    ("GET", "teams/{id}/channels/{id}/messages/{id}/replies"), ("GET", "teams/{id}/members"),
    ("GET", "teams/{id}/channels"), ("GET", "teams/{id}/channels/{id}/members"), ("GET", "teams/{id}"),
    ("GET", "teams/{id}/channels/{id}"), ("GET", "teams/{id}/installedapps"), ("POST", "teams"),
    ("POST", "teams/{id}/channels"), ("PATCH", "teams/{id}"), ("PUT", "teams/{id}/channels/{id}/tabs/{id}"),
    ("POST", "teams/{id}/channels/{id}/members"), ("DELETE", "teams/{id}/channels/{id}"),
    ("DELETE", "chats/{id}/members/{id}"), ("POST", "chats"), ("POST", "chats/{id}/members"),
    ("GET", "chats"), ("GET", "me/chats"), ("GET", "me/joinedteams"), ("PATCH", "chats/{id}"),
    ("GET", "chats/{id}/members"), ("post", "chats/{id}/messages"),
]


@pytest.mark.parametrize("method,path", CALLS, ids=[f"{m} /{p}" for m, p in CALLS])
def test_teams_category_agrees(method, path):
    low = path.split("/")
    ours, theirs = fake.teams_category(method, low), product.teams_category(method, low)
    assert ours == theirs, f"teams_category({method} /{path}): fake tenant {ours!r}, product {theirs!r}"


@pytest.mark.parametrize("n_users", [0, 1, 49, 50, 51, 499, 500, 501, 10_000])
def test_identity_units_agree(n_users):
    ours, theirs = fake.identity_units_per_10s(n_users), product.identity_units_per_10s(n_users)
    assert ours == theirs, f"identity_units_per_10s({n_users} users): fake tenant {ours}, product {theirs}"
