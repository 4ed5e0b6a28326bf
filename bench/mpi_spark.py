"""The deduplication on Spark (local mode) beside DuckDB, on the same dirty population and the same trained model.

    PYTHONPATH=src python bench/mpi_spark.py --patients 20000

DuckDB trains the model (as bench/mpi.py) and scores the pairs; Spark then scores the same records with that
saved model (`spark_engine.dedupe_spark(model_json=...)`). Printed: each engine's scoring time, Spark's session
start-up apart, and whether the two pair sets and weights agree. The anchor is DuckDB's own time in the same run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from healthtwin.analytics.spark import spark_session  # noqa: E402
from healthtwin.mpi import features, model, spark_engine, splink_engine  # noqa: E402
from healthtwin.population.generator import generate_stream  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--master", default="local[2]")
    args = ap.parse_args()
    import duckdb
    import pandas as pd
    from splink import DuckDBAPI, Linker
    load = os.getloadavg()
    records = [features.of_patient(p) for _t, p in generate_stream(
        args.patients, args.seed, end_date=dt.date(2024, 12, 31), events=set(), ground_truth={}, dirty=True,
        patients_only=True)]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("frame", pd.DataFrame(records, columns=list(features.FIELDS)).astype(object))
    con.execute("CREATE TABLE records AS SELECT * FROM frame")
    t = time.perf_counter()
    trained = splink_engine.dedupe(con, "records")
    duck_train_and_score = time.perf_counter() - t
    saved = trained.linker.misc.save_model_to_json()
    t = time.perf_counter()
    table = Linker("records", saved, DuckDBAPI(connection=con)).inference.predict(
        threshold_match_weight=trained.weights.prior + model.POSSIBLE).physical_name
    duck = {(l, r): w for l, r, w in con.execute(f"SELECT unique_id_l, unique_id_r, match_weight FROM {table}").fetchall()}
    duck_score = time.perf_counter() - t
    t = time.perf_counter()
    spark = spark_session(args.master, app="healthtwin-mpi-bench")
    start = time.perf_counter() - t
    t = time.perf_counter()
    frame = spark_engine.records_frame(spark, records)
    done = spark_engine.dedupe_spark(spark, frame, model_json=saved)
    sp = {(r[0], r[1]): r[2] for r in done.pairs.select("unique_id_l", "unique_id_r", "match_weight").collect()}
    spark_score = time.perf_counter() - t
    spark.stop()
    print(json.dumps({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load], "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "records": len(records), "pairs": {"duckdb": len(duck), "spark": len(sp)},
        "same_pairs": set(duck) == set(sp),
        "max_weight_difference": max((abs(duck[k] - sp[k]) for k in set(duck) & set(sp)), default=0.0),
        "seconds": {"duckdb_train_and_score": round(duck_train_and_score, 1), "duckdb_score": round(duck_score, 1),
                    "spark_session_start": round(start, 1), "spark_score": round(spark_score, 1)},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
