"""Microsoft Graph v1.0, Teams subset. Importing this package registers every route
(``graph_route``) in :data:`fake_tenant.core.ROUTES`.

Modules: ``users`` (users, /me), ``teams`` (groups that are teams, teams, joined teams, team
members), ``channels`` (channels, channel members), ``chats`` (chats, chat members),
``messages`` (chat and channel messages, replies), ``meetings`` (online meetings), ``calls``
(communications/calls), ``installed_apps`` (apps installed for a user, and the user's chat with
an app), ``batch`` ($batch). Shared: ``odata`` (query options, the $filter
tokenizer and parser), ``paging`` (nextLink / keyset $skiptoken), ``common`` (validation, shapes).

Choices where Microsoft's documentation is vague, and known deviations:

- Errors: 400 ``BadRequest`` for every invalid body / query option (directory routes use
  ``Request_ResourceNotFound`` for unknown users and groups, as Graph does). String compares
  in ``$filter`` are case-insensitive everywhere (the directory is; chat topics may not be).
- Messages: a request body over 28 KiB is 413 ``RequestEntityTooLarge``. An app-only post is
  403 even when the token carries ``Group.ReadWrite.All`` (migration mode is not offered).
  Adaptive cards must be sent as a JSON *string* and referenced by ``<attachment id>``;
  mentions need html and a matching ``<at id>``. Lists default to 20 per page, newest first;
  only ``$orderby`` ``lastModifiedDateTime desc`` / ``createdDateTime desc``. Messages older
  than a chat member's ``visibleHistoryStartDateTime`` are hidden from that member. No
  deletion, reactions, hosted contents or message history.
- Chats: oneOnOne get-or-create answers 201 with the existing chat. Unknown member users are
  404 (UPN: "Failed to find users with user principal name"). Adding an existing member is
  409. ``GET /chats`` with an app token is 400 (use ``/users/{id}/chats``). Default page 20.
  Creating an online meeting also creates its ``meeting`` chat.
- Teams: adding an existing team member answers 201 with the membership (roles updated);
  channels/chats answer 409. Delegated changes to team membership need a team owner.
  Deleted channel names are free again at once (Graph reserves them while soft-deleted).
- Calls: stay ``establishing`` (no media) until a simulated user answers (``calling.py``: signed
  notifications to the callback). More than 100 live
  calls per app is 429 with ``Retry-After``. Unknown target users are 404.
- Meetings: app-only ``/users/{id}/onlineMeetings`` also needs the app's application access
  policy, modelled as ``App.online_meetings_policy`` (seed key
  ``online_meetings_access_policy``, default true).
- $batch: items run sequentially in dependency order; ``id`` may be a JSON number (made a
  string); nested ``$batch`` items are 400.
"""
from . import users, teams, channels, messages, chats, meetings, calls, installed_apps, batch  # noqa: F401  (route registration)

__all__ = ["users", "teams", "channels", "messages", "chats", "meetings", "calls", "installed_apps", "batch"]
