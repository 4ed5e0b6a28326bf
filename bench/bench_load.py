"""Bulk load rate (healthtwin load: validation + indexing on) into SQLite and PostgreSQL, beside two floors
measured in the same run:
  - the database's own work (db_floor.py): the rows the load wrote (resources and their search-index rows),
    written again into a fresh store by the database alone, in the loader's batches; a load with indexing on
    cannot be faster than this;
  - PostgreSQL's own COPY of the same NDJSON lines into a one-column table (no index rows at all).

    .venv/bin/python bench/bench_load.py [--patients 1000] [--database postgresql://postgres@127.0.0.1/bench_load]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from db_floor import busy_seconds, checks_cpu, postgres_floor, sqlite_floor, stored_batches

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def load(db_args: list[str], folder: Path) -> tuple[int, float]:
    t = time.perf_counter()
    out = subprocess.run([BIN / "healthtwin", "load", *db_args, str(folder)], capture_output=True, text=True,
                         check=True).stderr
    dt = time.perf_counter() - t
    n = int(re.search(r"loaded ([\d,]+) resources in", out).group(1).replace(",", ""))
    return n, dt


def fresh_database(dsn: str) -> None:
    """Drops and re-creates the benchmark's PostgreSQL database, so every run loads into an empty store."""
    import psycopg
    base, name = dsn.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def copy_floor(dsn: str, folder: Path) -> tuple[int, float]:
    import psycopg
    files = sorted(folder.glob("*.ndjson"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (content JSONB)")
        n, t = 0, time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy (content) FROM STDIN") as copy:
            for f in files:
                for line in f.read_bytes().splitlines():
                    copy.write_row((line.decode(),))
                    n += 1
        dt = time.perf_counter() - t
        conn.execute("DROP TABLE bench_copy")
    return n, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--database", default="postgresql://postgres@127.0.0.1/bench_load")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    subprocess.run([BIN / "healthtwin", "generate", "--patients", str(args.patients), "--seed", "11", "--end-date", "2024-12-31",
                    "--out", str(work / "population")], check=True, capture_output=True)
    n, dt = load(["--data-dir", str(work / "sqlite")], work / "population")
    print(f"SQLite      healthtwin load: {n:,} resources in {dt:.1f} s = {n / dt:,.0f}/s (target 30,000/s)")
    batches = stored_batches(work / "sqlite" / "healthtwin.sqlite")
    stored = sum(len(b[0]) for b in batches)
    index_rows = sum(len(rows) for b in batches for rows in b[1].values())
    print(f"            the rows it wrote: {stored:,} resources, {index_rows:,} index rows "
          f"({index_rows / stored:.1f} per resource)")
    from healthtwin.security.storage import open_store
    store = open_store(None, work / "sqlite")  # for its keys: the checks blind index rows as the load did
    at_rest = store.at_rest
    store.close()
    lines = [line for f in sorted((work / "population").glob("*.ndjson")) for line in f.read_bytes().splitlines()]
    check = checks_cpu(lines[::5], at_rest)  # a fifth of every file: every type in its share
    cores = os.cpu_count() or 1
    print(f"            the checks alone (parse, validate, extract, blind), one process: {check * 1e6:.0f} µs of CPU "
          f"a resource; on all {cores} cores with nothing else at most {cores / check:,.0f}/s")
    for deferred in (False, True):
        b0 = busy_seconds()
        ft = sqlite_floor(batches, deferred=deferred)
        cpu = (busy_seconds() - b0) / stored
        print(f"SQLite      database floor ({'value indexes built after the rows' if deferred else 'indexes kept'}"
              f"): {stored / ft:,.0f}/s, {cpu * 1e6:.0f} µs of CPU a resource; the load's ratio "
              f"{(n / dt) / (stored / ft):.2f}")
    fresh_database(args.database)
    n, dt = load(["--data-dir", str(work / "pg"), "--database", args.database], work / "population")
    print(f"PostgreSQL  healthtwin load: {n:,} resources in {dt:.1f} s = {n / dt:,.0f}/s (target 20,000/s)")
    floor_dsn = args.database + "_floor"
    from healthtwin.store.postgres import PostgresStore
    for writers, deferred in ((1, False), (2, False), (3, False), (2, True)):
        fresh_database(floor_dsn)
        PostgresStore(floor_dsn, min_size=1, max_size=1).close()  # migrated, empty
        b0 = busy_seconds()
        ft = postgres_floor(batches, floor_dsn, writers=writers, deferred=deferred)
        cpu = (busy_seconds() - b0) / stored
        how = "value indexes built after the rows" if deferred else "indexes kept"
        print(f"PostgreSQL  database floor (COPY of the rows, {how}, {writers} writer(s)): {stored / ft:,.0f}/s, "
              f"{cpu * 1e6:.0f} µs of CPU a resource (client and server); the load's ratio "
              f"{(n / dt) / (stored / ft):.2f}; with the checks' CPU beside it, {cores} cores allow at most "
              f"{cores / (cpu + check):,.0f}/s")
    m, ct = copy_floor(args.database, work / "population")
    print(f"PostgreSQL  COPY floor (same lines into a JSONB column): {m:,} in {ct:.1f} s = {m / ct:,.0f}/s; "
          f"ratio {(n / dt) / (m / ct):.2f}")


if __name__ == "__main__":
    main()
