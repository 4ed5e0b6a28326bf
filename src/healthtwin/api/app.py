"""The ASGI application's frame: the FHIR API under /fhir, /openapi.json, /health, and what each package
contributes (api/plugins.py: SMART endpoints under /auth, /analytics...).

What goes into it (policy, tokens, audit, contributions) is decided by the composition root,
healthtwin/composition.py, which is also where `create_app` and `build_app` live.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ..fhir.model import resource_types
from .landing import landing
from .plugins import Contribution, register_operations
from .routing import FHIRRouter
from .services import Limits, Services

log = logging.getLogger("healthtwin")


def assemble(services: Services, fhir_router: FHIRRouter, contributions: list[Contribution] = (),
             tokens: Any = None) -> "FHIRFastPath":
    """The ASGI application around `fhir_router`, with every package's contribution (api/plugins.py) mounted,
    its operations registered and its start/stop hooks run by the lifespan. Built by healthtwin/composition.py,
    which decides what is composed; this function only assembles."""
    contributions = list(contributions)
    register_operations(contributions)
    services.write_rules = [rule for c in contributions for rule in c.write_rules]
    routes: list = [route for c in contributions for route in c.routes]

    async def openapi(request):
        from .openapi import openapi_document
        types = request.query_params.get("types")
        wanted = [t for t in types.split(",") if t in resource_types()] if types else None
        return JSONResponse(openapi_document(services.registry, wanted, routes))

    async def health(request):
        return JSONResponse({"status": "ok", "schema": services.store.schema_version()})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if services.jobs is not None:
            services.jobs.start()
        for c in contributions:
            if c.start is not None:
                c.start()
        yield
        for c in reversed(contributions):
            if c.stop is not None:
                c.stop()
        if services.jobs is not None:
            services.jobs.stop()
        aclose = getattr(services.store, "aclose", None)
        if aclose is not None:  # the event-loop connection pool must close in the loop that opened it
            await aclose()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/", landing),
        Route("/health", health),
        Route("/openapi.json", openapi),
        *routes,  # /.well-known/smart-configuration, /fhir/.well-known/..., /auth/*, /analytics: before /fhir
        # The base URL itself (POST /fhir for batch/transaction, GET /fhir for system search) without the
        # redirect to /fhir/ that a Mount alone would answer.
        Route("/fhir", fhir_router, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        Mount("/fhir", app=fhir_router),
    ])
    app.state.services = services
    app.state.tokens = tokens
    return FHIRFastPath(app, fhir_router)


class FHIRFastPath:
    """The application, with FHIR requests handed straight to the FHIR router.

    Starlette's route list and its two middleware layers cost a few percent of a read by id, the most frequent
    request; the FHIR router catches every error itself (answering with an OperationOutcome), so nothing is
    lost by skipping them for /fhir. Everything else (lifespan, /health, /auth, /analytics, the
    /fhir/.well-known documents) goes through the Starlette app, whose attributes this object passes on."""

    def __init__(self, app: Starlette, fhir_router: FHIRRouter) -> None:
        self.app, self.fhir = app, fhir_router
        self.prefix = fhir_router.base_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if ((path == self.prefix or path.startswith(self.prefix + "/"))
                    and not path.startswith(self.prefix + "/.well-known/")):
                scope["app"] = self.app  # as Starlette sets it, for request.app
                await self.fhir(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def __getattr__(self, name: str):
        return getattr(self.app, name)
