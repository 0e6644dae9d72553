"""Python handlers for commands that combine calls or resolve names, grouped by resource.

Each module lists its handlers in ``HANDLERS``; the registry checks at load time that every
command naming a handler has one and every handler has a command.
"""
