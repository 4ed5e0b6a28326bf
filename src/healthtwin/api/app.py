"""The ASGI application: the FHIR API under /fhir, and room beside it for analytics, auth and pages."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route

from ..store import Store
from .context import Policy
from .routing import FHIRRouter
from .services import Limits, Services

log = logging.getLogger("healthtwin")


def create_app(store: Store, policy: Policy | None = None, limits: Limits | None = None,
               services: Services | None = None, data_dir: Path | None = None) -> Starlette:
    services = services or Services.build(store, policy, limits, data_dir)
    fhir_router = FHIRRouter(services, "/fhir")

    async def health(request):
        return JSONResponse({"status": "ok", "schema": services.store.schema_version()})

    async def root(request):
        return RedirectResponse("/fhir/metadata")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if services.jobs is not None:
            services.jobs.start()
        yield
        if services.jobs is not None:
            services.jobs.stop()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/", root),
        Route("/health", health),
        # The base URL itself (POST /fhir for batch/transaction, GET /fhir for system search) without the
        # redirect to /fhir/ that a Mount alone would answer.
        Route("/fhir", fhir_router, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        Mount("/fhir", app=fhir_router),
    ])
    app.state.services = services
    return app
