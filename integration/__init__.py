"""Microsoft Teams integration for security automation: commands from `commands.yml` run
against Microsoft Graph and the Bot Connector (or the built-in fake tenant)."""

__version__ = "0.1.0"
