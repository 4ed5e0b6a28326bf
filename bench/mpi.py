"""The patient index on a population with known truth: precision and recall at the automatic-link threshold,
the review band, the full deduplication's time, and `$match` latency.

    PYTHONPATH=src python bench/mpi.py --patients 200000            # accuracy + deduplication time
    PYTHONPATH=src python bench/mpi_match.py --patients 100000       # $match p95 over a store of that size

The population is the generator's with its dirty duplicates (population/duplicates.py; Patients only). A pair
is linked automatically when its evidence (match weight minus the prior) reaches model.AUTO_LINK or both records
carry the same FIN; precision and recall count pairs of records (true pairs: every two records of one citizen),
pair by pair and after the links are clustered into golden records (connected components). The floor printed
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


def _components(edges: list[tuple[str, str]]) -> dict[str, str]:
    """Union-find: each linked record's cluster (the golden record the links make)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x
    for a, b in edges:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[ra] = rb
    return {x: root(x) for x in parent}


def evaluate(con, pairs: str, prior: float, truth: dict) -> dict:
    """Precision and recall of automatic links (evidence >= threshold, or the same FIN), pair by pair and after
    clustering the links into golden records (connected components, as the index's links make them)."""
    true_pairs = int(con.execute("SELECT SUM(n * (n - 1) / 2) FROM (SELECT COUNT(*) n FROM records GROUP BY truth)"
                                 ).fetchone()[0])
    con.execute(f"""CREATE OR REPLACE TABLE scored AS
      SELECT p.unique_id_l l, p.unique_id_r r, p.match_weight - ({prior}) AS evidence,
             coalesce(p.fin_l = p.fin_r, false) AS same_fin, a.truth = b.truth AS same,
             (p.fin_l IS NULL OR p.fin_r IS NULL) AS fin_missing
      FROM {pairs} p JOIN records a ON a.unique_id = p.unique_id_l JOIN records b ON b.unique_id = p.unique_id_r""")
    blocked_true, scored = con.execute("SELECT SUM(CASE WHEN same THEN 1 ELSE 0 END), COUNT(*) FROM scored").fetchone()
    truth_of = dict(con.execute("SELECT unique_id, truth FROM records WHERE unique_id IN "
                                "(SELECT l FROM scored UNION SELECT r FROM scored)").fetchall())
    curve = []
    for t in (18.0, 20.0, 22.0, 24.0, 25.0, 26.0, 27.0, 28.0, 30.0, 32.0):
        tp, fp = con.execute(f"SELECT SUM(CASE WHEN same THEN 1 ELSE 0 END), SUM(CASE WHEN same THEN 0 ELSE 1 END) "
                             f"FROM scored WHERE evidence >= {t} OR same_fin").fetchone()
        edges = con.execute(f"SELECT l, r FROM scored WHERE evidence >= {t} OR same_fin").fetchall()
        cluster = _components(edges)
        sizes: dict[str, int] = {}
        cells: dict[tuple[str, str], int] = {}
        for rec, c in cluster.items():
            sizes[c] = sizes.get(c, 0) + 1
            cells[(c, truth_of[rec])] = cells.get((c, truth_of[rec]), 0) + 1
        linked = sum(n * (n - 1) // 2 for n in sizes.values())
        right = sum(n * (n - 1) // 2 for n in cells.values())
        curve.append({"evidence": t, "pairwise": {"precision": round(tp / (tp + fp), 5) if tp + fp else 1.0,
                                                   "recall": round((tp or 0) / true_pairs, 5), "false_links": int(fp or 0)},
                      "clustered": {"precision": round(right / linked, 5) if linked else 1.0,
                                    "recall": round(right / true_pairs, 5), "wrong_pairs": linked - right}})
    at = next(c for c in curve if c["evidence"] == model.AUTO_LINK)
    review, review_true = con.execute(
        f"SELECT COUNT(*), SUM(CASE WHEN same THEN 1 ELSE 0 END) FROM scored WHERE NOT same_fin AND evidence >= "
        f"{model.REVIEW} AND evidence < {model.AUTO_LINK}").fetchone()
    fin_free_true = con.execute("""SELECT COUNT(*) FROM records a JOIN records b ON a.truth = b.truth
                                   AND a.unique_id < b.unique_id WHERE a.fin IS NULL OR b.fin IS NULL""").fetchone()[0]
    fin_free_tp = con.execute(f"SELECT COUNT(*) FROM scored WHERE same AND fin_missing AND evidence >= {model.AUTO_LINK}"
                              ).fetchone()[0]
    # What the missed duplicates had wrong: the changes of each duplicate not linked to its citizen's record
    linked = {(l, r) for l, r in con.execute(f"SELECT l, r FROM scored WHERE same AND (evidence >= {model.AUTO_LINK} "
                                             "OR same_fin)").fetchall()}
    missed: dict[str, int] = {}
    for dup, t in truth.items():
        if (dup, t["of"]) not in linked and (t["of"], dup) not in linked:
            key = "+".join(sorted(t["changes"])) or "(none)"
            missed[key] = missed.get(key, 0) + 1
    return {
        "true_pairs": true_pairs, "blocked_true_pairs": int(blocked_true), "scored_pairs": int(scored),
        "at_auto_link": at, "review_band": int(review), "review_band_true": int(review_true or 0),
        "without_fin": {"true_pairs": int(fin_free_true), "auto_links": int(fin_free_tp),
                        "recall": round(fin_free_tp / fin_free_true, 5) if fin_free_true else 1.0},
        "missed_duplicates_by_changes": dict(sorted(missed.items(), key=lambda kv: -kv[1])[:12]),
        "curve": curve,
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
    metrics = evaluate(con, result.pairs, result.weights.prior, truth)
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load], "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "citizens": args.patients, "records": n, "duplicate_records": len(truth),
        "seconds": {"generate": round(t_gen, 1), "features": round(t_feat, 1), "dedupe": round(t_dedup, 1),
                    **{k: round(v, 1) for k, v in result.seconds.items()}, "floor_self_join": round(floor(con), 2)},
        "records_per_second_dedupe": round(n / t_dedup),
        "projection_seconds_10_2M_linear": round(t_dedup * 10_200_000 / n),
        "thresholds_evidence_bits": {"auto_link": model.AUTO_LINK, "review": model.REVIEW, "possible": model.POSSIBLE},
        **metrics, "blocks": block_sizes(con), "weights": result.weights.to_json(),
    }
    if args.weights_out:
        Path(args.weights_out).write_text(json.dumps(result.weights.to_json(), indent=2))
    print(json.dumps(report, indent=2, ensure_ascii=False, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
