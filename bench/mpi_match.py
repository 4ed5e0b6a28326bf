"""`Patient/$match` latency over a store of the dirty population (SQLite, sealed at rest as a server's is).

    PYTHONPATH=src python bench/mpi_match.py --patients 100000 --calls 500

The store gets the generated Patients (with their duplicates) as `healthtwin load` writes them, sealed, but
without their search index rows (`$match` reads only the resources and the candidate index, and writing a
Patient's ~300 blinded prefix rows made loading 100,000 of them take most of an hour on the shared machine);
then the candidate index is built (`healthtwin mpi index`); each call POSTs a Parameters with a duplicate record (its
citizen is stored) or a record of nobody stored, through the application (routing, policy, audit off).
The floor printed beside it is a read of one Patient by id through the same application, in the same run.
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

from healthtwin.composition import AppSettings, build_app  # noqa: E402
from healthtwin.mpi import keys  # noqa: E402
from healthtwin.population.generator import generate_stream  # noqa: E402
from healthtwin.request import OpenPolicy  # noqa: E402
from healthtwin.security.at_rest import AtRest  # noqa: E402
from healthtwin.security.keys import KeySet  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402

END = dt.date(2024, 12, 31)


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    from starlette.testclient import TestClient
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "match.sqlite").protect(AtRest.from_keys(KeySet.generate()))
        app = build_app(store, AppSettings(data_dir=Path(tmp) / "data", rate=None, audit=False), policy=OpenPolicy())
        rng = random.Random(1)
        probes: list[dict] = []
        batch: list = []
        t0 = time.perf_counter()
        count = 0
        for _t, p in generate_stream(args.patients, args.seed, end_date=END, events=set(), dirty=True,
                                     patients_only=True):
            p.pop("generalPractitioner", None)
            p.pop("managingOrganization", None)
            if p["id"].startswith("dup-") and len(probes) < args.calls // 2:
                probes.append(p)  # its citizen is stored; the duplicate itself is not
                continue
            batch.append((p, []))  # search index rows are not written: $match reads resources and mpi_keys only
            count += 1
            if len(batch) == 2000:
                with store.transaction() as tx:
                    tx.put_many(batch)
                batch = []
        if batch:
            with store.transaction() as tx:
                tx.put_many(batch)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        keys.rebuild(store)
        t_index = time.perf_counter() - t0
        strangers = []
        for _t, p in generate_stream(args.calls - len(probes), args.seed + 1000, end_date=END, events=set(),
                                     patients_only=True):
            strangers.append(p)  # people of another seed: mostly nobody stored (a namesake now and then)
        calls = probes + strangers
        rng.shuffle(calls)
        with TestClient(app) as client:
            times, found = [], 0
            for p in calls:
                body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]}
                t = time.perf_counter()
                r = client.post("/fhir/Patient/$match", json=body)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
                if p["id"].startswith("dup-"):
                    ids = [e["resource"]["id"] for e in r.json().get("entry", [])]
                    found += f"pat-{p['id'].split('-')[1]}" in ids
            reads = []
            for p in calls[:200]:
                t = time.perf_counter()
                client.get(f"/fhir/Patient/pat-{rng.randrange(args.patients)}")
                reads.append(time.perf_counter() - t)
        from healthtwin.mpi import features
        candidates = sorted(len(keys.candidates(store, features.of_patient(p))) for p in calls)
        rows = store.query(f"SELECT COUNT(*), COUNT(DISTINCT key) FROM {keys.TABLE}", ())
        store.close()
    print(json.dumps({
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "stored_patients": count, "key_rows": rows[0][0], "distinct_keys": rows[0][1],
        "seconds": {"load": round(t_load, 1), "index": round(t_index, 1)},
        "calls": len(calls), "duplicate_probes": len(probes),
        "duplicates_whose_citizen_was_offered": found,
        "match_ms": {"p50": round(statistics.median(times) * 1000, 1), "p95": round(p95(times) * 1000, 1),
                     "max": round(max(times) * 1000, 1)},
        "candidates_per_call": {"mean": round(statistics.mean(candidates), 1), "p95": p95(candidates),
                                "max": candidates[-1]},
        "floor_read_by_id_ms": {"p50": round(statistics.median(reads) * 1000, 1), "p95": round(p95(reads) * 1000, 1)},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
