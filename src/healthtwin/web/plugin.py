"""What the web pages add to the HTTP application (api/plugins.py): everything under /app, and a link on the
landing page. The pages' SMART client is registered at start for the server's public URL."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from ..api.plugins import Contribution
from . import citizen, clinician, ministry, scenarios, signin, twin_pages

STATIC = Path(__file__).parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}


async def static(request: Request) -> Response:
    """The pages' own stylesheet and script (no asset comes from anywhere else)."""
    name = request.path_params["name"]
    path = (STATIC / name).resolve()
    if path.parent != STATIC.resolve() or path.suffix not in TYPES or not path.is_file():
        return Response("not found", 404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix],
                    headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"})


def contribution(services: Any, public_url: str | None = None) -> Contribution:
    if public_url is None or getattr(services, "oauth_uris", None) is None:
        return Contribution("web")  # no token service (an open test server): no sign-in, so no pages
    client = signin.WebClient(services.store, public_url)
    from ..api.landing import LINKS
    link = ("/app/", "Health Twin pages", "the citizen portal, the clinician view and the ministry dashboard "
            "(sign in in Azerbaijani, Russian or English)")
    if link not in LINKS:
        LINKS.insert(0, link)
    external = getattr(services, "external_login", None)  # an external OpenID provider, if one is configured
    routes = [Route("/static/{name}", static), *signin.routes(client, external), *citizen.routes(),
              *clinician.routes(), *ministry.routes(), *scenarios.routes(), *twin_pages.routes()]
    return Contribution("web", routes=[Mount("/app", routes=routes)], start=client.ensure)
