"""The ASGI application: the FHIR API under /fhir, SMART endpoints under /auth, and /health.

Secure by default: without an explicit `policy`, the SMART policy is in force (anonymous callers get 401
except for /metadata and discovery). Tests and `serve --insecure-open` pass `OpenPolicy()` explicitly.
Every FHIR request is audited (services.audit) before its response is released.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route

from ..config import DEFAULT_PUBLIC_URL
from ..fhir.model import resource_types
from ..store import Store
from ..request import Policy
from .routing import FHIRRouter
from .services import Limits, Services

log = logging.getLogger("healthtwin")
RATE_DIR = "ratelimit"  # the data folder's subfolder of rate-limit buckets that the server's workers share


def create_app(store: Store, policy: Policy | None = None, limits: Limits | None = None,
               services: Services | None = None, data_dir: Path | None = None, *,
               public_url: str | None = None, tokens: Any = None, externals: list | None = None,
               rate: tuple[float, float] | None = (50.0, 200.0), audit: bool = True,
               analytics_dir: Path | None = None, analytics_refresh_minutes: float | None = None,
               analytics_snapshots: bool = True, audit_feed: str | None = None,
               audit_feed_ca: str | None = None) -> "FHIRFastPath":
    """`rate` = (requests per second, burst) per client, None for no limit; `tokens` a TokenService (else one
    is built from the keys in `data_dir`); `analytics_dir` mounts /analytics (indicators over the DuckDB
    tables materialised there), refreshed every `analytics_refresh_minutes` if given; `audit_feed`
    (tcp://host:port or tls://host:port, with `audit_feed_ca` for TLS) forwards the audit trail as syslog
    (security/audit_feed.py)."""
    from ..security.audit import AuditLog
    from ..security.ratelimit import RateLimiter
    if services is None:
        services = Services.build(store, policy, limits, data_dir)
        if policy is None:
            from ..security.policy import SmartPolicy
            services.policy = SmartPolicy(store, services.registry, services.parser)
    if audit and services.audit is None:
        # HEALTHTWIN_AUDIT_FSYNC=0 trades power-loss durability of the newest audit entries for throughput on
        # SQLite (WAL without fsync still survives a process crash); PostgreSQL's commit is always durable.
        services.audit = AuditLog(services.store, durable=os.environ.get("HEALTHTWIN_AUDIT_FSYNC", "1") != "0")
        services.audit.ensure_schema()
    feed = None
    if audit_feed and services.audit is not None:
        from ..security.audit_feed import AuditFeed
        feed = AuditFeed(services.store, audit_feed, data_dir or Path("."), ca_file=audit_feed_ca)
    public_url = (public_url or DEFAULT_PUBLIC_URL).rstrip("/")
    routes: list = []
    if tokens is None and data_dir is not None:
        from ..security.keys import load_or_create
        from ..security.tokens import TokenService
        tokens = TokenService(load_or_create(data_dir), public_url, public_url + "/fhir",
                              externals=list(externals or []))
    # Rate-limit buckets in the data folder, shared by the server's workers (security/ratelimit.py says why)
    rate_dir = Path(data_dir) / RATE_DIR if data_dir is not None else None
    if tokens is not None:
        from ..security.smart import SmartConfig, smart_routes
        smart = SmartConfig(services.store, tokens, public_url, audit=services.audit)
        if rate_dir is not None:
            smart.share_limits(rate_dir)
        from ..security.refresh import session_routes
        from ..security.launch import launch_routes
        from ..security.revocation import revocation_routes
        routes += smart_routes(smart) + revocation_routes(smart) + session_routes(smart) + launch_routes(smart)
        services.oauth_uris = {name: public_url + "/auth/" + name
                               for name in ("authorize", "token", "revoke", "introspect")}
    limiter = RateLimiter(*rate, path=rate_dir / "api.buckets" if rate_dir else None) if rate else None
    fhir_router = FHIRRouter(services, "/fhir", identify=tokens.identify if tokens is not None else None,
                             limiter=limiter)

    analytics = None
    if analytics_dir is not None:
        from ..analytics.web import Analytics
        analytics = Analytics(services, analytics_dir, refresh_minutes=analytics_refresh_minutes,
                              identify=fhir_router.identify, snapshots=analytics_snapshots)
        routes.append(Mount("/analytics", app=analytics.app))

    async def openapi(request):
        from .openapi import openapi_document
        types = request.query_params.get("types")
        wanted = [t for t in types.split(",") if t in resource_types()] if types else None
        return JSONResponse(openapi_document(services.registry, wanted))

    async def health(request):
        return JSONResponse({"status": "ok", "schema": services.store.schema_version()})

    async def root(request):
        return RedirectResponse("/fhir/metadata")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if services.jobs is not None:
            services.jobs.start()
        if analytics is not None:
            analytics.start()
        if feed is not None:
            feed.start()
        yield
        if feed is not None:
            feed.stop()
        if analytics is not None:
            analytics.stop()
        if services.jobs is not None:
            services.jobs.stop()
        aclose = getattr(services.store, "aclose", None)
        if aclose is not None:  # the event-loop connection pool must close in the loop that opened it
            await aclose()

    app = Starlette(lifespan=lifespan, routes=[
        Route("/", root),
        Route("/health", health),
        Route("/openapi.json", openapi),
        *routes,  # /.well-known/smart-configuration, /fhir/.well-known/..., /auth/*: before the /fhir Mount
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
