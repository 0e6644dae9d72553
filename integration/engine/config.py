"""Configuration: a YAML file (`--config` or MSTEAMS_CONFIG) overlaid by MSTEAMS_* environment
variables. Secrets may come from the environment, a file path (`client_secret_file`), or the
file itself. Endpoints are overridable, which is how the emulator and national clouds plug in.

Read when a command runs, never at import. Every value, from the file or the environment, is
checked against config.schema.json; an error names the file and line (or the variable) and the
setting, and never echoes a secret.

A path in the config file (PATH_KEYS) is taken relative to the file's directory, whatever the
current directory; `~` is expanded. A path from an MSTEAMS_* variable stays relative to the
current directory, as a path on a command line would. An error about a file that cannot be
read names the full path tried.
"""
from __future__ import annotations

import contextvars
import functools
import json
import math
import os
import re
from .record import field, fields, record as dataclass  # not dataclasses: start-up time (record.py)
from pathlib import Path
from urllib.parse import urlsplit

from . import redact
from .errors import ConfigError, ConfigFileError, FileError, InputError
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
    # Where Graph posts a call's notifications (ring-user): by default the bot endpoint's
    # /api/calls under bot_public_url (msteams bot serve records them; ring-user wait= reads them).
    call_callback_uri: str | None = None
    store_path: str | None = None
    # A shared store instead of the SQLite file (several engines and hosts): redis:// or rediss://
    # host:port/db. The password and the key that encrypts token caches come from secrets; keys
    # live under store_namespace, so several deployments (or test runs) can share one Redis.
    store_url: str | None = None
    store_username: str | None = None
    store_password: str | None = field(default=None, repr=False)
    store_key: str | None = field(default=None, repr=False)
    store_namespace: str = "msteams"
    store_ca_bundle: str | None = None
    timeout: float = 30.0
    max_retries: int = 5
    retry_budget_seconds: float = 120.0
    fanout_workers: int = 8  # parallel senders of a fan-out
    pacing_speed: float = 1.0  # the pacer's limits x this (a fake tenant run at --speed)
    # The bot's messaging endpoint (msteams bot serve): where the inbound tokens' signing keys are
    # published (default: the Bot Framework's OpenID metadata), and the access policy file.
    bot_openid_metadata_url: str | None = None
    bot_access_file: str | None = None
    # Where Teams reaches that endpoint: the public HTTPS base URL in front of `msteams bot serve`
    # (create-messaging-endpoint prints it with /api/messages, for the Azure Bot's setting).
    bot_public_url: str | None = None
    # The keys that sign Graph's call notifications to /api/calls (the calling service's metadata).
    call_openid_metadata_url: str | None = None
    # Mirrored incidents (mirror-investigation): a webhook subscribed to mirror.entry (delivery/
    # webhooks.py: Standard Webhooks, signed with this secret, through the outbox: nothing lost,
    # nothing twice).
    mirror_webhook_url: str | None = None
    mirror_webhook_secret: str | None = field(default=None, repr=False)
    # `msteams serve` also takes Entra ID bearer tokens (app roles as scopes) carrying this
    # audience: the integration app's client id (or its Application ID URI). Unset: API keys only.
    api_entra_audience: str | None = None
    source: str = "environment"
    # Tenant profiles (`tenants:` in the file): the profile this config was read for, and the
    # names of every profile (empty: a single-tenant config). Not settings: chosen by
    # --tenant NAME, tenant= or MSTEAMS_TENANT (see load()).
    tenant: str | None = None
    tenant_names: tuple = ()

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
    def call_callback_url(self) -> str | None:
        """The callback given to Graph for calls: call_callback_uri, else bot_public_url +
        /api/calls; None when neither is set (nobody would hear the call's outcome)."""
        if self.call_callback_uri:
            return self.call_callback_uri
        if self.bot_public_url:
            return self.bot_public_url.rstrip("/") + "/api/calls"
        return None

    @property
    def resolved_store_path(self) -> Path:
        return Path(self.store_path).expanduser() if self.store_path else default_data_dir() / "store.sqlite3"

    @property
    def verify(self) -> str | bool:
        return self.ca_bundle or True


_KEYS = {f.name for f in fields(Config)} - {"source", "tenant", "tenant_names"}
_SECRET_KEYS = ("client_secret", "bot_secret", "mirror_webhook_secret", "store_password", "store_key")
# The settings that name a file (or the SQLite store): relative ones in a config file are taken
# from the file's directory (tests/engine/test_config.py checks every *_file, *_path and *ca_bundle
# setting of the schema is here).
PATH_KEYS = ("certificate_path", "ca_bundle", "store_path", "store_ca_bundle", "bot_access_file",
             *(f"{k}_file" for k in _SECRET_KEYS))
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Tenant profiles: a profile may set any setting but these: each tenant's store is derived from
# the top level's (tenant_store), so no two tenants can share one by a copied line; and a
# profile holds no profiles.
_DERIVED_STORE = "each tenant's store is derived from the top level's store settings"
NOT_PER_TENANT = {**{k: _DERIVED_STORE for k in ("store_path", "store_url", "store_username", "store_password",
                                                 "store_password_file", "store_key", "store_key_file",
                                                 "store_namespace", "store_ca_bundle")},
                  "tenants": "a profile holds no profiles",
                  "api_entra_audience": "one HTTP service serves every tenant: its audience is the top level's"}
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# What names a tenant: with profiles, each profile says it; an MSTEAMS_* variable setting one of
# these for every profile at once would send every tenant's commands to one tenant.
TENANT_IDENTITY = ("tenant_id", "authority", "bot_tenant_id")


# ---- the schema (config.schema.json), checked by hand ----
# jsonschema costs ~150 ms to import and every command reads its config, so the few keywords the
# schema uses are interpreted here; tests/engine/test_config.py checks jsonschema agrees with this.

@functools.lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(Path(__file__).with_name("config.schema.json").read_text(encoding="utf-8"))


def setting_names() -> list[str]:
    return sorted(schema()["properties"])


def _split_url(value: str):
    """(the URL's parts, None), or (None, why it is no URL at all)."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None, "must be a URL without spaces or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
    except ValueError:
        return None, "is not a valid URL"
    return parts, None


def url_problem(value: str) -> str | None:
    """Why `value` is not an acceptable endpoint URL (format "msteams-url"), or None."""
    parts, problem = _split_url(value)
    if problem:
        return problem
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        return "must be an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if not parts.hostname:
        return "must be an https:// URL with a host"
    if scheme == "http" and parts.hostname.lower() not in LOOPBACK_HOSTS:
        return "must be an https:// URL (http:// only on a loopback host: 127.0.0.1, localhost, [::1])"
    return None


def store_url_problem(value: str) -> str | None:
    """Why `value` is not an acceptable shared store URL (format "msteams-store-url"), or None."""
    parts, problem = _split_url(value)
    if problem:
        return problem
    if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname:
        return "must be redis://host:port/db or rediss://host:port/db (TLS)"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (set store_username and store_password_file)"
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 16):
        return "must end in a database number from 0 to 15 (redis://host:6379/0)"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    return None


FORMATS = {"msteams-url": url_problem, "msteams-store-url": store_url_problem}


def _resolve(sub: dict) -> dict:
    while "$ref" in sub:
        ref = sub["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"config schema: unsupported $ref {ref}")
        sub = {**schema()["$defs"][ref[len("#/$defs/"):]], **{k: v for k, v in sub.items() if k != "$ref"}}
    return sub


_TYPE_NAMES = {"string": "text", "number": "a number", "integer": "a whole number"}
_KNOWN_KEYWORDS = {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "not",
                   "pattern", "writeOnly", "errorMessage", "description", "default", "$comment"}


def _is_type(value, typ: str) -> bool:
    if typ == "null":
        return value is None
    if typ == "string":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return typ == "number" or isinstance(value, int) or value.is_integer()


def _describe(value) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, (int, float)):
        return quote(repr(value) if isinstance(value, float) and not math.isfinite(value) else value)
    if isinstance(value, str):
        return f"text {quote(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a YAML {type(value).__name__}"


def _number(n) -> str:
    return f"{n:g}" if isinstance(n, float) else str(n)


def check_value(sub: dict, value, secret: bool = False):
    """`value` checked against one property's schema: (value, None) with whole numbers as int,
    or (None, problem). A writeOnly (secret) value is never echoed."""
    sub = _resolve(sub)
    unknown = set(sub) - _KNOWN_KEYWORDS
    if unknown:
        raise ValueError(f"config schema: keyword(s) not interpreted by config.py: {sorted(unknown)}")
    secret = secret or sub.get("writeOnly", False)
    got = "" if secret else f", got {_describe(value)}"
    types = sub.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            wanted = " or ".join(_TYPE_NAMES[t] for t in types if t != "null")
            hint = " (put it in quotes)" if "string" in types and isinstance(value, (int, float)) else ""
            return None, f"must be {wanted}{got}{hint}"
    if value is None:
        return None, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None, f"must be a finite number{got}"
        if "minimum" in sub and value < sub["minimum"]:
            return None, f"must be at least {_number(sub['minimum'])}{got}"
        if "exclusiveMinimum" in sub and value <= sub["exclusiveMinimum"]:
            return None, f"must be greater than {_number(sub['exclusiveMinimum'])}{got}"
        if "maximum" in sub and value > sub["maximum"]:
            return None, f"must be at most {_number(sub['maximum'])}{got}"
        if "exclusiveMaximum" in sub and value >= sub["exclusiveMaximum"]:
            return None, f"must be less than {_number(sub['exclusiveMaximum'])}{got}"
        if types and "number" in types:
            value = float(value)
        elif types and "integer" in types:
            value = int(value)
    if isinstance(value, str):
        if "pattern" in sub and not re.search(sub["pattern"], value):
            return None, sub.get("errorMessage") or "is not in the expected form"
        if "format" in sub:
            problem = FORMATS[sub["format"]](value)
            if problem:
                # A URL with a password in it is not echoed either.
                return None, problem + ("" if secret or "@" in value else f", got {quote(value)}")
    if "not" in sub and check_value(sub["not"], value, True)[1] is None:
        return None, sub.get("errorMessage") or "is not allowed"
    return value, None


def _from_env(sub: dict, text: str):
    """An environment variable's text as the setting's type (numbers parsed), for check_value."""
    types = _resolve(sub).get("type") or []
    types = [types] if isinstance(types, str) else types
    if "string" in types:
        return text
    for parse in (int, float):  # int first: "-5" is echoed back as -5, not -5.0
        try:
            return parse(text)
        except ValueError:
            pass
    return text  # check_value says what was expected


def _problem(origin, key: str, message: str, hint: str | None = None) -> ConfigError:
    """An error about one setting, named by where it came from: ("file", path, line) or ("env", var)."""
    if origin[0] == "file":
        return ConfigFileError(origin[1], f"setting '{key}': {message}", origin[2], key=key, hint=hint)
    return ConfigError(f"environment variable {origin[1]} (setting '{key}'): {message}",
                       hint=hint or f"fix or unset {origin[1]}")


def _apply_profile(data: dict, origin: dict, profiles: dict, tenant: str | None, source: str, path) -> None:
    """The named profile laid over ``data`` (the top level and the variables), in place."""
    for key in TENANT_IDENTITY:
        if origin.get(key, ("file",))[0] == "env":
            raise ConfigError(f"environment variable {origin[key][1]} is set, but {quote(source)} has tenant "
                              f"profiles: each profile names its own tenant", hint=f"unset {origin[key][1]}")
    if tenant is None:
        return
    if tenant not in profiles:
        raise InputError(f"no tenant profile {quote(tenant)} in {quote(source)}",
                         hint=f"the profiles: {', '.join(sorted(profiles))}")
    base = os.path.dirname(os.path.abspath(os.path.expanduser(path))) if path else None
    for key, (value, line) in profiles[tenant].items():
        if key in PATH_KEYS:
            value = _beside(value, base)
        data[key], origin[key] = value, ("file", source, line)
        if key.endswith("_file"):
            data.pop(key[:-5], None)  # the profile's secret file wins over the top level's secret
        elif key in _SECRET_KEYS:
            data.pop(f"{key}_file", None)
    tenant_store(data, tenant)


def full_path(path: str) -> str:
    """The absolute path a (possibly relative) configured path is read from: what errors name."""
    return os.path.abspath(os.path.expanduser(path))


def _beside(value: str, base: str | None) -> str:
    """A path setting's value with `~` expanded; a relative one from a config file is taken
    from the file's directory ``base`` (None: from the environment, left relative to the
    current directory)."""
    value = os.path.expanduser(value)
    if base is None or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base, value))


def _read_secret_file(path: str, key: str, origin) -> str:
    where = full_path(path)
    try:
        return Path(where).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _problem(origin, f"{key}_file", f"cannot read {quote(where)}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError):
        raise _problem(origin, f"{key}_file", f"{quote(where)} is not UTF-8 text") from None


def _unknown(key) -> str:
    import difflib

    name = key if isinstance(key, str) else str(key)
    close = difflib.get_close_matches(name.lower(), setting_names(), n=1, cutoff=0.6)
    return f"unknown setting {quote(name)}" + (f" (did you mean '{close[0]}'?)" if close else "")


def _read_file(p: Path) -> tuple[dict, dict]:
    """The file's settings, checked against the schema, and the line of each."""
    from . import yamlfile

    where = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {quote(full_path(where))}: cannot read ({exc.strerror or exc})",
                          hint="pass --config PATH or set MSTEAMS_CONFIG; `msteams emulator serve --write-config PATH` "
                               "writes one") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(where, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", line) from None
    try:
        data, node = yamlfile.parse(text, where)
    except FileError as exc:
        raise ConfigFileError(where, exc.detail, exc.line) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigFileError(where, "expected a mapping of settings (key: value lines)",
                              node.start_mark.line + 1 if node is not None else None)
    lines = yamlfile.LineMap(node)
    props = schema()["properties"]
    problems: list[tuple[int | None, str, str]] = []
    values: dict = {}
    line_of: dict = {}
    for key, value in data.items():
        line = lines.line([key])
        if not isinstance(key, str) or key not in props:
            problems.append((line, str(key), _unknown(key)))
            continue
        if key == "tenants":
            values[key], line_of[key] = _profiles(value, lines, problems), line
            continue
        value, problem = check_value(props[key], value, key in _SECRET_KEYS)
        if problem:
            problems.append((line, key, f"setting '{key}': {problem}"))
        elif value is not None:
            values[key], line_of[key] = value, line
    if values.get("tenants") and "authority" in values:
        for name, profile in values["tenants"].items():
            if "authority" not in profile:  # the top level's names one tenant: never another's
                problems.append((lines.line(["tenants", name]), "tenants", f"tenant profile '{name}': set its own "
                                 "authority, as the top level sets one (it would sign in to that tenant)"))
    if problems:
        (line, key, first), rest = problems[0], problems[1:]
        hint = None
        if first.startswith("unknown setting") and "did you mean" not in first:
            hint = f"valid settings: {', '.join(setting_names())}"
        raise ConfigFileError(where, first, line, key=key, hint=hint, also=[(ln, msg) for ln, _, msg in rest])
    return values, line_of


def _profiles(value, lines, problems: list) -> dict:
    """`tenants:`, checked: {name: {setting: value}}, each name a short lowercase word and each
    setting one a profile may set, checked as at the top level; problems appended with lines."""
    props = schema()["properties"]
    if not isinstance(value, dict) or not value:
        problems.append((lines.line(["tenants"]), "tenants", "setting 'tenants': must be a mapping of profile names "
                         "to settings (contoso: {tenant_id: ...})"))
        return {}
    out: dict = {}
    for name, profile in value.items():
        line = lines.line(["tenants", name])
        if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
            problems.append((line, "tenants", f"tenant profile name {quote(str(name))}: must be 1 to 32 lowercase "
                             "letters, digits, '_' or '-', starting with a letter or digit"))
            continue
        if not isinstance(profile, dict):
            problems.append((line, "tenants", f"tenant profile '{name}': must be a mapping of settings"))
            continue
        checked: dict = {}
        for key, v in profile.items():
            kline = lines.line(["tenants", name, key])
            if not isinstance(key, str) or key not in props:
                problems.append((kline, "tenants", f"tenant profile '{name}': {_unknown(key)}"))
            elif key in NOT_PER_TENANT:
                problems.append((kline, "tenants", f"tenant profile '{name}': setting '{key}' is not set per tenant "
                                 f"({NOT_PER_TENANT[key]})"))
            else:
                v, problem = check_value(props[key], v, key in _SECRET_KEYS)
                if problem:
                    problems.append((kline, "tenants", f"tenant profile '{name}': setting '{key}': {problem}"))
                elif v is not None:
                    checked[key] = (v, kline)
        if "tenant_id" not in checked and "tenant_id" not in profile:
            problems.append((line, "tenants", f"tenant profile '{name}': set its tenant_id (each profile names its "
                             "own tenant; none is inherited)"))
        out[name] = checked
    return out


def tenant_store(data: dict, name: str) -> None:
    """The tenant's own store, derived from the top level's (``data`` changed in place): the
    SQLite file ``store.NAME.sqlite3`` beside the top level's ``store.sqlite3``; in a shared
    store the key namespace ``NAMESPACE:tenant:NAME``. What is left at the top level (API keys,
    jobs, idempotency records of the HTTP service) is the provider's, no tenant's."""
    base = Path(data["store_path"]).expanduser() if data.get("store_path") else default_data_dir() / "store.sqlite3"
    data["store_path"] = str(base.with_name(f"{base.stem}.{name}{base.suffix or '.sqlite3'}"))
    data["store_namespace"] = f"{data.get('store_namespace') or 'msteams'}:tenant:{name}"


def no_tenant_named(names) -> str:
    return (f"this config has tenant profiles ({', '.join(names)}) and none was named: give --tenant NAME "
            "(tenant= in the war-room form, `tenant` in the Python API and the X-Msteams-Tenant header over "
            "HTTP), or set MSTEAMS_TENANT")


# The tenant a command line chose (--tenant): load() reads it when not given one, so that every
# tool of one `msteams` invocation reads the same profile. A context variable, not the process
# environment: the CLI runs in-process in tests and in the shell, invocation after invocation.
_SELECTED = contextvars.ContextVar("msteams_tenant", default=None)


def select_tenant(name: str | None):
    """Make ``name`` the tenant load() reads until the returned token is reset
    (``_SELECTED.reset(token)``); None selects none."""
    return _SELECTED.set(name)


def selected_tenant() -> str | None:
    return _SELECTED.get()


def load(path: str | None = None, env: dict | None = None, *, tenant: str | None = None,
         provider: bool = False) -> Config:
    """The file (if any) overlaid by MSTEAMS_<KEY> variables, each checked against
    config.schema.json; errors name the file and line, or the variable, and the setting.

    With tenant profiles (``tenants:``), ``tenant`` (else the command line's --tenant, else
    MSTEAMS_TENANT) names the profile read: its settings win over the top level's and the
    variables', and its store is its own (tenant_store). Without a name the config is the
    provider's (its top level: what the HTTP service's keys live in); a command refuses to run
    on it (dispatch.Runtime). A name that is no profile is an error naming the profiles.
    ``provider``: the provider's config whatever tenant is selected (API keys live there)."""
    env = os.environ if env is None else env
    path = path or env.get("MSTEAMS_CONFIG")
    source = "environment"
    data: dict = {}
    origin: dict = {}  # setting -> ("file", path, line) or ("env", variable), for later messages
    if path:
        p = Path(os.path.expanduser(path))
        source = str(p)
        data, lines = _read_file(p)
        origin = {k: ("file", source, ln) for k, ln in lines.items()}
        base = os.path.dirname(os.path.abspath(p))  # the file's paths are relative to where it is
        for key in PATH_KEYS:
            if key in data:
                data[key] = _beside(data[key], base)
    props = schema()["properties"]
    for key in sorted(props):  # "client_secret" before "client_secret_file"
        if key == "tenants":  # profiles only in the file; MSTEAMS_TENANT names one
            continue
        var = f"MSTEAMS_{key.upper()}"
        text = env.get(var)
        if not text:
            continue
        value, problem = check_value(props[key], _from_env(props[key], text), key in _SECRET_KEYS)
        if problem:
            raise _problem(("env", var), key, problem,
                           hint=f"fix or unset {var}" + (f" (it overrides {source})" if path else ""))
        if key in PATH_KEYS:
            value = _beside(value, None)  # relative to the current directory, like a command line's
        data[key], origin[key] = value, ("env", var)
        if key.endswith("_file"):
            data.pop(key[:-5], None)  # the variable's file wins over a secret given directly
        elif key in _SECRET_KEYS:
            data.pop(f"{key}_file", None)  # the variable wins over the config file's secret file
    profiles = data.pop("tenants", None) or {}
    origin.pop("tenants", None)
    tenant = None if provider else tenant or _SELECTED.get() or env.get("MSTEAMS_TENANT") or None
    if profiles:
        _apply_profile(data, origin, profiles, tenant, source, path)
    elif tenant:
        raise InputError(f"tenant {quote(tenant)} was named but {quote(source)} has no tenant profiles",
                          hint="add a `tenants:` mapping to the config (docs/tenants.md), or do not name a tenant")
    for key in _SECRET_KEYS:
        if f"{key}_file" in data:
            data[key] = _read_secret_file(data.pop(f"{key}_file"), key, origin[f"{key}_file"])
    cfg = Config(**data, source=source, tenant=tenant if profiles else None, tenant_names=tuple(sorted(profiles)))
    for key in _SECRET_KEYS:
        redact.register(getattr(cfg, key))
    if cfg.ca_bundle and not Path(cfg.ca_bundle).is_file():
        raise _problem(origin["ca_bundle"], "ca_bundle", f"{quote(full_path(cfg.ca_bundle))} does not exist",
                       hint="is the emulator that wrote this config still running?")
    return cfg
