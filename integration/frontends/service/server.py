"""The HTTP API served by uvicorn on a socket of its own: the bot endpoint's serving code
(``frontends/bot/server.py``'s ``Served``: Ctrl-C and SIGTERM stop it gracefully and the process
exits 0), with the service's app."""
from __future__ import annotations

from integration.frontends.bot.server import Served


class ServiceServer(Served):
    """``start()`` in a thread (tests) or ``run()`` in the foreground (``msteams serve``)."""

    what = "the HTTP API"
