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


def _reference_table(rows, columns=None, title=None):
    """markdown_table as first written (a cell: the value's text escaped and folded, always), to
    check the faster one against: byte for byte the same tables."""
    import json

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            value = ", ".join(cell(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        text = str(value).replace("\\", "\\\\").replace("|", "\\|")
        return " ".join(text.split())

    lines = [f"### {title}"] if title else []
    if not rows:
        lines.append("**No entries.**")
        return "\n".join(lines)
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        lines.append("| " + " | ".join(cell(dig(r, c)) for c in columns) + " |")
    return "\n".join(lines)


def test_table_cells_are_those_of_the_reference_for_hostile_and_plain_values():
    import enum
    import random

    class Level(enum.IntEnum):
        HIGH = 3

    class Text(str):
        def __str__(self):
            return "shown | differently"

    pieces = ["a", "Bob", " ", "  ", "\t", "\n", "\r\n", "|", "\\", "\\|", "\u00a0", "\u2028", "\u3000", "\x1c",
              "\x85", "\u200b", "é", "日本", "<at>x</at>", "`", "*", "-", "0", "\x00", "\ufeff"]
    rng = random.Random(25)
    values = [None, "", " ", "x", 0, -1, 10**30, 1.5, float("nan"), float("inf"), True, False, Level.HIGH,
              Text("plain"), [], (), ["a|b", None, 1], ("x\ny", ["nested\t|"]), {"k": "v|w\n"}, {"a": [1, None]}]
    for _ in range(3000):
        values.append("".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))))
    rows = [{"v": v, "n": {"deep": v}, "i": i} for i, v in enumerate(values)]
    for columns in (["v"], ["v", "n.deep", "i"], None):
        assert markdown_table(rows, columns, "T") == _reference_table(rows, columns, "T")
    listed = [[v, {"x": v}] for v in values]  # rows that are not objects: dig's paths into lists
    assert markdown_table(listed, ["0", "1.x"]) == _reference_table(listed, ["0", "1.x"])
    assert markdown_table([], ["a"], "Empty") == _reference_table([], ["a"], "Empty")
