"""`POST /analytics/scenarios` and `GET /analytics/scenarios[/{id}]`: scenario runs as jobs with progress.

A POST, in whichever server process receives it, checks the inputs (a bad one is a 400 OperationOutcome naming
the field, and nothing is stored), records the run as queued in the analytics folder and answers 202 with its id
and `Content-Location`; the process that holds the analytics database runs the queue in one background thread
(queue.py; the runs are CPU-bound and the machine's cores are shared with the FHIR API). GET, in any process,
answers the run record: status (queued, running, completed, failed), progress, inputs, data, results and
Provenance.
Authorization and audit are those of /analytics: the caller is identified as by the FHIR API,
`services.policy.authorize(ctx, "analytics", None)` decides (analysts and administrators), and every
request, answered or refused, is in the audit chain with purpose of use PUBHLTH.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import duckdb
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...analytics.seam import PublicHealthSeam
from ...fhir.outcome import FHIRError
from ...request import Caller, RequestContext
from ..series import SeriesError, open_analytics, record_days
from .queue import Worker
from .records import RunStore, provenance
from .run import InputError, check

log = logging.getLogger("healthtwin.twin")
HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
MAX_BODY = 256 * 1024


class Scenarios:
    def __init__(self, services: Any, analytics_dir: Path, identify: Callable[[Request], Caller] | None = None,
                 base_path: str = "/analytics", owner: bool | None = None, poll: float = 2.0) -> None:
        """`owner`: whether this process runs the queue (default: it holds the analytics database's lock)."""
        self.services = services
        self.analytics_dir = Path(analytics_dir)
        self.identify = identify or (lambda request: Caller())
        self.base_path = base_path
        self.seam = PublicHealthSeam(services, self.identify, base_path, "scenario", (InputError, SeriesError))
        self.runs = RunStore(self.analytics_dir)
        if owner is None:
            from ...analytics.snapshot import try_own
            owner = try_own(self.analytics_dir)
        self.worker = Worker(self.runs, lambda: open_analytics(self.analytics_dir), poll) if owner else None
        self.routes = [Route(f"{base_path}/scenarios", self.create, methods=["POST"]),
                       Route(f"{base_path}/scenarios", self.listing, methods=["GET"]),
                       Route(f"{base_path}/scenarios/{{run_id}}", self.read, methods=["GET"])]

    def start(self) -> None:
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    # -- the seam shared with /analytics ---------------------------------------------------------------
    async def _guard(self, request: Request, fn: Callable[[RequestContext], Any]) -> Response:
        return await self.seam.answer(request, "analytics", fn)

    # -- routes ----------------------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        """Checks the inputs, records the run and queues it: 202 with the run's id."""
        async def run(ctx: RequestContext) -> Response:
            body = await request.body()
            if len(body) > MAX_BODY:
                raise FHIRError(413, f"A scenario's inputs are at most {MAX_BODY} bytes", "too-costly")
            try:
                raw = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError as exc:
                raise FHIRError(400, f"The body is not JSON: {exc}", "invalid") from None
            inputs = check(raw)
            await run_in_threadpool(self._has_data)
            caller = getattr(ctx.caller, "subject", None) or getattr(ctx.caller, "client_id", None)
            record = await run_in_threadpool(self.runs.new, inputs, caller, {})  # watermarks: when it runs
            if self.worker is not None:
                self.worker.wake()
            url = f"{ctx.base_url}/scenarios/{record['id']}"
            return _json({"id": record["id"], "status": record["status"], "url": url}, 202,
                         {"content-location": url, "location": url})
        return await self._guard(request, run)

    async def listing(self, request: Request) -> Response:
        """The scenario runs, newest first: id, status, progress, when, and the digest of their inputs."""
        async def run(ctx: RequestContext) -> Response:
            return _json({"runs": await run_in_threadpool(self.runs.list)})
        return await self._guard(request, run)

    async def read(self, request: Request) -> Response:
        """The run record: status and progress while it runs; inputs, data, results and Provenance after."""
        async def run(ctx: RequestContext) -> Response:
            run_id = request.path_params["run_id"]
            try:
                record = await run_in_threadpool(self.runs.load, run_id)
            except KeyError:
                raise FHIRError(404, f"No scenario run '{run_id}'", "not-found") from None
            if record["status"] in ("completed", "failed"):
                record["provenance"] = provenance(record)
            return _json(record)
        return await self._guard(request, run)

    def _has_data(self) -> None:
        """Refuses now, rather than failing in the queue, when there is nothing to run on (the owner's database
        or, in another process, its snapshot: both have the case counts)."""
        try:
            con = open_analytics(self.analytics_dir)
            try:
                days = record_days(con)
            finally:
                con.close()
        except duckdb.Error:
            raise SeriesError("the analytics tables are missing: run a refresh (healthtwin views materialize)") \
                from None
        if days is None:
            raise SeriesError("the record holds no diagnoses yet: load data and run a refresh "
                              "(POST /analytics/refresh)")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers={**HEADERS, **(headers or {})})


__all__ = ["Scenarios"]
