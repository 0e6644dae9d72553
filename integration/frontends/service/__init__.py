"""The HTTP API (``msteams serve``): another front end over `execute()`, for platforms that call
over the network (Tines, n8n, StackStorm, Splunk SOAR, Shuffle) instead of running the CLI or
the Python API in-process.

Its door is ``tool.main`` (``msteams serve`` and ``msteams api-key ...``, what the CLI imports
lazily). A request walks: ``app`` (the routes, the body cap, one hop to the thread pool) ->
``keys`` (the API key, its scopes and its rate) -> ``idempotency`` (a retry under the same
``Idempotency-Key`` gets the first answer) -> ``execute()`` -> ``problems`` (the one mapping of
our errors to HTTP statuses and RFC 9457 problem+json) -> ``answers`` (an answer and the ASGI
response it becomes) and ``audit`` (each call's entry, committed before its answer). With
``Prefer: respond-async`` the command runs as a job (``jobs``: its state in the store), and
``runs`` starts playbooks. ``openapi`` is the OpenAPI 3.1 document generated from
``commands.yml``; ``server`` serves the app with uvicorn, reusing the bot endpoint's socket and
signal handling (``--bot`` mounts that endpoint in the same app).

Nothing here is imported until ``msteams serve`` or ``msteams api-key`` runs; Starlette and
uvicorn load only when a server starts (``app``, ``server``).
"""
