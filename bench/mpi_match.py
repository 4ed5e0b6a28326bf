"""`Patient/$match` latency over a store of the dirty population (SQLite, sealed at rest as a server's is).

    PYTHONPATH=src python bench/mpi_match.py --patients 1000000 --calls 500 [--workers 2] [--keep DIR]

The store gets the generated Patients (with their duplicates) stamped and sealed as `healthtwin load` writes
them, and the candidate index `healthtwin mpi index` would build, both computed in worker processes
(bench/mpi_match_store.py; a sample is read back and checked against `keys.rebuild`), without search index
rows (`$match` reads only the resources and the candidate index). `--keep DIR` keeps the store (and its keys)
in DIR and measures an existing one there without building it again. Each call POSTs a Parameters with a
duplicate record (its citizen is stored) or a record of nobody stored, through the application (routing,
policy, audit off). Floors in the same run: a read of one Patient by id through the same application, one bare
indexed lookup of a blocking key (`SELECT patient FROM mpi_keys WHERE key = ?`), and all of a call's key
lookups (`keys.candidates`, the SQL part of a `$match`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from healthtwin.composition import AppSettings, build_app  # noqa: E402
from healthtwin.mpi import features, keys, match  # noqa: E402
from healthtwin.mpi.plugin import weights_for  # noqa: E402
from healthtwin.population.generator import generate_stream  # noqa: E402
from healthtwin.request import OpenPolicy  # noqa: E402
from healthtwin.security.at_rest import AtRest  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402

import mpi_match_store  # noqa: E402

END = dt.date(2024, 12, 31)


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def _by_candidates(counts: list[int], secs: list[float]) -> dict[str, float]:
    """The median time of `match.find` for each number of candidates a call had (ms)."""
    groups: dict[int, list[float]] = {}
    for n, t in zip(counts, secs):
        groups.setdefault(n, []).append(t)
    return {str(n): round(statistics.median(ts) * 1000, 2) for n, ts in sorted(groups.items()) if len(ts) >= 5}


def _slope(counts: list[int], secs: list[float]) -> float | None:
    """ms per candidate of `match.find` (what grows with the blocks): the least-squares line through the median
    time of each number of candidates (medians, so that a call the shared machine stalled does not tilt it)."""
    medians = _by_candidates(counts, secs)
    if len(medians) < 2:
        return None
    xs, ys = [int(n) for n in medians], list(medians.values())
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs), 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="processes generating and sealing the Patients")
    ap.add_argument("--keep", type=Path, help="keep the store in this folder (and measure one built there before)")
    args = ap.parse_args()
    from starlette.testclient import TestClient
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        built_file = folder / "built.json"
        at_rest = AtRest.for_data_dir(folder / "data")
        store = SQLiteStore(mpi_match_store.store_path(folder)).protect(at_rest)
        app = build_app(store, AppSettings(data_dir=folder / "data", rate=None, audit=False), policy=OpenPolicy())
        rng = random.Random(1)
        t0 = time.perf_counter()
        if built_file.exists():
            built = json.loads(built_file.read_text())
            if built["patients"] != args.patients or built["seed"] != args.seed:
                raise SystemExit(f"{folder} holds a store of {built['patients']} (seed {built['seed']}), not "
                                 f"{args.patients} (seed {args.seed})")
            probes, count, t_load = built["probes"][:args.calls // 2], built["stored"], built["seconds"]
        else:
            probes, count, key_count = mpi_match_store.build(store, at_rest, args.patients, args.seed,
                                                             args.calls // 2, args.workers)
            t_load = round(time.perf_counter() - t0, 1)
            built_file.write_text(json.dumps({"patients": args.patients, "seed": args.seed, "stored": count,
                                              "seconds": t_load, "probes": probes}))
        t0 = time.perf_counter()
        checked = mpi_match_store.check(store)
        t_check = time.perf_counter() - t0
        strangers = []
        for _t, p in generate_stream(args.calls - len(probes), args.seed + 1000, end_date=END, events=set(),
                                     patients_only=True):
            strangers.append(p)  # people of another seed: mostly nobody stored (a namesake now and then)
        calls = probes + strangers
        rng.shuffle(calls)
        # each call's floors are measured right after it, so that they see the same moment of the shared machine
        times, reads, lookups, key_sql, candidates, finds, found = [], [], [], [], [], [], 0
        weights = weights_for(folder / "data")
        with TestClient(app) as client:
            for p in calls:
                body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]}
                t = time.perf_counter()
                r = client.post("/fhir/Patient/$match", json=body)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                if p["id"].startswith("dup-"):
                    ids = [e["resource"]["id"] for e in r.json().get("entry", [])]
                    found += f"pat-{p['id'].split('-')[1]}" in ids
                t = time.perf_counter()
                r = client.get(f"/fhir/Patient/pat-{rng.randrange(args.patients)}")
                reads.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                digests = keys.keys_of(store, features.of_patient(p))
                t = time.perf_counter()
                store.query(f"SELECT patient FROM {keys.TABLE} WHERE key = ? LIMIT {keys.MAX_CANDIDATES}",
                            (digests[0],))
                lookups.append(time.perf_counter() - t)
                t = time.perf_counter()
                candidates.append(len(keys.candidates(store, features.of_patient(p))))
                key_sql.append(time.perf_counter() - t)
                record = features.of_patient(p)
                t = time.perf_counter()
                match.find(store, record, weights)  # $match without HTTP, validation and release
                finds.append(time.perf_counter() - t)
        candidates_raw = list(candidates)
        candidates.sort()
        rows = store.query(f"SELECT COUNT(*), COUNT(DISTINCT key) FROM {keys.TABLE}", ())
        store.close()
    print(json.dumps({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "stored_patients": count, "key_rows": rows[0][0], "distinct_keys": rows[0][1],
        "seconds": {"build": t_load, "check": round(t_check, 1)}, "checked_against_rebuild": checked,
        "workers": args.workers,
        "calls": len(calls), "duplicate_probes": len(probes),
        "duplicates_whose_citizen_was_offered": found,
        "match_ms": {"p50": round(statistics.median(times) * 1000, 1), "p95": round(p95(times) * 1000, 1),
                     "max": round(max(times) * 1000, 1)},
        "candidates_per_call": {"mean": round(statistics.mean(candidates), 1), "p95": p95(candidates),
                                "max": candidates[-1]},
        "floor_read_by_id_ms": {"p50": round(statistics.median(reads) * 1000, 1), "p95": round(p95(reads) * 1000, 1)},
        "find_ms": {"p50": round(statistics.median(finds) * 1000, 2), "p95": round(p95(finds) * 1000, 2)},
        "find_ms_by_candidates": _by_candidates(candidates_raw, finds),
        "find_ms_per_candidate": _slope(candidates_raw, finds),
        "floor_one_key_lookup_ms": {"p50": round(statistics.median(lookups) * 1000, 3),
                                    "p95": round(p95(lookups) * 1000, 3)},
        "floor_all_key_lookups_ms": {"p50": round(statistics.median(key_sql) * 1000, 3),
                                     "p95": round(p95(key_sql) * 1000, 3)},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
