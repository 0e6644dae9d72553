"""Outgoing calls: ``POST /communications/calls`` (app-only, ``Calls.Initiate.All``; the server
refuses delegated tokens by the permission map), ``GET`` and ``DELETE /communications/calls/{id}``.

Calls stay in ``establishing`` (the emulator places no media) until a simulated user answers
(``fake_tenant/calling.py``, ``msteams emulator answer-call``). An app may have at most
:data:`MAX_CONCURRENT_CALLS` calls that are not terminated; one more is answered 429
``TooManyRequests`` with ``Retry-After`` (Graph lists the limit among its throttling limits).
Unknown target users are a 404 ``NotFound``.
"""
from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from ..core import Context, GraphError, Request, Response, graph_route, utcnow_iso
from .common import bad, is_guid, json_object, not_found, opt_list, opt_obj, opt_str
from .paging import base_of

MAX_CONCURRENT_CALLS = 100
CALL_TYPE = "#microsoft.graph.call"
TARGET_TYPE = "#microsoft.graph.invitationParticipantInfo"
MEDIA_TYPES = {"#microsoft.graph.servicehostedmediaconfig": "#microsoft.graph.serviceHostedMediaConfig",
               "#microsoft.graph.apphostedmediaconfig": "#microsoft.graph.appHostedMediaConfig"}
MODALITIES = {"audio", "video", "videobasedscreensharing", "data"}


def _check_type(obj: dict, expected: str, where: str, required: bool = False) -> None:
    t = obj.get("@odata.type")
    if t is None and not required:
        return
    if not isinstance(t, str) or t.lower() != expected.lower():
        raise bad(f"The provided '{t}' for 'odata.type' of {where} is not valid: expected '{expected}'.")


def _call_resource(call: dict) -> dict:
    return {k: v for k, v in call.items() if not k.startswith("_")}


@graph_route("POST", "/communications/calls")
def create_call(ctx: Context, req: Request) -> Response:
    body = json_object(req)
    _check_type(body, CALL_TYPE, "the call")
    cb = opt_str(body, "callbackUri")
    if not cb:
        raise bad("The property 'callbackUri' is required.")
    try:
        parts = urlsplit(cb)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() != "https" or not parts.netloc:
        raise bad(f"Invalid callbackUri '{cb[:200]}': an absolute https URL is required.")
    targets = opt_list(body, "targets")
    if not targets:
        raise bad("The property 'targets' is required and must name at least one participant.")
    modalities = opt_list(body, "requestedModalities")
    if not modalities:
        raise bad("The property 'requestedModalities' is required, e.g. [\"audio\"].")
    for m in modalities:
        if not isinstance(m, str) or m.lower() not in MODALITIES:
            raise bad(f"Invalid value '{m}' in 'requestedModalities'.")
    media = opt_obj(body, "mediaConfig")
    if media is None:
        raise bad("The property 'mediaConfig' is required.")
    mtype = media.get("@odata.type")
    if not isinstance(mtype, str) or mtype.lower() not in MEDIA_TYPES:
        raise bad(f"The provided '{mtype}' for 'odata.type' of mediaConfig is not valid: expected "
                  "'#microsoft.graph.serviceHostedMediaConfig' or '#microsoft.graph.appHostedMediaConfig'.")
    tenant = opt_str(body, "tenantId")
    claims = req.token
    with ctx.state.lock:
        state = ctx.state
        if tenant is not None and tenant.lower() != state.tenant_id.lower():
            raise bad(f"Invalid tenantId '{tenant}': the call must be placed in the caller's tenant.")
        out_targets = []
        for i, t in enumerate(targets):
            if not isinstance(t, dict):
                raise bad(f"Invalid value for property 'targets[{i}]': an object is expected.")
            _check_type(t, TARGET_TYPE, f"targets[{i}]")
            ident = t.get("identity")
            user = ident.get("user") if isinstance(ident, dict) else None
            if not isinstance(user, dict):
                raise bad(f"targets[{i}].identity.user is required: the emulator calls users of the tenant.")
            uid = user.get("id")
            if not isinstance(uid, str) or not is_guid(uid):
                raise bad(f"Invalid value for property 'targets[{i}].identity.user.id': a user object id (GUID) is expected.")
            known = state.users.get(uid) or state.users.get(uid.lower())
            if known is None:
                raise not_found(f"The target user '{uid}' was not found in the tenant.")
            out_targets.append({"@odata.type": TARGET_TYPE, "endpointType": None, "replacesCallId": None,
                                "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                             "user": {"@odata.type": "#microsoft.graph.identity", "id": known["id"],
                                                      "displayName": user.get("displayName") or known.get("displayName"),
                                                      "tenantId": state.tenant_id}}})
        app_id = claims.app_id if claims else ""
        active = [c for c in state.calls.values() if c.get("_app_id") == app_id and c.get("state") != "terminated"]
        if len(active) >= MAX_CONCURRENT_CALLS:
            raise GraphError(429, "TooManyRequests",
                             f"The application has reached the limit of {MAX_CONCURRENT_CALLS} concurrent calls. "
                             "End a call before placing another.", {"Retry-After": "10"})
        cid = str(uuid.uuid4())
        call = {
            "@odata.type": CALL_TYPE,
            "id": cid,
            "state": "establishing",
            "direction": "outgoing",
            "callbackUri": cb,
            "subject": body.get("subject") if isinstance(body.get("subject"), str) else None,
            "callRoutes": [],
            "chatInfo": None,
            "meetingInfo": None,
            "callChainId": str(uuid.uuid4()),
            "myParticipantId": str(uuid.uuid4()),
            "tenantId": state.tenant_id,
            "targets": out_targets,
            "requestedModalities": [m for m in modalities],
            "activeModalities": [],
            "mediaConfig": {"@odata.type": MEDIA_TYPES[mtype.lower()],
                            **{k: v for k, v in media.items() if k != "@odata.type"}},
            "mediaState": None,
            "resultInfo": None,
            "source": {"@odata.type": "#microsoft.graph.participantInfo",
                       "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                    "application": {"@odata.type": "#microsoft.graph.identity", "id": app_id,
                                                    "displayName": getattr(state.app(app_id), "name", None)}},
                       "region": None, "languageId": None},
            "createdDateTime": utcnow_iso(),
            "_app_id": app_id,
        }
        state.calls[cid] = call
        out = {"@odata.context": f"{base_of(req, ctx)}/$metadata#communications/calls/$entity"}
        out.update(_call_resource(call))
    return Response(201, out, {"Location": f"{base_of(req, ctx)}/communications/calls/{cid}"})


def _call_or_404(ctx: Context, req: Request) -> dict:
    cid = req.params["call_id"]
    call = ctx.state.calls.get(cid) if is_guid(cid) else None
    app_id = req.token.app_id if req.token else ""
    if call is None or call.get("_app_id") != app_id or call.get("state") == "terminated":
        raise not_found(f"Call '{cid[:100]}' was not found.")
    return call


@graph_route("GET", "/communications/calls/{call_id}")
def get_call(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        call = _call_or_404(ctx, req)
        out = {"@odata.context": f"{base_of(req, ctx)}/$metadata#communications/calls/$entity"}
        out.update(_call_resource(call))
    return Response(200, out)


@graph_route("DELETE", "/communications/calls/{call_id}")
def delete_call(ctx: Context, req: Request) -> Response:
    with ctx.state.lock:
        call = _call_or_404(ctx, req)
        call["state"] = "terminated"
        call["resultInfo"] = {"code": 200, "subcode": 5001, "message": "The call was ended by the application."}
    return Response(204)
