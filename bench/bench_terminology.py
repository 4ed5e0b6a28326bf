"""Benchmark: the terminology operations' latency, next to a floor measured in the same run.

Over a fresh SQLite store holding a national-size ICD-10-like CodeSystem (15,400 concepts in two levels, about
1.3 MB of JSON), a ValueSet filtering it (is-a) and one holding all of it, the real application is called in process (Starlette's
test client, no network) for: `$lookup` and `$validate-code` in the R4 package's code systems, and `$lookup`,
`ValueSet/$validate-code` and `$expand` over the stored ones. The floor is a read by id of a small stored
resource through the same client: the cost of a request that does no terminology work.

Run: .venv/bin/python bench/bench_terminology.py [--rounds 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

warnings.filterwarnings("ignore")  # the test client's deprecation notice

from starlette.testclient import TestClient  # noqa: E402

from healthtwin.composition import create_app  # noqa: E402
from healthtwin.request import OpenPolicy  # noqa: E402
from healthtwin.security.at_rest import AtRest  # noqa: E402
from healthtwin.security.keys import KeySet  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402

ICD = "https://health.gov.az/fhir/CodeSystem/icd10"
VS = "https://health.gov.az/fhir/ValueSet/a05"


def national_codesystem() -> dict:
    return {"resourceType": "CodeSystem", "id": "icd", "url": ICD, "status": "active", "content": "complete",
            "concept": [{"code": f"A{i:04d}", "display": f"Chapter {i}", "concept": [
                {"code": f"A{i:04d}.{j}", "display": f"Disease {i} {j}"} for j in range(10)]}
                for i in range(1400)]}


def timed(client: TestClient, url: str, rounds: int) -> tuple[float, float]:
    client.get(url)  # warm: parsed once per resource version, then kept
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = client.get(url)
        samples.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-terminology-"))
    store = SQLiteStore(folder / "t.sqlite").protect(AtRest.from_keys(KeySet.generate()))
    app = create_app(store, policy=OpenPolicy(), data_dir=folder / "data", rate=None, audit=False)
    with TestClient(app) as c:
        assert c.put("/fhir/CodeSystem/icd", json=national_codesystem()).status_code == 201
        assert c.put("/fhir/ValueSet/a05", json={"resourceType": "ValueSet", "id": "a05", "url": VS, "status": "active",
                     "compose": {"include": [{"system": ICD, "filter": [
                         {"property": "concept", "op": "is-a", "value": "A0005"}]}]}}).status_code == 201
        assert c.put("/fhir/ValueSet/all", json={"resourceType": "ValueSet", "id": "all", "url": VS + "-all",
                                                 "status": "active", "compose": {"include": [{"system": ICD}]}}
                     ).status_code == 201
        assert c.put("/fhir/Organization/o1", json={"resourceType": "Organization", "id": "o1",
                                                     "name": "x"}).status_code == 201
        rows = [
            ("floor: read of a small resource by id", "/fhir/Organization/o1"),
            ("$lookup, R4 package (v3-ActCode)",
             "/fhir/CodeSystem/$lookup?system=http://terminology.hl7.org/CodeSystem/v3-ActCode&code=AMB"),
            ("ValueSet/$validate-code, R4 package",
             "/fhir/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender"
             "&system=http://hl7.org/fhir/administrative-gender&code=female"),
            ("$lookup, stored 15,400-concept code system", f"/fhir/CodeSystem/$lookup?system={ICD}&code=A0005.3"),
            ("ValueSet/$validate-code, stored is-a value set",
             f"/fhir/ValueSet/$validate-code?url={VS}&system={ICD}&code=A0005.3"),
            ("$expand, stored is-a value set (11 codes)", f"/fhir/ValueSet/$expand?url={VS}"),
            ("$expand, the whole stored code system, a page of 100", "/fhir/ValueSet/all/$expand?count=100&offset=5000"),
            ("$expand, the same with filter=disease", "/fhir/ValueSet/all/$expand?count=100&filter=disease"),
        ]
        print(f"{'what':52} {'p50 ms':>8} {'p99 ms':>8}")
        for label, url in rows:
            p50, p99 = timed(c, url, args.rounds)
            print(f"{label:52} {p50:8.2f} {p99:8.2f}")
    store.close()


if __name__ == "__main__":
    main()
