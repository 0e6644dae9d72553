"""The context store: everything the integration keeps between commands and shares between
processes. That is the directory cache (users, teams, channels, chats, members and their display
names, with TTLs), MSAL's token caches, the store's own secrets, references to sent messages,
the outbox of deliveries, playbook runs, questions and their answers, the bot's conversation
references and audit log, call events, mirrored incidents and their journals, and named locks.

Two backends implement one protocol, `base.Store`: the embedded SQLite file (`sqlite`, the
default, 0600, shared by the processes of one host) and the shared Redis (`redis`, with
`redis_conn`; store_url, for several engines and hosts, token caches encrypted under
store_key). tests/store/test_store_contract.py runs the same behaviour tests against both.

Its door:
    open.open_store(cfg)   the config's store, whichever backend it names
    base.Store             the protocol callers type a store as (and the shared kinds, DEFAULT_TTL)
    tool.main              `msteams store ...` (keygen, rotate-key, status, prune)

Nothing is imported here: `import integration.store` must not cost a command's start-up the
backends' modules (sqlite3, redis), so callers import the submodule they need.
"""
