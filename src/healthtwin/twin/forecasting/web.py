"""`GET /analytics/forecasts?syndrome=ili&level=region[&region=…]`: the next weeks of the twin's weekly series
with bands, from the same ensemble that is scored on FluSight (ensemble.py, twin_series.py).

Computed on request from the analytics tables (twin/series.py) and kept per analytics watermark: a refresh
changes the watermark and the next request fits again; between refreshes the answer is the cached one.
Horizon 0 is the week after the last whole week of the record (the current, incomplete week), as in FluSight.
What leaves is consistent with twin/surveillance/suppression.py: observed weekly counts of 1-4 are shown as
"<5"; the quantiles are model estimates (like an alert's expected values), rounded to one decimal.
Authorization and audit are those of /analytics: `services.policy.authorize(ctx, "analytics", None)` (analysts
and administrators), and every request, answered or refused, is in the audit chain with purpose PUBHLTH.
"""
from __future__ import annotations

import logging
import threading
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
from ..series import SeriesError, open_analytics, syndromes, weekly_counts
from ..surveillance import suppression
from . import ensemble
from .levels import QUANTILE_LEVELS
from .twin_series import forecast_weekly

log = logging.getLogger("healthtwin.twin")
HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
PARAMS = {"syndrome", "level", "region", "weeks"}
LEVELS = ("national", "region", "district")
HISTORY = 12  # observed weeks shown beside the forecast (the default of `weeks`)
SHOWN_LEVELS = (0.025, 0.25, 0.5, 0.75, 0.975)  # the 95% and 50% bands and the median
METHOD = ("quantile-averaging ensemble (growth regression 0.6, pooled growth regression 0.2, statsforecast "
          f"theta on log(1+y) 0.2; spread widened {ensemble.SPREAD} on the log scale); series shorter than "
          f"{ensemble.MIN_WEEKS} weeks get the FluSight flat baseline")
CACHE_SIZE = 32


class Forecasts:
    def __init__(self, services: Any, analytics_dir: Path, identify: Callable[[Request], Caller] | None = None,
                 base_path: str = "/analytics") -> None:
        self.services = services
        self.analytics_dir = Path(analytics_dir)
        self.identify = identify or (lambda request: Caller())
        self.base_path = base_path
        self.seam = PublicHealthSeam(services, self.identify, base_path, "forecast", (SeriesError,))
        self._cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.routes = [Route(f"{base_path}/forecasts", self.listing, methods=["GET"])]

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
        known = {s["syndrome"] for s in syndromes(con)}
        if params["syndrome"] not in known:
            raise FHIRError(400, f"syndrome '{params['syndrome']}' is not a group of the series; use one of "
                            f"{', '.join(sorted(known))}", "invalid", "syndrome")
        series = self._forecast(con, params["syndrome"], params["level"])
        if params["region"]:
            series = [s for s in series if s["key"] and s["key"][0] in params["region"]]
        shown = [{**s, "observed": {"weeks": s["observed"]["weeks"][-params["weeks"]:],
                                    "counts": s["observed"]["counts"][-params["weeks"]:]}} for s in series]
        return {"syndrome": params["syndrome"], "level": params["level"], "method": METHOD,
                "levels": list(SHOWN_LEVELS), "series": shown,
                "suppression": "observed counts of 1-4 are shown as '<5'; quantiles are model estimates"}

    def _forecast(self, con: duckdb.DuckDBPyConnection, syndrome: str, level: str) -> list[dict[str, Any]]:
        key = (syndrome, level, _watermark(con))
        with self._lock:  # one fit per watermark: concurrent first requests wait for it
            if key[-1] is not None and key in self._cache:
                return self._cache[key]
            found = weekly_counts(con, syndrome, level=level)
            out = [_view(s, f) for s, f in zip(found, _in_order(found, forecast_weekly(found)))]
            if key[-1] is not None:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = out
            return out


def _in_order(found: list[Any], forecasts: list[Any]) -> list[Any]:
    by_key = {f.key: f for f in forecasts}
    return [by_key[tuple(s.key)] for s in found]


def _view(series: Any, forecast: Any) -> dict[str, Any]:
    columns = [QUANTILE_LEVELS.index(q) for q in SHOWN_LEVELS]
    rows = forecast.quantiles[:, columns]
    return {"key": list(series.key), "place": "/".join(series.key) or "national",
            "observed": {"weeks": series.periods, "counts": suppression.counts(series.counts)},
            "forecast": [{"horizon": h, "week_start": week.isoformat(),
                          "quantiles": {str(q): round(float(v), 1) for q, v in zip(SHOWN_LEVELS, row)}}
                         for h, (week, row) in enumerate(zip(forecast.weeks, rows))]}


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
