"""Opening one store from several processes in the tests: ``make_store.where`` (conftest.py) is
a picklable address, a SQLite path or (url, namespace, key) of a Redis, that a child process
hands to ``open_at``. Also the records the store tests of both backends write."""
from __future__ import annotations


def open_at(where):
    if isinstance(where, tuple):
        import redis

        from integration.store.redis import RedisStore

        url, namespace, key = where
        return RedisStore(redis.Redis.from_url(url, decode_responses=True), namespace=namespace, key_text=key)
    from integration.store.sqlite import SQLiteStore

    return SQLiteStore(where)


def run_record(rid, key=None, status="running", state=None) -> dict:
    """A playbook run as ``run_create`` takes it."""
    return {"id": rid, "run_key": key, "playbook": "/p.yml", "name": "p", "status": status, "owner": "h:1",
            "state": state or {"inputs": {}}}


# Users as a preload writes them (with put_entries(aliases=("mail",))): two namesakes whose
# names differ in blanks and case, one whose name casefolds (ß -> ss), and two whose name is
# no string; the lists index_names makes of them are NAMESAKE_LISTS.
NAMESAKES = [{"id": "1", "displayName": "Bob Smith", "mail": "b1@x"},
             {"id": "3", "displayName": " bob SMITH", "mail": "b3@x"},
             {"id": "4", "displayName": "Anna Straße", "mail": "a@x"},
             {"id": "5", "displayName": None, "mail": "n@x"},
             {"id": "6", "displayName": 7, "mail": "q@x"}]
NAMESAKE_LISTS = {"bob smith": ["1", "3"], "anna strasse": ["4"]}
