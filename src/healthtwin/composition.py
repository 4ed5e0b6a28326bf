"""The composition root: the one place that knows every package and puts the application together.

Everything below it (fhir, store, request, security, api, analytics...) is imported from here and never
imports this module. `build_app(store, AppSettings(...))` builds the services, the policy in force, the audit
trail, the token service and the rate limiter, asks each package for its contribution (api/plugins.py) and
hands them to `api.app.assemble`. `healthtwin.asgi` (what uvicorn serves), the CLI, the demo and the tests'
fixtures all build the application through it.

Secure by default: without an explicit `policy`, the SMART policy is in force (anonymous callers get 401
except for /metadata and discovery). Tests and `serve --insecure-open` pass `OpenPolicy()` explicitly.
Every FHIR request is audited (services.audit) before its response is released.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api.app import FHIRFastPath, assemble
from .api.plugins import Contribution
from .api.routing import FHIRRouter
from .api.services import Limits, Services
from .config import DEFAULT_PUBLIC_URL
from .request import Policy
from .store import Store

RATE_DIR = "ratelimit"  # the data folder's subfolder of rate-limit buckets that the server's workers share


@dataclass
class AppSettings:
    """What the application is built with, as plain values (the objects it runs on are build_app's arguments).

    `rate` = (requests per second, burst) per client, None for no limit; `data_dir` holds the keys (a token
    service is built from them unless one is handed in), the rate-limit buckets and the audit feed's state;
    `analytics_dir` mounts /analytics (indicators over the DuckDB tables materialised there), refreshed every
    `analytics_refresh_minutes` if given; `audit_feed` (tcp://host:port or tls://host:port, with
    `audit_feed_ca` for TLS) forwards the audit trail as syslog (security/audit_feed.py)."""

    data_dir: Path | None = None
    public_url: str | None = None
    rate: tuple[float, float] | None = (50.0, 200.0)
    audit: bool = True
    limits: Limits | None = None
    analytics_dir: Path | None = None
    analytics_refresh_minutes: float | None = None
    analytics_snapshots: bool = True
    audit_feed: str | None = None
    audit_feed_ca: str | None = None
    externals: list = field(default_factory=list)  # security.tokens.ExternalIssuer: other OpenID providers
    # security.oidc_login.OidcSettings: the provider citizens may sign in to the pages through (HEALTHTWIN_OIDC_*)
    oidc_login: Any = None
    # A second active Patient with a FIN already held: "refuse" (409), "existing" (a create answers with the
    # holder) or "link" (stored with Patient.link seealso): mpi/fin.py. HEALTHTWIN_MPI_ON_DUPLICATE.
    mpi_on_duplicate: str = "refuse"
    # A create that matches a stored citizen by name and birth (mpi/plugin.py): "off", "review", "existing" or
    # "refuse". HEALTHTWIN_MPI_ON_MATCH.
    mpi_on_match: str = "off"
    # the scheduled jobs (jobs/): run once a minute in the process that holds the analytics database, when
    # there is one; off (HEALTHTWIN_JOBS=off) when a timer calls `healthtwin jobs run-due` instead
    scheduled_jobs: bool = True
    database: str | None = None  # the store's URL, for jobs that open it in worker processes (None: SQLite)

    @classmethod
    def from_env(cls) -> "AppSettings":
        """The settings of a served process: config.Settings plus HEALTHTWIN_RATE_LIMIT, _ANALYTICS_REFRESH_MINUTES,
        _WORKERS, _AUDIT_FEED(_CA) and the external OpenID provider (HEALTHTWIN_OIDC_*)."""
        from .config import Settings
        base = Settings.from_env()
        refresh = os.environ.get("HEALTHTWIN_ANALYTICS_REFRESH_MINUTES")
        rate_text = os.environ.get("HEALTHTWIN_RATE_LIMIT", "50,200")
        rate = None if rate_text == "off" else tuple(float(x) for x in rate_text.split(","))
        return cls(data_dir=base.data_dir, public_url=base.public_url, rate=rate, analytics_dir=base.data_dir,
                   analytics_refresh_minutes=float(refresh) if refresh else None,
                   analytics_snapshots=int(os.environ.get("HEALTHTWIN_WORKERS") or 1) > 1,
                   audit_feed=os.environ.get("HEALTHTWIN_AUDIT_FEED") or None,
                   audit_feed_ca=os.environ.get("HEALTHTWIN_AUDIT_FEED_CA") or None,
                   externals=_externals_from_env(), oidc_login=_oidc_login_from_env(),
                   mpi_on_duplicate=os.environ.get("HEALTHTWIN_MPI_ON_DUPLICATE", "refuse"),
                   mpi_on_match=os.environ.get("HEALTHTWIN_MPI_ON_MATCH", "off"),
                   scheduled_jobs=os.environ.get("HEALTHTWIN_JOBS", "on") != "off", database=base.database)


def _externals_from_env() -> list:
    """An external OpenID Connect provider from HEALTHTWIN_OIDC_ISSUER and HEALTHTWIN_OIDC_JWKS (an https
    JWKS URL, fetched and cached, or a path to a JWKS file); HEALTHTWIN_OIDC_AUDIENCE optionally."""
    issuer, jwks = os.environ.get("HEALTHTWIN_OIDC_ISSUER"), os.environ.get("HEALTHTWIN_OIDC_JWKS")
    if not issuer or not jwks:
        return []
    import orjson

    from .security.tokens import ExternalIssuer, JWKSFetcher
    if jwks.startswith("https://"):
        fetcher = JWKSFetcher(jwks)
        fetcher.prime()
        source = fetcher
    else:
        with open(jwks, "rb") as fp:
            source = orjson.loads(fp.read())
    return [ExternalIssuer(issuer, source, audience=os.environ.get("HEALTHTWIN_OIDC_AUDIENCE") or None)]


def _oidc_login_from_env() -> Any:
    from .security.oidc_login import OidcSettings
    return OidcSettings.from_env()


def build_app(store: Store, settings: AppSettings | None = None, *, policy: Policy | None = None,
              services: Services | None = None, tokens: Any = None) -> FHIRFastPath:
    """`tokens` a TokenService (else one is built from the keys in `settings.data_dir`); `services` ready-made
    Services (else built here, with the SMART policy unless `policy` is given)."""
    from .security.audit import AuditLog
    from .security.ratelimit import RateLimiter
    settings = settings or AppSettings()
    data_dir = settings.data_dir
    if services is None:
        services = Services.build(store, policy, settings.limits, data_dir)
        if policy is None:
            from .security.policy import SmartPolicy
            services.policy = SmartPolicy(store, services.registry, services.parser)
    if services.loader is None:
        from .loading import Loader
        services.loader = Loader
    if settings.audit and services.audit is None:
        # HEALTHTWIN_AUDIT_FSYNC=0 trades power-loss durability of the newest audit entries for throughput on
        # SQLite (WAL without fsync still survives a process crash); PostgreSQL's commit is always durable.
        services.audit = AuditLog(services.store, durable=os.environ.get("HEALTHTWIN_AUDIT_FSYNC", "1") != "0")
        services.audit.ensure_schema()
    public_url = (settings.public_url or DEFAULT_PUBLIC_URL).rstrip("/")
    if tokens is None and data_dir is not None:
        from .security.keys import load_or_create
        from .security.tokens import TokenService
        tokens = TokenService(load_or_create(data_dir), public_url, public_url + "/fhir",
                              externals=list(settings.externals or []))
    # Rate-limit buckets in the data folder, shared by the server's workers (security/ratelimit.py says why)
    rate_dir = Path(data_dir) / RATE_DIR if data_dir is not None else None
    contributions = [_security(services, settings, tokens, public_url, rate_dir)]
    limiter = (RateLimiter(*settings.rate, path=rate_dir / "api.buckets" if rate_dir else None)
               if settings.rate else None)
    fhir_router = FHIRRouter(services, "/fhir", identify=tokens.identify if tokens is not None else None,
                             limiter=limiter)
    from .analytics.plugin import contribution as analytics
    contributions.append(analytics(services, settings.analytics_dir, refresh_minutes=settings.analytics_refresh_minutes,
                                   identify=fhir_router.identify, snapshots=settings.analytics_snapshots))
    from .mpi.plugin import contribution as mpi
    from .registries.plugin import contributions as registries
    from .twin.plugin import contributions as twin
    from .web.plugin import contribution as web
    contributions.append(mpi(services, on_duplicate=settings.mpi_on_duplicate, on_match=settings.mpi_on_match))
    contributions += registries(services, identify=fhir_router.identify)
    # the twin's routes (/analytics/scenarios...) go before the /analytics mount, which would match them first
    contributions[1:1] = twin(services, settings.analytics_dir, identify=fhir_router.identify)
    contributions.append(web(services, public_url))
    if settings.scheduled_jobs:
        from .jobs.server import contribution as jobs
        scheduled = jobs(services, data_dir, settings.analytics_dir, settings.database)
        if scheduled is not None:
            contributions.append(scheduled)
    return assemble(services, fhir_router, contributions, tokens=tokens)


def _security(services: Services, settings: AppSettings, tokens: Any, public_url: str,
              rate_dir: Path | None) -> Contribution:
    """The SMART endpoints (/auth, /.well-known) and the audit feed. security/ sits below api/, so its
    contribution is put together here rather than by security/ itself."""
    routes: list = []
    if tokens is not None:
        from .security.launch import launch_routes
        from .security.refresh import session_routes
        from .security.revocation import revocation_routes
        from .security.smart import SmartConfig, smart_routes
        smart = SmartConfig(services.store, tokens, public_url, audit=services.audit)
        if rate_dir is not None:
            smart.share_limits(rate_dir)
        routes += smart_routes(smart) + revocation_routes(smart) + session_routes(smart) + launch_routes(smart)
        services.oauth_uris = {name: public_url + "/auth/" + name
                               for name in ("authorize", "token", "revoke", "introspect")}
        if settings.oidc_login is not None:
            services.external_login = settings.oidc_login.login(smart)
            services.external_login.ensure_schema()
    feed = None
    if settings.audit_feed and services.audit is not None:
        from .security.audit_feed import AuditFeed
        feed = AuditFeed(services.store, settings.audit_feed, settings.data_dir or Path("."),
                         ca_file=settings.audit_feed_ca)
    return Contribution("security", routes=routes, start=feed.start if feed else None,
                        stop=feed.stop if feed else None)


def create_app(store: Store, policy: Policy | None = None, limits: Limits | None = None,
               services: Services | None = None, data_dir: Path | None = None, *,
               public_url: str | None = None, tokens: Any = None, externals: list | None = None,
               rate: tuple[float, float] | None = (50.0, 200.0), audit: bool = True,
               analytics_dir: Path | None = None, analytics_refresh_minutes: float | None = None,
               analytics_snapshots: bool = True, audit_feed: str | None = None,
               audit_feed_ca: str | None = None) -> FHIRFastPath:
    """The former keyword form of build_app, kept for the tests and benchmarks that use it (without the
    scheduled jobs: a test's application does not start the nightly work)."""
    return build_app(store, AppSettings(data_dir=data_dir, public_url=public_url, rate=rate, audit=audit,
                                        limits=limits, analytics_dir=analytics_dir,
                                        analytics_refresh_minutes=analytics_refresh_minutes,
                                        analytics_snapshots=analytics_snapshots, audit_feed=audit_feed,
                                        audit_feed_ca=audit_feed_ca, externals=list(externals or []),
                                        scheduled_jobs=False),
                     policy=policy, services=services, tokens=tokens)
