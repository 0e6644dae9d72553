"""Shared fixtures: one emulator for the whole session (``emulator_server``), handed to each
test freshly reset (``emu``), plus HTTP and token helpers against it. Throttling is off unless
a test turns it on; faults, throttling, clocks and permissions are restored after every test."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time

import pytest

# The registry's validated-content cache (and anything else keyed on XDG_CACHE_HOME) goes to a
# directory of this session, never the user's ~/.cache; subprocesses inherit it. Set at import,
# before collection: some test modules load the registry at import time. A registry named by
# the outer environment would change what every test sees.
_CACHE_HOME = tempfile.mkdtemp(prefix="msteams-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE_HOME
os.environ.pop("MSTEAMS_REGISTRY", None)
atexit.register(shutil.rmtree, _CACHE_HOME, True)

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.dirname(_HERE), _HERE):  # the repo (for `integration`) and tests/ (for helpers)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import msal_helpers  # noqa: E402
from fake_tenant import Emulator  # noqa: E402


_CONFIGURED = ("runtime", "signed_in", "cfg_file")


def pytest_collection_modifyitems(config, items):
    """With MSTEAMS_TEST_STORE=redis, only the tests whose store comes from the config (the
    ``runtime`` fixtures, ``make_config``) run: the rest would repeat the default run exactly.
    The store contract suite (tests/store/test_store_contract.py, and every other test of
    ``make_store``) is deselected too: the default run already ran it on both backends."""
    if os.environ.get("MSTEAMS_TEST_STORE") != "redis":
        return
    sources: dict = {}

    def configured(item) -> bool:
        names = set(getattr(item, "fixturenames", ()))
        if "make_store" in names or "make_redis_store" in names:
            return False
        if names & set(_CONFIGURED):
            return True
        path = str(item.fspath)
        if path not in sources:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            sources[path] = "make_config(" in text or "store_settings(" in text
        return sources[path]

    keep = [i for i in items if configured(i)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if not configured(i)])
        items[:] = keep


@pytest.fixture(scope="session")
def emulator_server():
    with Emulator(throttling=False) as emu:
        yield emu
    # Every test's Graph replies were checked against Microsoft's metadata (fake_tenant/conformance.py);
    # a test that provokes an invented property on purpose takes its flags back off the count.
    assert emu.conformance_total["invented"] == 0, \
        "the fake tenant answered properties the Graph v1.0 metadata does not list (logged as warnings)"


@pytest.fixture(scope="session")
def tenants3_server():
    """The fake tenant hosting three customer tenants (contoso, fabrikam, northwind), for the
    tests of many tenants from one deployment (issue 27)."""
    with Emulator(tenants=3, throttling=False) as emu:
        yield emu


@pytest.fixture
def tenants3(tenants3_server):
    tenants3_server.reset()
    yield tenants3_server
    tenants3_server.teams.register(None)
    tenants3_server.reset()


def _restore(emu) -> None:
    emu.faults.clear()
    emu.set_throttling(False, speed=1.0, retry_after=True)
    emu.throttle.clock = time.monotonic
    emu.tokens.clock = time.time
    emu.entra.clock = time.time
    emu.restore_permissions()


@pytest.fixture
def emu(emulator_server):
    emulator_server.reset()
    _restore(emulator_server)
    yield emulator_server
    _restore(emulator_server)


@pytest.fixture
def ca(emu) -> str:
    return emu.ca_bundle


@pytest.fixture
def http(emu):
    s = msal_helpers.http_session(emu.ca_bundle)
    yield s
    s.close()


@pytest.fixture
def app_token(emu) -> str:
    """An app-only Graph token (client credentials through MSAL)."""
    return msal_helpers.app_token(emu)


@pytest.fixture
def delegated_token(emu) -> str:
    """A delegated Graph token for the service account (auth-code flow with PKCE through MSAL)."""
    return msal_helpers.delegated_token(emu)


@pytest.fixture
def bot_token(emu) -> str:
    """A Bot Connector token for the seeded bot app."""
    return msal_helpers.bot_token(emu)


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server for the session (tests/redis_server.py); tests keep apart by
    key namespace (``redis_namespace``), not by flushing."""
    import redis_server as rs

    server = rs.start_or_skip()
    yield server
    server.stop()


@pytest.fixture
def redis_namespace(request) -> str:
    """A key prefix of this test's own in the shared test Redis."""
    import uuid

    return f"t{uuid.uuid4().hex[:12]}"


def _redis_store_factory(server, namespace: str, made: list):
    import time as _time

    import redis
    from cryptography.fernet import Fernet

    from integration.store.redis import RedisStore

    key = Fernet.generate_key().decode()

    def make(clock=_time.time, key_text=None):
        s = RedisStore(redis.Redis.from_url(server.url, decode_responses=True), namespace=namespace,
                       key_text=key_text or key, location=f"{server.url} (namespace {namespace})", clock=clock)
        made.append(s)
        return s
    make.backend, make.url, make.namespace, make.key = "redis", server.url, namespace, key
    make.where = (server.url, namespace, key)  # for a child process: store_helpers.open_at
    return make


def _redis_package_or_skip() -> None:
    """The redis param needs the redis package (the [test] extra has it): without it, a skip
    that says so, except under CI=true, where it fails (as a missing redis-server does)."""
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs the redis package for the Redis store tests: {exc}", pytrace=False)
        pytest.skip(f"the redis package is not installed (pip install -e '.[test]'): {exc}")


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """``make_store(clock=...)``: a context store of each backend (the test runs once per
    backend): the SQLite file, or a namespace of its own in the session's real Redis. Several
    calls give handles on the same store, as several processes would have."""
    import time as _time

    made: list = []
    if request.param == "redis":
        _redis_package_or_skip()
        make = _redis_store_factory(request.getfixturevalue("redis_server"),
                                    request.getfixturevalue("redis_namespace"), made)
    else:
        from integration.store.sqlite import SQLiteStore

        def make(clock=_time.time, key_text=None):
            s = SQLiteStore(tmp_path / "store.sqlite3", clock=clock)
            made.append(s)
            return s
        make.backend, make.path = "sqlite", tmp_path / "store.sqlite3"
        make.where = make.path
    yield make
    for s in made:
        s.close()


@pytest.fixture
def make_redis_store(redis_server, redis_namespace):
    """``make_redis_store(clock=..., key_text=...)``: handles on one shared store in the real Redis."""
    made: list = []
    yield _redis_store_factory(redis_server, redis_namespace, made)
    for s in made:
        s.close()


# The integration's own fixtures (runtime against the emulator, signed-in runtime, recorded sleeps).
pytest_plugins = ["engine_fixtures"]
