"""The twin on the ministry dashboard: the detection run's alerts with their evidence (the twin's
GET /analytics/alerts; acknowledged through the page's CSRF-protected form by those who may: the
epidemiologist it is addressed to, or an administrator), and the forecast bands beside what happened
(GET /analytics/forecasts: the observed weekly counts, the median and the 50% and 95% bands, drawn as SVG).

The alerts page is for epidemiologists as well as analysts and administrators; which alerts each sees is the
API's access policy (an epidemiologist, those addressed to them). The forecasts are analytics (analysts and
administrators)."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .asgi_client import unavailable
from .charts import lines
from .frame import HEADERS, Page, page
from .tilemap import district_name, region_name

ALERT_READERS = {"epidemiologist", "analyst", "administrator"}
ACKNOWLEDGERS = {"epidemiologist", "administrator"}
SYNDROMES = ("ili", "ari", "pneumonia", "gastroenteritis", "measles")
STATUSES = ("in-progress", "completed", "all")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_VALUE = re.compile(r"^[\w+\-., ]{1,64}$")


def _place(key: list[str]) -> str:
    if not key:
        return ""
    return district_name(key[1]) if len(key) > 1 else region_name(key[0])


def _small(value: Any) -> float | None:
    """A suppressed count ("<5") is drawn as a gap: its value is not ours to show."""
    return value if isinstance(value, (int, float)) else None


@page()
async def alerts(pg: Page) -> Response:
    if not pg.session.roles & ALERT_READERS:
        return pg.message("error.forbidden_title", pg.tr.t("error.wrong_persona"), 403)
    status = pg.request.query_params.get("status")
    status = status if status in STATUSES else "in-progress"
    answer = await pg.api.get("/analytics/alerts", {"status": status})
    if unavailable(answer):
        return pg.message("error.title", pg.tr.t("feature.pending", what=pg.tr.t("ministry.section.alerts")), 404)
    if not answer.ok:
        return pg.message("error.title", answer.problem(), answer.status)
    districts = []
    for d in (answer.json() or {}).get("districts") or []:
        items = []
        for a in d.get("alerts") or []:
            signals = []
            for k, s in enumerate(a.get("signals") or []):
                chart = s.get("chart") or {}
                curve = lines(chart.get("weeks") or [],
                              {pg.tr.t("alert.observed"): [_small(v) for v in chart.get("observed") or []],
                               pg.tr.t("alert.expected"): chart.get("expected") or []},
                              pg.tr.t("alert.chart_title", place=_place(s.get("place") or [])),
                              pg.tr.t("alert.chart_desc"), fmt=pg.tr.number, ident=f"a-{a.get('id')}-{k}")
                signals.append({**s, "name": _place(s.get("place") or []), "curve": curve})
            items.append({**a, "signals": signals})
        districts.append({**d, "name": district_name(d.get("district") or "") or region_name(d.get("region") or ""),
                          "alerts": items})
    return pg.render("ministry/alerts.html", districts=districts, chosen=status, statuses=STATUSES,
                     may_acknowledge=bool(pg.session.roles & ACKNOWLEDGERS),
                     done=pg.request.query_params.get("done") == "1")


@page()
async def acknowledge(pg: Page) -> Response:
    if not pg.session.roles & ACKNOWLEDGERS:
        return pg.message("error.forbidden_title", pg.tr.t("error.wrong_persona"), 403)
    alert_id = pg.request.path_params["alert"]
    if not _ID.match(alert_id):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    note = " ".join((pg.request.state.form.get("note") or "").split())[:500]
    answer = await pg.api.call("POST", f"/analytics/alerts/{alert_id}/acknowledge",
                               body={"note": note} if note else {}, headers={"accept": "application/json"})
    if not answer.ok:
        return pg.message("error.refused_title", answer.problem(), answer.status)
    return RedirectResponse("/app/ministry/alerts?done=1", 303, headers=HEADERS)


@page("ministry")
async def forecasts(pg: Page) -> Response:
    q = pg.request.query_params
    syndrome = q.get("syndrome") if q.get("syndrome") in SYNDROMES else "ili"
    region = q.get("region") if q.get("region") and _VALUE.match(q.get("region") or "") else None
    params = {"syndrome": syndrome, "level": "district" if region else "region", "weeks": "16"}
    if region:
        params["region"] = region
    answer = await pg.api.get("/analytics/forecasts", params)
    if unavailable(answer):
        return pg.message("error.title", pg.tr.t("feature.pending", what=pg.tr.t("ministry.section.forecasts")), 404)
    if not answer.ok:
        return pg.message("error.title", answer.problem(), answer.status)
    body = answer.json() or {}
    shown = []
    for k, s in enumerate(body.get("series") or []):
        observed = s.get("observed") or {}
        weeks = list(observed.get("weeks") or [])
        ahead = s.get("forecast") or []
        n = len(weeks)
        periods = weeks + [f["week_start"] for f in ahead]
        pad = [None] * n

        def level(q: str) -> list[float | None]:
            return [f["quantiles"].get(q) for f in ahead]
        # the median line starts at the last observed week so that it continues what happened
        last = _small((observed.get("counts") or [None])[-1]) if n else None
        median = [None] * max(n - 1, 0) + ([last] if n else []) + level("0.5")
        curve = lines(periods, {pg.tr.t("forecast.observed"): [_small(v) for v in observed.get("counts") or []],
                                pg.tr.t("forecast.median"): median},
                      pg.tr.t("forecast.chart_title", place=_place(s.get("key") or [])),
                      pg.tr.t("forecast.chart_desc"), band=(pad + level("0.025"), pad + level("0.975")),
                      inner=(pad + level("0.25"), pad + level("0.75")), fmt=pg.tr.number, ident=f"f-{k}")
        shown.append({"name": _place(s.get("key") or []) or pg.tr.t("ministry.country"), "key": s.get("key"),
                      "curve": curve, "ahead": ahead, "observed": list(zip(weeks, observed.get("counts") or []))})
    drill = {s["key"][0]: "?" + urlencode({"syndrome": syndrome, "region": s["key"][0]})
             for s in shown if not region and s.get("key")}
    return pg.render("ministry/forecasts.html", series=shown, syndrome=syndrome, syndromes=SYNDROMES,
                     region=region, region_label=region_name(region) if region else None, drill=drill,
                     method=body.get("method") or "")


def routes() -> list[Route]:
    return [Route("/ministry/alerts", alerts), Route("/ministry/alerts/{alert}/acknowledge", acknowledge,
                                                    methods=["POST"]),
            Route("/ministry/forecasts", forecasts)]
