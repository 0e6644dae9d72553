"""Online meetings: created as the signed-in account (delegated, ``/me/onlineMeetings``) or, with
the app flow, on behalf of an organizer (``/users/{id}/onlineMeetings``, which also needs a
Teams application access policy). Times are checked before any request."""
from __future__ import annotations

import re
from datetime import datetime, timezone

from integration.engine.errors import ArgumentError, PermissionDenied
from integration.graph.client import seg

HANDLERS = ("meeting_create",)

_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})?$")


def parse_time(argument: str, value: str) -> datetime:
    """An ISO 8601 date and time ('2024-05-01T14:30:00Z', offsets allowed; no offset means UTC)."""
    text = value.strip()
    if not _ISO_RE.match(text):
        raise ArgumentError(argument, f"expected an ISO 8601 date and time such as 2024-05-01T14:30:00Z, got {value!r}")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # Graph writes 7 digits; Python reads at most 6
        text = text.replace(frac.group(0), "." + frac.group(1)[:6], 1)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArgumentError(argument, f"{value!r} is not a valid date and time") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def meeting_create(ctx):
    args, r = ctx.args, ctx.resolver
    start = parse_time("start_time", args["start_time"]) if args.get("start_time") else None
    end = parse_time("end_time", args["end_time"]) if args.get("end_time") else None
    if start and end and end <= start:
        raise ArgumentError("end_time", "must be after start_time")
    if end and not start and end <= datetime.now(timezone.utc):
        raise ArgumentError("end_time", "is in the past (start_time defaults to now)")
    if ctx.flow == "delegated":
        me = r.me()
        if args.get("organizer") and r.user(args["organizer"])["id"] != me["id"]:
            raise ArgumentError("organizer", f"with the delegated flow the organizer is the signed-in account "
                                             f"({me.get('userPrincipalName') or me['displayName']})",
                                hint="run with the app flow (--flow app) to create a meeting on behalf of another user")
        organizer, path = me, "/me/onlineMeetings"
    else:
        if not args.get("organizer"):
            raise ArgumentError("organizer", f"is required with the {ctx.flow} flow: the user the meeting is created for",
                                hint="or sign in the delegated flow to create it as the service account")
        organizer = r.user(args["organizer"])
        path = f"/users/{seg(organizer['id'])}/onlineMeetings"
    body = {"subject": args["subject"]}
    if start:
        body["startDateTime"] = _iso(start)
    if end:
        body["endDateTime"] = _iso(end)
    attendees = [r.user(a) for a in args.get("attendees") or []]
    if attendees:
        body["participants"] = {"attendees": [
            {"identity": {"user": {"id": u["id"], "displayName": u["displayName"]}}, "upn": u.get("userPrincipalName"),
             "role": "attendee"}
            for u in {u["id"]: u for u in attendees}.values() if u["id"] != organizer["id"]]}
    try:
        meeting = ctx.graph.create(path, body)
    except PermissionDenied as exc:
        if ctx.flow == "app" and not exc.permissions:
            exc.hint = ("a Teams administrator must grant the app an application access policy covering the organizer "
                        "(New-CsApplicationAccessPolicy, Grant-CsApplicationAccessPolicy)")
        raise
    return ctx.result(meeting, meeting, message=f"The meeting '{args['subject']}' was created for "
                                                f"{organizer['displayName']}: {meeting.get('joinWebUrl')}")
