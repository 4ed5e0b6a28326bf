"""HTTP routes for the national indicators, mounted beside the FHIR API (the lead mounts them at /analytics).

* `GET /analytics/indicators`: the catalogue (name, version, title, definition, dimensions);
* `GET /analytics/indicators/{name}?region=…&district=…&age=…&sex=…&period=…&by=…&format=json|csv`:
  figures with numerator, denominator, value and period; cells under the threshold are suppressed
  (`numerator`/`value` null, `suppressed: true`);
* `GET /analytics/status`: what was materialized and when; `POST /analytics/refresh` runs a refresh now.

With several server processes, one owns the DuckDB file and the others answer from the snapshot it
publishes after each refresh (see `snapshot.py`).

Every route builds the same RequestContext as the FHIR API and asks `services.policy.authorize(ctx,
"analytics", None)` first, so roles can be enforced when the trust layer lands without touching this module.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..request import Caller, RequestContext
from ..fhir.outcome import FHIRError
from .indicators import DEFAULT_THRESHOLD, IndicatorError, compute, indicator_views, load_indicators, to_csv
from .materialize import Materializer, StoreSource
from .refresh import Scheduler, refresh_all
from .seam import PublicHealthSeam
from .snapshot import SnapshotReader, owner_pid, publish, try_own

log = logging.getLogger("healthtwin.analytics")
HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


class Analytics:
    """The analytics side of a server: its materializer, optional refresh schedule and Starlette app.

    `refresh_minutes=None` (the default, and what tests use) starts no background thread; the
    application calls `start()`/`stop()` from its lifespan (analytics/plugin.py), as it does for `services.jobs`.
    """

    def __init__(self, services: Any, data_dir: str | Path, refresh_minutes: float | None = None,
                 threshold: int = DEFAULT_THRESHOLD, identify: Callable[[Request], Caller] | None = None,
                 materializer: Materializer | None = None, base_path: str = "/analytics",
                 owner: bool | None = None, snapshots: bool = True) -> None:
        """`owner`: whether this process holds the DuckDB file (default: it does if it takes the folder's
        analytics lock first; the other processes of a multi-worker server follow its snapshots).
        `snapshots`: whether the owner publishes them (a single-process server has no one to read them, and a
        snapshot of a million resources' indicator tables takes about a second to write)."""
        self.services = services
        self.threshold = threshold
        self.identify = identify or (lambda request: Caller())
        self.base_path = base_path.rstrip("/")
        self.seam = PublicHealthSeam(services, self.identify, self.base_path, "analytics", (IndicatorError,))
        self.data_dir = Path(data_dir)
        self.snapshots = snapshots
        self.owner = True if materializer is not None else try_own(self.data_dir) if owner is None else owner
        self.materializer: Materializer | None = None
        self.reader: SnapshotReader | None = None
        self.scheduler: Scheduler | None = None
        if self.owner:
            self.materializer = materializer or Materializer(StoreSource(services.store), data_dir, indicator_views())
            if refresh_minutes:
                self.scheduler = Scheduler(self.materializer, refresh_minutes, after=self.publish)
        else:
            self.reader = SnapshotReader(self.data_dir)
        self.app = Starlette(routes=[
            Route("/indicators", self.list_indicators, methods=["GET"]),
            Route("/indicators/{name}", self.indicator, methods=["GET"]),
            Route("/status", self.status, methods=["GET"]),
            Route("/refresh", self.refresh, methods=["POST"]),
        ])

    def start(self) -> None:
        if self.materializer is not None:
            self.publish()  # what was materialized before this start, for the other workers
        if self.scheduler is not None:
            self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.materializer is not None:
            self.materializer.close()
        if self.reader is not None:
            self.reader.close()

    def publish(self) -> None:
        """The owner's indicator tables, as a snapshot the other worker processes answer from."""
        mat = self.materializer
        if mat is None or not self.snapshots:
            return
        try:
            with mat.lock:  # not half-way through a refresh
                publish(mat.con, self.data_dir)
        except Exception:  # the owner still answers; the others keep the previous snapshot
            log.exception("publishing the analytics snapshot failed")

    def _con(self) -> Any:
        if self.materializer is not None:
            return self.materializer.con
        con = self.reader.connection() if self.reader is not None else None
        if con is None:
            raise IndicatorError("the indicators have not been computed yet: run a refresh "
                                 "(healthtwin views materialize)")
        return con

    # -- the seam shared with the FHIR API -------------------------------------------------------------------
    async def _guard(self, request: Request, fn: Callable[[RequestContext], Any]) -> Response:
        return await self.seam.answer(request, "analytics", fn)

    # -- routes ----------------------------------------------------------------------------------------------
    async def list_indicators(self, request: Request) -> Response:
        """The indicator catalogue: name, version, title, definition and dimensions of each indicator."""
        async def run(ctx: RequestContext) -> Response:
            items = [dict(i.summary(), url=f"{ctx.base_url}/indicators/{i.name}") for i in load_indicators().values()]
            return _json({"threshold": self.threshold, "indicators": items})
        return await self._guard(request, run)

    async def indicator(self, request: Request) -> Response:
        """One indicator's figures: numerator, denominator and value per period and chosen dimensions.

        Cells under the small-number threshold are suppressed (`numerator` and `value` null,
        `suppressed: true`); `format=csv` answers a CSV file."""
        async def run(ctx: RequestContext) -> Response:
            name = request.path_params["name"]
            ind = load_indicators().get(name)
            if ind is None:
                raise FHIRError(404, f"No indicator '{name}'; see {ctx.base_url}/indicators", "not-found")
            params = dict(request.query_params)
            fmt = params.get("format", "json")
            if fmt not in ("json", "csv"):
                raise FHIRError(400, f"format '{fmt}' is not supported: use json or csv", "not-supported", "format")
            result = await run_in_threadpool(compute, self._con(), ind, params, self.threshold)
            if fmt == "csv":
                return Response(to_csv(result), media_type="text/csv; charset=utf-8", headers=dict(
                    HEADERS, **{"content-disposition": f'attachment; filename="{name}.csv"'}))
            return _json(result)
        return await self._guard(request, run)

    async def status(self, request: Request) -> Response:
        """What was materialised and when: each view's watermark and rows, the refresh schedule, the last error."""
        async def run(ctx: RequestContext) -> Response:
            source = self.materializer or self.reader
            state = await run_in_threadpool(source.state)  # type: ignore[union-attr]
            views = [{"name": n, "watermark": s[1], "rows": s[2], "refreshed_at": s[3]} for n, s in sorted(state.items())]
            sched = self.scheduler
            return _json({"views": views, "schedule_minutes": sched.interval / 60 if sched else None,
                          "last_error": sched.last_error if sched else None,
                          "served_from": "database" if self.owner else "snapshot",
                          "owner_process": owner_pid(self.data_dir)})
        return await self._guard(request, run)

    async def refresh(self, request: Request) -> Response:
        """Run an analytics refresh now (incremental; `full=true` rebuilds), then publish the snapshot."""
        async def run(ctx: RequestContext) -> Response:
            full = request.query_params.get("full") == "true"
            if self.materializer is None:
                raise FHIRError(409, "This server process answers indicators from a snapshot; the refresh runs in "
                                f"process {owner_pid(self.data_dir)}, which holds the analytics database. Retry "
                                "(another request may reach it), or let its schedule refresh "
                                "(HEALTHTWIN_ANALYTICS_REFRESH_MINUTES).", "conflict")
            report = await run_in_threadpool(refresh_all, self.materializer, full)
            await run_in_threadpool(self.publish)
            return _json({"seconds": round(report.seconds, 3),
                          "views": [vars(v) for v in report.views],
                          "indicators": report.extra.get("indicators", {})},
                         status=500 if report.failed else 200)
        return await self._guard(request, run)

    # The query parameters of each route, for the OpenAPI description (api/openapi.py).
    indicator.query_parameters = (  # type: ignore[attr-defined]
        ("region", "region code(s), comma-separated"), ("district", "district code(s), comma-separated"),
        ("age", "age band, e.g. 40-64"), ("sex", "administrative gender code"),
        ("period", "a year (2023) or a range of years (2020-2023); for daily indicators also a day (2024-01-15), an "
                   "ISO week (2024-W03), a month (2024-01) or a range A/B"),
        ("interval", "daily indicators: day, week, month or year buckets"),
        ("by", "dimensions to break the figures down by"),
        ("format", "json (default) or csv"))
    refresh.query_parameters = (("full", "true to rebuild everything"),)  # type: ignore[attr-defined]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=HEADERS)
