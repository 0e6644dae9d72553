"""Graph: talking to Microsoft under the right identity.

``client`` (one HTTP client for Microsoft Graph and the Bot Connector: timeouts, the retry
loop, paging, batching, pacing, errors mapped to the engine's hierarchy), ``auth`` (the app,
delegated and bot flows over MSAL, token caches kept in the store), ``tokenhttp`` (the HTTP
client MSAL is given), ``tokenlock`` (one token request at a time per cache, across
processes), ``resolve`` (names to ids, the store's cache first) and ``recipients`` (who to
notify for a set of route keys).

Door: ``client.Client``, ``auth.Auth``, ``resolve.Resolver``. It stands on delivery (the pacer
and the retry rule), the store and the engine; ``requests`` and ``msal`` are imported only
when a command makes its first call.
"""
