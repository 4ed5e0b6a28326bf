"""A million citizens' materialised analytics, made the cheapest honest way, for bench_dashboard.py.

Loading a million generated citizens (about 110 million resources) through the store takes days on two
cores (docs/performance.md), and the dashboard never reads the store: it reads the view tables and the
indicator tables built from them. So:

1. `healthtwin demo --patients SAMPLE` makes a real data folder: the generator's population loaded into
   the store, the ViewDefinitions materialised into `analytics.duckdb`, the demo's sign-ins;
2. every view table with a `patient` column is copied FACTOR times inside DuckDB, each copy's ids and
   patient (and encounter) references suffixed `~k`, and each copy's birth dates moved by a fixed number of
   days within +-180 (so ages fill their bands as a larger population would); event dates stay, so each
   day's counts are FACTOR times the sample's and the epidemic curves keep their shape. The hospitals'
   Locations (their beds: population/institutions.py sizes them for the whole country) are not copied;
3. the indicator tables are rebuilt from the scaled views with the project's own SQL (`build_cubes`).

The store keeps the SAMPLE citizens (the sign-ins, the alerts); the analytics hold SAMPLE x FACTOR. The
Parquet copies of the views are left behind (their state is dropped, so a later refresh rewrites them).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

SCALE_TABLE = "_bench_scale"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "ORDER BY column_index", [table]).fetchall()]


def _copy_expr(column: str, kind: str, table: str) -> str:
    q = f'"{column}"'
    if column in ("id", "patient", "encounter") and kind == "VARCHAR":
        return f"CASE WHEN {q} IS NULL THEN NULL ELSE {q} || '~' || k END AS {q}"
    if table == "patient" and column == "birth_date" and kind == "VARCHAR":
        shifted = f"strftime(TRY_CAST({q} AS DATE) + CAST((k * 7919) % 361 - 180 AS INTEGER), '%Y-%m-%d')"
        return f"CASE WHEN length({q}) = 10 THEN coalesce({shifted}, {q}) ELSE {q} END AS {q}"
    return q


def scale(con: duckdb.DuckDBPyConnection, factor: int, views: list[str]) -> dict[str, int]:
    """Each view table with a patient column, FACTOR times its rows (copy 0 is the original); returns the
    new row counts."""
    counts: dict[str, int] = {}
    for table in views:
        cols = _columns(con, table)
        names = [c for c, _ in cols]
        if not cols or "patient" not in names and table != "patient":
            continue
        select = ", ".join(_copy_expr(c, t, table) for c, t in cols)
        con.execute(f'CREATE TABLE "_bench_{table}" AS SELECT * FROM "{table}" UNION ALL '
                    f'SELECT {select} FROM "{table}", range(1, {factor}) AS r(k)')
        con.execute(f'DROP TABLE "{table}"')
        con.execute(f'ALTER TABLE "_bench_{table}" RENAME TO "{table}"')
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        con.execute("UPDATE _ht_view_state SET row_count = ? WHERE name = ?", [counts[table], table])
    return counts


def build(folder: Path, patients: int, sample: int, log=print) -> dict[str, object]:
    """The data folder with SAMPLE citizens in the store and SAMPLE x (patients // sample) in the analytics;
    made once (a folder already scaled to that size is reused as it is)."""
    factor = max(1, patients // sample)
    db = folder / "analytics.duckdb"
    if db.exists():
        con = duckdb.connect(str(db))
        try:
            done = con.execute(f"SELECT sample, factor FROM {SCALE_TABLE}").fetchone() \
                if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                               [SCALE_TABLE]).fetchone()[0] else None
        finally:
            con.close()
        if done == (sample, factor):
            from healthtwin.analytics.indicators import build_cubes
            con = duckdb.connect(str(db))
            try:  # an indicator whose definition changed since is rebuilt from the scaled views
                rebuilt = {k: v for k, v in build_cubes(con).items() if v != "current"}
            finally:
                con.close()
            log(f"reusing {folder}: {sample:,} citizens x {factor} in the analytics; rebuilt {rebuilt or 'none'}")
            return {"sample": sample, "factor": factor, "reused": True}
        if done is not None:
            raise SystemExit(f"{folder} is scaled to {done[0]:,} x {done[1]}: use another --dir")
    made = 0.0
    if not (folder / "demo-users.json").exists() or not db.exists():
        t = time.perf_counter()
        root = Path(__file__).resolve().parents[1]
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "bench-demo.log", "wb") as log_file:
            subprocess.run([sys.executable, "-m", "healthtwin.cli", "demo", "--data-dir", str(folder), "--patients",
                            str(sample), "--no-serve", "--end-date", "2026-12-01"], check=True, stdout=log_file,
                           stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(root / "src")})
        made = time.perf_counter() - t
        log(f"demo of {sample:,} citizens (generated, loaded, materialised) in {made:.0f} s")
    else:
        log(f"scaling the demo already in {folder} (made with --patients {sample:,}, it is assumed)")
    from healthtwin.analytics.indicators import build_cubes, indicator_views
    con = duckdb.connect(str(db))
    try:
        t = time.perf_counter()
        counts = scale(con, factor, [str(v["name"]) for v in indicator_views()])
        scaled = time.perf_counter() - t
        log(f"view tables x{factor} in {scaled:.0f} s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        con.execute("DELETE FROM _ht_parquet_state")  # the files are the sample's: a refresh rewrites them
        t = time.perf_counter()
        built = build_cubes(con, force=True)
        failed = {k: v for k, v in built.items() if v != "built"}
        if failed:
            raise SystemExit(f"indicator tables failed: {failed}")
        cubes = time.perf_counter() - t
        log(f"indicator tables rebuilt in {cubes:.0f} s")
        con.execute(f"CREATE TABLE {SCALE_TABLE} AS SELECT ? AS sample, ? AS factor, ? AS made_at",
                    [sample, factor, time.time()])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return {"sample": sample, "factor": factor, "reused": False, "demo_s": made, "scale_s": scaled,
            "cubes_s": cubes, "rows": counts}
