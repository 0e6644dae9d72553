"""The connection to the shared store's Redis (store_url): one client built from the config's
URL, credentials and CA bundle, and how a Redis failure is told (where, doing what, why).

The shared store (redis_store.py), the pacer's budget (redis_pacer.py) and the worker queue
(queue.py) all connect through `redis_client`. redis is imported inside the functions: nothing
the CLI imports at start-up may pull it in.
"""
from __future__ import annotations

from integration.engine.errors import IntegrationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from integration.engine.config import Config


def redis_client(cfg: "Config", *, decode: bool = False, name: str = "msteams", wait: float = 0.0):
    """A redis.Redis for cfg.store_url: user and password from store_username/store_password,
    rediss:// verified against store_ca_bundle (else the system's CAs). Connects on first use.
    ``decode``: replies as str (the store, the queue) instead of bytes (the pacer's scripts);
    ``wait``: seconds a blocking read (the queue's) may take on top of the request timeout."""
    from integration.engine.errors import ConfigError

    url = cfg.store_url
    if not url:
        raise ConfigError("store_url is not set", hint="set store_url to redis://host:port/db or rediss://...")
    try:
        import redis
    except ImportError:
        raise ConfigError("store_url is set but the redis package is not installed",
                          hint="pip install 'msteams-soar[redis]', or remove store_url to keep everything local") from None
    kwargs = {
        "username": cfg.store_username or None,
        "password": cfg.store_password or None,
        # A store that stops answering must not hang a fan-out for ever; the bound is the
        # request timeout the rest of the integration uses.
        "socket_timeout": cfg.timeout + wait,
        "socket_connect_timeout": min(cfg.timeout, 10.0),
        "health_check_interval": 30,
        "client_name": name,
        "decode_responses": decode,
    }
    if url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        if cfg.store_ca_bundle:
            kwargs["ssl_ca_certs"] = cfg.store_ca_bundle
    return redis.Redis.from_url(url, **kwargs)


def where(client) -> str:
    """host:port/db of a client's server (nothing secret: the URL carries no password)."""
    try:
        kw = client.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
    except AttributeError:
        return "?"


def unavailable(exc: Exception, client, doing: str) -> IntegrationError:
    """A redis exception as the integration's error: where, what was being done, and why,
    without the password (the redis messages do not carry it; redact guards the rest)."""
    from integration.engine.redact import redact

    at = where(client)
    reason = redact(str(exc).strip()) or type(exc).__name__
    hint = "check store_url, store_username and store_password, and that the Redis server is up"
    # The plain IntegrationError (exit 1): errors.py has no store class yet to fold this into.
    return IntegrationError(f"shared store at {at}: {doing} failed: {reason}", hint=hint)
