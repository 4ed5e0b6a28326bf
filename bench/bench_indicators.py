"""Benchmark: indicator drill-downs over the materialized tables of a population of one million.

    .venv/bin/python bench/bench_indicators.py --patients 1000000 [--dir /tmp]

Loading a million patients (about 100 million resources) through the store is not feasible on a small
machine, so this bench writes rows of the *view tables* directly into DuckDB with SQL (same columns and value
formats as the ViewDefinitions produce; volumes per person taken from the generator: 8.5 encounters,
10 laboratory results, 7.7 prescriptions, 7 claims, 3.5 doses, 0.35 chronic diagnoses), builds the indicator
tables with the project's own SQL, and times each indicator's drill-downs (best of --repeat). The floor is
the smallest query there is on the same connection: one sum over the population table.
Target: every drill-down within 200 ms.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.analytics.indicators import build_cubes, compute, load_indicators  # noqa: E402

DOSES = ["HepB1", "BCG1", "Polio0", "Polio1", "Polio2", "Polio3", "Polio4", "DTP1", "DTP2", "DTP3", "DTP4",
         "PCV1", "PCV2", "PCV3", "MCV1", "MCV2", "IPV1", "DT1"]
ICD = ["I10", "E11.9", "I25.9", "J44.9", "J45.9", "N18.9", "C50.9", "D56.3"]
LOINC = ["718-7", "4548-4", "14682-9", "62238-1", "2093-3", "14647-2", "1988-5", "6690-2", "14771-0", "787-2"]
ATC = ["C09AA02", "C08CA01", "N02BE01", "J01CA04", "A10BA02", "A07CA", "B01AC06", "C10AA05", "R03BB04", "R03AC02"]


def synthesize(con: duckdb.DuckDBPyConnection, n: int) -> None:
    def ts(day: str) -> str:  # an ISO dateTime string within 2019-2024, like the views give
        return f"strftime(DATE '2019-01-01' + CAST({day} AS INTEGER), '%Y-%m-%dT10:00:00+04:00')"
    pid = f"'pat-' || CAST(floor(random() * {n}) AS BIGINT)"
    con.execute(f"""CREATE TABLE patient AS SELECT 'pat-' || i AS id,
        CASE WHEN random() < 0.498 THEN 'male' ELSE 'female' END AS sex,
        strftime(DATE '1924-01-01' + CAST(random() * 36500 AS INTEGER), '%Y-%m-%d') AS birth_date,
        CASE WHEN random() < 0.03 THEN {ts('random() * 2190')} END AS deceased_date,
        'region-' || (i % 80) % 14 AS region, 'district-' || (i % 80) AS district
        FROM range({n}) t(i)""")
    con.execute(f"""CREATE TABLE encounter AS SELECT 'enc-' || i AS id, {pid} AS patient, 'finished' AS status,
        CASE WHEN random() < 0.94 THEN 'AMB' WHEN random() < 0.5 THEN 'EMER' ELSE 'IMP' END AS class,
        {ts('random() * 2190')} AS start, NULL::VARCHAR AS "end" FROM range({int(n * 8.5)}) t(i)""")
    con.execute(f"""CREATE TABLE condition AS SELECT 'cnd-' || i AS id, {pid} AS patient,
        list_element({ICD}, 1 + CAST(floor(random() * {len(ICD)}) AS INTEGER)) AS icd10,
        'problem-list-item' AS category, 'active' AS clinical_status, {ts('random() * 2190')} AS onset,
        NULL::VARCHAR AS recorded FROM range({int(n * 0.35)}) t(i)""")
    con.execute(f"""CREATE TABLE immunization AS SELECT 'imm-' || i AS id, {pid} AS patient, 'completed' AS status,
        regexp_extract(d, '^[A-Za-z]+') AS series, CAST(regexp_extract(d, '[0-9]+$') AS INTEGER) AS dose_number,
        NULL::VARCHAR AS dose_label, '00' AS cvx, {ts('random() * 2190')} AS occurrence
        FROM (SELECT i, list_element({DOSES}, 1 + CAST(floor(random() * {len(DOSES)}) AS INTEGER)) AS d
              FROM range({int(n * 3.5)}) t(i))""")
    con.execute(f"""CREATE TABLE lab_result AS SELECT 'obs-' || i AS id, {pid} AS patient,
        list_element({LOINC}, 1 + CAST(floor(random() * {len(LOINC)}) AS INTEGER)) AS loinc, 'test' AS test,
        {ts('random() * 2190')} AS effective,
        CASE WHEN random() < 0.7 THEN 'N' WHEN random() < 0.7 THEN 'H' ELSE 'L' END AS interpretation,
        random() * 100 AS value, 'g/L' AS unit FROM range({int(n * 10)}) t(i)""")
    con.execute(f"""CREATE TABLE death_cause AS SELECT 'obs-d-' || id AS id, id AS patient,
        list_element({ICD}, 1 + CAST(floor(random() * {len(ICD)}) AS INTEGER)) AS icd10, 'cause' AS cause,
        deceased_date AS effective FROM patient WHERE deceased_date IS NOT NULL""")
    con.execute(f"""CREATE TABLE medication_request AS SELECT 'mrq-' || i AS id, {pid} AS patient,
        'completed' AS status, list_element({ATC}, 1 + CAST(floor(random() * {len(ATC)}) AS INTEGER)) AS atc,
        {ts('random() * 2190')} AS authored FROM range({int(n * 7.7)}) t(i)""")
    con.execute(f"""CREATE TABLE claim AS SELECT 'clm-' || i AS id, {pid} AS patient, 'active' AS status,
        CASE WHEN random() < 0.95 THEN 'professional' ELSE 'institutional' END AS claim_type,
        CASE WHEN random() < 0.6 THEN 'AMB-GP' WHEN random() < 0.5 THEN 'AMB-SPEC' ELSE 'IMP-DAY' END AS service,
        strftime(DATE '2020-01-01' + CAST(random() * 1825 AS INTEGER), '%Y-%m-%d') AS billable_start,
        round(random() * 100, 2) AS total, 'AZN' AS currency FROM range({int(n * 7)}) t(i)""")


QUERIES = [{}, {"by": "region"}, {"by": "district,sex", "region": "region-3"}, {"by": "age", "age": "15-64"},
           {"by": "sex,age", "period": "2023", "district": "district-17"}, {"format": "csv", "by": "region,sex"}]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ht-bench-ind-", dir=args.dir))
    try:
        con = duckdb.connect(str(work / "analytics.duckdb"))
        t0 = time.perf_counter()
        synthesize(con, args.patients)
        rows = sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "patient", "encounter", "condition", "immunization", "lab_result", "death_cause", "medication_request",
            "claim"))
        print(f"synthesized {rows:,} view rows for {args.patients:,} patients in {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        built = build_cubes(con, force=True)
        assert all(v == "built" for v in built.values()), built
        print(f"indicator tables built in {time.perf_counter() - t0:.1f}s")
        for ind in load_indicators().values():
            n = con.execute(f"SELECT count(*) FROM {ind.table('num')}").fetchone()[0]
            print(f"  {ind.table('num')}: {n:,} rows")

        def best(fn) -> float:
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        floor = best(lambda: con.cursor().execute("SELECT sum(denominator) FROM base_population").fetchone())
        print(f"floor (one sum over base_population): {floor * 1000:7.1f} ms")
        worst_all = 0.0
        for name, ind in load_indicators().items():
            times = []
            for q in QUERIES:
                params = {k: v for k, v in q.items() if k == "format" or k in ind.dimensions or k == "by"}
                if "by" in params:
                    params["by"] = ",".join(d for d in params["by"].split(",") if d in ind.dimensions)
                times.append(best(lambda: compute(con, ind, params)))
            worst_all = max(worst_all, max(times))
            print(f"{name:22s} median {statistics.median(times) * 1000:7.1f} ms   worst {max(times) * 1000:7.1f} ms")
        print(f"worst drill-down: {worst_all * 1000:.1f} ms   target <= 200 ms: {'MET' if worst_all <= 0.2 else 'NOT MET'}")
        con.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
