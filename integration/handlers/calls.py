"""Placing calls through Graph's cloud communications API (the app acting as a calling bot)."""
from __future__ import annotations

HANDLERS = ("ring_user",)


def ring_user(ctx):
    user = ctx.resolver.user(ctx.args["username"])
    # Graph requires an https callback; the integration does not process call events, so
    # it points at the configured Graph origin's notification sink by default.
    body = {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": ctx.cfg.call_callback_uri,
        "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                     "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                  "user": {"@odata.type": "#microsoft.graph.identity", "id": user["id"],
                                           "displayName": user["displayName"]}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "tenantId": ctx.cfg.tenant_id,
    }
    call = ctx.graph.post("/communications/calls", body)
    return ctx.result(call, call, message=f"Calling {user['displayName']}.")
