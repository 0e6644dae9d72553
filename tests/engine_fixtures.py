"""Fixtures for running the integration against the emulator (imported by tests/conftest.py)."""
from __future__ import annotations

import hashlib
import os

import pytest

from integration.engine import config as config_mod
from integration.dispatch import Runtime, execute


class Sleeps(list):
    """An injectable sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# MSTEAMS_TEST_STORE=redis runs every test that takes its config from here against a shared
# store in a real Redis (one server for the session, a key namespace per test) instead of SQLite.
STORE_BACKEND = os.environ.get("MSTEAMS_TEST_STORE", "sqlite")
_REDIS = []


def redis_store_settings(tmp_path) -> dict:
    """store_url, store_namespace and store_key for a test's own corner of the shared Redis."""
    if not _REDIS:
        import atexit

        import redis_server

        server = redis_server.start_or_skip()
        atexit.register(server.stop)
        from cryptography.fernet import Fernet

        _REDIS.append((server, Fernet.generate_key().decode()))
    server, key = _REDIS[0]
    namespace = "t" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
    return {"store_url": server.url, "store_namespace": namespace, "store_key": key}


def store_settings(tmp_path) -> dict:
    if STORE_BACKEND == "redis":
        return redis_store_settings(tmp_path)
    return {"store_path": str(tmp_path / "store.sqlite3")}


def make_config(emu, tmp_path, **overrides) -> config_mod.Config:
    data = dict(emu.config())
    data.update(store_settings(tmp_path))
    data.update(overrides)
    data = {k: v for k, v in data.items() if v is not None}
    cfg = config_mod.Config(**{k: v for k, v in data.items() if k in config_mod._KEYS}, source="test")
    for key in ("client_secret", "bot_secret", "store_key"):
        config_mod.redact.register(getattr(cfg, key))
    if "store_path" not in overrides:
        cfg.store_path = str(tmp_path / "store.sqlite3")
    return cfg


@pytest.fixture
def cfg_file(emu, tmp_path):
    """A config file as `msteams emulator serve --write-config` writes it, with a private store."""
    import yaml

    p = tmp_path / "config.yml"
    emu.write_config(str(p))
    data = yaml.safe_load(p.read_text())
    data.update(store_settings(tmp_path))
    data["store_path"] = str(tmp_path / "store.sqlite3")
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def runtime(emu, tmp_path, sleeps):
    """A Runtime configured against the emulator; app and bot ready, delegated not signed in."""
    rt = Runtime(make_config(emu, tmp_path), sleep=sleeps)
    rt.echo = lambda s: None
    yield rt
    rt.close()


@pytest.fixture
def signed_in(runtime):
    """The runtime after an unattended delegated sign-in (auth code + PKCE through the listener)."""
    execute("auth-login", {}, runtime)
    return runtime
