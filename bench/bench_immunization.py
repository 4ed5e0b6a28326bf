"""Immunization forecasting speed: one child's forecast (p50/p95) beside a floor, a national birth cohort
re-forecast on both cores, and the projected time for the whole population.

    PYTHONPATH=src python bench/bench_immunization.py [--cohort 130000] [--workers 2] [--schedule aze]

* One child: `engine.assess` on children of the cohort below (each a different history), timed one by one;
  the floor is what any forecast must do with the same child: decode its FHIR Parameters (orjson) into the
  engine's Patient and map its doses to antigens (fhir_io + engine.antigen_doses), with no rule evaluated.
* Cohort: `--cohort` children born within one year, each with the calendar's doses up to their age, some
  missed or late (seeded), forecast in `--workers` processes; the rate and its projection to 10.2 million
  citizens (adults forecast no faster than children on the CDC schedule: the figure is per person forecast).
Both figures are printed with the machine's load average, since the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta

import orjson

from healthtwin.registries.immunization import engine, rules
from healthtwin.registries.immunization.fhir_io import patient_from_parameters
from healthtwin.registries.immunization.patient import Dose, Patient

ASSESSMENT = date(2026, 12, 2)
POPULATION = 10_200_000
# The Azerbaijani calendar as (age in days, CVX): HepB at birth, BCG and OPV on day 5, pentavalent + OPV at
# 2, 3, 4 months, PCV at 2, 4, 6 months, MMR at 12 months, DTP + OPV at 18 months.
CALENDAR = [(0, "08"), (5, "19"), (5, "178"), (61, "198"), (61, "178"), (61, "133"), (92, "198"), (92, "178"),
            (122, "198"), (122, "178"), (122, "133"), (183, "133"), (366, "03"), (548, "01"), (548, "178")]


def child(seed: int) -> Patient:
    """A child born in the year before the assessment date with the doses due by then, some missed
    (10%) or late (up to two months, 30%)."""
    rng = random.Random(seed)
    birth = ASSESSMENT - timedelta(days=rng.randrange(1, 366 * 2))
    doses = []
    for i, (age, cvx) in enumerate(CALENDAR):
        given = birth + timedelta(days=age + (rng.randrange(0, 60) if rng.random() < 0.3 else 0))
        if given <= ASSESSMENT and rng.random() > 0.1:
            doses.append(Dose(f"c{seed}-{i}", given, cvx))
    return Patient(birth, rng.choice(("Female", "Male")), ASSESSMENT, doses)


def as_parameters(p: Patient) -> bytes:
    """The child as the forecast command's input line (a FHIR Parameters)."""
    parts = [{"name": "assessmentDate", "valueDate": p.assessment.isoformat()},
             {"name": "patient", "resource": {"resourceType": "Patient", "id": "c", "birthDate": p.birth.isoformat(),
                                              "gender": p.gender.lower()}}]
    parts += [{"name": "immunization", "resource": {
        "resourceType": "Immunization", "id": d.id, "status": "completed", "occurrenceDateTime": d.given.isoformat(),
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": d.cvx}]}}} for d in p.doses]
    return orjson.dumps({"resourceType": "Parameters", "parameter": parts})


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one_child(schedule: rules.Schedule, n: int) -> None:
    children = [child(seed) for seed in range(n)]
    lines = [as_parameters(p) for p in children]
    for p in children[:50]:  # warm the caches (date arithmetic, rule files)
        engine.assess(p, schedule)
    forecast, floor, cpu = [], [], []
    for p, line in zip(children, lines):
        t0 = time.perf_counter()
        fresh = patient_from_parameters(orjson.loads(line), schedule)
        engine.antigen_doses(schedule, fresh)
        t1 = time.perf_counter()
        c1 = time.process_time()
        engine.assess(Patient(p.birth, p.gender, p.assessment, list(p.doses)), schedule)
        c2 = time.process_time()
        t2 = time.perf_counter()
        floor.append((t1 - t0) * 1e3)
        forecast.append((t2 - t1) * 1e3)
        cpu.append((c2 - c1) * 1e3)
    print(f"one child ({schedule.name}, {n} children): forecast wall p50 {statistics.median(forecast):.2f} ms, "
          f"p95 {_pct(forecast, 0.95):.2f} ms, CPU p95 {_pct(cpu, 0.95):.2f} ms (target <= 5 ms); floor "
          f"(decode + map doses) p50 {statistics.median(floor):.3f} ms, p95 {_pct(floor, 0.95):.3f} ms; "
          f"ratio p50 {statistics.median(forecast) / statistics.median(floor):.1f}x")


def _work(args: tuple[str, int, int]) -> tuple[int, float, float, float]:
    """(children, wall seconds forecasting, CPU seconds forecasting, CPU seconds of the floor)."""
    key, start, stop = args
    schedule = rules.load(key)
    children = [child(seed) for seed in range(start, stop)]
    c0 = time.process_time()
    for p in children:
        engine.antigen_doses(schedule, p)
    c1, t1 = time.process_time(), time.perf_counter()
    for p in children:
        engine.assess(p, schedule)
    return len(children), time.perf_counter() - t1, time.process_time() - c1, c1 - c0


def cohort(key: str, size: int, workers: int) -> None:
    step = -(-size // workers)
    chunks = [(key, i, min(i + step, size)) for i in range(0, size, step)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_work, [(key, 0, 200)] * workers))  # start the workers and load the rules
        t0 = time.perf_counter()
        results = list(pool.map(_work, chunks))
        wall = time.perf_counter() - t0
    done = sum(r[0] for r in results)
    busiest = max(r[1] for r in results)
    cpu = max(r[2] for r in results)
    floor = max(r[3] for r in results)
    rate, cpu_rate = done / busiest, done / cpu
    print(f"cohort ({rules.load(key).name}): {done:,} children forecast in {busiest:.1f} s wall on {workers} "
          f"workers ({rate:,.0f} children/s; {wall:.1f} s with generating them), {cpu:.1f} CPU-s in the busiest "
          f"worker ({cpu_rate:,.0f} children/s were both cores ours); floor (map doses only) {floor:.2f} CPU-s; "
          f"projected for {POPULATION:,} citizens: {POPULATION / rate / 60:.1f} min at the measured rate, "
          f"{POPULATION / cpu_rate / 60:.1f} min on two free cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=int, default=130_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--children", type=int, default=2_000, help="children timed one by one")
    ap.add_argument("--schedule", default="aze", choices=sorted(rules.SCHEDULES))
    args = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    for key in dict.fromkeys([args.schedule, "cdc"]):
        one_child(rules.load(key), args.children)
    cohort(args.schedule, args.cohort, args.workers)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
