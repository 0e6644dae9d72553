"""Documentation generated from commands.yml: `msteams help COMMAND`, docs/commands.md, and
the permissions each command needs per flow (`msteams permissions`)."""
from __future__ import annotations

from .registry import CommandSpec, Registry

FLOW_TITLES = {"app": "application (client credentials)", "delegated": "delegated (signed-in account)",
               "bot": "bot (Bot Framework)"}


def _arg_rows(spec: CommandSpec) -> list[str]:
    props = spec.arguments.get("properties", {})
    required = set(spec.arguments.get("required", ()))
    rows = []
    for name, p in props.items():
        typ = p.get("type", "string")
        if typ == "array":
            typ = f"list of {p.get('items', {}).get('type', 'string')}"
        extra = []
        if "enum" in p:
            extra.append("one of " + ", ".join(f"`{v}`" for v in p["enum"]))
        if "default" in p:
            extra.append(f"default `{p['default']}`")
        desc = p.get("description", "") + (f" ({'; '.join(extra)})" if extra else "")
        also = f" (alias {', '.join(f'`{a}`' for a in p['aliases'])})" if p.get("aliases") else ""
        rows.append(f"| `{name}`{also} | {typ} | {'yes' if name in required else 'no'} | {desc} |")
    return rows


def context_path(prefix: str, key: str, nest: str | None = None) -> str:
    """A field's context path as XSOAR documents it ('*' merges the item into the entry)."""
    if key == "*":
        return f"{prefix}.*"
    return f"{prefix}.{key}"


def field_source(source: str) -> str:
    """What an output field is taken from, for the docs."""
    if source == "*":
        return "the whole Graph object"
    if source.startswith("$"):
        return f"argument or resolved id `{source[1:]}`"
    return ", else ".join(f"`{alt}`" for alt in source.split("|"))


def command_markdown(spec: CommandSpec) -> str:
    lines = [f"### {spec.name}", "", spec.description, ""]
    if spec.aliases:
        lines += ["Aliases: " + ", ".join(f"`{a}`" for a in spec.aliases), ""]
    if spec.local:
        lines += ["Runs locally (no Graph call).", ""]
    else:
        lines += ["| Flow (in order of preference) | Permissions |", "|---|---|"]
        lines += [f"| {FLOW_TITLES[f]} | {', '.join(f'`{x}`' for x in perms) or '-'} |" for f, perms in spec.flows]
        lines += [f"| {FLOW_TITLES[f]}, only to look names up (else pass ids) | {', '.join(f'`{x}`' for x in perms)} |"
                  for f, perms in spec.lookups]
        lines.append("")
    calls = spec.calls or ((f"{spec.request['method']} {spec.request['path']}",) if spec.request else ())
    if calls:
        lines += ["Calls: " + ", ".join(f"`{c}`" for c in calls), ""]
    rows = _arg_rows(spec)
    if rows:
        lines += ["| Argument | Type | Required | Description |", "|---|---|---|---|"] + rows + [""]
    out = spec.outputs
    if out.get("prefix"):
        nest = f"; one entry per `{out['key']}` holding its `{out['nest']}` as a list" if out.get("nest") else ""
        lines += [f"Context: `{out['prefix']}` (key `{out.get('key', '-')}`{nest})"]
        if out.get("fields"):
            lines += ["", "| Context path | From |", "|---|---|"]
            lines += [f"| `{context_path(out['prefix'], k, out.get('nest'))}` | "
                      f"{'a list, each: ' if k == out.get('nest') else ''}{field_source(v)} |"
                      for k, v in out["fields"].items()]
        for more in out.get("also") or ():
            lines += ["", f"Also: `{more['prefix']}` (key `{more.get('key', '-')}`)", "",
                      "| Context path | From |", "|---|---|"]
            lines += [f"| `{more['prefix']}.{k}` | {field_source(v)} |" for k, v in more["fields"].items()]
        if out.get("next_link") or "next_link" in spec.argument_names:
            lines += ["", f"Next link: `{out.get('next_link') or out['prefix'] + 'NextLink'}`"]
        lines.append("")
    if spec.example:
        lines += ["Example:", "", "```", spec.example, "```", ""]
    return "\n".join(lines)


def command_help(spec: CommandSpec) -> str:
    lines = [f"{spec.name}: {spec.description}"]
    if spec.aliases:
        lines.append("aliases: " + ", ".join(spec.aliases))
    if not spec.local:
        for f, perms in spec.flows:
            lines.append(f"flow {f}: needs {', '.join(perms) or 'no permissions'}")
        for f, perms in spec.lookups:
            lines.append(f"names looked up with the {f} flow when ready (else pass ids): needs {', '.join(perms)}")
    lines.append("arguments:")
    required = set(spec.arguments.get("required", ()))
    for name, p in spec.arguments.get("properties", {}).items():
        flag = "required" if name in required else "optional"
        extra = f" [one of: {', '.join(map(str, p['enum']))}]" if "enum" in p else ""
        extra += f" [default: {p['default']}]" if "default" in p else ""
        extra += f" [alias: {', '.join(p['aliases'])}]" if p.get("aliases") else ""
        lines.append(f"  {name} ({p.get('type', 'string')}, {flag}): {p.get('description', '')}{extra}")
    if spec.example:
        lines.append(f"example: msteams '{spec.example}'")
    return "\n".join(lines)


def permissions_by_flow(reg: Registry) -> dict[str, dict[str, list[str]]]:
    """{flow: {command: [permissions]}} for every Graph command (name lookups included)."""
    out: dict[str, dict[str, list[str]]] = {}
    for spec in reg:
        for flow, perms in spec.flows + spec.lookups:
            have = out.setdefault(flow, {}).setdefault(spec.name, [])
            have += [p for p in perms if p not in have]
    return out


def permissions_markdown(reg: Registry) -> str:
    lines = ["# Permissions per flow", "", "Generated from commands.yml. Grant the totals to the app registration "
             "(application permissions need admin consent).", ""]
    for flow, cmds in permissions_by_flow(reg).items():
        total = sorted({p for perms in cmds.values() for p in perms})
        lines += [f"## {FLOW_TITLES[flow]}", "", "Total: " + ", ".join(f"`{p}`" for p in total), "",
                  "| Command | Permissions |", "|---|---|"]
        lines += [f"| {c} | {', '.join(p) or '-'} |" for c, p in sorted(cmds.items())]
        lines.append("")
    return "\n".join(lines)


def commands_markdown(reg: Registry) -> str:
    cats: dict[str, list[CommandSpec]] = {}
    for spec in reg:
        cats.setdefault(spec.category, []).append(spec)
    lines = ["# Command reference", "",
             "Generated from `commands.yml` by `msteams docs --write`; do not edit by hand.", "",
             "Run a command as `msteams COMMAND --arg value` or in war-room form `msteams '!COMMAND arg=value'`.", ""]
    for cat in sorted(cats):
        lines += [f"## {cat.capitalize()}", ""]
        lines += [command_markdown(s) for s in cats[cat]]
    lines += [permissions_markdown(reg).replace("# Permissions per flow", "## Permissions per flow", 1)
              .replace("\n## ", "\n### ")]
    return "\n".join(lines).rstrip() + "\n"
