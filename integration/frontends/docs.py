"""Documentation generated from commands.yml: `msteams help COMMAND`, docs/commands.md, and
the permissions each command needs per flow (`msteams permissions`)."""
from __future__ import annotations

from integration.engine.registry import CommandSpec, Registry

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
        if p.get("format"):  # uuid, date-time, uri: as the OpenAPI document says it
            typ += f" ({p['format']})"
        extra = []
        if "enum" in p:
            extra.append("one of " + ", ".join(f"`{v}`" for v in p["enum"]))
        if "default" in p:
            extra.append(f"default `{p['default']}`")
        desc = p.get("description", "") + (f" ({'; '.join(extra)})" if extra else "")
        also = f" (alias {', '.join(f'`{a}`' for a in p['aliases'])})" if p.get("aliases") else ""
        rows.append(f"| `{name}`{also} | {typ} | {'yes' if name in required else 'no'} | {desc} |")
    return rows


def _rules(spec: CommandSpec) -> list[str]:
    if not spec.arguments.get("allOf"):
        return []
    from integration.engine.arguments import rules  # not on `msteams help`'s path for a command without

    return rules(spec)


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
    if spec.destructive:
        lines += ["Destructive: an HTTP API key runs it only with a scope naming it, never a glob "
                  "([docs/http-api.md](http-api.md)).", ""]
    if spec.local:
        lines += ["Runs locally (no Graph call)." + (
            " Answers from the context store alone: the HTTP API runs it on its event loop "
            "([docs/http-api.md](http-api.md#how-a-request-runs))." if spec.store_only else ""), ""]
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
    said = _rules(spec)
    if said:
        lines += ["Rules between the arguments (checked before anything runs; in the OpenAPI document too):", ""]
        lines += [f"- {sentence}" for sentence in said] + [""]
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
        if out.get("more"):
            lines += ["", "Also written: " + ", ".join(f"`{p}`" for p in out["more"])]
        lines.append("")
    if spec.example:
        lines += ["Example:", "", "```", spec.example, "```", ""]
    return "\n".join(lines)


def command_help(spec: CommandSpec) -> str:
    lines = [f"{spec.name}: {spec.description}"]
    if spec.aliases:
        lines.append("aliases: " + ", ".join(spec.aliases))
    if spec.destructive:
        lines.append("destructive: an HTTP API key needs a scope naming it (not a glob)")
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
        shape = p.get("type", "string") + (f", {p['format']}" if p.get("format") else "")
        lines.append(f"  {name} ({shape}, {flag}): {p.get('description', '')}{extra}")
    said = _rules(spec)
    if said:
        lines.append("rules:")
        lines += [f"  {sentence}" for sentence in said]
    if spec.example:
        lines.append(f"example: msteams '{spec.example}'")
    return "\n".join(lines)


def permissions_markdown(reg: Registry) -> str:
    lines = ["# Permissions per flow", "", "Generated from commands.yml. Grant the totals to the app registration "
             "(application permissions need admin consent).", ""]
    for flow, cmds in reg.permissions_by_flow().items():
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


# ---------------------------------------------------------------- migrating from Cortex XSOAR

XSOAR_FILE = "xsoar_commands.json"  # XSOAR's command definitions (facts of XSOAR's: see its "source")

# XSOAR commands that are no alias of ours: what to run instead (our command and fixed
# arguments, or None), and why.
# (None now: auth-start and auth-complete, once run as auth-login device_code=true, are aliases.)
XSOAR_INSTEAD: dict[str, tuple[str | None, dict, str]] = {}


def xsoar_commands() -> dict:
    """XSOAR's two Teams integrations as ``integration/frontends/xsoar_commands.json`` records them."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).resolve().parent / XSOAR_FILE).read_text(encoding="utf-8"))


def xsoar_rows(reg: Registry) -> list[dict]:
    """One row per XSOAR command of both integrations: XSOAR's definition, our command (or what
    to run instead), each XSOAR argument as we take it, and our context outputs."""
    from integration.engine.arguments import canonical_name

    rows = []
    for integration, commands in xsoar_commands()["integrations"].items():
        for x in commands:
            spec = reg.get(x["name"])
            instead = XSOAR_INSTEAD.get(x["name"])
            if spec is None and instead and instead[0]:
                spec = reg.get(instead[0])
            args = {a: (canonical_name(spec, a) if spec else None) for a in x["arguments"]}
            rows.append({"integration": integration, "xsoar": x, "spec": spec, "alias": bool(reg.get(x["name"])),
                         "fixed": instead[1] if instead else {}, "note": instead[2] if instead else None,
                         "arguments": args})
    return rows


def _context_summary(spec: CommandSpec) -> str:
    out = spec.outputs
    if not out.get("prefix"):
        return "none (a message)" if not spec.local else "none"
    fields = out.get("fields") or {}
    nest = out.get("nest")

    def names(items):
        shown = []
        for k, v in items:
            if k == "*":
                shown.insert(0, "the Graph object's properties")
            elif v == "*":
                shown.append(f"{k} (the Graph object)")
            else:
                shown.append(k)
        return ", ".join(shown)

    if nest:
        top = [(k, v) for k, v in fields.items() if k != nest and not k.startswith(nest + ".")]
        inner = [(k[len(nest) + 1:], v) for k, v in fields.items() if k.startswith(nest + ".")]
        whole = fields.get(nest) == "*"
        text = f"`{out['prefix']}` (key `{out.get('key')}`): {names(top)}, `{nest}`: a list of " + \
               ("the Graph objects" if whole else "objects") + (f" with {names(inner)}" if inner else "")
    else:
        text = f"`{out['prefix']}` (key `{out.get('key', '-')}`)" + (f": {names(fields.items())}" if fields else "")
    for more in out.get("also") or ():
        text += f"; `{more['prefix']}`: {', '.join(more['fields'])}"
    if out.get("next_link") or "next_link" in spec.argument_names:
        text += f"; `{out.get('next_link') or out['prefix'] + 'NextLink'}`"
    for path in out.get("more") or ():
        text += f"; `{path}`"
    return text


def xsoar_markdown(reg: Registry) -> str:
    """docs/xsoar-migration.md: every XSOAR command of both integrations against ours."""
    data = xsoar_commands()
    rows = xsoar_rows(reg)
    lines = [
        "# Migrating from Cortex XSOAR's Microsoft Teams integrations", "",
        "Generated from `commands.yml` and `integration/frontends/xsoar_commands.json` by `msteams docs --xsoar --write`; "
        "do not edit by hand. Every command of XSOAR's `MicrosoftTeams` and `MicrosoftTeamsManagement` "
        "integrations, with the command of ours that runs it (XSOAR's name works as is: it is an alias), how each "
        "of XSOAR's argument names is taken, and the context we write. `tests/frontends/test_xsoar_migration.py` runs every "
        "row against the fake tenant under XSOAR's names and checks each context path XSOAR documents.", "",
        "Context: under XSOAR's paths and keys. Listings inside a chat or channel are one entry per chat or channel "
        "holding a list (`members`, `messages`), as XSOAR writes them, and playbooks merge such lists by id, never "
        "dropping entries. Messages are Graph's whole chatMessage (`from` is Graph's identity set: `user`, "
        "`application` for a bot, or null for a system event), with flat `fromName`, `fromId`, "
        "`fromIdentityType`, `contentType` and `content` beside it.", "",
        f"XSOAR's definitions: {data['source']}", "",
    ]
    for integration in data["integrations"]:
        lines += [f"## {integration}", "",
                  "| XSOAR command | Ours | XSOAR's arguments | Context we write | Notes |", "|---|---|---|---|---|"]
        for r in (r for r in rows if r["integration"] == integration):
            x, spec = r["xsoar"], r["spec"]
            flags = " (deprecated)" if x.get("deprecated") else " (hidden)" if x.get("hidden") else ""
            if spec is None:
                ours = "-"
            else:
                fixed = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in r["fixed"].items())
                ours = f"`{spec.name}" + (f" {fixed}" if fixed else "") + "`" + ("" if r["alias"] else " (not an alias)")
            args = []
            for a, ours_a in r["arguments"].items():
                if ours_a is None:
                    args.append(f"{a} (not taken)")
                elif ours_a == a:
                    args.append(f"`{a}`")
                else:
                    args.append(f"`{a}` → `{ours_a}`")
            notes = []
            if r["note"]:
                notes.append(r["note"])
            if x["outputs"]:
                notes.append(f"XSOAR documents {len(x['outputs'])} context path(s); all are written")
            lines.append(f"| `{x['name']}`{flags} | {ours} | {', '.join(args) or '-'} | "
                         f"{_context_summary(spec) if spec else '-'} | {'. '.join(notes) or ''} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
