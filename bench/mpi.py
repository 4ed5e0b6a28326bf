"""The patient index on a population with known truth: precision and recall at the automatic-link threshold,
the review band, the full deduplication's time, and `$match` latency.

    PYTHONPATH=src python bench/mpi.py --patients 200000            # accuracy + deduplication time
    PYTHONPATH=src python bench/mpi_match.py --patients 100000       # $match p95 over a store of that size

The population is the generator's with its dirty duplicates (population/duplicates.py; Patients only). A pair
is linked automatically when its match weight reaches model.AUTO_LINK or both records carry the same FIN;
precision and recall count pairs of records (true pairs: every two records of one citizen). The floor printed
beside the deduplication time is DuckDB alone reading the same records and self-joining them on the first
blocking rule, measured in the same run.
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

from healthtwin.mpi import features, model  # noqa: E402
from healthtwin.mpi.splink_engine import dedupe  # noqa: E402
from healthtwin.population.generator import generate_stream  # noqa: E402

END = dt.date(2024, 12, 31)


def records_table(con, n: int, seed: int, keep: int = 0) -> tuple[int, dict, list[dict], float, float]:
    """Generates the dirty population and writes its comparison records to the DuckDB table `records` (with
    each record's citizen in `truth`), streaming: the Patients themselves are not kept (but the first `keep`).
    Returns (records, truth, kept Patients, seconds generating, seconds computing features)."""
    import pyarrow as pa
    cols: dict[str, list] = {f: [] for f in features.FIELDS}
    truth: dict = {}
    kept: list[dict] = []
    t_feat = 0.0
    t0 = time.perf_counter()
    for _t, p in generate_stream(n, seed, end_date=END, events=set(), ground_truth=truth, dirty=True,
                                 patients_only=True):
        t1 = time.perf_counter()
        rec = features.of_patient(p)
        for f in features.FIELDS:
            cols[f].append(rec[f])
        t_feat += time.perf_counter() - t1
        if len(kept) < keep:
            kept.append(p)
    t_gen = time.perf_counter() - t0 - t_feat
    dups = truth["mpi_duplicates"]
    cols["truth"] = [dups[i]["of"] if i in dups else i for i in cols["unique_id"]]
    con.register("records_arrow", pa.table(cols))
    con.execute("CREATE OR REPLACE TABLE records AS SELECT * FROM records_arrow")
    con.unregister("records_arrow")
    return len(cols["unique_id"]), dups, kept, t_gen, t_feat


def evaluate(con, pairs: str) -> dict:
    true_pairs = con.execute("SELECT SUM(n * (n - 1) / 2) FROM (SELECT COUNT(*) n FROM records GROUP BY truth)"
                             ).fetchone()[0]
    q = f"""
      WITH p AS (SELECT p.match_weight w, (p.fin_l = p.fin_r) AS same_fin, a.truth = b.truth AS same
                 FROM {pairs} p JOIN records a ON a.unique_id = p.unique_id_l JOIN records b ON b.unique_id = p.unique_id_r)
      SELECT
        SUM(CASE WHEN (w >= {model.AUTO_LINK} OR same_fin IS TRUE) AND same THEN 1 ELSE 0 END),
        SUM(CASE WHEN (w >= {model.AUTO_LINK} OR same_fin IS TRUE) AND NOT same THEN 1 ELSE 0 END),
        SUM(CASE WHEN w >= {model.REVIEW} AND w < {model.AUTO_LINK} AND same_fin IS NOT TRUE THEN 1 ELSE 0 END),
        SUM(CASE WHEN w >= {model.REVIEW} AND w < {model.AUTO_LINK} AND same_fin IS NOT TRUE AND same THEN 1 ELSE 0 END),
        SUM(CASE WHEN same THEN 1 ELSE 0 END),
        COUNT(*)
      FROM p"""
    tp, fp, review, review_true, blocked_true, scored = con.execute(q).fetchone()
    fin_free = con.execute(f"""
      SELECT SUM(CASE WHEN w >= {model.AUTO_LINK} AND same THEN 1 ELSE 0 END),
             SUM(CASE WHEN w >= {model.AUTO_LINK} AND NOT same THEN 1 ELSE 0 END), SUM(CASE WHEN same THEN 1 ELSE 0 END)
      FROM (SELECT p.match_weight w, a.truth = b.truth AS same FROM {pairs} p
            JOIN records a ON a.unique_id = p.unique_id_l JOIN records b ON b.unique_id = p.unique_id_r
            WHERE p.fin_l IS NULL OR p.fin_r IS NULL)""").fetchone()
    fin_free_true = con.execute("""
      SELECT COUNT(*) FROM records a JOIN records b ON a.truth = b.truth AND a.unique_id < b.unique_id
      WHERE a.fin IS NULL OR b.fin IS NULL""").fetchone()[0]
    curve = con.execute(f"""
      SELECT t, SUM(CASE WHEN (w >= t OR same_fin IS TRUE) AND same THEN 1 ELSE 0 END) tp,
             SUM(CASE WHEN (w >= t OR same_fin IS TRUE) AND NOT same THEN 1 ELSE 0 END) fp
      FROM (SELECT p.match_weight w, (p.fin_l = p.fin_r) AS same_fin, a.truth = b.truth AS same FROM {pairs} p
            JOIN records a ON a.unique_id = p.unique_id_l JOIN records b ON b.unique_id = p.unique_id_r),
           (SELECT UNNEST([4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0]) t) GROUP BY t ORDER BY t""").fetchall()
    return {
        "true_pairs": int(true_pairs), "blocked_true_pairs": int(blocked_true), "scored_pairs": int(scored),
        "auto_links": int(tp + fp), "true_positives": int(tp), "false_positives": int(fp),
        "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / true_pairs if true_pairs else 1.0,
        "review_band": int(review), "review_band_true": int(review_true),
        "without_fin": {"true_pairs": int(fin_free_true), "auto_tp": int(fin_free[0] or 0),
                        "auto_fp": int(fin_free[1] or 0),
                        "recall": (fin_free[0] or 0) / fin_free_true if fin_free_true else 1.0},
        "curve": [{"threshold": float(t), "precision": round(a / (a + b), 5) if a + b else 1.0,
                   "recall": round(a / true_pairs, 5)} for t, a, b in curve],
    }


def block_sizes(con) -> dict:
    out = {}
    for cols in model.BLOCKING_RULES:
        key = ", ".join(cols)
        where = " AND ".join(f"{c} IS NOT NULL" for c in cols)
        biggest, pairs = con.execute(f"SELECT MAX(n), SUM(n * (n - 1) / 2) FROM (SELECT COUNT(*) n FROM records "
                                     f"WHERE {where} GROUP BY {key})").fetchone()
        out[key] = {"largest_block": int(biggest or 0), "pairs": int(pairs or 0)}
    return out


def floor(con) -> float:
    t = time.perf_counter()
    con.execute("SELECT COUNT(*) FROM records a JOIN records b ON a.birth = b.birth AND a.family_stem = b.family_stem "
                "AND a.unique_id < b.unique_id").fetchone()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000, help="citizens generated (duplicates come on top)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    ap.add_argument("--weights-out", help="write the EM-estimated weights (model.Weights JSON) here")
    args = ap.parse_args()
    import duckdb
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    load = os.getloadavg()
    n, truth, kept, t_gen, t_feat = records_table(con, args.patients, args.seed, keep=0)
    t0 = time.perf_counter()
    result = dedupe(con, "records")
    t_dedup = time.perf_counter() - t0
    metrics = evaluate(con, result.pairs)
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load], "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "citizens": args.patients, "records": n, "duplicate_records": len(truth),
        "seconds": {"generate": round(t_gen, 1), "features": round(t_feat, 1), "dedupe": round(t_dedup, 1),
                    **{k: round(v, 1) for k, v in result.seconds.items()}, "floor_self_join": round(floor(con), 2)},
        "records_per_second_dedupe": round(n / t_dedup),
        "projection_seconds_10_2M_linear": round(t_dedup * 10_200_000 / n),
        "thresholds": {"auto_link": model.AUTO_LINK, "review": model.REVIEW, "possible": model.POSSIBLE},
        **metrics, "blocks": block_sizes(con), "weights": result.weights.to_json(),
    }
    if args.weights_out:
        Path(args.weights_out).write_text(json.dumps(result.weights.to_json(), indent=2))
    print(json.dumps(report, indent=2, ensure_ascii=False, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
