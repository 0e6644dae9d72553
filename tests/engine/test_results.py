"""Results: projection to context paths and markdown tables that survive hostile cell text."""
from integration.engine.results import Result, dig, markdown_table, project


def test_project_nested_paths_and_params():
    item = {"id": "m1", "from": {"user": {"displayName": "Conor O'Brien"}}, "targets": [{"x": 1}]}
    out = project(item, {"messages.id": "id", "messages.from": "from.user.displayName", "t": "targets.0.x",
                         "teamId": "$team_id"}, {"team_id": "T"})
    assert out == {"messages": {"id": "m1", "from": "Conor O'Brien"}, "t": 1, "teamId": "T"}
    assert dig(item, "nope.x") is None


def test_table_escapes_pipes_and_newlines():
    t = markdown_table([{"a": "x|y\nz", "b": None}], ["a", "b"], "T")
    assert t.splitlines() == ["### T", "| a | b |", "|---|---|", "| x\\|y z |  |"]


def test_context_and_render():
    r = Result("channel-list", [{"channelId": "1"}], "MicrosoftTeams.ChannelList", "channelId", "Channels",
               ["channelId"], raw=[{"id": "1"}])
    assert r.context() == {"MicrosoftTeams.ChannelList": [{"channelId": "1"}]}
    assert '"id": "1"' in r.render("json")
    assert "| 1 |" in r.render("table")
