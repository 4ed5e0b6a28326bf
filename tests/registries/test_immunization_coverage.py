"""Coverage by antigen and dose at the WHO/UNICEF ages: the registry's figure (coverage.py, over the store)
equals the analytics indicator `vaccination_coverage_at_age` (DuckDB over the materialised views) on a
generated population, cohort by cohort and dose by dose; the indicator carries the registry's CVX table."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.analytics.indicators import compute, indicator_views, load_indicators
from healthtwin.analytics.materialize import Materializer, StoreSource
from healthtwin.analytics.refresh import refresh_all as analytics_refresh
from healthtwin.registries.immunization import rules
from healthtwin.registries.immunization.coverage import (WUENIC, add_months, child_cells, antigen_cvx,
                                                          indicator_tables, store_coverage)

from .imm_world import imm_population, imm_world  # noqa: F401  (fixtures)


def test_the_indicator_carries_the_registrys_dose_and_cvx_tables():
    import json
    from pathlib import Path

    import healthtwin.analytics as analytics
    from healthtwin.registries.immunization.coverage import indicator_setting
    folder = Path(analytics.__file__).parent / "indicators"
    sql = " ".join(json.loads((folder / "vaccination_coverage_at_age.indicator.json").read_text())["numerator_sql"])
    doses, codes = indicator_tables(rules.load("aze"))
    assert doses in sql and "{{immunization_cvx}}" in sql
    # each schedule's CVX table, as the rule files give it: regenerate the setting (coverage.indicator_setting)
    # into _base.json if the supporting data changed
    setting = json.loads((folder / "_base.json").read_text())["settings"]["immunization_schedule"]
    assert {k: v for k, v in setting.items() if k != "description"} == indicator_setting()
    assert set(setting["values"]) == set(rules.SCHEDULES)
    filled = load_indicators()["vaccination_coverage_at_age"].numerator_sql  # unset here: the default, aze
    assert doses in filled and codes in filled and "{{" not in filled
    assert set(antigen_cvx(rules.load("aze"))["Diphtheria"]) >= {"1", "20", "198"}
    assert set(antigen_cvx(rules.load("cdc"))["Diphtheria"]) - set(antigen_cvx(rules.load("aze"))["Diphtheria"])


def test_the_indicators_follow_the_configured_schedule(monkeypatch):
    """HEALTHTWIN_IMMUNIZATION_SCHEDULE fills in the schedule's tag and CVX table (another definition, so
    another digest: the tables are rebuilt); an unknown value is refused like the server refuses it."""
    from healthtwin.analytics.indicators import settings
    from healthtwin.registries.immunization.live_schedule import ENV
    digests = {}
    for key in sorted(rules.SCHEDULES):
        monkeypatch.setenv(ENV, key)
        indicators = load_indicators()
        status, at_age = indicators["immunization_status"], indicators["vaccination_coverage_at_age"]
        assert f"schedule = '{key}'" in status.numerator_sql and f"schedule = '{key}'" in status.denominator_sql
        assert indicator_tables(rules.load(key))[1] in at_age.numerator_sql
        digests[key] = (status.digest, at_age.digest, indicators["population"].digest)
    assert len({d[:2] for d in digests.values()}) == 3 and len({d[2] for d in digests.values()}) == 1
    monkeypatch.delenv(ENV)
    assert dict(settings())["immunization_schedule"] == rules.DEFAULT_SCHEDULE
    monkeypatch.setenv(ENV, "usa")
    with pytest.raises(ValueError, match=f"{ENV} is one of aze, cdc, who, not 'usa'"):
        load_indicators()


def test_a_dose_counts_by_the_end_of_the_month_the_child_reaches_the_age():
    assert add_months(dt.date(2024, 1, 31), 1) == dt.date(2024, 2, 29)
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
    codes = antigen_cvx(rules.load("aze"))

    def dose(cvx: str, day: dt.date, status: str = "completed") -> dict:
        return {"status": status, "occurrenceDateTime": day.isoformat(),
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]}}
    patient = {"birthDate": "2024-01-10"}
    dtp = [dose("198", dt.date(2024, 4, 1)), dose("198", dt.date(2024, 5, 1)), dose("198", dt.date(2025, 2, 1))]
    assert child_cells(patient, dtp, codes) == ["DTP1"]  # the third in the 13th month is too late for DTP3
    assert "DTP3" in child_cells(patient, dtp[:2] + [dose("20", dt.date(2025, 1, 31))], codes)
    assert child_cells(patient, [dose("198", dt.date(2024, 4, 1), "not-done")], codes) == []
    assert child_cells(patient, [dose("03", dt.date(2025, 6, 1))], codes) == ["MCV1"]  # "03" is CVX 3 (MMR)


def test_the_registry_and_the_indicator_agree_on_a_generated_population(imm_world, tmp_path):
    world = imm_world
    mat = Materializer(StoreSource(world.store), tmp_path / "analytics", indicator_views(), parquet=False)
    try:
        report = analytics_refresh(mat)
        assert not report.failed, report
        ind = load_indicators()["vaccination_coverage_at_age"]
        res = compute(mat.con, ind, {"by": "period,dose"}, threshold=1)
        got = {(int(f["period"]), f["dose"]): (f["numerator"] or 0, f["denominator"]) for f in res["figures"]}
    finally:
        mat.close()
    cohorts = sorted({year for year, _ in got})
    assert len(cohorts) >= 5
    mine = store_coverage(world.services, cohorts)
    registry = {(c.cohort, c.dose): v for c, v in mine.items()}
    # the indicator has no figure for a dose nobody of the cohort has: zero over the cohort's denominator
    children = {year: d for (year, _), (_, d) in got.items()}
    every = {(year, dose): got.get((year, dose), (0, children[year])) for year in cohorts for dose, _, _, _ in WUENIC}
    assert registry == every
    assert any(n > 0 for (_, dose), (n, _) in registry.items() if dose == "MCV1")  # not agreement on zeros
