"""`healthtwin mpi dedupe`: the batch deduplication of a file of Patients, on DuckDB (default) or Spark.

Input is NDJSON, one Patient a line (a Bulk Data export's `Patient.ndjson`, or the generator's). Output is a CSV
of the scored pairs (ids, match weight, evidence in bits, grade) and a summary on stderr. `--engine spark` runs
the same model in Spark local mode (`--master` for another); `--model` scores with a saved model (a previous
run's `--model-out`) instead of training on the input.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator


def add_parser(commands: Any) -> None:
    dedupe = commands.add_parser("dedupe", help="deduplicate a file of Patients (NDJSON) with the Splink model")
    dedupe.add_argument("patients", help="NDJSON file, one Patient a line")
    dedupe.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                        help="where the model runs: duckdb (this machine) or spark (local mode or a cluster)")
    dedupe.add_argument("--master", default="local[2]", help="Spark master (with --engine spark)")
    dedupe.add_argument("--model", help="score with this saved Splink model (JSON) instead of training")
    dedupe.add_argument("--model-out", help="write the trained model (Splink JSON, weights included) here")
    dedupe.add_argument("--out", default="-", help="CSV of scored pairs (default: stdout)")
    dedupe.set_defaults(func=run)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    from . import features
    for number, line in enumerate(path.open(encoding="utf-8"), 1):
        if not line.strip():
            continue
        try:
            resource = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{number}: not JSON ({e})") from None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient" or not resource.get("id"):
            raise ValueError(f"{path}:{number}: not a Patient with an id")
        yield features.of_patient(resource)


def _rows(engine: str, args: argparse.Namespace, records: list[dict[str, Any]],
          saved: dict[str, Any] | None) -> tuple[list[tuple[str, str, float]], float, dict[str, Any], dict[str, float]]:
    """(pairs as (left, right, match weight), the prior, the model used, seconds) from the chosen engine."""
    if engine == "spark":
        from ..analytics.spark import available, spark_session
        from .spark_engine import dedupe_spark, records_frame
        reason = available()
        if reason:
            raise RuntimeError(f"--engine spark: {reason}")
        from pyspark.sql import SparkSession
        ours = SparkSession.getActiveSession() is None  # a session the caller started is left running
        spark = spark_session(args.master, app="healthtwin-mpi")
        try:
            done = dedupe_spark(spark, records_frame(spark, records), model_json=saved)
            pairs = [(r[0], r[1], float(r[2])) for r in
                     done.pairs.select("unique_id_l", "unique_id_r", "match_weight").collect()]
            return pairs, done.weights.prior, done.model_json, done.seconds
        finally:
            if ours:
                spark.stop()
    import duckdb
    import pandas as pd
    from splink import DuckDBAPI, Linker

    from . import features, model
    from .splink_engine import dedupe, for_dialect, weights_of
    con = duckdb.connect()
    con.register("frame", pd.DataFrame(records, columns=list(features.FIELDS)).astype(object))
    con.execute("CREATE TABLE records AS SELECT * FROM frame")
    if saved is None:
        out = dedupe(con, "records")
        table, prior, used, seconds = out.pairs, out.weights.prior, out.linker.misc.save_model_to_json(), out.seconds
    else:
        t = time.perf_counter()
        saved = for_dialect(saved, "duckdb")  # a model saved by a Spark run names Spark's functions
        prior = weights_of(saved).prior
        table = Linker("records", saved, DuckDBAPI(connection=con)).inference.predict(
            threshold_match_weight=prior + model.POSSIBLE).physical_name
        used, seconds = saved, {"predict": time.perf_counter() - t}
    pairs = [(l, r, float(w)) for l, r, w in
             con.execute(f"SELECT unique_id_l, unique_id_r, match_weight FROM {table}").fetchall()]
    return pairs, prior, used, seconds


def run(args: argparse.Namespace) -> int:
    from . import model
    try:
        records = list(_records(Path(args.patients)))
        saved = json.loads(Path(args.model).read_text()) if args.model else None
        if len(records) < 2:
            raise ValueError(f"{args.patients}: fewer than two Patients, nothing to compare")
        started = time.perf_counter()
        pairs, prior, used, seconds = _rows(args.engine, args, records, saved)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"healthtwin mpi dedupe: {e}", file=sys.stderr)
        return 2
    grades: dict[str, int] = {}
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="", encoding="utf-8")
    try:
        writer = csv.writer(out)
        writer.writerow(["left", "right", "match_weight", "evidence", "grade"])
        for left, right, weight in sorted(pairs, key=lambda p: -p[2]):
            grade = model.grade(weight - prior) or ""
            grades[grade] = grades.get(grade, 0) + 1
            writer.writerow([left, right, round(weight, 4), round(weight - prior, 4), grade])
    finally:
        if out is not sys.stdout:
            out.close()
    if args.model_out:
        Path(args.model_out).write_text(json.dumps(used, indent=1))
    print(f"{args.engine}: {len(records):,} records, {len(pairs):,} scored pairs "
          f"({', '.join(f'{k}: {v:,}' for k, v in sorted(grades.items()) if k)}) in "
          f"{time.perf_counter() - started:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())})",
          file=sys.stderr)
    return 0
