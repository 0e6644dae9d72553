"""The engine: what every command is made of, and what every other stage stands on.

The registry (``registry``: ``commands.yml`` checked and frozen into command specs), arguments
(``arguments``: raw values typed and checked against a command's JSON Schema), results
(``results``: context, readable table, raw reply), configuration (``config``), the one error
hierarchy (``errors``) and its exit codes, and the guards every output passes through:
``untrusted``/``escape`` (text a user gave us, shown safely), ``redact`` (secrets masked),
``yamlfile`` (the YAML we read), ``record`` (cheap record classes), ``argtypes`` (the tool
commands' option types) and ``metrics`` (what the long-running services tell operators).

Door: its modules by name (``from integration.engine import registry, config, errors``). It is
the lowest stage: it imports no other stage (``handlers`` are found by package name, not
imported), and nothing here is imported eagerly that a help page does not need.
"""
