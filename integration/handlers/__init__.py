"""Python handlers for commands that combine calls or resolve names, grouped by resource.

Each module lists its handlers in ``HANDLERS``; the registry checks at load time that every
command naming a handler has one and every handler has a command.

Stage: below ``dispatch`` (which finds a handler by name and calls it with a
``dispatch.CommandContext``) and above the Teams side, Graph, delivery, the store and the
engine. A handler never imports ``dispatch``: what it needs of the runtime (another command,
a context for a queued item) it asks of the runtime it is handed.
"""
