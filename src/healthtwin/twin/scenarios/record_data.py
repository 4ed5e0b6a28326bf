"""What a scenario takes from the record, read once and kept in its run record: the population per region and
age group, the recent weekly counts it is calibrated to, the hospitals' beds, their census on the start day,
where each region's patients are admitted, and how many cases of the group were admitted and for how long.

Everything is an aggregate read from the analytics tables (twin/series.py); with this data and the run's
inputs a run is reproduced exactly, whatever the record holds later.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb

from ...analytics.indicators import load_indicators
from .. import series as S
from .contacts import AGE_BOUNDS, AGE_GROUPS


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    cur = con.cursor()
    try:
        return cur.execute(sql, params or []).fetchall()
    except duckdb.CatalogException:
        raise S.SeriesError("the analytics tables are missing: run a refresh (healthtwin views materialize)") from None
    finally:
        cur.close()


def population(con: duckdb.DuckDBPyConnection) -> dict[str, list[int]]:
    """Residents per region and age group (mid-year population of the latest year)."""
    table = load_indicators()["syndrome_cases"].table("den")
    case = " ".join(f"WHEN age BETWEEN {lo} AND {hi} THEN {k}" for k, (lo, hi) in enumerate(AGE_BOUNDS))
    out: dict[str, list[int]] = {}
    for region, group, n in _rows(con, f"SELECT region, CASE {case} END, sum(denominator) FROM {table} GROUP BY ALL"):
        out.setdefault(region, [0] * len(AGE_GROUPS))[group] += int(n)
    return dict(sorted(out.items()))


def gather(con: duckdb.DuckDBPyConnection, syndrome: str, as_of: dt.date | None, weeks: int) -> dict[str, Any]:
    """The record's data a scenario starts from (JSON-ready)."""
    span = S.record_days(con)
    if span is None:
        raise S.SeriesError("the record holds no diagnoses yet")
    as_of = as_of or span[1]
    if not span[0] <= as_of <= span[1]:
        raise S.SeriesError(f"as_of {as_of} is outside the record ({span[0]} to {span[1]})")
    pop = population(con)
    weeks = max(weeks, 4)
    # the weeks ending on as_of: whole 7-day blocks counted back from it, not ISO weeks
    first = as_of - dt.timedelta(days=7 * weeks - 1)
    daily = {s.key[0]: s.counts for s in S.daily_counts(con, syndrome, level="region", start=first, end=as_of)}
    regions = list(pop)
    by_region = {r: [sum(daily.get(r, [0] * 7 * weeks)[7 * w:7 * w + 7]) for w in range(weeks)]
                 for r in regions}
    observed = [sum(by_region[r][w] for r in regions) for w in range(weeks)]
    hospitals = S.occupancy(con, "hospital", start=as_of - dt.timedelta(days=13), end=as_of)
    shares = _rows(con, "SELECT p.region, h.hospital, count(*) FROM inpatient_stay s JOIN base_person p ON p.id = "
                        "s.patient JOIN base_hospital h ON h.location = s.location "
                        "WHERE ht_date(s.start) BETWEEN ? AND ? GROUP BY ALL",
                   [as_of - dt.timedelta(days=364), as_of])
    sev = _rows(con, "SELECT count(DISTINCT s.id), avg(greatest(ht_date(s.\"end\") - ht_date(s.start), 1)) "
                     "FROM inpatient_stay s JOIN diagnosis d ON d.encounter = s.id JOIN base_syndrome g "
                     "ON d.icd10 >= g.low AND d.icd10 < g.high WHERE g.syndrome = ? AND ht_date(s.start) "
                     "BETWEEN ? AND ?", [syndrome, as_of - dt.timedelta(days=364), as_of])
    cases_year = sum(sum(s.counts) for s in S.daily_counts(con, syndrome, level="national",
                                                               start=as_of - dt.timedelta(days=364), end=as_of))
    persons = sum(sum(v) for v in pop.values())
    return {
        "as_of": as_of.isoformat(), "record": [span[0].isoformat(), span[1].isoformat()], "syndrome": syndrome,
        "regions": regions, "population": [pop[r] for r in regions], "persons": persons,
        "weeks": weeks, "observed": observed, "observed_by_region": [by_region[r] for r in regions],
        "hospitals": [{"hospital": h.key[2], "name": h.name, "region": h.key[0], "district": h.key[1],
                       "beds": h.beds, "census_now": h.census[-1], "census_mean_14d": sum(h.census) / len(h.census)}
                      for h in hospitals],
        "admission_shares": [[r, h, int(n)] for r, h, n in sorted(shares)],
        "group_admissions_year": int(sev[0][0] or 0), "group_los_mean": float(sev[0][1] or 0.0),
        "group_cases_year": int(cases_year),
    }


__all__ = ["gather", "population"]
