"""Front ends: the ways in, each thin over ``dispatch.execute()``.

``cli`` (the ``msteams`` command line: a subcommand per registry command, the war-room form,
the tool commands), ``shell`` (the analyst's war-room prompt), ``api`` (the Python API,
public as ``integration.api``), ``bot`` (the bot's messaging endpoint: Teams users run
commands and answer questions), ``service`` (``msteams serve``: the HTTP API), with what the
two HTTP services share: ``lane`` (store work run by the event loop itself) and ``pool`` (the
threads the rest hops to), ``worker`` (a process of the worker pool), ``demo`` (the
built-in fake tenant, end to end), ``docs`` (reference pages generated from the registry) and
``app_package`` (the Teams app package).

Door: ``cli.main`` (the ``msteams`` entry point) and ``api``. This is the top stage: nothing
imports it, and only ``cli`` and ``demo`` may start the fake tenant.
"""
