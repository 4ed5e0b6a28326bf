"""A national birth cohort re-forecast through the store: `healthtwin immunization refresh` (the bulk path,
registries/immunization/cohort.py) over `--cohort` children, beside floors measured in the same run.

    PYTHONPATH=src python bench/immunization_cohort.py [--cohort 130000] [--database postgresql://…] [--workers 2]

Makes `--cohort` children born in the two years before the assessment date, each with the Azerbaijani
calendar's doses up to their age, some missed or late (bench_immunization.child, seeded), and writes them
straight into a store (SQLite in a temporary folder, or `--database`) with Transaction.put_many (no validation:
the load is not what is measured). Then:
  * refresh, first run (every recommendation created), then the next day (the daily job: only the forecasts
    that changed are written, well under 1%), then 61 days later (about 40% changed: a dose fell overdue),
    then the same day again (nothing to write): wall seconds and children/s, on `--workers` processes;
  * floor 1, the raw SELECT: the rows the refresh reads (Patients and Immunizations, content included), in
    one query, in one process, not decoded;
  * floor 2, the engine alone: the same children's records already in memory, forecast in one process;
  * floor 3 (SQLite), the writes alone: SQLite itself writing the same recommendations and index rows,
    created and rewritten, in chunk-sized transactions (bench/cohort_write_floor.py), and with floors 1 and
    2 the least wall time any split of the work over `--workers` cores could take;
  * the projection to 10.2 million citizens at the measured rate.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

POPULATION = 10_200_000


def resources(n: int, on: dt.date):
    """(Patient, its Immunizations) of the cohort's children, as FHIR resources."""
    import bench_immunization as bi
    bi.ASSESSMENT = on
    for seed in range(n):
        p = bi.child(seed)
        pid = f"coh-{seed}"
        patient = {"resourceType": "Patient", "id": pid, "active": True, "gender": p.gender.lower(),
                   "birthDate": p.birth.isoformat(), "address": [{"district": f"District {seed % 66}"}]}
        imms = [{"resourceType": "Immunization", "id": f"{pid}-{d.id.split('-')[-1]}", "status": "completed",
                 "patient": {"reference": f"Patient/{pid}"}, "occurrenceDateTime": d.given.isoformat(),
                 "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": d.cvx}]},
                 "primarySource": True} for d in p.doses]
        yield patient, imms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cohort", type=int, default=130_000)
    ap.add_argument("--database", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engine-sample", type=int, default=10_000, help="children forecast for the engine floor")
    args = ap.parse_args()

    from healthtwin.api.services import Services
    from healthtwin.registries.immunization import rules
    from healthtwin.registries.immunization.cohort import CohortReader, forecast_chunk
    from healthtwin.registries.immunization.due import register
    from healthtwin.registries.immunization.refresh import child_ids, refresh_all
    from healthtwin.security.storage import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    database = args.database or f"sqlite:///{tmp / 'bench.sqlite'}"
    data_dir = tmp / "data"
    on = dt.date(2026, 12, 2)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {database.split('?')[0]}")
    store = open_store(database, data_dir)
    services = Services.build(store)
    register(services.registry)
    t = time.perf_counter()
    batch: list = []
    doses = 0

    def put() -> None:
        with store.transaction() as tx:
            tx.put_many([(r, store.index_rows_for(r)) for r in batch])
        batch.clear()
    for patient, imms in resources(args.cohort, on):
        batch.append(patient)
        batch.extend(imms)
        doses += len(imms)
        if len(batch) >= 5000:
            put()
    put()
    store.refresh_statistics(args.cohort + doses)
    print(f"wrote {args.cohort:,} children and {doses:,} Immunizations in {time.perf_counter() - t:.0f} s")

    runs = []
    for label, day in (("first refresh (every recommendation created)", on),
                       ("the next day (the daily job: changed ones rewritten)", on + dt.timedelta(days=1)),
                       ("61 days later (changed ones rewritten)", on + dt.timedelta(days=61)),
                       ("the same day again (nothing to write)", on + dt.timedelta(days=61))):
        print(f"load average {os.getloadavg()[0]:.1f}")
        totals = refresh_all(database, data_dir, day, args.workers)
        runs.append(totals)
        print(f"refresh, {label}, {args.workers} workers: {totals.children:,} children in {totals.seconds:.1f} s wall "
              f"= {totals.children / totals.seconds:,.0f} children/s ({totals.written:,} written, {totals.again} read "
              f"again); workers' CPU {totals.cpu:.1f} s = {totals.cpu / totals.children * 1e3:.2f} ms a child; "
              f"CPU inside write transactions {totals.writing:.1f} s")

    # floor 1: the raw SELECT of the rows the refresh reads, in one query, not decoded
    t = time.perf_counter()
    with store.cursor() as cur:
        cur.execute("SELECT r.id, r.content FROM resources r WHERE r.type IN ('Patient', 'Immunization')")
        rows = 0
        while True:
            got = cur.fetchmany(10_000)
            if not got:
                break
            rows += len(got)
    raw = time.perf_counter() - t
    # floor 2: the engine alone on records already read, one process
    sample = [p for b in child_ids(services, on) for p in b][:args.engine_sample]
    reader = CohortReader(store, rules.load())
    cases = {}
    t = time.perf_counter()
    for i in range(0, len(sample), 1000):
        cases.update(reader.cases(store.query, sample[i:i + 1000])[0])
    read_s = time.perf_counter() - t
    # as the refresh's workers run (runtime.settle_after_start, no collection during a chunk): the same
    # garbage-collector regime on both sides, else the floor pays collections the refresh does not
    gc.collect()
    gc.freeze()
    gc.disable()
    t, c = time.perf_counter(), time.process_time()
    forecast_chunk(cases, sample, on + dt.timedelta(days=61))
    engine_s, engine_c = time.perf_counter() - t, time.process_time() - c
    gc.enable()
    gc.unfreeze()
    print(f"floor, raw SELECT of the {rows:,} Patient and Immunization rows (one query, one process): {raw:.1f} s = "
          f"{args.cohort / raw:,.0f} children/s")
    print(f"floor, the engine alone on {len(sample):,} records in memory, one process: {len(sample) / engine_s:,.0f} "
          f"children/s (reading them with the bulk path's queries, one process: {len(sample) / read_s:,.0f} children/s)")
    rate = runs[2].children / runs[2].seconds
    engine_cpu = engine_c / len(sample)
    print(f"61 days' rate {rate:,.0f} children/s = {rate / (len(sample) / engine_s):.2f} x the engine alone on one core; "
          f"CPU a child {runs[2].cpu / runs[2].children * 1e3:.2f} ms = {runs[2].cpu / runs[2].children / engine_cpu:.2f} x "
          f"the engine's {engine_cpu * 1e3:.2f} ms")
    both = args.cohort * engine_s / len(sample) / args.workers
    named = (("first", runs[0]), ("next day", runs[1]), ("61 days", runs[2]), ("unchanged", runs[3]))
    for label, run in named:
        print(f"{label}: refresh wall {run.seconds:.1f} s = {run.seconds / both:.2f} x the engine alone on {args.workers} "
              f"cores ({both:.1f} s); workers' CPU a child {run.cpu / run.children * 1e3:.2f} ms = "
              f"{run.cpu / run.children / engine_cpu:.2f} x the engine's")
    for label, run in (("the daily job (next day)", runs[1]), ("61 days later", runs[2])):
        rate = run.children / run.seconds
        free = run.children / max(run.cpu / args.workers, run.writing if "sqlite" in database else 0.0)
        print(f"projected, {label}: the {args.cohort:,} at the measured rate {args.cohort / rate:.0f} s, on "
              f"{args.workers} free cores (workers' CPU / {args.workers}, or on SQLite the write transactions' CPU, "
              f"which take turns) {args.cohort / free:.0f} s; {POPULATION:,} citizens {POPULATION / rate / 60:.0f} min "
              f"at the measured rate, {POPULATION / free / 60:.0f} min on free cores")
    if "sqlite" in database:
        import cohort_write_floor
        store.checkpoint()
        f = cohort_write_floor.measure(str(tmp / "bench.sqlite"))
        engine_all = args.cohort * engine_c / len(sample)
        print(f"floor, the writes alone (SQLite itself, {cohort_write_floor.CHUNK} recommendations a transaction, "
              f"{f.index_rows:,} index rows): created {f.first_wall:.1f} s wall ({f.first_cpu:.1f} s CPU), "
              f"rewritten {f.rewrite_wall:.1f} s wall ({f.rewrite_cpu:.1f} s CPU)")
        # a run that writes a fraction of the recommendations is floored by that fraction of the rewrite's writes
        for label, run in named:
            share = 1.0 if run is runs[0] else run.written / max(runs[0].written, 1)
            wall, cpu = (f.first_wall, f.first_cpu) if run is runs[0] else (f.rewrite_wall * share, f.rewrite_cpu * share)
            least = max(wall, (cpu + engine_all + raw) / args.workers)
            print(f"{label}: the least wall time on {args.workers} cores = max(writes {wall:.1f} s, (writes' CPU "
                  f"{cpu:.1f} + engine {engine_all:.1f} + raw read {raw:.1f}) / {args.workers}) = {least:.1f} s "
                  f"({share:.1%} of the recommendations written); the refresh took {run.seconds:.1f} s = "
                  f"{run.seconds / least:.2f} x that")
    print(f"load average after: {os.getloadavg()[0]:.1f}; data in {tmp}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
