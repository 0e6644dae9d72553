"""Which context store a config names: the SQLite file (store_path, the default) or, with
store_url, the Redis that several engines and hosts share. Either is a `base.Store`; only the
chosen backend's module is imported."""
from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .base import Store


def open_store(cfg, *, clock=time.time) -> Store:
    """The config's store, ready to use. A Redis store that cannot be reached, or has no
    store_key to encrypt token caches with, is a ConfigError naming the setting."""
    if cfg.store_url:
        from .redis import RedisStore

        return RedisStore.from_config(cfg, clock=clock)
    from .sqlite import SQLiteStore

    return SQLiteStore(cfg.resolved_store_path, clock=clock)

