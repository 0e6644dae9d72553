"""Opening one store from several processes in the tests: ``make_store.where`` (conftest.py) is
a picklable address, a SQLite path or (url, namespace, key) of a Redis, that a child process
hands to ``open_at``."""
from __future__ import annotations


def open_at(where):
    if isinstance(where, tuple):
        import redis

        from integration.store.redis import RedisStore

        url, namespace, key = where
        return RedisStore(redis.Redis.from_url(url, decode_responses=True), namespace=namespace, key_text=key)
    from integration.store.sqlite import Store

    return Store(where)
