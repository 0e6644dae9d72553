"""FrontDoor (bot/server.py): a POST to a busy route goes straight to its handler, past
Starlette's router and middleware; everything else (another method, a path of more segments, an
empty name) is Starlette's, with its error handlers; what escapes a busy handler is answered by
``on_error`` (logged, never a traceback). Served by uvicorn, over real HTTP."""
from __future__ import annotations

import requests
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from integration.frontends.bot.server import FrontDoor
from integration.frontends.service.server import ServiceServer


def test_busy_routes_skip_the_router_and_the_rest_is_starlettes():
    seen = []

    async def hot(request):
        name = request.path_params["name"]
        seen.append(("hot", name, await request.body()))
        if name == "boom":
            raise RuntimeError("secret detail")
        return JSONResponse({"name": name})

    async def routed(request):
        seen.append(("routed", request.path_params.get("name")))
        return JSONResponse({"routed": True})

    async def not_found(request, exc):
        return JSONResponse({"error": "not found"}, status_code=getattr(exc, "status_code", 404))

    async def on_error(request, exc):
        return JSONResponse({"error": "internal"}, status_code=500)

    app = Starlette(routes=[Route("/v1/commands/{name}", routed, methods=["POST"]),
                            Route("/v1/commands", routed, methods=["GET"])],
                    exception_handlers={404: not_found, 405: not_found})
    with ServiceServer(FrontDoor(app, {}, {"/v1/commands/": ("name", hot)}, on_error=on_error)) as server:
        s = requests.Session()
        s.trust_env = False
        r = s.post(f"{server.url}/v1/commands/team-list", data=b'{"a":1}')
        assert r.status_code == 200 and r.json() == {"name": "team-list"}
        assert seen[-1] == ("hot", "team-list", b'{"a":1}')
        r = s.post(f"{server.url}/v1/commands/boom")
        assert r.status_code == 500 and r.json() == {"error": "internal"} and "secret" not in r.text
        assert s.get(f"{server.url}/v1/commands").json() == {"routed": True}  # another method: routed
        assert s.get(f"{server.url}/v1/commands/team-list").status_code == 405  # Starlette's answer
        assert s.post(f"{server.url}/v1/commands/a/b").status_code == 404  # more segments: no route
        assert s.post(f"{server.url}/v1/commands/").json() == {"error": "not found"}  # no name: Starlette's
        assert [x[0] for x in seen].count("routed") == 1
