"""Benchmark search index extraction per resource, next to a floor measured in the same run.

    .venv/bin/python bench/bench_extract.py [--types Observation,Patient,Encounter] [--repeat 5]

Corpora: the R4 specification's examples (scripts/fhir_package.py) and Synthea bundles
($HEALTHTWIN_CORPORA/synthea/bundles/*.json, default /work/shared/corpora). For each resource type, prints
the median µs per resource of `extract()` and of the floor `orjson.loads(orjson.dumps(resource))` (the cost
of merely touching the resource once in C), the ratio, and rows per resource. Also reports the one-off cost
of compiling every type's extractor.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from healthtwin.fhir.extract import extract  # noqa: E402
from healthtwin.fhir.search_params import SearchRegistry  # noqa: E402


def spec_examples() -> list[dict]:
    try:
        import fhir_package
        return [r for p in fhir_package.examples() if isinstance(r := orjson.loads(p.read_bytes()), dict)]
    except Exception as exc:  # noqa: BLE001
        print(f"(spec examples unavailable: {exc})")
        return []


def synthea(limit: int) -> list[dict]:
    corpora = Path(os.environ.get("HEALTHTWIN_CORPORA", "/work/shared/corpora"))
    out: list[dict] = []
    for path in sorted((corpora / "synthea" / "bundles").glob("*.json"))[:limit]:
        bundle = orjson.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", ()) if "resource" in e)
    if not out:
        print(f"(no Synthea bundles under {corpora})")
    return out


def per_resource_us(fn, resources: list[dict], repeat: int) -> float:
    """Median over `repeat` runs of the mean µs per resource."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for r in resources:
            fn(r)
        runs.append((time.perf_counter() - t) / len(resources) * 1e6)
    return statistics.median(runs)


def report(title: str, resources: list[dict], registry: SearchRegistry, types: list[str] | None,
           repeat: int) -> None:
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in resources:
        by_type[r["resourceType"]].append(r)
    chosen = [t for t in (types or sorted(by_type, key=lambda t: -len(by_type[t]))) if t in by_type]
    print(f"\n{title}: {len(resources)} resources")
    print(f"{'type':<26}{'n':>7}{'extract µs':>12}{'floor µs':>10}{'ratio':>7}{'rows':>7}")
    floor = lambda r: orjson.loads(orjson.dumps(r))  # noqa: E731
    total_x = total_f = 0.0
    for t in chosen:
        items = by_type[t]
        for r in items[:50]:  # warm the compiled extractor and the memo tables before timing
            extract(r, registry)
        x = per_resource_us(lambda r: extract(r, registry), items, repeat)
        f = per_resource_us(floor, items, repeat)
        rows = sum(len(extract(r, registry)) for r in items) / len(items)
        total_x += x * len(items)
        total_f += f * len(items)
        print(f"{t:<26}{len(items):>7}{x:>12.1f}{f:>10.1f}{x / f:>7.1f}{rows:>7.1f}")
    n = sum(len(by_type[t]) for t in chosen)
    print(f"{'all (weighted)':<26}{n:>7}{total_x / n:>12.1f}{total_f / n:>10.1f}{total_x / total_f:>7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", help="comma-separated resource types (default: all present)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bundles", type=int, default=20, help="Synthea bundles to load")
    args = ap.parse_args()
    types = args.types.split(",") if args.types else None

    registry = SearchRegistry.load()
    t = time.perf_counter()
    fallbacks = {rt: registry.fallbacks(rt) for rt in registry.resource_types()}
    print(f"compiled {len(fallbacks)} extractors in {(time.perf_counter() - t) * 1000:.0f} ms; "
          f"fallbacks: {sum(map(len, fallbacks.values()))} {[f'{k}.{c}' for k, v in fallbacks.items() for c in v]}")
    report("R4 specification examples", spec_examples(), registry, types, args.repeat)
    report("Synthea", synthea(args.bundles), registry, types, args.repeat)


if __name__ == "__main__":
    main()
