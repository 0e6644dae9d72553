"""Several customer tenants in one fake Microsoft 365 (``Emulator(tenants=N)``, ``msteams
emulator serve --tenants N``), as a managed security provider sees them: one multi-tenant app
registration (one client id and secret, one bot id and secret) consented in each customer's
tenant, and per tenant its own directory, Entra authority (``/{tenant-id}/...``: token
endpoint, OpenID configuration, keys), access tokens (``tid``, issuer), Graph data, Bot
Connector conversations and Graph throttle state.

- Tenant 1 is the seed given (default: contoso); tenants 2..N are generated
  (``tenant.hosted_tenant_seed``): fabrikam, northwind, then tenant4, tenant5...
- Graph serves a request from the tenant named by its token's ``tid`` (the token checked by
  that tenant's token service): an id from another tenant is not there (404).
- The app's registration is shared; its consent (the permissions granted) is each tenant's:
  :meth:`Emulator.set_consent` withdraws it in one tenant, where sign-in is then refused
  (AADSTS7000229 app-only, AADSTS65001 for a user) as Entra refuses an app without a service
  principal there.
- The Bot Connector is one service for all tenants (one ``serviceUrl``): a request is served
  by the tenant whose conversation it names; a bot token issued by one tenant's authority (a
  single-tenant bot's) is refused another tenant's conversations (404, see ``server.py``); a
  token of the ``botframework.com`` authority (a multi-tenant bot's) is good in every tenant
  that has the bot.
- The Teams side signs every tenant's activities with the same Bot Framework key, to the one
  messaging endpoint; each activity carries its user's tenant.
"""
from __future__ import annotations

import re
from typing import Any

# The tenant the Bot Framework's own authority is (login.microsoftonline.com/botframework.com).
BOTFRAMEWORK_TENANT_ID = "d6d49420-f39b-4df7-a1dc-d59a935871db"
BOTFRAMEWORK_DOMAIN = "botframework.com"


class HostedTenant:
    """One hosted tenant: its ``name`` (contoso, fabrikam...), :class:`~fake_tenant.state.TenantState`
    (``state``), Graph ``throttle``, and once the emulator runs its ``authority``, ``tokens``,
    ``entra``, ``bot`` (Bot Connector over its conversations), ``teams`` and ``calling``."""

    def __init__(self, name: str, state: Any = None, throttle: Any = None):
        self.name = name
        self.state = state
        self.throttle = throttle
        self.authority = ""
        self.tokens: Any = None
        self.entra: Any = None
        self.bot: Any = None
        self.teams: Any = None
        self.calling: Any = None
        self.seed_permissions: dict = {}

    @property
    def tenant_id(self) -> str:
        return self.state.tenant_id

    @property
    def domain(self) -> str:
        return self.state.domain

    def __repr__(self) -> str:
        return f"HostedTenant({self.name!r}, {self.tenant_id})"


class HomeTenant(HostedTenant):
    """Tenant 1: the emulator's own ``state``, ``throttle``, ``tokens``... (what a single-tenant
    emulator has always had), seen through the emulator so the two never part."""

    _SHARED = ("state", "throttle", "tokens", "entra", "bot", "teams", "calling", "authority")

    def __init__(self, name: str, emulator: Any):
        object.__setattr__(self, "_emu", emulator)
        super().__init__(name)

    def __getattribute__(self, item: str):
        if item in HomeTenant._SHARED:
            return getattr(object.__getattribute__(self, "_emu"), item)
        return object.__getattribute__(self, item)

    def __setattr__(self, item: str, value) -> None:
        if item in HomeTenant._SHARED:
            if value is not None and value != "":  # HostedTenant.__init__'s blanks: the emulator's stay
                setattr(self._emu, item, value)
            return
        object.__setattr__(self, item, value)


def home_name(domain: str, taken: set) -> str:
    """Tenant 1's short name: its domain's first label (contoso.example -> contoso)."""
    name = re.sub(r"[^a-z0-9]+", "", (domain or "").split(".")[0].lower())
    return name if name and name not in taken else "tenant1"
