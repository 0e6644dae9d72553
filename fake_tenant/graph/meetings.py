"""Online meetings: ``POST /me/onlineMeetings`` (delegated) and ``POST /users/{id}/onlineMeetings``.

App-only creation on behalf of a user needs ``OnlineMeetings.ReadWrite.All`` (checked by the
server) **and** an application access policy granted by a Teams admin. The emulator models
the policy per app registration: ``App.online_meetings_policy`` (default True; a tenant seed
may set ``online_meetings_access_policy: false`` on an app). Without it Graph answers 403.

Creating a meeting also creates its meeting chat (``chatType: meeting``) with the organizer and
the attendees that are users of the tenant, so ``chatInfo.threadId`` can be used with
``/chats/{id}``.
"""
from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from urllib.parse import quote

from ..core import Context, Request, Response, graph_route, utcnow_iso
from ..state import Chat, Membership, TenantState
from .common import (ALL_HISTORY, bad, forbidden, is_app, is_guid, iso, json_object, member_id, opt_obj, opt_str,
                     parse_iso, require_delegated, require_self_unless_app, user_or_404)
from .paging import base_of


def _identity(state: TenantState, uid: str) -> dict:
    u = state.users.get(uid) or {}
    return {"application": None, "device": None,
            "user": {"id": uid, "displayName": u.get("displayName"), "tenantId": state.tenant_id,
                     "identityProvider": "AAD"}}


def _attendees(state: TenantState, participants: dict | None) -> list[dict]:
    if participants is None:
        return []
    raw = participants.get("attendees", [])
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("Invalid value for property 'participants.attendees': an array is expected.")
    out = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            raise bad(f"Invalid value for property 'participants.attendees[{i}]': an object is expected.")
        upn = a.get("upn")
        if upn is not None and not isinstance(upn, str):
            raise bad(f"Invalid value for property 'participants.attendees[{i}].upn': a string is expected.")
        ident = a.get("identity")
        uid = None
        if ident is not None:
            if not isinstance(ident, dict) or not isinstance(ident.get("user", {}), dict):
                raise bad(f"Invalid value for property 'participants.attendees[{i}].identity'.")
            uid = (ident.get("user") or {}).get("id")
            if uid is not None and not isinstance(uid, str):
                raise bad(f"Invalid value for property 'participants.attendees[{i}].identity.user.id'.")
            if uid is not None and not is_guid(uid):
                raise bad(f"Invalid user id '{uid}' in 'participants.attendees[{i}]': a GUID is expected.")
        if uid is None and upn is None:
            raise bad(f"Attendee {i} needs an identity.user.id or a upn.")
        role = a.get("role", "attendee")
        if role not in ("attendee", "presenter", "coorganizer", "producer", None):
            raise bad(f"Invalid value '{role}' for property 'participants.attendees[{i}].role'.")
        user = state.users.get(uid) if uid else (state.user(upn) if upn else None)
        entry = {"upn": upn or (user or {}).get("userPrincipalName"), "role": role or "attendee",
                 "identity": _identity(state, user["id"]) if user else
                 {"application": None, "device": None, "user": {"id": uid, "displayName": None,
                                                                "tenantId": None, "identityProvider": "AAD"}}}
        out.append(entry)
    return out


def _create(ctx: Context, req: Request, organizer_key: str) -> Response:
    body = json_object(req)
    subject = opt_str(body, "subject", max_len=1024)
    start_raw, end_raw = body.get("startDateTime"), body.get("endDateTime")
    participants = opt_obj(body, "participants")
    for k in ("isEntryExitAnnounced", "allowMeetingChat", "recordAutomatically"):
        if k in body and body[k] is not None and not isinstance(body[k], (bool, str)):
            raise bad(f"Invalid value for property '{k}'.")
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    start = parse_iso(start_raw, "startDateTime") if start_raw is not None else now
    end = parse_iso(end_raw, "endDateTime") if end_raw is not None else start + timedelta(hours=1)
    if end <= start:
        raise bad("The meeting's endDateTime must be after its startDateTime.")
    with ctx.state.lock:
        state = ctx.state
        organizer = user_or_404(state, organizer_key)
        if is_app(req.token):
            app = state.app(req.token.app_id)
            if app is None or not getattr(app, "online_meetings_policy", True):
                raise forbidden("No application access policy found for this app: a Teams administrator must grant "
                                "the app an application access policy to create meetings on behalf of users.")
        attendees = _attendees(state, participants)
        mid_raw = uuid.uuid4().hex
        thread = f"19:meeting_{base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip('=')[:22]}@thread.v2"
        meeting_id = base64.b64encode(f"1*{organizer['id']}*0**{thread}".encode()).decode().rstrip("=")
        context = quote(json.dumps({"Tid": state.tenant_id, "Oid": organizer["id"]}, separators=(",", ":")), safe="")
        join = f"https://teams.microsoft.com/l/meetup-join/{quote(thread, safe='')}/0?context={context}"
        created = utcnow_iso()
        meeting = {
            "id": meeting_id,
            "creationDateTime": created,
            "startDateTime": iso(start),
            "endDateTime": iso(end),
            "joinWebUrl": join,
            "joinUrl": join,
            "subject": subject,
            "externalId": body.get("externalId") if isinstance(body.get("externalId"), str) else None,
            "isEntryExitAnnounced": True,
            "allowedPresenters": "everyone",
            "allowMeetingChat": "enabled",
            "allowTeamworkReactions": True,
            "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False},
            "recordAutomatically": False,
            "videoTeleconferenceId": str(uuid.UUID(mid_raw).int % 10**10),
            "audioConferencing": None,
            "joinInformation": {"content": "data:text/html,...", "contentType": "html"},
            "joinMeetingIdSettings": {"isPasscodeRequired": False, "joinMeetingId": str(uuid.uuid4().int % 10**12),
                                      "passcode": None},
            "participants": {
                "organizer": {"upn": organizer["userPrincipalName"], "role": "presenter",
                              "identity": _identity(state, organizer["id"])},
                "attendees": attendees,
            },
            "chatInfo": {"threadId": thread, "messageId": "0", "replyChainMessageId": None},
            "organizerId": organizer["id"],
        }
        state.meetings[meeting_id] = meeting
        chat = Chat(thread, "meeting", subject, created, created)
        uids = [organizer["id"]] + [a["identity"]["user"]["id"] for a in attendees
                                    if a["identity"]["user"].get("id") in state.users]
        for uid in dict.fromkeys(uids):
            chat.members.append(Membership(member_id(thread, uid), uid, ["owner"] if uid == organizer["id"] else [],
                                           ALL_HISTORY))
        state.chats[thread] = chat
        out = {"@odata.context": f"{base_of(req, ctx)}/$metadata#users('{organizer['id']}')/onlineMeetings/$entity"}
        out.update({k: v for k, v in meeting.items() if k != "organizerId"})
    return Response(201, out)


@graph_route("POST", "/me/onlineMeetings")
def create_my_meeting(ctx: Context, req: Request) -> Response:
    return _create(ctx, req, require_delegated(req.token))


@graph_route("POST", "/users/{user_id}/onlineMeetings")
def create_user_meeting(ctx: Context, req: Request) -> Response:
    key = req.params["user_id"]
    require_self_unless_app(ctx.state, req.token, key,
                            "A delegated caller can create online meetings only for themselves.")
    return _create(ctx, req, key)
