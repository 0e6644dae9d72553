"""Names to ids (integration/graph/resolve.py): misses remembered briefly, in single lookups and in
`$batch` prefetches, against the fake tenant's request log."""
import pytest

from integration.graph import resolve
from integration.engine.errors import NotFound
from integration.graph.resolve import Resolver

GHOST_ID = "99999999-8888-7777-6666-555555555555"


def test_a_name_that_matched_no_one_is_not_looked_up_again_for_a_while(emu, runtime):
    resolver = Resolver(runtime.client("app"), runtime.store)
    with pytest.raises(NotFound):
        resolver.user("Nobody Here")
    before = len(emu.request_log)
    with pytest.raises(NotFound) as e:
        resolver.user("Nobody Here")
    assert emu.request_log[before:] == []
    assert "cache-reset" in e.value.hint


def test_a_remembered_miss_expires(emu, runtime, monkeypatch):
    monkeypatch.setattr(resolve, "MISS_TTL", -1.0)  # already expired when written
    resolver = Resolver(runtime.client("app"), runtime.store)
    with pytest.raises(NotFound):
        resolver.user("Nobody Here")
    before = len(emu.request_log)
    with pytest.raises(NotFound):
        resolver.user("Nobody Here")
    assert len(emu.request_log) > before


def test_prefetch_remembers_misses_but_not_mails_that_a_filter_may_still_find(emu, runtime):
    resolver = Resolver(runtime.client("app"), runtime.store)
    resolver.prefetch_users(["Bob Smith", "Nobody Here", GHOST_ID, "ghost@contoso.example"])
    assert runtime.store.get("user_miss", "Nobody Here") is True
    assert runtime.store.get("user_miss", GHOST_ID) is True
    assert runtime.store.get("user_miss", "ghost@contoso.example") is None
    before = len(emu.request_log)
    for name in ("Nobody Here", GHOST_ID):
        with pytest.raises(NotFound):
            resolver.user(name)
    assert resolver.user("Bob Smith")["mail"] == "bob.smith@contoso.example"
    assert emu.request_log[before:] == []
    # A second prefetch of the same names asks Graph nothing (one is cached, two are misses).
    assert resolver.prefetch_users(["Bob Smith", "Nobody Here", GHOST_ID]) == 0
    assert emu.request_log[before:] == []
