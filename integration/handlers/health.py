"""Admin commands about the integration itself: a health check of every auth flow, the bot,
the context store and (with bot_public_url) the bot endpoint's /healthz and certificate, and a
line for the channels at 80% or more of Microsoft's cap of messages per app per day to one channel
(the pacer's counts); the permissions each flow's token carries; and preloading the directory
(teams, channels, members, users) into the store.

The health check asks the token endpoint for a fresh token per configured flow, bypassing
the caches (Auth.check), so a wrong or expired secret or a revoked sign-in is found even while
a cached token is still valid. Its exit code says what it found: 0 all well, 3 a flow cannot
get a token or the store is unusable, 4 only missing permissions; the table lists every check
either way."""
from __future__ import annotations

import os
import re
import sys
import threading
import time

from integration.engine import redact
from integration.graph.auth import FLOW_SETUP, FLOWS, jwt_claims
from integration.engine.errors import IntegrationError, PermissionDenied
from integration.graph.client import seg
from integration.graph.resolve import USER_SELECT, user_view, channel_view, remember_channels

HANDLERS = ("integration_health", "token_permissions_list", "cache_preload")

_LEVEL = re.compile(r"\.(ReadBasic|Read)(?=\.|$)")


def covers(granted: set, permission: str) -> bool:
    """Whether granted permissions include ``permission`` or a stronger one of the same
    resource (X.ReadWrite.All covers X.Read.All; X.Read.All covers X.ReadBasic.All)."""
    if permission in granted:
        return True
    m = _LEVEL.search(permission)
    if not m:
        return False
    stronger = ("Read", "ReadWrite") if m.group(1) == "ReadBasic" else ("ReadWrite",)
    return any(f"{permission[:m.start()]}.{s}{permission[m.end():]}" in granted for s in stronger)


def _expires(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _flow_row(ctx, flow: str, needs: dict[str, list[str]]) -> dict:
    auth = ctx.runtime.auth
    needed = sorted({p for perms in needs.values() for p in perms})
    row = {"check": flow, "configured": auth.configured(flow), "status": None, "detail": None, "account": None,
           "expiresOn": None, "granted": [], "needed": needed, "missing": [], "affectedCommands": []}
    if not row["configured"]:
        row.update(status="not configured", detail=FLOW_SETUP[flow])
        return row
    if not auth.ready(flow):
        row.update(status="not signed in", detail=auth.why_not_ready(flow))
        return row
    try:
        info = auth.check(flow)  # from the token endpoint, not from a cache
    except IntegrationError as exc:
        detail = redact.redact(exc.message + (f"; {exc.hint}" if exc.hint else ""))
        row.update(status="token error", detail=detail)
        return row
    granted = set(info.permissions)
    missing = [p for p in needed if not covers(granted, p)]
    affected = sorted(c for c, perms in needs.items() if any(p in missing for p in perms))
    row.update(account=info.account, expiresOn=_expires(info.expires_on), granted=sorted(granted), missing=missing,
               affectedCommands=affected, status="missing permissions" if missing else "ok",
               detail=(f"fresh token obtained; grant {', '.join(missing)} for {', '.join(affected)}" if missing
                       else "fresh token obtained" + (f"; {len(needed)} needed permissions granted" if needed else "")))
    return row


def _store_row(ctx) -> dict:
    store = ctx.store
    row = {"check": "store", "configured": True, "path": str(store.path), "writable": False, "counts": {}}
    try:
        store.put("health_probe", "probe", time.time(), ttl=60)  # a real write proves the file and its directory
        store.delete("health_probe", "probe")
        row["writable"] = True
        row["counts"] = store.counts()
    except IntegrationError as exc:
        row.update(status="error", detail=redact.redact(exc.message))
        return row
    counts = ", ".join(f"{k} {v}" for k, v in row["counts"].items() if v)
    row.update(status="ok", detail=f"{row['path']} (writable; {counts or 'empty'})")
    return row


def _peer_certificate(url: str, verify, timeout: float) -> dict:
    """The endpoint's certificate (checked against the system's CAs or ca_bundle, and the host
    name): its expiry. Raises ssl.SSLError / OSError when it is not valid or not reachable."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=parts.hostname) as tls:
            cert = tls.getpeercert()
    return {"notAfter": ssl.cert_time_to_seconds(cert["notAfter"]) if cert and cert.get("notAfter") else None}


def _endpoint_row(ctx) -> dict | None:
    """The bot endpoint (msteams bot serve) where bot_public_url says Teams and Graph reach it:
    GET /healthz answers, and its certificate (https) is valid for the host and not expired."""
    base = getattr(ctx.cfg, "bot_public_url", None)
    if not base:
        return None
    import ssl

    import requests

    url = base.rstrip("/") + "/healthz"
    row = {"check": "endpoint", "configured": True, "url": url, "status": None, "detail": None,
           "certificateExpiresOn": None}
    timeout = min(ctx.cfg.timeout, 10.0)
    if url.lower().startswith("https://"):
        try:
            cert = _peer_certificate(url, ctx.cfg.verify, timeout)
        except ssl.SSLError as exc:
            row.update(status="certificate invalid",
                       detail=f"{base}: {getattr(exc, 'verify_message', None) or exc.reason or exc}")
            return row
        except OSError as exc:
            row.update(status="unreachable", detail=f"{base}: {exc.strerror or type(exc).__name__}")
            return row
        if cert["notAfter"]:
            row["certificateExpiresOn"] = _expires(cert["notAfter"])
    try:
        with requests.Session() as s:
            s.trust_env = False
            resp = s.get(url, timeout=timeout, verify=ctx.cfg.verify, allow_redirects=False)
    except requests.exceptions.SSLError:
        row.update(status="certificate invalid", detail=f"{base}: the TLS certificate was not accepted")
        return row
    except requests.RequestException as exc:
        row.update(status="unreachable", detail=f"{base}: {type(exc).__name__}")
        return row
    if resp.status_code != 200:
        row.update(status="unreachable", detail=f"{url} answered HTTP {resp.status_code}")
        return row
    cert_note = f"; certificate valid until {row['certificateExpiresOn']}" if row["certificateExpiresOn"] else ""
    row.update(status="ok", detail=f"{url} answered{cert_note}")
    return row


# Channels whose messages of the day reach this share of Microsoft's cap get a health line.
CHANNEL_CAP_WARN = 0.8
CHANNEL_CHECK = "channel daily cap"


def _channels_row(ctx) -> dict | None:
    """A line for the channels at 80% or more of Microsoft's cap of messages per app per day to
    one channel, as the pacer counted them today (UTC): in this process with the SQLite store,
    across every worker with the shared store. None when no channel is that busy."""
    try:
        busiest = ctx.runtime.pacer.busiest_channels(50)
    except Exception as exc:  # noqa: BLE001 - Redis gone: the store's line says so already
        return {"check": CHANNEL_CHECK, "configured": True, "status": "unknown",
                "detail": f"could not read the channels' counts: {redact.redact(str(exc))}", "channels": []}
    busy = [r for r in busiest if r["count"] >= CHANNEL_CAP_WARN * r["cap"]]
    if not busy:
        return None
    full = [r for r in busy if r["count"] >= r["cap"]]
    resets = _expires(busy[0]["resetsAt"])
    detail = "; ".join(f"{r['channel']} ({r['sender']}): {r['count']:,} of {r['cap']:,} messages today"
                       for r in busy) + f"; the counts reset at {resets}"
    if full:
        detail += f"; messages to {len(full)} channel(s) are refused until then"
    return {"check": CHANNEL_CHECK, "configured": True, "status": "at cap" if full else "near cap",
            "detail": detail, "channels": [dict(r, resetsAt=_expires(r["resetsAt"])) for r in busy]}


def integration_health(ctx):
    reg = ctx.runtime.registry
    needs = reg.permissions_by_flow()
    rows = [_flow_row(ctx, flow, needs.get(flow, {})) for flow in FLOWS]
    rows.append(_store_row(ctx))
    endpoint = _endpoint_row(ctx)
    if endpoint is not None:
        rows.append(endpoint)
    channels = _channels_row(ctx)
    # A busy channel is told, not an exit code's problem: nothing is misconfigured.
    problems = [r for r in rows if r["status"] not in ("ok", "not configured", "not signed in")]
    if channels is not None:
        rows.append(channels)
    usable = [r["check"] for r in rows if r["check"] in FLOWS and r["status"] in ("ok", "missing permissions")]
    # The CLI's exit codes (errors.py): 3 configuration or auth, 4 missing permission.
    exit_code = (3 if any(r["status"] != "missing permissions" for r in problems)
                 else 4 if problems else 0)
    msg = (f"Flows with a token: {', '.join(usable) or 'none'}. "
           + (f"{len(problems)} problem(s): " + "; ".join(f"{r['check']}: {r['status']}" for r in problems)
              + f" (exit {exit_code})" if problems else "No problems found."))
    if channels is not None and channels["status"] != "unknown":
        msg += f" Channels at {CHANNEL_CAP_WARN:.0%} or more of Microsoft's daily cap: {channels['detail']}."
    result = ctx.result(rows, rows, message=msg, title="Integration health")
    result.exit_code = exit_code
    return result


def token_permissions_list(ctx):
    auth = ctx.runtime.auth
    only = ctx.args.get("flow")
    rows = []
    for flow in FLOWS:
        if (only and flow != only) or not auth.ready(flow):
            continue
        try:
            info = auth.acquire(flow)
        except IntegrationError as exc:
            rows.append({"flow": flow, "claim": None, "permissions": [], "error": redact.redact(exc.message)})
            continue
        claims = jwt_claims(info.token)  # display only: the values were checked by the service
        rows.append({"flow": flow, "claim": "roles" if "roles" in claims else "scp" if "scp" in claims else None,
                     "permissions": info.permissions, "account": info.account, "appId": claims.get("appid") or
                     claims.get("azp"), "audience": claims.get("aud"), "expiresOn": _expires(info.expires_on),
                     "error": None})
    if not rows:
        return ctx.result([], [], message="No flow is ready" + (f" ({only}: {auth.why_not_ready(only)})" if only else
                                                                 "; `msteams auth status` says why."))
    return ctx.result(rows, rows, title="Permissions in each flow's token")


def _by_name(items: list[dict]) -> dict[str, list[dict]]:
    """Display name -> everything with that name (a list of one when the name is unique)."""
    out: dict[str, list[dict]] = {}
    for i in items:
        n = (i.get("displayName") or "").strip()
        if n:
            out.setdefault(n.casefold(), []).append(i)
    return out


def cache_preload(ctx):
    include = set(ctx.args["include"])
    size = ctx.args["page_size"]
    g, store = ctx.graph, ctx.store
    progress = ctx.runtime.progress("preloading")
    counts = {k: 0 for k in ("teams", "channels", "members", "users") if k in include}
    skipped: list[str] = []
    since = store.now()  # name lists written before this run are replaced, not extended
    try:
        if include & {"teams", "channels", "members"}:
            # Teams are few and each is visited below, so their listing is held; users are not.
            page = g.paged("/teams", params={"$select": "id,displayName"}, page_size=size)
            teams = [{"id": t["id"], "displayName": t.get("displayName")} for t in page.items]
            if "teams" in include:
                with store.transaction():
                    store.put_many("team", [(t["id"], t) for t in teams])
                    store.put_many("team_name", _by_name(teams).items())
                    store.prune("team_name", before=since)  # names no team has any more
                counts["teams"] = len(teams)
                progress.add("teams", len(teams))
            for t in teams:
                try:
                    _preload_team(g, store, t, include, size, counts, progress)
                except PermissionDenied as exc:
                    if exc.permissions:  # a missing permission: every team would fail the same way
                        raise
                    skipped.append(t.get("displayName") or t["id"])  # the caller may not see this team
        if "users" in include:
            _preload_users(g, store, size, since, counts, progress)
    finally:
        progress.done()
    rows = [{"kind": k, "count": v} for k, v in counts.items()]
    msg = "Preloaded " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "."
    if skipped:
        msg += f" Skipped {len(skipped)} team(s) the signed-in account cannot read: {', '.join(skipped)}."
    return ctx.result(rows, dict(counts, skippedTeams=skipped), message=msg,
                      title="Directory preloaded into the context store")


def _preload_users(g, store, size: int, since: float, counts: dict, progress) -> None:
    """Users page by page, nothing kept beyond a few pages: each user by id, mail and UPN; then
    every display name with all its people into ``user_name``, grouped by the store from what
    this run wrote.

    Pages are written by a second thread while the next ones are fetched: SQLite does its
    b-tree work with the interpreter lock released, so the writes overlap the wait for Graph
    instead of adding to it. The writer commits about ``_AHEAD_USERS`` users at a time, and
    builds the name lists itself once the last page is in (its connection holds the names it
    set aside). A failed write stops the paging; a failed page stops it too, after the pages
    read before it are written (the name lists are then left as the last complete preload
    wrote them)."""
    import queue

    pending: queue.Queue = queue.Queue(maxsize=max(2, _AHEAD_USERS // max(1, size)))
    failed: list[BaseException] = []
    complete, stopped = object(), object()  # the end of the directory; paging ended early

    def put(items: list) -> int:
        return store.put_entries("user", [user_view(u) for u in items if u.get("id")],
                                 aliases=("mail", "userPrincipalName"), stage_names=True)

    def write() -> None:
        _lower_this_threads_priority()
        try:
            item = pending.get()
            while item is not complete and item is not stopped:
                # Each page is written as it comes, but committed with the pages that follow it
                # for up to _AHEAD_USERS users or _HOLD_SECONDS: each commit rewrites every
                # index page it touched, so page-sized ones cost twice as much in all, and the
                # store's write lock is never held for longer than that.
                with store.transaction():
                    until = time.monotonic() + _HOLD_SECONDS
                    n, item = put(item), None
                    while n < _AHEAD_USERS and (left := until - time.monotonic()) > 0:
                        try:
                            nxt = pending.get(timeout=left)
                        except queue.Empty:
                            break
                        if nxt is complete or nxt is stopped:
                            item = nxt
                            break
                        n += put(nxt)
                if item is None:  # the next page is awaited with the transaction committed
                    item = pending.get()
            if item is complete:
                # The whole directory was read: a shared name lists everyone who has it, and a
                # name not written in this run belongs to nobody now.
                with store.transaction():
                    store.index_names("user", "user_name", since=since)
                    store.prune("user_name", before=since)
        except BaseException as exc:  # noqa: BLE001 - handed to the fetching thread, which raises it
            failed.append(exc)
        finally:
            store.thread_done()

    def hand(item) -> bool:
        """Queue ``item`` for the writer; False once the writer has failed or ended."""
        while not failed and writer.is_alive():
            try:
                pending.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    writer = threading.Thread(target=write, name="preload-writer", daemon=True)
    writer.start()
    end = stopped
    try:
        for items in g.pages("/users", params={"$select": USER_SELECT}, page_size=size):
            if not hand(items):  # the writer makes the views: this thread only pages
                break
            n = sum(1 for u in items if u.get("id"))
            counts["users"] += n
            progress.add("users", n)
        else:
            end = complete
    finally:
        hand(end)
        writer.join()
    if failed:
        raise failed[0]


def _lower_this_threads_priority() -> None:
    """Give the calling thread the lowest priority of its policy (nice 19, this thread only:
    Linux keeps a nice value per thread). Where cores are fewer than busy threads, the
    scheduler then runs the paging thread (and a Graph on the same machine, as the fake tenant
    is) first and the preload's writer in their gaps, which is all it needs. At the same
    priority it took their turns: a 10,000-user preload took 1.31x plain paging against 1.21x
    at nice 19 (both alternated in one process, timed as benchmarks/store_bench.py does). A
    thread at nice 19 still gets about 1.5% of a core that a normal one keeps busy, so on a
    saturated host the preload is slower, never stuck. Elsewhere a nice value may be the
    whole process's: left alone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:  # a sandbox that forbids it: the writer runs as it is
        pass


# Users the store's writer commits at once, which also bounds the users waiting for it (in
# whole pages, at least two): bounded in users, not pages, so memory stays flat at Graph's
# largest page size. A commit also comes after _HOLD_SECONDS, so that other processes sharing
# the store do not wait long on a slow Graph.
_AHEAD_USERS = 1000
_HOLD_SECONDS = 0.2


def _preload_team(g, store, t: dict, include: set, size: int, counts: dict, progress) -> None:
    """A team's channels (by id, and every name with all its channels) and members into the store."""
    if "channels" in include:
        chans = g.paged(f"/teams/{seg(t['id'])}/channels").items  # Graph takes no $top here
        views = [channel_view(c) for c in chans]
        since = store.now()
        with store.transaction():
            remember_channels(store, t["id"], views)
            store.prune("channel_name", before=since, prefix=f"{t['id']}/")
        counts["channels"] += len(views)
        progress.add("channels", len(views))
    if "members" in include:
        members = g.paged(f"/teams/{seg(t['id'])}/members", page_size=size).items
        store.put_many("member", [(f"{t['id']}/{m.get('userId')}", {
            "id": m.get("id"), "userId": m.get("userId"), "displayName": m.get("displayName"),
            "email": m.get("email"), "roles": m.get("roles") or [], "teamId": t["id"]})
            for m in members if m.get("userId")])
        counts["members"] += len(members)
        progress.add("members", len(members))
