"""The ministry dashboard (analyst and administrator roles): the national indicators with drill-down by
region, district, age and sex, on a tile map of the economic regions and districts, their trend over the
years, and the twin's alerts, forecasts and scenarios where the server has them. Everything comes from the
materialised analytics (/analytics), never from patient-level data; export as CSV (the analytics' own), SVG
(the chart as drawn) and PNG (app.js draws the SVG onto a canvas, where scripts run)."""
from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from .asgi_client import unavailable
from .charts import bars, lines
from .frame import HEADERS, Page, page
from .tilemap import district_name, districts_of, region_name, region_of, tile_map

DIMENSIONS = ("region", "district", "age", "sex", "period")
_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
_VALUE = re.compile(r"^[\w+\-., ]{1,64}$")  # region and district names are Azerbaijani words
PAGES = {"alerts": "/app/ministry/alerts", "forecasts": "/app/ministry/forecasts"}  # twin_pages.py
INTERVALS = ("day", "week", "month", "year")
_PERIOD_FORMS = {"day": re.compile(r"^\d{4}-\d\d-\d\d$"), "week": re.compile(r"^\d{4}-W\d\d$"),
                 "month": re.compile(r"^\d{4}-\d\d$"), "year": re.compile(r"^\d{4}$")}


@page("ministry")
async def overview(pg: Page) -> Response:
    # The alerts and the forecasts have pages of their own (the forecasts are fitted on request, and a
    # request without a syndrome is refused): the overview links to them where the server has their routes,
    # read from its route table; only the scenario runs are listed here.
    catalogue, scenarios = await asyncio.gather(pg.api.get("/analytics/indicators"),
                                                pg.api.get("/analytics/scenarios"))
    if not catalogue.ok:
        return pg.message("error.title", catalogue.problem() or pg.tr.t("ministry.no_analytics"), catalogue.status)
    sections = {**{name: {"available": pg.api.serves(f"/analytics/{name}"), "link": link, "rows": []}
                   for name, link in PAGES.items()}, "scenarios": _listing(scenarios)}
    return pg.render("ministry/overview.html", indicators=(catalogue.json() or {}).get("indicators") or [],
                     sections=sections)


def _listing(answer: Any) -> dict[str, Any]:
    """A twin section's answer as rows of (label, value) pairs, or not available yet."""
    if unavailable(answer):
        return {"available": False, "rows": []}
    if not answer.ok:
        return {"available": True, "error": answer.problem(), "rows": []}
    data = answer.json()
    items = data if isinstance(data, list) else next((v for v in (data or {}).values() if isinstance(v, list)), [])
    rows = [{k: v for k, v in item.items() if isinstance(v, (str, int, float))} for item in items[:20]
            if isinstance(item, dict)]
    return {"available": True, "rows": rows}


def _filters(pg: Page) -> dict[str, str]:
    return {k: v for k in ("region", "district", "age", "sex", "period")
            if (v := (pg.request.query_params.get(k) or "").strip()) and _VALUE.match(v)}


def _by(pg: Page, filters: dict[str, str]) -> str:
    by = pg.request.query_params.get("by") or ("district" if "region" in filters else "region")
    return by if by in DIMENSIONS else "region"


async def _dimensions(pg: Page, name: str) -> tuple[list[str], str, tuple[str, ...]] | None:
    """The breakdowns this indicator has, of those the page offers, its period grain (year or day) and the
    intervals a daily one may be summed into (a bed census only by day); None: no such indicator."""
    catalogue = await pg.api.get("/analytics/indicators")
    found = next((i for i in (catalogue.json() or {}).get("indicators") or [] if i.get("name") == name), None)
    if found is None:
        return None
    grain = found.get("period_grain") or "year"
    intervals = tuple(i for i in INTERVALS if i in (found.get("intervals") or INTERVALS)) if grain == "day" else ()
    return [d for d in DIMENSIONS if d in (found.get("dimensions") or [])], grain, intervals


async def _fetch(pg: Page, name: str) -> tuple[Any, Any, str, dict[str, str], list[str], tuple[str, ...]] | Response:
    described = await _dimensions(pg, name)
    if described is None:
        return pg.message("error.title", pg.tr.t("ministry.no_indicator"), 404)
    dims, grain, intervals = described
    filters = {k: v for k, v in _filters(pg).items() if k in dims}
    by = _by(pg, filters)
    if by not in dims:
        by = next(d for d in ("region", "district", "age", "sex", "period") if d in dims)
    interval = pg.request.query_params.get("interval")
    if interval in intervals:  # daily indicators: summed by day, ISO week, month or year, as each allows
        filters["interval"] = interval
        if "period" in filters and not _PERIOD_FORMS[interval].match(filters["period"]):
            del filters["period"]  # a week chosen before switching to years: the latest year instead
    history = None
    if "period" not in filters and by != "period":
        # A breakdown over the whole history is every period of every cell: for a daily indicator every week
        # (megabytes), for a yearly one with a dimension it is always broken down by (vaccination coverage's
        # 18 doses) every year of every dose (0.5 MB of cells at a million citizens, where the page shows one
        # year of one dose). The history by period comes first, and the breakdown is of its latest period.
        history = await pg.api.get(f"/analytics/indicators/{name}", {**filters, "by": "period"})
        periods = sorted({str(f["period"]) for f in (history.json() or {}).get("figures") or []
                          if f.get("period") is not None}) if history.ok else []
        if periods:
            filters["period"] = periods[-1]
    breakdown = await pg.api.get(f"/analytics/indicators/{name}", {**filters, "by": by})
    if not breakdown.ok:
        return pg.message("error.title", breakdown.problem(), breakdown.status)
    # The trend of the one value of each extra dimension shown (a syndrome...), not of all of them: a daily
    # indicator's weekly history over every syndrome is thousands of cells.
    chosen = _chosen(pg, breakdown.json() or {}, by)[1]
    if history is not None and history.ok:
        return breakdown, history, by, filters, dims, intervals
    trend = await pg.api.get(f"/analytics/indicators/{name}", {k: v for k, v in filters.items() if k != "period"}
                             | {d: v for d, v in chosen.items() if v is not None} | {"by": "period"})
    return breakdown, trend, by, filters, dims, intervals


def _chosen(pg: Page, result: dict[str, Any], by: str) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """The values of the indicator's other dimensions (those it always breaks down by) and the one shown."""
    figures = result.get("figures") or []
    extras = [d for d in result.get("by") or [] if d not in (by, "period")]
    values = {d: sorted({str(f.get(d)) for f in figures if f.get(d) is not None}) for d in extras}
    chosen: dict[str, str | None] = {}
    for d in extras:
        wanted = pg.request.query_params.get(f"x_{d}")
        chosen[d] = wanted if wanted in values[d] else (values[d][0] if values[d] else None)
    return values, chosen


@page("ministry")
async def indicator(pg: Page) -> Response:
    name = pg.request.path_params["name"]
    if not _NAME.match(name):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    fetched = await _fetch(pg, name)
    if isinstance(fetched, Response):
        return fetched
    breakdown, trend, by, filters, dims, intervals = fetched
    view = build_view(pg, breakdown.json(), trend.json() if trend.ok else None, by, filters, intervals)
    return pg.render("ministry/indicator.html", **{**view, "dimensions": dims})


def build_view(pg: Page, result: dict[str, Any], trend: dict[str, Any] | None, by: str,
               filters: dict[str, str], intervals: tuple[str, ...] = INTERVALS) -> dict[str, Any]:
    tr = pg.tr
    figures = result.get("figures") or []
    periods = sorted({f.get("period") for f in [*figures, *((trend or {}).get("figures") or [])]
                      if f.get("period") is not None}, key=str)
    period = next((p for p in periods if str(p) == filters.get("period")), periods[-1] if periods else None)
    extra_values, chosen = _chosen(pg, result, by)
    extras = list(chosen)
    rows = [f for f in figures if (by == "period" or f.get("period") == period)
            and all(str(f.get(d)) == chosen[d] for d in extras)]
    unit = (result.get("measure") or {}).get("unit") or ""
    label = _labeller(tr, by)
    title = result.get("title") or result.get("indicator")
    chart = bars([label(r.get(by)) for r in rows], [r.get("value") for r in rows], title,
                 tr.t("ministry.chart_desc", by=tr.t(f"dim.{by}"), unit=unit), tr.number, "bars")
    the_map = None
    if by in ("region", "district"):
        values = {str(r.get(by)): r.get("value") for r in rows}
        the_map = tile_map(values, by, tr.t("ministry.map_title", title=title), tr.number,
                           region=filters.get("region") or (region_of(filters["district"]) if filters.get("district") else None))
    curve = None
    if trend:
        tfig = [f for f in trend.get("figures") or [] if all(str(f.get(d)) == chosen.get(d) for d in extras
                                                              if d in (trend.get("by") or []))]
        totals: dict[Any, list[float]] = {}
        for f in tfig:
            if f.get("value") is not None:
                totals.setdefault(f.get("period"), []).append(f["value"])
        tperiods = sorted(totals)
        curve = lines([str(p) for p in tperiods], {title: [sum(totals[p]) / len(totals[p]) for p in tperiods]},
                      tr.t("ministry.trend_title", title=title), tr.t("ministry.trend_desc", unit=unit),
                      fmt=tr.number, ident="curve")
    drill = []
    for r in rows:
        value = r.get(by)
        link = None
        if by == "region":
            link = {**filters, "region": value, "by": "district"}
        elif by == "district":
            link = {**filters, "district": value, "by": "age"}
        drill.append({"label": label(value), "row": r, "link": link})
    return {"result": result, "name": result.get("indicator"), "title": title, "by": by, "filters": filters,
            "periods": periods[-104:], "period": period, "yearly": isinstance(period, int),
            "interval": result.get("interval") or filters.get("interval") or "year",
            "intervals": intervals, "rows": drill, "unit": unit, "chart": chart, "map": the_map,
            "curve": curve, "extras": extras, "extra_values": extra_values, "chosen": chosen,
            "dimensions": DIMENSIONS, "place": _place(filters), "region_name": region_name,
            "district_name": district_name, "threshold": result.get("threshold")}


def _place(filters: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """The breadcrumb of the places drilled into: (name, the query that opens it)."""
    crumbs = []
    region = filters.get("region") or (region_of(filters["district"]) if filters.get("district") else None)
    if region:
        crumbs.append((region_name(region), {"region": region, "by": "district"}))
    if filters.get("district"):
        crumbs.append((district_name(filters["district"]), {"district": filters["district"], "by": "age"}))
    return crumbs


def _labeller(tr: Any, by: str):
    def label(value: Any) -> str:
        if value is None:
            return tr.t("ministry.unknown")
        if by == "region":
            return region_name(str(value))
        if by == "district":
            return district_name(str(value))
        if by == "sex":
            return tr.maybe("sex", value)
        return str(value)
    return label


@page("ministry")
async def export(pg: Page) -> Response:
    """The figures as CSV (the analytics' own export) or a chart as an SVG file."""
    name, fmt = pg.request.path_params["name"], pg.request.path_params["fmt"]
    if not _NAME.match(name) or fmt not in ("csv", "svg"):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    fetched = await _fetch(pg, name)
    if isinstance(fetched, Response):
        return fetched
    breakdown, trend, by, filters, _, intervals = fetched
    if fmt == "csv":
        if not intervals and "period" not in _filters(pg):
            # a yearly indicator's CSV is of every year, as the analytics export it, unless one was chosen;
            # the page's table shows the latest (a daily one's CSV is of the period shown, as before)
            filters = {k: v for k, v in filters.items() if k != "period"}
        answer = await pg.api.get(f"/analytics/indicators/{name}", {**filters, "by": by, "format": "csv"})
        if not answer.ok:
            return pg.message("error.title", answer.problem(), answer.status)
        return Response(answer.body, media_type="text/csv; charset=utf-8", headers={
            **HEADERS, "content-disposition": f'attachment; filename="{name}-{by}.csv"'})
    view = build_view(pg, breakdown.json(), trend.json() if trend.ok else None, by, filters)
    chart = pg.request.query_params.get("chart") or "bars"
    svg = {"bars": view["chart"], "map": view["map"], "curve": view["curve"]}.get(chart)
    if not svg:
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + str(svg), media_type="image/svg+xml", headers={
        **HEADERS, "content-disposition": f'attachment; filename="{name}-{chart}.svg"'})


def routes() -> list[Route]:
    return [Route("/ministry", overview), Route("/ministry/indicator/{name}", indicator),
            Route("/ministry/indicator/{name}/export.{fmt}", export)]


__all__ = ["routes", "districts_of"]
