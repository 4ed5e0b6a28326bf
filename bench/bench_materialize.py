"""Benchmark: full vs incremental materialization of the indicator views from a SQLite store.

    .venv/bin/python bench/bench_materialize.py --patients 2000 [--store existing.sqlite] [--change 0.01]

Generates a population and loads it into a SQLite store (or copies an existing store file, since the bench
writes to it), then times in the same run:
  floor: reading every resource's bytes from the store in the same keyset pages (the I/O a full refresh must do);
  full:  materializing every view (DuckDB + Parquet), then the indicator tables;
  incr:  the same after --change (1 %) of the resources were updated or deleted, --rounds times (each
         round's figure and the median); Parquet gets a delta file
         per changed view (or a new base where the deltas outgrow --compact-ratio of it), the indicator
         tables are updated from the journal (checked equal to a rebuild from the same views after the
         last round);
  compaction: then a new base file for every view (what the refresh that compacts adds).
Target: incremental <= 5 % of full.

Each refresh is timed on a settled store: the store's WAL is copied back into its file first
(`SQLiteStore.checkpoint`). The 1 % change writes about 50 MB of WAL, which the store's background thread
otherwise copies (about 2 s of I/O and CPU on a 2-core machine) while the incremental refresh runs, and the
full refresh, timed on a freshly opened copy, never competes with such a copy. `--no-settle` times the
refreshes as they come, with that copy running beside them.

A store copied from a fresh bulk load may carry `last_updated` stamps ahead of the wall clock (the loader
stamps 1 ms apart, faster than real time, and a new process's clock starts from the wall clock): changes
made before the clock catches up would be stamped below the materializer's watermark and missed, so the
bench waits until the wall clock has passed the store's newest stamp.
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from healthtwin.analytics.cube_delta import read_cells  # noqa: E402
from healthtwin.analytics.indicators import build_cubes, indicator_views  # noqa: E402
from healthtwin.analytics.materialize import (  # noqa: E402
    CHECKPOINT_THRESHOLD, CHECKPOINT_THRESHOLD_BYTES, Materializer, StoreSource)
from healthtwin.analytics.refresh import refresh_all  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402


def floor(store: SQLiteStore) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for (rtype,) in store.query("SELECT DISTINCT type FROM resources", []):
        last = ""
        while True:
            rows = store.query("SELECT id, content FROM resources WHERE type = ? AND id > ? AND deleted = 0 "
                               "ORDER BY id LIMIT 5000", [rtype, last])
            n += len(rows)
            if len(rows) < 5000:
                break
            last = rows[-1][0]
    return time.perf_counter() - t0, n


def change(store: SQLiteStore, fraction: float, seed: int = 1) -> tuple[int, int]:
    """Updates (90 %) or deletes (10 %) a random `fraction` of the live resources of the viewed types."""
    types = sorted({v["resource"] for v in indicator_views()})
    rows = store.query(f"SELECT type, id FROM resources WHERE deleted = 0 AND type IN ({','.join('?' * len(types))})",
                       types)
    rng = random.Random(seed)
    picked = rng.sample(rows, max(1, int(len(rows) * fraction)))
    updated = deleted = 0
    with store.transaction() as tx:
        for rtype, rid in picked:
            if rng.random() < 0.1:
                tx.delete(rtype, rid)
                deleted += 1
                continue
            res = orjson.loads(store.read(rtype, rid).content)
            res.setdefault("meta", {})["tag"] = [{"system": "https://health.gov.az/bench", "code": "changed"}]
            if rtype == "Patient":
                res["gender"] = "other"
            tx.update(rtype, rid, res)
            updated += 1
    return updated, deleted


def cube_tables(con) -> dict[str, list]:
    """The indicator and base tables as their readers see them (an update appends a table's change as rows of
    their own: `read_cells` sums them per cell)."""
    names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, 'ind_') "
                                       "OR starts_with(table_name, 'base_')").fetchall()]
    return {n: sorted(read_cells(con, n), key=repr) for n in names}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--store", default=None, help="an existing SQLite store file to copy instead of generating "
                    "(with the keys/ folder beside it, if any)")
    ap.add_argument("--change", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --change, each refreshed incrementally; "
                    "the median is reported beside every round")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--no-parquet", action="store_true", help="DuckDB tables only (shows what Parquet costs)")
    ap.add_argument("--no-settle", action="store_true", help="do not checkpoint the store's WAL before each "
                    "timed refresh (the background copy of the change then competes with the refresh)")
    ap.add_argument("--compact-ratio", type=float, default=0.25, help="Materializer(compact_ratio=...)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ht-bench-mat-", dir=args.dir))
    try:
        db = work / "healthtwin.sqlite"
        if args.store:
            shutil.copy(args.store, db)
            keys = Path(args.store).parent / "keys"
            if keys.is_dir():  # a data folder's store: its identifiers are sealed with that folder's keys
                from healthtwin.security.storage import open_store
                shutil.copytree(keys, work / "keys")
                store = open_store(None, work)
            else:
                store = SQLiteStore(db)
        else:
            from healthtwin.api.services import Services
            from healthtwin.loading import load
            from healthtwin.population.generator import generate
            generate(work / "pop", args.patients, 1, end_date=dt.date(2024, 12, 31))
            store = SQLiteStore(db)
            t0 = time.perf_counter()
            load(Services.build(store), [str(work / "pop")], workers=1)
            print(f"loaded {args.patients} patients in {time.perf_counter() - t0:.1f}s")
        total = store.query("SELECT COUNT(*) FROM resources WHERE deleted = 0", [])[0][0]
        ahead = (store.query("SELECT MAX(last_updated) FROM resources", [])[0][0] or 0) - time.time()
        if ahead > 0:
            print(f"waiting {ahead:.0f} s for the wall clock to pass the store's newest last_updated")
            time.sleep(ahead + 1)
        settle = (lambda: None) if args.no_settle else getattr(store, "checkpoint", lambda: None)
        settle()
        f, _ = floor(store)
        mat = Materializer(StoreSource(store), work / "out", indicator_views(), parquet=not args.no_parquet,
                           compact_ratio=args.compact_ratio)
        t0 = time.perf_counter()
        full = refresh_all(mat, full=True)
        t_full = time.perf_counter() - t0
        views_rows = sum(v.rows for v in full.views)
        rounds = []  # (updated, deleted, seconds, report) per round of --change
        for r in range(args.rounds):
            upd, dele = change(store, args.change, seed=r + 1)
            settle()
            t0 = time.perf_counter()
            inc = refresh_all(mat)
            rounds.append((upd, dele, time.perf_counter() - t0, inc))
        wal = work / "out" / "analytics.duckdb.wal"
        wal_bytes = (wal.stat().st_size if wal.exists() else 0) / args.rounds
        t0 = time.perf_counter()
        mat.checkpoint()  # what folding this refresh's WAL costs; in service it happens once per threshold
        t_ckpt = time.perf_counter() - t0
        updated = cube_tables(mat.con)
        t0 = time.perf_counter()
        build_cubes(mat.con, force=True)
        t_cubes = time.perf_counter() - t0
        same = cube_tables(mat.con) == updated
        t0 = time.perf_counter()
        mat.compact_parquet()
        t_compact = time.perf_counter() - t0
        print(f"resources in store:            {total:>10,}   view rows: {views_rows:,}"
              f"   ({'store not settled' if args.no_settle else 'store WAL checkpointed'} before each timed refresh)")
        print(f"floor (read all bytes):        {f:8.2f} s")
        print(f"full materialization:          {t_full:8.2f} s   (views {full.seconds:.2f} s + indicators "
              f"{full.extra['indicator_seconds']:.2f} s)")
        for i, (upd, dele, t_inc, inc) in enumerate(rounds, 1):
            print(f"round {i}: changed {args.change:.0%} ({upd} updated, {dele} deleted); incremental refresh "
                  f"{t_inc:5.2f} s (views {inc.seconds:.2f} s + indicators {inc.extra['indicator_seconds']:.2f} s) "
                  f"= {t_inc / t_full:.1%} of full (views {inc.seconds / full.seconds:.1%})")
        # The median round: one refresh on a shared machine varies by half from run to run.
        _, _, t_inc, inc = sorted(rounds, key=lambda r: r[2])[len(rounds) // 2]
        print(f"incremental refresh, median:   {t_inc:8.2f} s   (views {inc.seconds:.2f} s + indicators "
              f"{inc.extra['indicator_seconds']:.2f} s)")
        share = wal_bytes / CHECKPOINT_THRESHOLD_BYTES
        print(f"  its WAL: {wal_bytes / 1e6:.1f} MB a round; folding them took {t_ckpt:.2f} s, which DuckDB does once the WAL "
              f"passes {CHECKPOINT_THRESHOLD}: {share:.1%} of a checkpoint per refresh like this one, "
              f"~{t_ckpt * share * 1000:.0f} ms (not in the figure above)")
        outcomes = sorted({o for *_, rep in rounds for o in rep.extra["indicators"].values()})
        print(f"  indicator tables: {', '.join(outcomes)}; rebuilt alone they take {t_cubes:.2f} s; after "
              f"{args.rounds} round(s) the updated tables equal the rebuilt ones: {'yes' if same else 'NO'}")
        if not args.no_parquet:
            print(f"compaction (new base, all views): {t_compact:5.2f} s   (+{t_compact / t_full:.1%} of full, "
                  f"on the refresh that compacts)")
        ratio = t_inc / t_full
        vratio = sorted(r[3].seconds for r in rounds)[len(rounds) // 2] / full.seconds
        within = sum(r[2] / t_full <= 0.05 for r in rounds)
        print(f"incremental / full, views, median:     {vratio:6.1%}   target <= 5 %: "
              f"{'MET' if vratio <= 0.05 else 'NOT MET'}")
        print(f"incremental / full, + indicators, median:{ratio:5.1%}   target <= 5 %: "
              f"{'MET' if ratio <= 0.05 else 'NOT MET'} ({within} of {len(rounds)} rounds within 5 %)")
        for v in inc.views:
            print(f"  {v.name:20s} {v.mode:12s} read={v.read:>6} changed={v.removed:>6} {v.seconds:6.3f}s "
                  f"{v.parquet}")
        mat.close()
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
