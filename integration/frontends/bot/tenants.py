"""One bot for every tenant profile (a config with `tenants:`): each verified activity is routed
by its tenant (``channelData.tenant.id``, else ``conversation.tenantId``) to the processor of
the profile whose ``tenant_id`` it is, which learns conversations, audits, answers questions
and runs commands in that tenant's own runtime and store, under that tenant's access file
(``bot_access_file`` in the profile). A runtime serving a tenant's activities is pinned to it:
a command from Teams naming another tenant (``tenant=``) is refused. An activity from a tenant
with no profile, one naming two tenants, or one of a tenant naming a conversation first seen in
another tenant, is refused (nothing learned, nothing run, no reply) and audited in the
provider's store. Call notifications (``/api/calls``) go to the store of the tenant their
token names (TenantCalls).
"""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("msteams.bot")


class TenantRouter:
    """The processor interface (``accept``, ``drain``, ``close``, ``sent``) over one processor
    per tenant profile, built on a tenant's first activity."""

    def __init__(self, runtime, *, workers: int = 4, clock=time.monotonic, make=None):
        self.runtime = runtime  # the provider's: its store audits what no tenant takes
        self.workers = workers
        self.clock = clock
        self._make = make or _processor
        self._lock = threading.Lock()
        self._by_tenant: dict[str, object] = {}
        self._names = self._tenant_ids()

    def _tenant_ids(self) -> dict[str, str]:
        """Tenant id (lowercase) -> profile name; two profiles naming one tenant are a config
        error (their activities could go to either)."""
        from integration.engine.errors import ConfigError

        out: dict[str, str] = {}
        for name in self.runtime.cfg.tenant_names:
            tid = (self.runtime.for_tenant(name).cfg.tenant_id or "").strip().lower()
            if tid in out:
                raise ConfigError(f"tenant profiles {out[tid]!r} and {name!r} name the same tenant {tid!r}",
                                  hint="one profile per tenant: the bot routes each activity by its tenant")
            out[tid] = name
        return out

    @property
    def sent(self) -> list:
        with self._lock:
            procs = list(self._by_tenant.values())
        return [m for p in procs for m in p.sent]

    def processor(self, name: str):
        with self._lock:
            p = self._by_tenant.get(name)
            if p is None:
                rt = self.runtime.for_tenant(name)
                rt.pinned = True
                p = self._by_tenant[name] = self._make(rt, workers=self.workers, clock=self.clock)
        return p

    def accept(self, activity: dict) -> tuple[int, dict | None]:
        from integration.teams import conversations

        tenant_id = (conversations.tenant_of(activity) or "").strip().lower()
        conv = activity.get("conversation") if isinstance(activity.get("conversation"), dict) else {}
        said = str(conv.get("tenantId") or "").strip().lower()
        if said and said != tenant_id:
            return self._refuse(activity, tenant_id, "the activity names two tenants")
        name = self._names.get(tenant_id)
        if name is None:
            return self._refuse(activity, tenant_id, "no tenant profile for this tenant")
        owner = self._owner(conversations.describe(activity)["baseId"], name, tenant_id)
        if owner != name:
            return self._refuse(activity, tenant_id, f"the conversation belongs to tenant profile {owner!r}")
        return self.processor(name).accept(activity)

    def _owner(self, conversation_id: str, name: str, tenant_id: str) -> str:
        """The tenant profile a conversation was first seen in (recorded in the provider's store
        on first sight): an activity of another tenant naming it is refused, so one tenant can
        never write into, or read the answers of, another's conversation."""
        if not conversation_id:
            return name
        store = self.runtime.store
        key = f"tenant-of/{self.runtime.cfg.bot_id}/{conversation_id[:500]}"
        known = store.conversation_get(key)
        if known is None:
            store.conversation_put(key, "tenant-of", {"tenant": name, "tenantId": tenant_id,
                                                      "conversationId": conversation_id[:500]})
            return name
        return str(known.get("tenant") or name)

    def _refuse(self, activity: dict, tenant_id: str, why: str) -> tuple[int, None]:
        from integration.engine import metrics
        from integration.teams import conversations

        where = conversations.describe(activity)
        sender = activity.get("from") if isinstance(activity.get("from"), dict) else {}
        aid = activity.get("id") if isinstance(activity.get("id"), str) else None
        metrics.inbound("denied-tenant", kind=str(activity.get("type") or "activity")[:40])
        row = {"activity_id": aid, "tenant_id": tenant_id[:64] or None,
               "sender_id": str(sender.get("aadObjectId") or sender.get("id") or "")[:200],
               "sender_name": str(sender.get("name") or "")[:200], "conversation_type": where["type"],
               "conversation_id": where["conversationId"][:500], "place": f"tenant {tenant_id[:64] or '?'}",
               "text": None, "command": None, "decision": "denied", "outcome": "refused",
               "detail": why}
        try:
            self.runtime.store.audit_add(row)
        except Exception as exc:  # noqa: BLE001 - the refusal stands; the log says the audit failed
            log.error("could not audit an activity of an unknown tenant: %s", type(exc).__name__)
        log.warning("refused an activity of tenant %r: %s", tenant_id[:64], why)
        return 202, None

    def drain(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            procs = list(self._by_tenant.values())
        return all(p.drain(max(0.0, deadline - time.monotonic())) for p in procs)

    def close(self, timeout: float = 30.0) -> None:
        with self._lock:
            procs = list(self._by_tenant.values())
        for p in procs:
            p.close(timeout)


def _processor(runtime, *, workers: int, clock):
    """A tenant's processor, as ``server.build`` makes the single tenant's: its access file,
    rate limiter and runtime."""
    from integration.teams.access import Access, GraphDirectory, RateLimiter, load_policy

    from .activities import Processor

    policy = load_policy(getattr(runtime.cfg, "bot_access_file", None), runtime.registry)
    if policy.empty:
        log.warning("tenant %s: no bot_access_file (or it allows nothing): its commands from Teams are refused",
                    runtime.cfg.tenant)
    access = Access(policy, GraphDirectory(runtime), clock=clock)
    limiter = RateLimiter(policy.per_minute, policy.burst, clock=clock)
    return Processor(runtime, access, limiter, workers=workers, clock=clock)


class TenantCalls:
    """Call notifications (``/api/calls``) routed by their token's ``tid`` to the tenant profile
    whose call it is, recorded in that tenant's store (where its ``ring-user wait=`` looks). The
    verifier accepts any tenant's token (the app's audience, the calling service's keys); a
    tenant with no profile is refused (400)."""

    def __init__(self, router: TenantRouter, calls):
        from integration.teams.calls import CallNotifications

        self.router = router
        self.verifier = calls.verifier
        self.verifier.tenant_id = None  # the tenant is checked here, against every profile's
        self._calls = CallNotifications
        self.recorded = 0

    def accept(self, body, claims: dict | None = None) -> int:
        tid = str((claims or {}).get("tid") or "").strip().lower()
        name = self.router._names.get(tid)
        if name is None:
            raise ValueError("the call's tenant has no tenant profile")
        n = self._calls(self.verifier, self.router.runtime.for_tenant(name).store).accept(body, claims)
        self.recorded += n
        return n


def routes_by_tenant(runtime) -> bool:
    """Whether the bot serving this runtime routes by tenant: a config with profiles read
    without one (the provider's)."""
    cfg = runtime.cfg
    return bool(cfg.tenant_names) and cfg.tenant is None


def install(endpoint, runtime, *, workers: int = 4) -> None:
    """Route the endpoint's activities by tenant when the runtime is a provider's."""
    if routes_by_tenant(runtime):
        old = endpoint.processor
        endpoint.processor = TenantRouter(runtime, workers=workers)
        old.close(0)
        if endpoint.calls is not None:
            endpoint.calls = TenantCalls(endpoint.processor, endpoint.calls)
