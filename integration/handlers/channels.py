"""Channel commands that combine calls: creating a channel (with an owner member when created
app-only), adding and removing members of private and shared channels (membership ids are
looked up by user), and posting to a channel or replying in a thread."""
from __future__ import annotations

from integration.engine.errors import ArgumentError, NotFound, PermissionDenied, RequestRejected
from integration.graph.client import seg
from integration.delivery.outbox import delivery_key, delivery_scope
from integration.delivery.posting import post_once
from integration.graph.resolve import member_body

HANDLERS = ("channel_create", "channel_delete", "channel_user_add", "channel_user_remove", "channel_message_send")


def _team_channel(ctx) -> tuple[dict, dict]:
    r = ctx.resolver
    team = r.team(ctx.args["team"])
    chan = r.channel(team["id"], ctx.args["channel"])
    ctx.extra.update(team_id=team["id"], channel_id=chan["id"], channel_name=chan.get("displayName"))
    return team, chan


def _members_path(team: dict, chan: dict) -> str:
    return f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}/members"


def _not_standard(chan: dict, verb: str) -> None:
    if chan.get("membershipType") == "standard":
        raise ArgumentError("channel", f"'{chan.get('displayName')}' is a standard channel: its members are the "
                                       f"team's members, so users cannot be {verb} it",
                            hint="use `msteams team-member-add` / `team-member-remove`, or a private or shared channel")


def channel_create(ctx):
    args, r = ctx.args, ctx.resolver
    mtype = args["membership_type"]
    if mtype == "standard" and args.get("owner"):
        raise ArgumentError("owner", "only private and shared channels have their own members and owners")
    if mtype != "standard" and ctx.flow != "delegated" and not args.get("owner"):
        raise ArgumentError("owner", f"a {mtype} channel created with the {ctx.flow} flow needs an owner "
                                     "(with the delegated flow the signed-in account is the owner)",
                            hint="pass owner=<mail, UPN or name of a team member>")
    team = r.team(args["team"])
    ctx.extra["team_id"] = team["id"]
    body = {"displayName": args["channel_name"], "membershipType": mtype}
    if args.get("description"):
        body["description"] = args["description"]
    if args.get("owner"):
        owner = r.user(args["owner"])
        body["members"] = [member_body(owner["id"], ctx.cfg.graph_url, ["owner"])]
    try:
        ch = ctx.graph.create(f"/teams/{seg(team['id'])}/channels", body)
    except RequestRejected as exc:
        if "exist" in exc.message.lower() and not exc.hint:
            exc.hint = "pick another name, or list the team's channels with `msteams channel-list`"
        raise
    view = {"id": ch["id"], "displayName": ch.get("displayName"), "membershipType": ch.get("membershipType")}
    ctx.store.put("channel", f"{team['id']}/{args['channel_name'].strip()}", view)
    return ctx.result(ch, ch, message=f"The {mtype} channel '{ch.get('displayName')}' was created in team "
                                      f"'{team.get('displayName') or args['team']}'.")


def channel_delete(ctx):
    """Delete a channel; without one (XSOAR's close-channel in a mirrored war room), the channel
    of the incident's mirror (incident_id), whose mirroring stops. A mirror of the deleted
    channel is marked deleted either way."""
    from integration.teams import mirror

    args, store = ctx.args, ctx.store
    if not args.get("channel"):  # then incident_id, and with a channel its team (commands.yml's rules)
        inc = args["incident_id"].strip()
        m = store.mirror_get(inc)
        if m is None:
            raise NotFound(f"incident {inc[:100]} is not mirrored", hint="name the channel and its team instead")
        if m["kind"] != "channel":
            mirror.set_status(store, m, "closed")
            return ctx.result(None, None, message=f"Mirroring of incident {inc} in chat {m['conversationId']} "
                                                  "stopped (a chat is not deleted).")
        if m["status"] != "deleted":
            try:
                ctx.graph.delete(f"/teams/{seg(m['teamId'])}/channels/{seg(m['channelId'])}")
            except NotFound:
                pass
            store.delete("channel", f"{m['teamId']}/{(m.get('channelName') or '').strip()}")
            mirror.set_status(store, m, "deleted")
        return ctx.result(None, None, message=f"The channel '{m.get('channelName')}' of incident {inc} was deleted "
                                              "and its mirroring stopped.")
    team = ctx.resolver.team(args["team"])
    chan = ctx.resolver.channel(team["id"], args["channel"])
    ctx.extra.update(team_id=team["id"], channel_id=chan["id"])
    ctx.graph.delete(f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}")
    m = store.mirror_for_conversation(chan["id"])
    if m is not None:
        mirror.set_status(store, m, "deleted")
    return ctx.result(None, None, message=f"The channel '{args['channel']}' was deleted from team '{args['team']}'.")


def channel_user_add(ctx):
    args, r = ctx.args, ctx.resolver
    team, chan = _team_channel(ctx)
    _not_standard(chan, "added to")
    roles = ["owner"] if args["owner"] else []
    rows = []
    for user in {u["id"]: u for u in (r.user(m) for m in args["member"])}.values():
        try:
            m = ctx.graph.post(_members_path(team, chan), member_body(user["id"], ctx.cfg.graph_url, roles))
            m = m if isinstance(m, dict) else {}  # a 201 may come without a body
            for k, v in (("userId", user["id"]), ("displayName", user.get("displayName")), ("email", user.get("mail")),
                         ("roles", roles), ("status", "added")):
                if m.get(k) is None:
                    m[k] = v
        except RequestRejected as exc:
            if exc.status != 409:
                raise
            m = {"userId": user["id"], "displayName": user["displayName"], "email": user.get("mail"),
                 "status": "already a member"}
        rows.append(m)
    added = [x.get("displayName") or x.get("userId") for x in rows if x["status"] == "added"]
    where = f"channel '{chan.get('displayName')}'"
    msg = f"Added {', '.join(added)} to {where}." if added else f"Nobody added to {where}: already members."
    return ctx.result(rows, rows, message=msg)


def channel_user_remove(ctx):
    args, r = ctx.args, ctx.resolver
    team, chan = _team_channel(ctx)
    _not_standard(chan, "removed from")
    user = r.user(args["member"])
    members = ctx.graph.paged(_members_path(team, chan)).items
    m = next((x for x in members if isinstance(x, dict) and x.get("userId") == user["id"] and x.get("id")), None)
    if m is None:
        raise NotFound(f"{user['displayName']} is not a member of channel '{chan.get('displayName')}'",
                       hint="list the members with `msteams channel-user-list`")
    ctx.graph.delete(f"{_members_path(team, chan)}/{seg(m['id'])}")
    return ctx.result(m, m, message=f"Removed {user['displayName']} from channel '{chan.get('displayName')}'.")


def channel_message_send(ctx):
    args = ctx.args
    team, chan = _team_channel(ctx)
    path = f"/teams/{seg(team['id'])}/channels/{seg(chan['id'])}/messages"
    if args.get("reply_to"):
        path += f"/{seg(args['reply_to'])}/replies"
    body = {"body": {"contentType": args["content_type"], "content": args["content"]}}
    where = f"channel '{chan.get('displayName')}'"
    key = delivery_key(delivery_scope(ctx), team["id"], chan["id"], args.get("reply_to"))
    try:
        msg, d = post_once(ctx, path, body, key, where)
    except PermissionDenied as exc:
        if not exc.permissions and chan.get("membershipType") in ("private", "shared"):
            exc.hint = (f"the signed-in account must be a member of the {chan['membershipType']} channel: "
                        "add it with `msteams channel-user-add`")
        raise
    if d.reused:
        return ctx.result(msg, msg, message=f"Already sent to {where} under this delivery key: not sent again.")
    note = f"Reply sent in {where}." if args.get("reply_to") else f"Message sent to {where}."
    return ctx.result(msg, msg, message=note + (f" {d.unrecorded}" if d.unrecorded else ""))
