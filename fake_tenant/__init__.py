"""A fake Microsoft 365 tenant on loopback HTTPS: Entra ID sign-in, Microsoft Graph (Teams
subset) and the Bot Connector, strict where Microsoft is strict.

``from fake_tenant import Emulator``; see ``server.py`` for the API and
``serve.py`` for ``msteams emulator serve``.
"""
from .server import Emulator

__all__ = ["Emulator"]
