"""Floor for the cohort refresh's writes on SQLite: SQLite itself writing the rows the first refresh wrote
(every ImmunizationRecommendation, its history row and its index rows), copied by INSERT ... SELECT (C, no
Python) in one transaction into an empty database of the same schema. SQLite takes one writer at a time, so
the refresh's write transactions cannot together cost less than this however the work is split.

    PYTHONPATH=src python bench/immunization_cohort.py --cohort 130000   # prints "data in /tmp/bench-cohort-…"
    python bench/cohort_write_floor.py /tmp/bench-cohort-…/bench.sqlite
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

TYPE = "ImmunizationRecommendation"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="the SQLite file bench/immunization_cohort.py left behind")
    args = p.parse_args()
    if not os.path.exists(args.store):
        raise SystemExit(f"no such store: {args.store}")
    with tempfile.TemporaryDirectory() as tmp:
        con = sqlite3.connect(os.path.join(tmp, "floor.sqlite"), isolation_level=None)
        con.execute("pragma journal_mode=wal")
        con.execute("pragma synchronous=normal")
        old = sqlite3.connect(args.store)
        for (sql,) in old.execute("select sql from sqlite_master where sql is not null and name not like 'sqlite_%'"):
            con.execute(sql)
        tables = [r[0] for r in old.execute("select name from sqlite_master where type='table' and name like 'idx_%'")]
        old.close()
        con.execute("attach ? as o", (args.store,))
        con.execute("create temp table rr as select rid from o.resources where type = ?", (TYPE,))
        started = time.perf_counter()
        counts = {}
        con.execute("begin")
        counts["resources"] = con.execute("insert into resources select * from o.resources "
                                          "where rid in (select rid from rr)").rowcount
        counts["history"] = con.execute("insert into history select * from o.history "
                                        "where type = ? and version = 1", (TYPE,)).rowcount
        for table in tables:
            counts[table] = con.execute(f"insert into {table} select * from o.{table} "  # nosec B608 - names from the schema
                                        "where rid in (select rid from rr)").rowcount
        con.execute("commit")
        took = time.perf_counter() - started
    index_rows = sum(v for k, v in counts.items() if k.startswith("idx_"))
    print(f"load average {os.getloadavg()[0]:.1f}; {counts['resources']:,} recommendations, {counts['history']:,} "
          f"history rows, {index_rows:,} index rows written by SQLite alone in {took:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
