"""Build ``graph_metadata.json``, the compact slice of Microsoft Graph v1.0's metadata that the
fake tenant checks requests and responses against (``conformance.py``).

Run from the repository root when the fake tenant gains a route or the reference changes::

    .venv/bin/python -m fake_tenant.build_graph_metadata ../shared/reference/graph_v1_subset.json

The input is ``graph_v1_subset.json`` (derived from ``msgraph-metadata``'s
``clean_v10_metadata/cleanMetadata.xml``; it lives outside the repository, so the output is
committed). The output keeps only:

- ``paths``: the metadata entry of every path template the fake tenant routes (keys
  normalised: lowercase literal segments, ``{}`` for a key segment), each method with its
  query options, its body type (or an action's parameters) and its response type;
- ``types``: every entity and complex type reachable from those bodies and responses through
  structural properties (navigation targets are not followed, only their names kept), with the
  types derived from them. ``p`` maps a property to its type ("" for an ``Edm`` primitive,
  ``[]`` suffix for a collection, no ``microsoft.graph.`` prefix), ``n`` lists navigation
  properties, ``d`` the derived types, ``o`` is 1 for an open type.

The build refuses a route the metadata does not know.
"""
from __future__ import annotations

import json
import os
import re
import sys

PREFIX = "microsoft.graph."
OUT = os.path.join(os.path.dirname(__file__), "graph_metadata.json")


def norm_path(path: str) -> str:
    segs = []
    for s in path.strip("/").split("/"):
        segs.append("{}" if re.fullmatch(r"\{[^}]*\}", s) else s.lower())
    return "/" + "/".join(segs)


def short(t: str | None) -> str | None:
    """``Collection(microsoft.graph.x)`` -> ``x[]``; ``Edm.*`` -> ``""``; ``!`` dropped."""
    if t is None:
        return None
    t = t.rstrip("!")
    coll = t.startswith("Collection(")
    if coll:
        t = t[len("Collection("):-1]
    if t.startswith("Edm."):
        t = ""
    elif t.startswith(PREFIX):
        t = t[len(PREFIX):]
    return t + "[]" if coll and t else t


def build(src: dict, route_patterns: list[tuple[str, str]]) -> dict:
    by_norm = {norm_path(p): (p, ms) for p, ms in src["paths"].items()}
    schemas = src["schemas"]
    paths: dict = {}
    roots: set[str] = set()
    missing = []
    for method, pattern in route_patterns:
        key = norm_path(pattern)
        entry = by_norm.get(key)
        m = method.lower()
        if entry is None or m not in entry[1]:
            missing.append(f"{method} {pattern}")
            continue
        meta = entry[1][m]
        out: dict = {}
        if meta.get("query"):
            out["query"] = meta["query"]
        if meta.get("body"):
            out["body"] = meta["body"] if meta["body"].startswith("#") else short(meta["body"])
        if meta.get("body_params") is not None:
            out["params"] = {k: short(v["type"]) for k, v in meta["body_params"].items()}
        if meta.get("response"):
            out["response"] = short(meta["response"])
        for t in [out.get("body"), out.get("response"), *out.get("params", {}).values()]:
            if t and not t.startswith("#"):
                roots.add(t.removesuffix("[]"))
        paths.setdefault(key, {})[method.upper()] = out
    if missing:
        raise SystemExit("routes the Graph v1.0 metadata does not know: " + "; ".join(missing))

    types: dict = {}
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in types or PREFIX + name not in schemas:
            continue
        s = schemas[PREFIX + name]
        t: dict = {"p": {k: short(v) for k, v in s["properties"].items()}}
        if s.get("navigation"):
            t["n"] = sorted(s["navigation"])
        derived = [short(d) for d in s.get("derived") or []]
        if derived and name != "entity":
            t["d"] = derived
            todo.extend(derived)
        if s.get("open"):
            t["o"] = 1
        types[name] = t
        todo.extend(v.removesuffix("[]") for v in t["p"].values() if v)
    enums = {short(k) for k in src.get("enums", {})}
    for t in types.values():  # enum-typed properties are checked like primitives
        t["p"] = {k: ("" if v and v.removesuffix("[]") in enums else v) for k, v in t["p"].items()}
    for op in paths.values():
        for m in op.values():
            if "params" in m:
                m["params"] = {k: ("" if v and v.removesuffix("[]") in enums else v) for k, v in m["params"].items()}
    return {"source": {k: src["source"][k] for k in ("repo", "commit", "file")},
            "paths": dict(sorted(paths.items())), "types": dict(sorted(types.items()))}


def main(argv: list[str]) -> int:
    src_path = argv[1] if len(argv) > 1 else os.path.join("..", "shared", "reference", "graph_v1_subset.json")
    with open(src_path, encoding="utf-8") as f:
        src = json.load(f)
    from .core import ROUTES
    from .server import load_graph_routes

    load_graph_routes()
    data = build(src, [(r.method, r.pattern) for r in ROUTES])
    text = json.dumps(data, separators=(",", ":"), sort_keys=False)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"{OUT}: {len(data['paths'])} paths, {len(data['types'])} types, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
