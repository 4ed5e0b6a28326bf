"""Run by test_immunization_schedule_choice.py in a process of its own, with HEALTHTWIN_IMMUNIZATION_SCHEDULE set
(the live registry reads it once per process): loads a small generated population into a fresh store of the
kind given, records one dose through the API (the write rule), runs the batch refresh, and prints as JSON what
the registry wrote and what its lists and coverage say, for the test to judge.

    python tests/registries/schedule_choice_run.py sqlite|postgres TMPDIR"""
from __future__ import annotations

import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def main(kind: str, tmp: Path) -> dict:
    from starlette.testclient import TestClient

    from healthtwin.api.services import Services
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.loading import Loader
    from healthtwin.population import generate
    from healthtwin.registries.immunization.coverage import store_coverage
    from healthtwin.registries.immunization.due import list_query
    from healthtwin.registries.immunization.refresh import refresh_all
    from healthtwin.security.keys import KeySet
    from healthtwin.security.storage import open_store
    from healthtwin.security.tokens import TokenService
    from tests.registries.imm_world import BASE, TODAY, TYPES, database_url

    today = TODAY  # the services' clock is pinned to it below, as in imm_world
    folder = tmp / "pop"
    generate(folder, 120, 5, start_year=2015, end_date=today)
    database = database_url(kind, tmp)
    store = open_store(database, tmp / "data")
    loader = Loader(Services.build(store))
    for rtype in TYPES:
        f = folder / f"{rtype}.ndjson"
        if f.exists():
            loader.load_lines(f.read_bytes().splitlines(), f.name)
    children = [orjson.loads(x) for x in (folder / "Patient.ndjson").read_bytes().splitlines()]
    child = max((p for p in children if p["birthDate"] > f"{today.year - 3}"), key=lambda p: p["birthDate"])
    tokens = TokenService(KeySet.generate(), BASE, BASE + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp / "data", public_url=BASE, rate=None), tokens=tokens)
    app.fhir.services.today = lambda: today
    admin = {"authorization": "Bearer " + tokens.mint(subject="root", kind="person", scopes=["user/*.cruds"],
                                                      roles=["administrator"])[0]}
    out: dict = {"child": child["id"]}
    with TestClient(app, base_url=BASE) as client:
        dose = {"resourceType": "Immunization", "status": "completed", "patient": {"reference": f"Patient/{child['id']}"},
                "occurrenceDateTime": child["birthDate"],
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "08"}]}}
        assert client.post("/fhir/Immunization", json=dose, headers=admin).status_code == 201
        live = client.get(f"/fhir/ImmunizationRecommendation?patient=Patient/{child['id']}", headers=admin).json()
        out["live"] = [e["resource"]["id"] for e in live.get("entry", [])]
        totals = refresh_all(database, tmp / "data", today, workers=1)
        out["refreshed"] = totals.children
        got = client.get("/fhir/ImmunizationRecommendation?_count=1000", headers=admin).json()
        recs = [e["resource"] for e in got.get("entry", [])]
        out["ids"] = sorted(r["id"] for r in recs)
        out["tags"] = sorted({t["code"] for r in recs for t in r["meta"].get("tag", [])
                              if t["system"].endswith("immunization-schedule")})
        groups = sorted({e["vaccineCode"][0]["text"] for r in recs for e in r["recommendation"]})
        out["groups"] = groups
        overdue = {g: sum(1 for r in recs for e in r["recommendation"] if e["vaccineCode"][0]["text"] == g and any(
            c["code"]["coding"][0]["code"] == "59778-1" and c["value"] < today.isoformat()
            for c in e.get("dateCriterion", []))) for g in groups}
        out["overdue_counted"] = overdue
        out["overdue_listed"] = {g: client.get("/fhir/ImmunizationRecommendation", headers=admin, params=list_query(
            "overdue", today, g) + [("_summary", "count")]).json()["total"] for g in groups}
        op = client.get(f"/fhir/Patient/{child['id']}/$immds-forecast", headers=admin).json()
        op = client.get(f"/fhir/Patient/{child['id']}/$immds-forecast", headers=admin).json()
        out["operation_groups"] = sorted({e["vaccineCode"][0]["text"] for p in op.get("parameter", [])
                                          if (p.get("resource") or {}).get("resourceType") == "ImmunizationRecommendation"
                                          for e in p["resource"]["recommendation"]})
    services = Services.build(store)
    from healthtwin.registries.immunization import rules
    cohorts = range(today.year - 4, today.year)
    default = store_coverage(services, cohorts)
    out["coverage_is_configured"] = {k: default == store_coverage(services, cohorts, rules.load(k))
                                     for k in ("aze", "cdc", "who")}
    out.update(indicators(store, services, tmp, groups))
    store.close()
    return out


def indicators(store, services, tmp: Path, groups: list[str]) -> dict:
    """The analytics indicators over the same store, in this process's configuration: `immunization_status`'s
    overdue children per vaccine group, and whether `vaccination_coverage_at_age` equals the registry's
    coverage (of the configured schedule) cohort by cohort and dose by dose."""
    from healthtwin.analytics.indicators import compute, indicator_views, load_indicators
    from healthtwin.analytics.materialize import Materializer, StoreSource
    from healthtwin.analytics.refresh import refresh_all as analytics_refresh
    from healthtwin.registries.immunization.coverage import WUENIC, store_coverage
    mat = Materializer(StoreSource(store), tmp / "analytics", indicator_views(), parquet=False)
    try:
        report = analytics_refresh(mat)
        assert not report.failed, report
        status = compute(mat.con, load_indicators()["immunization_status"], {"by": "vaccine_group,state"}, threshold=1)
        at_age = compute(mat.con, load_indicators()["vaccination_coverage_at_age"], {"by": "period,dose"}, threshold=1)
    finally:
        mat.close()
    overdue = {f["vaccine_group"]: f["numerator"] or 0 for f in status["figures"] if f["state"] == "overdue"}
    got = {(int(f["period"]), f["dose"]): (f["numerator"] or 0, f["denominator"]) for f in at_age["figures"]}
    children = {year: d for (year, _), (_, d) in got.items()}
    registry = {(c.cohort, c.dose): v for c, v in store_coverage(services, sorted(children)).items()}
    every = {(year, dose): got.get((year, dose), (0, children[year])) for year in children for dose, _, _, _ in WUENIC}
    return {"indicator_groups": sorted({f["vaccine_group"] for f in status["figures"]}),
            "indicator_overdue": {g: overdue.get(g, 0) for g in groups},
            "indicator_coverage_agrees": bool(every) and registry == every}


if __name__ == "__main__":
    print(orjson.dumps(main(sys.argv[1], Path(sys.argv[2]))).decode())
