"""Benchmark: µs per resource for validation, next to a floor measured in the same run.

Corpora: the R4 specification's example resources (scripts/fhir_package.py) and the entries of the Synthea
bundles ($HEALTHTWIN_CORPORA/synthea/bundles/*.json, default /work/shared/corpora). The floor is the cost of
`orjson.loads(orjson.dumps(r))` per resource, i.e. of touching every node once in C.

Run: .venv/bin/python bench/bench_validate.py [--repeat N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "src"))

from healthtwin.fhir.validation import Validator  # noqa: E402

# The definitional bundles of the spec (every StructureDefinition, ValueSet ...) are megabytes each and
# dominate a mean; they are reported separately.
HUGE = 200_000


def spec_examples() -> list[dict]:
    from fhir_package import examples
    return [orjson.loads(p.read_bytes()) for p in examples()]


def synthea() -> list[dict]:
    base = Path(os.environ.get("HEALTHTWIN_CORPORA", "/work/shared/corpora")) / "synthea" / "bundles"
    out = []
    for path in sorted(base.glob("*.json")):
        out.extend(e["resource"] for e in orjson.loads(path.read_bytes())["entry"])
    return out


def per_resource(fn: Callable[[dict], object], resources: list[dict], repeat: int) -> tuple[float, float]:
    """(mean, median) µs per resource, best of `repeat` passes for the mean."""
    best = float("inf")
    samples: list[float] = []
    for _ in range(repeat):
        samples = []
        start = time.perf_counter()
        for r in resources:
            t = time.perf_counter()
            fn(r)
            samples.append(time.perf_counter() - t)
        best = min(best, time.perf_counter() - start)
    return best / len(resources) * 1e6, statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t = time.perf_counter()
    full = Validator.default()
    load = time.perf_counter() - t
    native = Validator(full.profiles, invariants=False)
    corpora = {"spec examples": spec_examples(), "synthea entries": synthea()}
    small = [r for r in corpora["spec examples"] if len(orjson.dumps(r)) < HUGE]
    corpora["spec examples < 200 kB"] = small
    print(f"definitions loaded in {load * 1000:.0f} ms; {len(full.profiles.urls())} spec profiles loaded")
    print(f"{'corpus':28} {'n':>6} {'floor':>14} {'native':>14} {'+invariants':>14}   (mean / median µs)")
    for name, resources in corpora.items():
        if not resources:
            continue
        floor = per_resource(lambda r: orjson.loads(orjson.dumps(r)), resources, args.repeat)
        nat = per_resource(native.validate, resources, args.repeat)
        before = dict(full.model.invariants.stats)
        inv = per_resource(full.validate, resources, args.repeat)
        after = full.model.invariants.stats
        delta = {k: (after[k] - before.get(k, 0)) // args.repeat for k in after}
        print(f"{name:28} {len(resources):6d} {floor[0]:7.1f}/{floor[1]:6.1f} {nat[0]:7.1f}/{nat[1]:6.1f} "
              f"{inv[0]:7.1f}/{inv[1]:6.1f}   invariants per pass: {delta}")


if __name__ == "__main__":
    main()
