"""`msteams app-package --out app.zip`: the Teams app package an admin uploads so the bot can
message people and channels: manifest.json (current published schema) with the bot, plus a
192x192 colour icon and a 32x32 outline icon, drawn here as PNGs with zlib and struct.

The bot is conversational (``isNotificationOnly: false``: people send it commands, answered by
``msteams bot serve``), installable for a person, a team or a group chat; its ``commandLists``
offer the most useful read-only commands from the registry (Teams shows at most 10 per scope);
``validDomains`` holds the messaging endpoint's host (``bot_public_url``); ``supportsCalling``
is on when the calls' notifications have somewhere to go (``bot_public_url`` or
``call_callback_uri``: ``ring-user``). The Teams app id defaults to one derived from the bot id,
so building the package again yields an update of the same app rather than a second app.
"""
from __future__ import annotations

import argparse
import json
import struct
import uuid
import zipfile
import zlib
from typing import Callable

MANIFEST_VERSION = "1.30"
SCHEMA_URL = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
COLOR_ICON, OUTLINE_ICON = "color.png", "outline.png"
_APP_NAMESPACE = uuid.UUID("0d6f1f3c-6d1e-4c55-9a57-3c4f0b7e2a11")  # fixed: same bot id -> same app id
DEFAULT_URL = "https://example.com/msteams-soar"  # placeholder pages; pass real ones for a store listing
RSC_PERMISSIONS = ("ChannelMessage.Read.Group", "ChatMessage.Read.Chat")  # messages without a mention
MAX_COMMANDS = 10  # Teams: at most 10 commands per scope in a bot's commandLists
# The read-only commands most worth offering in Teams' command menu, in this order (those the
# registry has and that are read-only; other read-only commands fill the list up to 10).
PREFERRED_COMMANDS = ("channel-list", "channel-user-list", "team-list", "team-member-list", "team-list-joined",
                      "user-get", "user-list", "chat-list", "chat-member-list", "message-list")


# ---- PNG ----
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, pixel: Callable[[int, int], tuple]) -> bytes:
    """An 8-bit RGBA PNG; ``pixel(x, y)`` returns (r, g, b, a)."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, RGBA, deflate, no filter, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
            + _chunk(b"IEND", b""))


def _in_shield(u: float, v: float) -> bool:
    """A shield in [-1, 1]^2 (v down): a flat top and sides curving into a point."""
    if v < -0.75 or v > 0.85:
        return False
    if v <= 0.1:
        return abs(u) <= 0.62
    return abs(u) <= 0.62 * (1 - ((v - 0.1) / 0.75) ** 2) ** 0.5


def _hex(color: str) -> tuple:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def color_icon(accent: str, size: int = 192) -> bytes:
    """Full-colour icon: a white shield on the accent colour (Teams rounds the corners)."""
    bg = _hex(accent) + (255,)

    def pixel(x, y):
        u, v = (2 * x + 1) / size - 1, (2 * y + 1) / size - 1
        return (255, 255, 255, 255) if _in_shield(u / 0.8, v / 0.8) else bg

    return png(size, size, pixel)


def outline_icon(size: int = 32) -> bytes:
    """Outline icon: the shield's white outline on a transparent background, as Teams asks."""

    def pixel(x, y):
        u, v = (2 * x + 1) / size - 1, (2 * y + 1) / size - 1
        inside = _in_shield(u / 0.9, v / 0.9)
        inner = _in_shield(u / 0.62, v / 0.62)
        return (255, 255, 255, 255) if inside and not inner else (0, 0, 0, 0)

    return png(size, size, pixel)


# ---- manifest ----
def command_list(registry, limit: int = MAX_COMMANDS) -> list[dict]:
    """The bot's commands for Teams' menu: read-only commands (the ``read`` group of the bot's
    access policy), preferred ones first; title at most 32 characters, description 128."""
    from integration.teams.access import NEVER_FROM_TEAMS, command_groups

    names = [n for n in registry.names() if n not in NEVER_FROM_TEAMS]
    specs = {n: registry.get(n) for n in names}
    readable = [n for n in names if not getattr(specs[n], "local", False) and command_groups(specs[n]) == {"read"}]
    ordered = [n for n in PREFERRED_COMMANDS if n in readable] + sorted(n for n in readable
                                                                        if n not in PREFERRED_COMMANDS)
    out = []
    for n in ordered[:limit]:
        text = " ".join((specs[n].description or n).split())
        first = text.split(". ")[0].rstrip(".")
        out.append({"title": n[:32], "description": (first if len(first) <= 128 else first[:127] + "\u2026")})
    return out


def host_of(url: str | None) -> str | None:
    """The host of a URL, as validDomains lists it (with a port when one is given)."""
    if not url:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def build_manifest(*, bot_id: str, client_id: str | None = None, app_id: str | None = None, version: str = "1.0.0",
                   name: str = "SOAR Notifications", short_description: str | None = None,
                   full_description: str | None = None, developer: str = "Security Operations",
                   website_url: str = DEFAULT_URL, privacy_url: str | None = None, terms_url: str | None = None,
                   valid_domains: list[str] | None = None, accent_color: str = "#4B53BC",
                   commands: list[dict] | None = None, supports_calling: bool = False) -> dict:
    manifest = {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": app_id or str(uuid.uuid5(_APP_NAMESPACE, bot_id.lower())),
        "developer": {"name": developer[:32], "websiteUrl": website_url,
                      "privacyUrl": privacy_url or f"{website_url.rstrip('/')}/privacy",
                      "termsOfUseUrl": terms_url or f"{website_url.rstrip('/')}/terms"},
        "name": {"short": name[:30], "full": name[:100]},
        "description": {
            "short": (short_description or "Security alerts and approvals from your SOAR platform.")[:80],
            "full": (full_description or
                     "Notifications from security automation: incident alerts, requests for approval as "
                     "Adaptive Cards that update in place when decided, and messages to incident channels. "
                     "Allowed analysts can send it commands (in a 1:1 chat, or by @mentioning it in a channel "
                     "or group chat); in a channel or chat that mirrors an incident (mirror-investigation) the "
                     "messages people write are copied into the incident.")[:4000]},
        "icons": {"color": COLOR_ICON, "outline": OUTLINE_ICON},
        "accentColor": accent_color,
        "bots": [{"botId": bot_id, "scopes": ["personal", "team", "groupChat"], "isNotificationOnly": False,
                  "supportsFiles": False, "supportsCalling": bool(supports_calling), "supportsVideo": False,
                  **({"commandLists": [{"scopes": ["personal", "team", "groupChat"],
                                        "commands": list(commands[:MAX_COMMANDS])}]} if commands else {})}],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": list(dict.fromkeys(valid_domains or [])),
        # Resource-specific consent, granted by a team's or chat's owner when installing the app:
        # the bot receives every message of its channels and chats, not only those that mention
        # it, which mirrored incidents (mirror-investigation) need.
        "authorization": {"permissions": {"resourceSpecific": [
            {"name": name, "type": "Application"} for name in RSC_PERMISSIONS]}},
    }
    if client_id:
        manifest["webApplicationInfo"] = {"id": client_id}  # the Entra app behind the Graph flows (no SSO)
    return manifest


def write_package(path: str, manifest: dict) -> dict:
    """Write the zip (manifest and icons at its root, as Teams requires); returns the manifest."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        z.writestr(COLOR_ICON, color_icon(manifest.get("accentColor", "#4B53BC")))
        z.writestr(OUTLINE_ICON, outline_icon())
    return manifest


# ---- CLI ----
def _registry():
    from integration.engine import registry

    return registry.default_registry()


_GUID = "^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"


def main(argv: list[str], *, config: str | None = None, out: Callable[[str], None] = print) -> int:
    import re

    from integration.engine import config as config_mod
    from integration.engine.errors import ArgumentError, ConfigError, FileError

    p = argparse.ArgumentParser(prog="msteams app-package",
                                description="Build the Teams app package (manifest.json and two icons) for the bot.")
    p.add_argument("--out", default="app.zip", help="where to write the zip (default: app.zip)")
    p.add_argument("--config", default=None, help="config file (default: $MSTEAMS_CONFIG)")
    p.add_argument("--app-id", help="the Teams app id (default: derived from bot_id, stable across builds)")
    p.add_argument("--version", default="1.0.0", help="the app's version (semver); raise it for each update")
    p.add_argument("--name", default="SOAR Notifications", help="the app's name (30 characters shown)")
    p.add_argument("--short-description", help="at most 80 characters")
    p.add_argument("--full-description", help="at most 4000 characters")
    p.add_argument("--developer", default="Security Operations", help="developer name (at most 32 characters)")
    p.add_argument("--website-url", default=DEFAULT_URL, help="developer website (placeholder by default)")
    p.add_argument("--privacy-url", help="privacy statement (default: WEBSITE/privacy)")
    p.add_argument("--terms-url", help="terms of use (default: WEBSITE/terms)")
    p.add_argument("--valid-domain", action="append", default=[], metavar="DOMAIN",
                   help="a domain the app may open (repeatable); bot_public_url's host is always listed")
    p.add_argument("--calling", action=argparse.BooleanOptionalAction, default=None,
                   help="declare supportsCalling (default: when bot_public_url or call_callback_uri is set)")
    p.add_argument("--accent-color", default="#4B53BC", help="icon background, #RRGGBB")
    ns = p.parse_args(argv)
    cfg = config_mod.load(ns.config or config)
    if not cfg.bot_id:
        raise ConfigError("app-package needs bot_id in the config (the bot's Microsoft App ID)",
                          hint="set bot_id (and bot_secret) in the config or MSTEAMS_BOT_ID")
    for arg, value in (("bot_id", cfg.bot_id), ("app-id", ns.app_id), ("client_id", cfg.client_id)):
        if value and not re.match(_GUID, value):
            raise ArgumentError(arg, f"must be a GUID, got {value!r}")
    if not re.match(r"^#[0-9a-fA-F]{6}$", ns.accent_color):
        raise ArgumentError("accent-color", f"expected #RRGGBB, got {ns.accent_color!r}")
    if not re.match(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$", ns.version):
        raise ArgumentError("version", f"expected MAJOR.MINOR.PATCH, got {ns.version!r}")
    for arg in ("website_url", "privacy_url", "terms_url"):
        value = getattr(ns, arg)
        if value and not re.match(r"^https?://", value, re.I):
            raise ArgumentError(arg.replace("_", "-"), f"expected an http(s) URL, got {value!r}")
    manifest = build_manifest(bot_id=cfg.bot_id, client_id=cfg.client_id, app_id=ns.app_id, version=ns.version,
                              name=ns.name, short_description=ns.short_description,
                              full_description=ns.full_description, developer=ns.developer,
                              website_url=ns.website_url, privacy_url=ns.privacy_url, terms_url=ns.terms_url,
                              valid_domains=[d for d in (host_of(cfg.bot_public_url),) if d] + ns.valid_domain,
                              accent_color=ns.accent_color, commands=command_list(_registry()),
                              supports_calling=bool(cfg.call_callback_url) if ns.calling is None else ns.calling)
    try:
        write_package(ns.out, manifest)
    except OSError as exc:
        raise FileError(ns.out, f"cannot write: {exc.strerror}") from None
    out(f"wrote {ns.out}: Teams app {manifest['id']} v{manifest['version']} (manifest {MANIFEST_VERSION}) "
        f"with bot {cfg.bot_id}. Upload it in Teams (Apps > Manage your apps > Upload an app) or the Teams "
        "admin center.")
    return 0
