"""Microsoft Graph v1.0, Teams subset. Importing this package registers every route
(``graph_route``) in :data:`integration.emulator.core.ROUTES`.

Modules: ``users`` (users, /me), ``teams`` (groups that are teams, teams, joined teams, team
members), ``channels`` (channels, channel members), ``chats`` (chats, chat members),
``messages`` (chat and channel messages, replies), ``meetings`` (online meetings), ``calls``
(communications/calls), ``batch`` ($batch). Shared: ``odata`` (query options, $filter parser),
``paging`` (nextLink / $skiptoken), ``common`` (validation and shapes).
"""
from . import users, teams, channels, messages, chats, meetings, calls, batch  # noqa: F401  (route registration)

__all__ = ["users", "teams", "channels", "messages", "chats", "meetings", "calls", "batch"]
