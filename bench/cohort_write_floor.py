"""Floors for the cohort refresh's writes on SQLite: SQLite itself (C, no Python between the rows) writing what
the refresh writes, into a store of the same schema, pragmas and checkpointer (store/sqlite.py), in
transactions of the refresh's chunk size. SQLite takes one writer at a time, so the refresh's write
transactions cannot together take less wall time than this however the work is split, and their CPU is
taken from the cores the forecasts need.

  * first: every recommendation created: its row and its index rows (~39 a child), copied by
    INSERT ... SELECT from the bench's store;
  * rewrite: every recommendation given a new version: the old version copied to history in SQL, the
    resource row updated with new content (bytes handed in from Python, as the refresh does), the index rows
    read back by rid (what the refresh's difference needs) and the date rows replaced (what differs
    between two assessment dates; the refresh writes that difference only).

    PYTHONPATH=src python bench/immunization_cohort.py --cohort 130000   # prints "data in /tmp/bench-cohort-…"
    PYTHONPATH=src python bench/cohort_write_floor.py /tmp/bench-cohort-…/bench.sqlite

bench/immunization_cohort.py runs the same measurement at its end (`measure`), so its figures sit beside
the refresh's in one run.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from healthtwin.registries.immunization.refresh import CHUNK  # noqa: E402  (children, so recommendations, a transaction)

TYPE = "ImmunizationRecommendation"


@dataclass
class Floor:
    recommendations: int
    index_rows: int
    first_wall: float
    first_cpu: float
    rewrite_wall: float
    rewrite_cpu: float


def measure(source: str) -> Floor:
    """Both floors, into a new store in a temporary folder, from the recommendations stored in `source`."""
    from healthtwin.store.schema import INDEX_TABLES
    from healthtwin.store.sqlite import SQLiteStore
    old = sqlite3.connect(source)
    rids = [r[0] for r in old.execute("SELECT rid FROM resources WHERE type = ? ORDER BY id", (TYPE,))]
    old.close()
    chunks = [rids[i:i + CHUNK] for i in range(0, len(rids), CHUNK)]
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "floor.sqlite")
        conn = store._conn()
        conn.execute("ATTACH ? AS o", (source,))
        index_rows = 0

        def marks(n: int) -> str:
            return ",".join("?" * n)

        started, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            with store.write_cursor() as cur:
                cur.execute(f"INSERT INTO resources SELECT * FROM o.resources WHERE rid IN ({marks(len(chunk))})",
                            chunk)
                for table in INDEX_TABLES:  # nosec B608 - table names from the schema, values bound
                    cur.execute(f"INSERT INTO {table} SELECT * FROM o.{table} WHERE rid IN ({marks(len(chunk))})",
                                chunk)
                    index_rows += cur.rowcount
        store.checkpoint()  # the background checkpointer's share of the work, counted in the CPU below
        first_wall, first_cpu = time.perf_counter() - started, time.process_time() - cpu

        contents = {}
        for chunk in chunks:  # new content, read before the clock starts (the refresh builds it before writing)
            for rid, content in conn.execute(f"SELECT rid, content FROM o.resources WHERE rid IN "
                                             f"({marks(len(chunk))})", chunk):
                contents[rid] = bytes(content) + b" "  # differs from the stored bytes, same size
        started, cpu = time.perf_counter(), time.process_time()
        for chunk in chunks:
            with store.write_cursor() as cur:
                cur.execute("INSERT INTO history (type, id, version, last_updated, deleted, method, content) "
                            "SELECT type, id, version, last_updated, deleted, 'update', content FROM resources "
                            f"WHERE rid IN ({marks(len(chunk))})", chunk)
                cur.executemany("UPDATE resources SET version = version + 1, last_updated = last_updated + 1, "
                                "content = ? WHERE rid = ?", [(contents[rid], rid) for rid in chunk])
                stored = {table: cur.execute(f"SELECT rowid, * FROM {table} WHERE rid IN ({marks(len(chunk))})",  # nosec B608
                                             chunk).fetchall() for table in INDEX_TABLES}
                dates = stored["idx_date"]  # (rowid, rid, pid, lo, hi)
                cur.execute(f"DELETE FROM idx_date WHERE rid IN ({marks(len(chunk))})", chunk)
                cur.executemany("INSERT INTO idx_date (rid, pid, lo, hi) VALUES (?, ?, ?, ?)",
                                [(rid, pid, lo + 86400, hi + 86400) for _, rid, pid, lo, hi in dates])
        store.checkpoint()
        rewrite_wall, rewrite_cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
    return Floor(len(rids), index_rows, first_wall, first_cpu, rewrite_wall, rewrite_cpu)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="the SQLite file bench/immunization_cohort.py left behind")
    args = p.parse_args()
    if not os.path.exists(args.store):
        raise SystemExit(f"no such store: {args.store}")
    f = measure(args.store)
    print(f"load average {os.getloadavg()[0]:.1f}; {f.recommendations:,} recommendations, {f.index_rows:,} index rows; "
          f"SQLite alone, {CHUNK} a transaction: created in {f.first_wall:.1f} s wall ({f.first_cpu:.1f} s CPU), "
          f"rewritten in {f.rewrite_wall:.1f} s wall ({f.rewrite_cpu:.1f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
