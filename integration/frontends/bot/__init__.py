"""The bot's messaging endpoint: another front end over `execute()`.

An inbound request walks: ``server`` (HTTP, size cap, JSON) -> ``teams.verify`` (the Bot
Framework token: nothing else trusts a request before it) -> ``activities`` (learn the
conversation reference; route by activity type; a command goes through ``teams.access`` (who
may run what, per sender rate limit) to a worker that runs it and answers in the thread) ->
``teams.render`` (the reply card). ``teams.conversations`` keeps what was learned for
``send-notification``; ``tool`` is ``msteams bot serve|audit``. What the endpoint shares with
the handlers (verify, access, render, conversations, questions, mirror, calls) is the Teams
stage, ``integration.teams``, one floor down; this package is only the way in.

Nothing here is imported until ``msteams bot ...`` runs (Starlette and uvicorn included).
"""
