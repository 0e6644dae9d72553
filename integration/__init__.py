"""Microsoft Teams integration for security automation: commands from `commands.yml` run
against Microsoft Graph and the Bot Connector (or the built-in fake tenant).

The Python API for callers in the same process is :mod:`integration.api`
(``from integration import api``; docs/python-api.md). It is imported on first use, so
``import integration`` stays cheap.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "api":
        import importlib

        return importlib.import_module(".api", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
