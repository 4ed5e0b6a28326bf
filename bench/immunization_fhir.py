"""The live immunization registry over a store: the batch refresh's rate, the write rule's cost on a recorded dose,
and the due lists' latency, each beside a floor measured in the same run.

Generates a population (`--patients`, default 4,000: about 1,000 children), loads the types the registry reads
into a store (SQLite in a temporary folder, or `--database postgresql://…`), then measures
  * `healthtwin immunization refresh` (refresh.refresh_all, `--workers` processes, default 2): children/s,
    wall; floor: the engine alone on the same records, already read, in this process (one core): children/s;
  * POST Immunization for a child, in process through the application (token, policy, audit), n=`--writes`:
    p50 / p95 with the registry's write rule; floor: the same POSTs with the rule taken out;
  * the overdue list of a polyclinic (`vaccine-type-overdue-date` + `patient.organization`), p50 / p95;
    floor: `ImmunizationRecommendation?patient=…` (one child's recommendation by the patient index).

    .venv/bin/python bench/immunization_fhir.py [--patients 4000] [--database postgresql://…] [--workers 2]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

TYPES = ("Organization", "Practitioner", "Location", "Patient", "Immunization", "Condition", "AllergyIntolerance")


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * q))]


def line(label: str, samples: list[float]) -> str:
    return f"{label:<58} p50 {statistics.median(samples):7.2f} ms  p95 {pct(samples, 0.95):7.2f} ms  (n={len(samples)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=4000)
    ap.add_argument("--database", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.population import generate
    from healthtwin.registries.immunization import rules
    from healthtwin.registries.immunization.due import GROUP_SYSTEM, list_query, register
    from healthtwin.registries.immunization.live import read_cases, recommendations_for
    from healthtwin.registries.immunization.refresh import child_ids, refresh_all
    from healthtwin.security.storage import open_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-immfhir-"))
    database = args.database or f"sqlite:///{tmp / 'bench.sqlite'}"
    data_dir = tmp / "data"
    today = dt.date.today()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {database.split('?')[0]}")
    t = time.perf_counter()
    generate(tmp / "pop", args.patients, 11, start_year=2015, end_date=dt.date(2024, 12, 31))
    store = open_store(database, data_dir)
    services = Services.build(store)
    register(services.registry)
    loader = Loader(services)
    for rtype in TYPES:
        f = tmp / "pop" / f"{rtype}.ndjson"
        if f.exists():
            loader.load_lines(f.read_bytes().splitlines(), f.name)
    print(f"made and loaded {args.patients:,} patients in {time.perf_counter() - t:.1f} s")

    # -- the batch refresh, and the engine alone on the same records
    totals = refresh_all(database, data_dir, today, args.workers)
    rate = totals.children / totals.seconds
    steady = totals.children / totals.busy * min(args.workers, os.cpu_count() or 1)  # past worker start-up
    batches = child_ids(services, today)
    pids = [p for b in batches for p in b]
    t = time.perf_counter()
    cases = {}
    for batch in batches:
        cases.update(read_cases(services, batch, None, rules.load()))
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    for pid in pids:
        if pid in cases:
            recommendations_for(cases[pid], today)
    engine_s = time.perf_counter() - t
    print(f"refresh, {args.workers} workers: {totals.children:,} children in {totals.seconds:.2f} s wall = "
          f"{rate:,.0f} children/s ({totals.written:,} written); in batches, past start-up: {steady:,.0f} children/s")
    print(f"  floor, the engine alone in one process: {len(pids) / engine_s:,.0f} children/s "
          f"(reading their records: {len(pids) / read_s:,.0f} children/s)")
    print(f"  projection at the rate past start-up: a 130,000-child birth cohort in {130_000 / steady:,.0f} s; "
          f"the 2.6 million under-18s in {2_600_000 / steady / 60:,.0f} min")

    # -- the write rule's cost on a recorded dose, and the lists
    from starlette.testclient import TestClient

    from healthtwin.composition import AppSettings, build_app
    from healthtwin.security.keys import KeySet
    from healthtwin.security.tokens import TokenService
    base = "http://bench"
    tokens = TokenService(KeySet.generate(), base, base + "/fhir")
    app = build_app(store, AppSettings(data_dir=data_dir, public_url=base, rate=None), tokens=tokens)
    token = tokens.mint(subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"])[0]
    headers = {"authorization": f"Bearer {token}"}
    rng = random.Random(7)
    children = [p for p in pids if p in cases]

    def dose(pid: str) -> dict:
        return {"resourceType": "Immunization", "status": "completed", "patient": {"reference": f"Patient/{pid}"},
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": rng.choice(["08", "10", "133"])}]},
                "occurrenceDateTime": today.isoformat(), "primarySource": True}

    def posts(client, n: int) -> list[float]:
        out = []
        for _ in range(n):
            body = dose(rng.choice(children))
            t0 = time.perf_counter()
            r = client.post("/fhir/Immunization", json=body, headers=headers)
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201, r.text
        return out

    with TestClient(app, base_url=base) as client:
        svc = app.fhir.services
        posts(client, 20)  # warm
        with_rule = posts(client, args.writes)
        kept = svc.write_rules
        svc.write_rules = [r for r in kept if not r.name.startswith("immunization-forecast")]
        without = posts(client, args.writes)
        svc.write_rules = kept
        print(line("POST Immunization, with the registry's write rule", with_rule))
        print(line("  floor: the same POST without the rule", without))
        orgs = sorted({orjson.loads(x)["managingOrganization"]["reference"]
                       for x in (tmp / "pop" / "Patient.ndjson").read_bytes().splitlines()})
        lists, floor = [], []
        for _ in range(args.queries):
            params = list_query("overdue", today, rng.choice(["MMR", "DTP", "HepB", "Polio"]), organization=rng.choice(orgs))
            t0 = time.perf_counter()
            r = client.get("/fhir/ImmunizationRecommendation", params=params, headers=headers)
            lists.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
            t0 = time.perf_counter()
            r = client.get("/fhir/ImmunizationRecommendation", params={"patient": f"Patient/{rng.choice(children)}"},
                           headers=headers)
            floor.append((time.perf_counter() - t0) * 1000)
        print(line("overdue list of a polyclinic and vaccine group", lists))
        print(line("  floor: one child's recommendation by patient", floor))
    print(f"(vaccine groups coded {GROUP_SYSTEM}; data in {tmp})")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
