"""Placing calls through Graph's cloud communications API (the app acting as a calling bot)."""
from __future__ import annotations

HANDLERS = ("ring_user",)
# Graph requires an https callback: without bot_public_url the call is placed with this one,
# which nobody serves (the call rings; its outcome is unknown).
UNHEARD_CALLBACK = "https://localhost/msteams/calls/callback"


def ring_user(ctx):
    user = ctx.resolver.user(ctx.args["username"])
    # Graph posts the call's state changes to the callback: the bot endpoint's /api/calls under
    # bot_public_url (msteams bot serve records them), unless call_callback_uri says otherwise.
    callback = ctx.cfg.call_callback_url
    wait = ctx.args.get("wait") or 0
    if not callback and wait:
        from integration.engine.errors import ConfigError

        raise ConfigError("ring-user wait= needs a callback URL for the call's notifications",
                          hint="set bot_public_url (the public HTTPS URL of `msteams bot serve`; /api/calls is "
                               "added) or call_callback_uri in the config")
    if not callback:  # the call still rings; nobody hears how it ends
        callback = UNHEARD_CALLBACK
    body = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback,
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                     "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                  "user": {"@odata.type": "#microsoft.graph.identity", "id": user["id"],
                                           "displayName": user["displayName"]}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "tenantId": ctx.cfg.tenant_id,
    }
    call = ctx.graph.create("/communications/calls", body)
    if not wait:
        return ctx.result(call, call, message=f"Calling {user['displayName']}.")
    from integration.teams.calls import NO_ANSWER, wait_for_outcome

    outcome, events, timed_out = wait_for_outcome(ctx.store, call["id"], float(wait), ctx.runtime.sleep)
    if timed_out:  # still ringing: stop it, as a caller who gives up hangs up
        try:
            ctx.graph.delete(f"/communications/calls/{call['id']}")
        except Exception:  # noqa: BLE001 - the outcome stands; the call ends by itself
            pass
    end = next((e for e in events if e["state"] == "terminated"), None)
    call = dict(call, outcome=outcome, state=events[-1]["state"] if events else call.get("state"),
                resultCode=end["code"] if end else None, resultMessage=end["message"] if end else None)
    said = {NO_ANSWER: "did not answer"}.get(outcome, outcome)
    return ctx.result(call, call, message=f"Called {user['displayName']}: {said}"
                      + (f" (no answer within {wait} s)." if timed_out else "."))
