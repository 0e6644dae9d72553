"""Every Graph request the fake tenant accepts conforms to Microsoft's Graph v1.0 metadata.

The metadata slice is ``graph_metadata.json`` (built by ``build_graph_metadata.py``). The
server uses it to:

- refuse to start when a route's path or method is not in the metadata (:func:`check_routes`);
  a request matching no route is answered 400 ``BadRequest`` "Resource not found for the
  segment ..." as Graph answers an unknown segment (a path the metadata knows but the fake
  tenant does not emulate gets the same answer);
- answer 400 ``BadRequest`` to a request body naming a property (top level, or nested where
  the metadata gives the property's type) or an ``@odata.type`` the metadata does not know
  (:func:`check_body`); ``name@odata.bind`` is accepted for a navigation or structural
  property; open types accept any property;
- flag response properties that the entity's metadata does not list (:func:`invented`); the
  server records them in ``Emulator.conformance`` (``GET /_emulator/conformance``).

``EXCEPTIONS`` lists what the fake tenant knowingly sends beyond the metadata, with why.
"""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from typing import Any

from .core import GraphError, Route

META_PATH = os.path.join(os.path.dirname(__file__), "graph_metadata.json")
PREFIX = "microsoft.graph."

# (type, property) the fake tenant returns although the type's metadata does not list it.
# Keep small; each entry says why.
EXCEPTIONS: dict[tuple[str, str], str] = {}


@lru_cache(maxsize=1)
def load() -> dict:
    with open(META_PATH, encoding="utf-8") as f:
        data = json.load(f)
    types = data["types"]
    # derived lists are transitive in the source; keep a set per type for @odata.type checks
    data["_derived"] = {k: set(v.get("d", ())) for k, v in types.items()}
    return data


def norm_path(pattern: str) -> str:
    return "/" + "/".join("{}" if re.fullmatch(r"\{\w+\}", s) else s.lower() for s in pattern.strip("/").split("/"))


def operation(route: Route) -> dict | None:
    return load()["paths"].get(norm_path(route.pattern), {}).get(route.method)


def check_routes(routes: list[Route]) -> None:
    """Refuse to start when a route's path or method is not in the Graph v1.0 metadata."""
    missing = [f"{r.method} {r.pattern}" for r in routes if operation(r) is None]
    if missing:
        raise RuntimeError("Graph routes the v1.0 metadata does not know (rebuild graph_metadata.json with "
                           "build_graph_metadata.py if the reference changed): " + "; ".join(missing))


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _resolve(expected: str, value: dict, where: str) -> str:
    """The type an object is checked against: its ``@odata.type`` when that names ``expected``
    or a type derived from it; a Graph 400 otherwise."""
    odt = value.get("@odata.type")
    if odt is None:
        return expected
    if not isinstance(odt, str):
        raise _bad(f"Invalid value for '@odata.type'{where}: a string is expected.")
    name = odt.lstrip("#")
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    meta = load()
    if name not in meta["types"]:
        raise _bad(f"A type named '{odt.lstrip('#')}' could not be resolved by the model{where}. "
                   "When a model is available, each type name must resolve to a valid type.")
    if name != expected and name not in meta["_derived"].get(expected, ()):
        raise _bad(f"An incompatible type '{PREFIX}{name}' was found{where}: a '{PREFIX}{expected}' or a type "
                   "derived from it is expected.")
    return name


def _check_value(t: str, value: Any, where: str) -> None:
    if not t or value is None:
        return
    if t.endswith("[]"):
        if isinstance(value, list):
            for i, v in enumerate(value):
                _check_value(t[:-2], v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        _check_object(t, value, where)


def _check_object(expected: str, body: dict, where: str) -> None:
    types = load()["types"]
    if expected not in types:
        return
    name = _resolve(expected, body, f" at '{where}'" if where else "")
    t = types[name]
    props, navs = t["p"], t.get("n", ())
    for key, value in body.items():
        if "@" in key:
            prop, _, annotation = key.partition("@")
            if not prop or annotation.startswith("odata.") and annotation != "odata.bind":
                continue  # instance annotations: @odata.type / @odata.id / @odata.etag ...
            if prop in props or prop in navs or t.get("o"):
                continue
            key = prop
        elif key in props:
            _check_value(props[key], value, f"{where}.{key}" if where else key)
            continue
        elif key in navs or t.get("o"):
            continue
        path = f"{where}.{key}" if where else key
        raise _bad(f"Invalid request body: the property '{key}' does not exist on type '{PREFIX}{name}'"
                   f"{'' if not where else f' (at {path!r})'}. Make sure to only use property names that are "
                   "defined by the type.")


def check_body(route: Route, body: Any) -> None:
    """A Graph 400 for a request body property or ``@odata.type`` the metadata does not know."""
    op = operation(route)
    if op is None or not isinstance(body, dict):
        return
    if "params" in op:  # an action: the body holds its parameters
        for key, value in body.items():
            if key not in op["params"]:
                raise _bad(f"Invalid request body: the parameter '{key}' is not a parameter of action "
                           f"'{route.pattern.rsplit('/', 1)[-1]}'.")
            _check_value(op["params"][key], value, key)
        return
    bt = op.get("body")
    if bt and not bt.startswith("#"):
        _check_object(bt, body, "")


def _invented_in(expected: str, value: Any, where: str, out: list) -> None:
    if not expected or value is None:
        return
    if expected.endswith("[]"):
        if isinstance(value, list):
            for v in value:
                _invented_in(expected[:-2], v, where + "[]", out)
        return
    if not isinstance(value, dict):
        return
    meta = load()
    types = meta["types"]
    if expected not in types:
        return
    try:
        name = _resolve(expected, value, "")
    except GraphError:
        out.append({"type": expected, "property": "@odata.type", "at": where or "(root)",
                    "value": str(value.get("@odata.type"))})
        return
    t = types[name]
    for key, v in value.items():
        if "@" in key:
            continue
        if key in t["p"]:
            _invented_in(t["p"][key], v, f"{where}.{key}" if where else key, out)
        elif key in t.get("n", ()) or t.get("o") or (name, key) in EXCEPTIONS:
            continue
        else:
            out.append({"type": name, "property": key, "at": f"{where}.{key}" if where else key})


def invented(route: Route, status: int, body: Any) -> list[dict]:
    """Response properties the metadata of the route's response type does not list."""
    op = operation(route)
    if op is None or not (200 <= status < 300) or not isinstance(body, dict):
        return []
    rt = op.get("response")
    if not rt:
        return []
    out: list[dict] = []
    if rt.endswith("[]"):
        if isinstance(body.get("value"), list):
            _invented_in(rt, body["value"], "value", out)
    else:
        _invented_in(rt, body, "", out)
    seen, unique = set(), []
    for f in out:
        k = (f["type"], f["property"], f["at"])
        if k not in seen:
            seen.add(k)
            unique.append(f)
    return unique
