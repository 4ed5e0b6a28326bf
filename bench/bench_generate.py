"""Benchmark of the synthetic population generator.

Prints, for one core: resources/s of ``generate`` (generation + NDJSON writing) next to a floor measured
in the same run - the rate of merely ``orjson.dumps``-ing pre-built typical resources into an NDJSON file,
i.e. what serialisation and writing alone cost. Then runs 2 shards in parallel processes to show scaling.

    .venv/bin/python bench/bench_generate.py [--patients 10000] [--seed 1] [--dir /dev/shm]

Output is ~1.1 kB per resource; on a slow disk the write dominates both numbers, so ``--dir`` can point
at a RAM-backed folder to measure the CPU cost.
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import tempfile
import time
from itertools import islice
from pathlib import Path

import orjson

from healthtwin.population import generate, generate_stream

END = dt.date(2024, 12, 31)  # a fixed window: figures stay comparable whatever the day


def _run(args: tuple[Path, int, int, tuple[int, int]]) -> tuple[int, float]:
    out, patients, seed, shard = args
    t0 = time.perf_counter()
    manifest = generate(out, patients, seed, shard=shard, end_date=END)
    return sum(o["count"] for o in manifest["output"]), time.perf_counter() - t0


def floor_rate(sample: list[dict], count: int, path: Path) -> float:
    """Resources/s for orjson.dumps + buffered write of pre-built resources (no generation at all)."""
    dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    t0 = time.perf_counter()
    with open(path, "wb", buffering=1 << 20) as f:
        n, k = 0, len(sample)
        while n < count:
            f.write(dumps(sample[n % k], option=opt))
            n += 1
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10000)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: system temp dir)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        base = Path(tmp)
        os.sync()  # nothing of an earlier run is written back during this one
        n_res, secs = _run((base / "one", a.patients, a.seed, (0, 1)))
        rate = n_res / secs
        # A typical mix: the first resources of a patient-heavy stream (skip the institutions).
        sample = [r for t, r in islice(generate_stream(200, a.seed, shard=(1, 2), end_date=END), 5000)]
        floor = floor_rate(sample, n_res, base / "floor.ndjson")
        print(f"patients={a.patients} resources={n_res} resources/patient={n_res / a.patients:.1f}")
        print(f"1 core : {rate:,.0f} resources/s in {secs:.2f} s  (generation + orjson + write)")
        print(f"floor  : {floor:,.0f} resources/s  (orjson.dumps + write of pre-built resources only)")
        print(f"ratio  : generation costs {floor / rate:.1f}x the pure serialisation floor; target >= 30,000/s: "
              f"{'OK' if rate >= 30000 else 'BELOW'}")
        # Earlier phases leave about 2 GB of dirty pages behind in a disk folder, which the kernel would write back
        # during the parallel run. Even synced first, shards writing to disk share its write rate (1.54x on
        # 2026-11-26 in the system temp folder, against 1.82x in /dev/shm): --dir /dev/shm measures how they
        # share the cores.
        os.sync()
        ctx = mp.get_context("spawn")
        with ctx.Pool(2) as pool:
            t0 = time.perf_counter()
            parts = pool.map(_run, [(base / f"s{i}", a.patients, a.seed, (i, 2)) for i in range(2)])
            wall = time.perf_counter() - t0
        total = sum(p[0] for p in parts)
        assert total == n_res, (total, n_res)
        print(f"2 shards in parallel: {total / wall:,.0f} resources/s wall ({wall:.2f} s incl. process start), "
              f"speed-up {secs / wall:.2f}x over 1 process")


if __name__ == "__main__":
    main()
