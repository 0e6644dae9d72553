"""Admin commands over auth and the context store: sign-in, status, sign-out, login URL,
cache reset and inspection. They run without choosing a Graph flow."""
from __future__ import annotations

HANDLERS = ("auth_login", "auth_start", "auth_complete", "auth_status", "auth_reset", "generate_login_url",
            "cache_reset", "cache_show")


def _signed_in_message(info) -> str:
    return f"Signed in as {info.account or 'the delegated account'}; {len(info.permissions)} delegated permissions granted."


def auth_login(ctx):
    a = ctx.args
    info = ctx.runtime.auth.login(device_code=a["device_code"], port=a["port"], login_hint=a.get("login_hint"),
                                  redirect_url=a.get("redirect_url"), out=ctx.runtime.echo)
    return ctx.result([], None, message=_signed_in_message(info))


def auth_start(ctx):
    """The device-code sign-in's first step: the URL and code, at once; auth-complete finishes it."""
    import time

    flow = ctx.runtime.auth.device_start()
    left = max(0, int(float(flow["expires_at"]) - time.time()))
    row = {"verificationUri": flow["verification_uri"], "userCode": flow["user_code"],
           "expiresOn": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(flow["expires_at"])))}
    return ctx.result([row], row, message=(
        f"To sign in the delegated account, open {flow['verification_uri']} and enter the code {flow['user_code']} "
        f"(within {round(left / 60)} minutes).\nThen run: msteams auth-complete (in a war room: !microsoft-teams-auth-complete)"))


def auth_complete(ctx):
    """The device-code sign-in's second step: signed in, or exit 3 saying it is not finished yet."""
    info = ctx.runtime.auth.device_complete(wait=ctx.args["wait"])
    return ctx.result([], None, message=_signed_in_message(info))


def auth_status(ctx):
    rows = ctx.runtime.auth.status(check=ctx.args["check"])
    return ctx.result(rows, rows, title="Auth flows")


def auth_reset(ctx):
    n = ctx.runtime.auth.reset()
    ctx.runtime.auth.device_cancel()  # signed out: no sign-in left pending either
    return ctx.result([], None, message=f"Signed out: {n} token cache(s) removed.")


def generate_login_url(ctx):
    url = ctx.runtime.auth.login_url(ctx.args["redirect_uri"])
    return ctx.result([], {"url": url}, message=f"Open this URL to sign in the delegated flow:\n{url}\n"
                                                "then run: msteams auth login --redirect-url '<the URL you were sent to>'")


def cache_reset(ctx):
    removed = ctx.store.clear(include_tokens=ctx.args["include_tokens"])
    if ctx.args["include_tokens"]:
        ctx.runtime.auth.reset()
    total = sum(removed.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(removed.items())) or "nothing was cached"
    return ctx.result([], removed, message=f"Cache reset: {total} entries removed ({detail}).")


def cache_show(ctx):
    kind = ctx.args.get("kind")
    if kind:
        rows = [{"kind": kind, "key": e["key"], "id": _ids(e["value"]), "ageSeconds": e["age_seconds"],
                 "expired": e["expired"]} for e in ctx.store.entries(kind)]
        return ctx.result(rows, rows, title=f"Cached {kind} entries")
    rows = [{"kind": k, "entries": n} for k, n in ctx.store.counts().items()]
    return ctx.result(rows, rows, title=f"Context store {ctx.store.path}")


def _ids(value) -> str | None:
    """An entry's id; a display name's entry (a list of everyone with it) shows all their ids."""
    if isinstance(value, list):
        return ", ".join(str((v or {}).get("id")) for v in value)
    return value.get("id") if isinstance(value, dict) else None
