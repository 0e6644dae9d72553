"""A fake Microsoft 365 tenant on loopback HTTPS: Entra ID sign-in, Microsoft Graph (Teams
subset) and the Bot Connector, strict where Microsoft is strict."""
