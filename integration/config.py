"""Configuration: a YAML file (`--config` or MSTEAMS_CONFIG) overlaid by MSTEAMS_* environment
variables. Secrets may come from the environment, a file path (`client_secret_file`), or the
file itself. Endpoints are overridable, which is how the emulator and national clouds plug in.

Read when a command runs, never at import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from . import redact
from .errors import ConfigError, FileError
from .untrusted import quote

PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"
PUBLIC_BOT_SERVICE_URL = "https://smba.trafficmanager.net/teams/"
GRAPH_SCOPE_ROOT = "https://graph.microsoft.com"
BOT_SCOPE = "https://api.botframework.com/.default"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "msteams-soar"


@dataclass
class Config:
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    certificate_path: str | None = None  # PEM with private key, for app auth by certificate
    certificate_thumbprint: str | None = None
    bot_id: str | None = None
    bot_secret: str | None = field(default=None, repr=False)
    bot_tenant_id: str | None = None
    authority: str | None = None  # full authority URL; default login.microsoftonline.com/<tenant>
    graph_url: str = PUBLIC_GRAPH_URL
    bot_service_url: str = PUBLIC_BOT_SERVICE_URL
    ca_bundle: str | None = None
    service_account: str | None = None  # the expected delegated account (login hint)
    redirect_uri: str = "http://localhost"
    # Graph requires an https callback for calls; the integration does not consume call events.
    call_callback_uri: str = "https://localhost/msteams/calls/callback"
    store_path: str | None = None
    timeout: float = 30.0
    max_retries: int = 5
    retry_budget_seconds: float = 120.0
    source: str = "environment"

    # ---- derived ----
    @property
    def authority_url(self) -> str:
        if self.authority:
            return self.authority.rstrip("/")
        if not self.tenant_id:
            raise ConfigError("tenant_id is not set", hint="set tenant_id in the config file or MSTEAMS_TENANT_ID")
        return f"{PUBLIC_AUTHORITY_HOST}/{self.tenant_id}"

    @property
    def bot_authority_url(self) -> str:
        if self.authority:
            return self.authority.rstrip("/")
        return f"{PUBLIC_AUTHORITY_HOST}/{self.bot_tenant_id or self.tenant_id or 'botframework.com'}"

    @property
    def graph_scope(self) -> str:
        return f"{GRAPH_SCOPE_ROOT}/.default"

    @property
    def app_configured(self) -> bool:
        return bool(self.client_id and (self.client_secret or self.certificate_path) and (self.tenant_id or self.authority))

    @property
    def delegated_configured(self) -> bool:
        return bool(self.client_id and (self.tenant_id or self.authority))

    @property
    def bot_configured(self) -> bool:
        return bool(self.bot_id and self.bot_secret)

    @property
    def resolved_store_path(self) -> Path:
        return Path(self.store_path) if self.store_path else default_data_dir() / "store.sqlite3"

    @property
    def verify(self) -> str | bool:
        return self.ca_bundle or True


_KEYS = {f.name for f in fields(Config)} - {"source"}
_SECRET_KEYS = ("client_secret", "bot_secret")


def _read_secret_file(path: str, key: str, source: str) -> str:
    try:
        return Path(os.path.expanduser(path)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {key}_file {path!r}: {exc.strerror}") from None


def load(path: str | None = None, env: dict | None = None) -> Config:
    """The file (if any) overlaid by MSTEAMS_<KEY> variables; unknown keys are refused."""
    env = os.environ if env is None else env
    path = path or env.get("MSTEAMS_CONFIG")
    data: dict = {}
    source = "environment"
    if path:
        from . import yamlfile

        p = Path(os.path.expanduser(path))
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"config file {str(p)!r}: cannot read ({exc.strerror})",
                              hint="pass --config PATH or set MSTEAMS_CONFIG; `msteams emulator serve --write-config PATH` writes one") from None
        data = yamlfile.parse(text, str(p))[0] or {}
        if not isinstance(data, dict):
            raise FileError(str(p), "expected a mapping of settings")
        source = str(p)
    for key in list(data):
        if key.endswith("_file") and key[:-5] in _SECRET_KEYS:
            data[key[:-5]] = _read_secret_file(str(data.pop(key)), key[:-5], source)
        elif key not in _KEYS:
            raise ConfigError(f"{source}: unknown setting {quote(key)}", hint=f"valid settings: {', '.join(sorted(_KEYS))}")
    for key in _KEYS:
        v = env.get(f"MSTEAMS_{key.upper()}")
        if v:
            data[key] = v
        vf = env.get(f"MSTEAMS_{key.upper()}_FILE") if key in _SECRET_KEYS else None
        if vf:
            data[key] = _read_secret_file(vf, key, "environment")
    for key in ("timeout", "retry_budget_seconds"):
        if key in data:
            try:
                data[key] = float(data[key])
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: setting '{key}' must be a number") from None
    if "max_retries" in data:
        try:
            data["max_retries"] = int(data["max_retries"])
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: setting 'max_retries' must be a whole number") from None
    for key in data:
        if key not in ("timeout", "retry_budget_seconds", "max_retries") and data[key] is not None:
            data[key] = str(data[key])
    cfg = Config(**data, source=source)
    for key in _SECRET_KEYS:
        redact.register(getattr(cfg, key))
    if cfg.ca_bundle and not Path(cfg.ca_bundle).is_file():
        raise ConfigError(f"{source}: ca_bundle {cfg.ca_bundle!r} does not exist",
                          hint="is the emulator that wrote this config still running?")
    return cfg
