"""Connection commands XSOAR's integrations have: testing the sign-in end to end
(microsoft-teams-auth-test) and the bot's messaging endpoint to configure on the Azure Bot
(microsoft-teams-create-messaging-endpoint)."""
from __future__ import annotations

import time

from integration.engine import redact
from integration.engine.errors import ConfigError, IntegrationError

HANDLERS = ("auth_test", "create_messaging_endpoint")

MESSAGES_PATH = "/api/messages"  # where `msteams bot serve` takes the Bot Framework's activities


def _expires(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def auth_test(ctx):
    """A fresh token for the flow (not a cached one), one Graph call with it, and the bot's token
    when the bot is configured. The flow's failure fails the command (exit 3 sign-in, 4
    permission); a bot token refused is reported with exit code 3."""
    flow, auth = ctx.flow, ctx.runtime.auth
    info = auth.check(flow)  # from the token endpoint: a wrong secret or revoked sign-in shows now
    if flow == "delegated":
        me = ctx.graph.get("/me") or {}
        who = me.get("userPrincipalName") or me.get("mail") or me.get("displayName") or info.account
        detail = f"fresh token; GET /me answered as {who}"
    else:
        ctx.graph.get("/users", params={"$top": 1})
        who, detail = info.account, "fresh token; GET /users answered"
    rows = [{"flow": flow, "status": "ok", "account": who, "expiresOn": _expires(info.expires_on), "detail": detail}]
    exit_code = 0
    if ctx.cfg.bot_configured:
        try:
            bot = auth.check("bot")
            rows.append({"flow": "bot", "status": "ok", "account": None, "expiresOn": _expires(bot.expires_on),
                         "detail": "fresh Bot Framework token"})
        except IntegrationError as exc:
            exit_code = 3
            rows.append({"flow": "bot", "status": "token error", "account": None, "expiresOn": None,
                         "detail": redact.redact(exc.message + (f"; {exc.hint}" if exc.hint else ""))})
    message = ("Authentication was successful." if not exit_code else
               f"Authentication was successful for the {flow} flow; the bot's token was refused.")
    result = ctx.result(rows, rows, message=message)
    result.exit_code = exit_code
    return result


def create_messaging_endpoint(ctx):
    """The Azure Bot's messaging endpoint: the public base URL of `msteams bot serve` (XSOAR's
    engine_url, else the bot_public_url setting) with /api/messages."""
    base = ctx.args.get("engine_url") or ctx.cfg.bot_public_url
    if not base:
        raise ConfigError("no public address of the bot endpoint is configured",
                          hint="set bot_public_url (the https address in front of `msteams bot serve`), "
                               "or pass engine_url")
    from integration.engine.config import url_problem

    base = base.strip().rstrip("/")
    problem = url_problem(base)
    if problem:
        from integration.engine.errors import ArgumentError

        raise ArgumentError("engine_url", problem)
    if base.endswith(MESSAGES_PATH):
        base = base[: -len(MESSAGES_PATH)]
    url = base + MESSAGES_PATH
    row = {"url": url, "botId": ctx.cfg.bot_id}
    return ctx.result(row, row, message=f"The messaging endpoint to set on the Azure Bot (Configuration > "
                                        f"Messaging endpoint) is:\n{url}")
