"""`GET /analytics/forecasts?syndrome=ili&level=region[&region=…]`: the next weeks of the twin's weekly series
with bands, from the same ensemble that is scored on FluSight (ensemble.py, twin_series.py).

Answered from the fits stored beside the analytics database (stored.py: one per group and level, with the
digest of the series it was fitted on): a request reads the series (one query) and answers the stored fit
when the digests agree, else fits, stores and answers. A fit takes seconds per series (half a minute for one
syndrome's regions on a busy 2-core machine), so a server warms the groups its pages show (`WARM`) in a
background thread at start and again whenever the watermark changes (polled once a minute), and the nightly
`healthtwin forecast warm` stores every other group and level: visitors read fits made before they came.
A request for a group not yet fitted fits it then; one fit per group and level at a time, others go on.
Horizon 0 is the week after the last whole week of the record (the current, incomplete week), as in FluSight.
What leaves is consistent with twin/surveillance/suppression.py: observed weekly counts of 1-4 are shown as
"<5"; the quantiles are model estimates (like an alert's expected values), rounded to one decimal.
Authorization and audit are those of /analytics: `services.policy.authorize(ctx, "analytics", None)` (analysts
and administrators), and every request, answered or refused, is in the audit chain with purpose PUBHLTH.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
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
from ..series import SeriesError, open_analytics, residents, syndromes, weekly_counts
from . import ensemble, stored
from .stored import SHOWN_LEVELS

log = logging.getLogger("healthtwin.twin")
HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
PARAMS = {"syndrome", "level", "region", "weeks"}
LEVELS = ("national", "region", "district")
HISTORY = 12  # observed weeks shown beside the forecast (the default of `weeks`)
METHOD = ("quantile-averaging ensemble (" + ", ".join(f"{name} {w}" for name, w in ensemble.WEIGHTS.items())
          + f"; spread widened {ensemble.SPREAD} on the log scale); series shorter than "
          f"{ensemble.MIN_WEEKS} weeks get the FluSight flat baseline")
CACHE_SIZE = 32
# What the ministry's forecasts page offers (web/twin_pages.py): each syndromic group by region and, for a
# region's drill-down, by district.
WARM = tuple((syndrome, level) for syndrome in ("ili", "ari", "pneumonia", "gastroenteritis", "measles")
             for level in ("region", "district"))
WARM_POLL_SECONDS = 60.0


class Forecasts:
    def __init__(self, services: Any, analytics_dir: Path, identify: Callable[[Request], Caller] | None = None,
                 base_path: str = "/analytics", warm: Iterable[tuple[str, str]] = (),
                 poll_seconds: float = WARM_POLL_SECONDS) -> None:
        """`warm`: (syndrome, level) pairs fitted ahead of any request by `start()`'s thread."""
        self.services = services
        self.analytics_dir = Path(analytics_dir)
        self.identify = identify or (lambda request: Caller())
        self.base_path = base_path
        self.seam = PublicHealthSeam(services, self.identify, base_path, "forecast", (SeriesError,))
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()  # the cache and the per-group locks
        self._fitting: dict[tuple[str, str], threading.Lock] = {}
        self._code = stored.code_digest()
        self.warm, self.poll_seconds = tuple(warm), poll_seconds
        self.warmed: Any = None  # the watermark the warm-up last finished at
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.routes = [Route(f"{base_path}/forecasts", self.listing, methods=["GET"])]

    # -- warming the cache ahead of the requests -----------------------------------------------------
    def start(self) -> None:
        if self.warm and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._warm_loop, name="forecast-warm-up", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _warm_loop(self) -> None:
        try:  # Linux: this thread only yields to the requests' threads; the GIL is still shared
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while not self._stop.is_set():
            try:
                self.warm_once()
            except SeriesError as exc:  # no analytics yet: the next poll tries again
                log.info("forecast warm-up waits: %s", exc)
            except Exception:
                log.exception("forecast warm-up failed")
            self._stop.wait(self.poll_seconds)

    def warm_once(self) -> bool:
        """Fits the `warm` groups if the analytics changed since the last warm-up; whether it fitted."""
        con = open_analytics(self.analytics_dir)
        try:
            mark = _watermark(con)
            if mark is None or mark == self.warmed:
                return False
            known = {s["syndrome"] for s in syndromes(con)}
            for syndrome, level in self.warm:
                if self._stop.is_set():
                    return False
                if syndrome in known:
                    self._forecast(con, syndrome, level)
            self.warmed = mark
            return True
        finally:
            con.close()

    # -- the seam shared with /analytics ---------------------------------------------------------------
    async def _guard(self, request: Request, fn: Callable[[RequestContext], Any]) -> Response:
        return await self.seam.answer(request, "analytics", fn)

    # -- the route -------------------------------------------------------------------------------------
    async def listing(self, request: Request) -> Response:
        """Per series: the recent observed weeks and the 0-3 week-ahead median, 50% and 95% bands."""
        async def run(ctx: RequestContext) -> Response:
            params = _params(request)
            return _json(await run_in_threadpool(self.answer, params))
        return await self._guard(request, run)

    listing.query_parameters = (  # type: ignore[attr-defined]
        ("syndrome", "a group of the series (ili, ari, gastroenteritis, measles, chapter-X...); required"),
        ("level", "national, region (default) or district"),
        ("region", "region name(s), comma-separated: only their series"),
        ("weeks", "observed weeks shown before the forecast, 1 to 104 (default 12)"))

    def answer(self, params: dict[str, Any]) -> dict[str, Any]:
        con = open_analytics(self.analytics_dir)
        try:  # a DuckDB connection holds its file's handle and buffers until closed: one per request
            known = {s["syndrome"] for s in syndromes(con)}
            if params["syndrome"] not in known:
                raise FHIRError(400, f"syndrome '{params['syndrome']}' is not a group of the series; use one of "
                                f"{', '.join(sorted(known))}", "invalid", "syndrome")
            series = self._forecast(con, params["syndrome"], params["level"])
        finally:
            con.close()
        if params["region"]:
            series = [s for s in series if s["key"] and s["key"][0] in params["region"]]
        shown = [{**s, "observed": {"weeks": s["observed"]["weeks"][-params["weeks"]:],
                                    "counts": s["observed"]["counts"][-params["weeks"]:]}} for s in series]
        return {"syndrome": params["syndrome"], "level": params["level"], "method": METHOD,
                "levels": list(SHOWN_LEVELS), "series": shown,
                "suppression": "observed counts of 1-4 are shown as '<5'; quantiles are model estimates"}

    def _forecast(self, con: duckdb.DuckDBPyConnection, syndrome: str, level: str) -> list[dict[str, Any]]:
        found = weekly_counts(con, syndrome, level=level)
        population = residents(con, level)
        key = (syndrome, level, stored.series_digest(found, self._code, population))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            fitting = self._fitting.setdefault((syndrome, level), threading.Lock())
        with fitting:  # one fit per group, level and series: concurrent first requests for it wait for it
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            out = stored.load(self.analytics_dir, syndrome, level, key[-1])  # the nightly run's, or another process's
            if out is None:
                out = stored.fit(found, population)
                stored.save(self.analytics_dir, syndrome, level, key[-1], out)
            with self._lock:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = out
            return out


def _watermark(con: duckdb.DuckDBPyConnection) -> Any:
    """What changes when the analytics are refreshed (None: unknown, so nothing is cached)."""
    cur = con.cursor()
    try:
        return cur.execute("SELECT max(refreshed_at), max(watermark), count(*) FROM _ht_view_state").fetchone()
    except duckdb.Error:
        return None
    finally:
        cur.close()


def _params(request: Request) -> dict[str, Any]:
    raw = request.query_params
    unknown = sorted(set(raw) - PARAMS - {"_format"})
    if unknown:
        raise FHIRError(400, f"Unknown parameter(s) {', '.join(unknown)}; use {', '.join(sorted(PARAMS))}",
                        "not-supported", unknown[0])
    syndrome = raw.get("syndrome", "")
    if not syndrome:
        raise FHIRError(400, "syndrome is required (e.g. syndrome=ili)", "required", "syndrome")
    level = raw.get("level", "region")
    if level not in LEVELS:
        raise FHIRError(400, f"level '{level}': use {', '.join(LEVELS)}", "invalid", "level")
    try:
        weeks = int(raw.get("weeks", str(HISTORY)))
    except ValueError:
        weeks = 0
    if not 1 <= weeks <= 104:
        raise FHIRError(400, f"weeks '{raw.get('weeks')}': a whole number of observed weeks, 1 to 104",
                        "invalid", "weeks")
    return {"syndrome": syndrome, "level": level, "weeks": weeks,
            "region": {v for v in raw.get("region", "").split(",") if v}}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=HEADERS)


__all__ = ["Forecasts", "METHOD"]
