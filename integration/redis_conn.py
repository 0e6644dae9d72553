"""The connection to the shared store's Redis (store_url): one client built from the config's
URL, credentials and CA bundle, and how a Redis failure is told (where, doing what, why).

redis is imported inside the functions: nothing the CLI imports at start-up may pull it in.
(integration/queue.py's connect() builds the same client with decoded replies; the two, and
the shared store's, are meant to be folded into one factory.)
"""
from __future__ import annotations

from .errors import IntegrationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Config


def redis_client(cfg: "Config"):
    """A redis.Redis for cfg.store_url: user and password from store_username/store_password,
    rediss:// verified against store_ca_bundle (else the system's CAs). Connects on first use."""
    from .errors import ConfigError

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
        "socket_timeout": cfg.timeout,
        "socket_connect_timeout": min(cfg.timeout, 10.0),
        "health_check_interval": 30,
        "client_name": "msteams",
    }
    if url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        if cfg.store_ca_bundle:
            kwargs["ssl_ca_certs"] = cfg.store_ca_bundle
    return redis.Redis.from_url(url, **kwargs)


def unavailable(exc: Exception, client, doing: str) -> IntegrationError:
    """A redis exception as the integration's error: where, what was being done, and why,
    without the password (the redis messages do not carry it; redact guards the rest)."""
    from .redact import redact

    try:
        kw = client.connection_pool.connection_kwargs
        at = f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
    except AttributeError:
        at = "?"
    reason = redact(str(exc).strip()) or type(exc).__name__
    hint = "check store_url, store_username and store_password, and that the Redis server is up"
    # The plain IntegrationError (exit 1): errors.py has no store class yet to fold this into.
    return IntegrationError(f"shared store at {at}: {doing} failed: {reason}", hint=hint)
