"""`GET /`: a small HTML page saying what this server is and where to go (the FHIR API, its descriptions, the
analytics, the documentation), instead of a redirect to the CapabilityStatement.

The page is static: no script, one inline stylesheet allowed by its hash, nothing loaded from elsewhere, and
a Content-Security-Policy that says so (a page that a browser opens on a health server must not become a
place to run someone else's code). Web pages added later register a link with `LINKS`.
"""
from __future__ import annotations

import base64
import hashlib
import html

from starlette.requests import Request
from starlette.responses import Response

from .. import FHIR_VERSION, __version__

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.5;"
          "color:#1b1b1b}h1{font-size:1.6rem;margin-bottom:.2rem}p.lead{margin-top:0;color:#555}"
          "dt{font-weight:600;margin-top:.6rem}dd{margin-left:1rem}code{background:#f3f3f3;padding:0 .2rem}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}

# (path, title, what it is): the sections of the server a visitor may want. Packages that add web pages
# append theirs (relative paths, on this server).
LINKS: list[tuple[str, str, str]] = [
    ("/fhir/metadata", "FHIR API", f"the FHIR R4 ({FHIR_VERSION}) REST API at /fhir; this is its CapabilityStatement "
                                   "(what it supports). Every other request needs a SMART on FHIR access token"),
    ("/openapi.json", "OpenAPI description", "the API for tools that read OpenAPI (code generators, API explorers)"),
    ("/.well-known/smart-configuration", "SMART configuration", "how clients get access tokens"),
    ("/analytics/indicators", "Analytics", "the national indicators (analyst role)"),
    ("/health", "Health check", "whether the server and its store answer"),
]


def page(links: list[tuple[str, str, str]] | None = None) -> str:
    items = "".join(f'<dt><a href="{html.escape(path)}">{html.escape(title)}</a></dt><dd>{html.escape(text)}</dd>'
                    for path, title, text in (LINKS if links is None else links))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Health Twin</title><style>{_STYLE}</style></head><body>"
            "<h1>Health Twin</h1>"
            f"<p class=\"lead\">A national health record and digital twin on HL7 FHIR R4 (version {__version__}).</p>"
            "<p>This server keeps citizens' health records (a Shared Health Record), protects them with SMART on "
            "FHIR authorization, consent and an audit trail every citizen can read, and computes public-health "
            "indicators from them.</p>"
            f"<dl>{items}</dl>"
            "<p>Documentation: the <code>docs/</code> folder of the source code (architecture, security, storage, "
            "operations); <code>healthtwin --help</code> on the server.</p>"
            "</body></html>")


async def landing(request: Request) -> Response:
    return Response(page(), media_type="text/html; charset=utf-8", headers=HEADERS)
