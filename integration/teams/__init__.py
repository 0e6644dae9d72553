"""The Teams side: what the integration keeps and says in Teams as a bot.

``conversations`` (conversation references learned from Teams, for proactive messages),
``render`` (replies as Adaptive Cards, every text escaped), ``questions`` (``ask``: question
cards and their answers), ``mirror`` (an incident's war room mirrored to a channel or chat,
both ways), ``access`` (who may run which command from Teams, and how often), ``verify`` (the
Bot Framework token on every inbound request, as Microsoft specifies), ``calls`` (what
Graph's calling service reports about the calls ``ring-user`` placed) and ``readback`` (a
bot's message read back through Graph, to settle a send whose outcome is ambiguous).

Door: those modules by name. The handlers use it to send and the bot endpoint (a front end,
``integration.frontends.bot``) to receive; it never imports either, and runs another command
only through the runtime it is handed (``runtime.execute``).
"""
