"""The bot's messaging endpoint: another front end over `execute()`.

An inbound request walks: ``server`` (HTTP, size cap, JSON) -> ``verify`` (the Bot Framework
token: nothing else trusts a request before it) -> ``activities`` (learn the conversation
reference; route by activity type; a command goes through ``access`` (who may run what, per
sender rate limit) to a worker that runs it and answers in the thread) -> ``render`` (the
reply card). ``conversations`` keeps what was learned for ``send-notification``; ``tool`` is
``msteams bot serve|audit``.

Nothing here is imported until ``msteams bot ...`` runs (Starlette and uvicorn included).
"""
