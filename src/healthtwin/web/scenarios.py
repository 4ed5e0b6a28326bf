"""Scenario controls on the ministry dashboard: a crisis scenario (the twin's POST /analytics/scenarios: an
epidemic projected from the record's weekly counts, with interventions) and the resulting bed census against
capacity, nationally and per hospital. Runs are queued by the twin; the run's page says how far it has got
and shows the results once done (reload the page: no script needed)."""
from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .asgi_client import unavailable
from .charts import lines
from .frame import HEADERS, Page, page

PATHOGENS = ("influenza", "measles")
_RUN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _int(form: dict[str, str], key: str, low: int, high: int, default: int) -> int:
    try:
        return max(low, min(high, int(str(form.get(key) or default))))
    except ValueError:
        return default


@page("ministry")
async def start(pg: Page) -> Response:
    form = pg.request.state.form
    pathogen = form.get("pathogen") if form.get("pathogen") in PATHOGENS else "influenza"
    days = _int(form, "days", 14, 365, 120)
    inputs: dict[str, Any] = {"pathogen": pathogen, "days": days, "bed_scale": "sample", "calibration_weeks": 8}
    interventions = []
    if form.get("schools"):
        interventions.append({"type": "school_closure", "start": _int(form, "schools_from", 0, days, 7),
                              "end": _int(form, "schools_to", 1, days, 21)})
    coverage = _int(form, "coverage", 0, 95, 0)
    if coverage:
        interventions.append({"type": "vaccination", "start": 0, "days": 28, "coverage": coverage / 100})
    if interventions:
        inputs["interventions"] = interventions
    answer = await pg.api.call("POST", "/analytics/scenarios", body=inputs, headers={"accept": "application/json"})
    if not answer.ok:
        return pg.message("error.refused_title", answer.problem(), answer.status)
    run_id = str((answer.json() or {}).get("id") or "")
    if not _RUN.match(run_id):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 502)
    return RedirectResponse(f"/app/ministry/scenarios/{run_id}", 303, headers=HEADERS)


@page("ministry")
async def show(pg: Page) -> Response:
    run_id = pg.request.path_params["run"]
    if not _RUN.match(run_id):
        return pg.message("error.title", pg.tr.t("error.bad_form"), 400)
    answer = await pg.api.get(f"/analytics/scenarios/{run_id}")
    if unavailable(answer) and answer.status != 404:
        return pg.message("error.title", pg.tr.t("feature.pending", what=pg.tr.t("ministry.section.scenarios")), 404)
    if not answer.ok:
        return pg.message("error.title", answer.problem(), answer.status)
    record = answer.json() or {}
    results = record.get("results") or {}
    demand = results.get("demand") or {}
    national = demand.get("national") or {}
    days = results.get("days") or list(range(len(national.get("occupied") or [])))
    chart = None
    if national.get("occupied"):
        capacity = national.get("capacity")
        series = {pg.tr.t("scenario.occupied"): national["occupied"]}
        if capacity:
            series[pg.tr.t("scenario.capacity")] = [capacity] * len(national["occupied"])
        chart = lines([str(d) for d in days], series, pg.tr.t("scenario.chart_title"),
                      pg.tr.t("scenario.chart_desc"), fmt=pg.tr.number, ident="beds")
    return pg.render("ministry/scenario.html", run=record, run_id=run_id, national=national, chart=chart,
                     over=(demand.get("over_capacity") or [])[:15], inputs=record.get("inputs") or {})


def routes() -> list[Route]:
    return [Route("/ministry/scenarios", start, methods=["POST"]), Route("/ministry/scenarios/{run}", show)]
