"""A/B of Patient/{id}/$summary and $twin: two servers on one store, the code before (A) and after (B), requests
alternated citizen by citizen (in a random order per citizen), so both see the same load. The machine's load
moves too much between runs to compare two runs of bench/summary.py.

    .venv/bin/python bench/summary_ab.py --keep DIR [--database postgresql://…] --before SRC --after SRC
                                         [--queries 150]

DIR is a store bench/summary.py prepared (`--keep DIR`); SRC is a `src` folder of the code to run (for the
code before, e.g. `git archive <commit> src | tar -x -C /tmp/before`). Prints both sides' p50 / p95 and the
per-citizen ratio B/A (median), for the sample of citizens aged 40+ and for the 20 heaviest records, beside two
floors taken in the same run: GET Patient/{id} of the same citizens on each server (alternated with the
operations), and the citizen's rows read from the database (summary.floor_rows)."""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import summary as bench  # noqa: E402

PORTS = {"A": 8193, "B": 8194}


def serve(side: str, src: str, data: Path, database: str | None, env: dict) -> subprocess.Popen:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-ab-{side}-"))
    (run_dir / "keys").symlink_to(data / "keys")  # the token minted once is valid on both
    # SQLite: the prepared store's file by URL (its data folder alone would give each server an empty store)
    args = ["--data-dir", str(run_dir), "--database", database or f"sqlite:///{data / 'healthtwin.sqlite'}"]
    return subprocess.Popen([bench.BIN / "healthtwin", "serve", *args, "--port", str(PORTS[side]), "--public-url",
                             f"http://127.0.0.1:{PORTS['A']}", "--rate-limit", "off"],
                            env=dict(env, PYTHONPATH=src, HEALTHTWIN_DATA_DIR=str(run_dir)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", required=True)
    ap.add_argument("--database", default=None)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--queries", type=int, default=150)
    args = ap.parse_args()
    data = Path(args.keep)
    sys.path.insert(0, args.after)
    from healthtwin.security.storage import open_store
    store = open_store(args.database, data)
    sample, worst = bench.adults(store, args.queries, random.Random(3)), bench.heaviest(store, 20)
    env = dict(os.environ, HEALTHTWIN_DATA_DIR=str(data))
    token = subprocess.run([bench.BIN / "healthtwin", "token", "--data-dir", str(data), "--subject", "bench", "--kind",
                            "person", "--roles", "administrator", "--scope", "user/*.rs", "--public-url",
                            f"http://127.0.0.1:{PORTS['A']}"], check=True, capture_output=True, text=True,
                           env=env).stdout.strip().splitlines()[-1]
    procs = {}
    try:
        for side, src in (("A", args.before), ("B", args.after)):
            procs[side] = serve(side, src, data, args.database, env)
            bench.wait(f"http://127.0.0.1:{PORTS[side]}/health")
        clients = {s: httpx.Client(base_url=f"http://127.0.0.1:{p}/fhir", timeout=120,
                                   headers={"Authorization": f"Bearer {token}"}) for s, p in PORTS.items()}
        for pid in sample[:8]:  # warm-up
            for c in clients.values():
                c.get(f"/Patient/{pid}/$summary")
                c.get(f"/Patient/{pid}/$twin", params={"asOf": bench.END})
        rng = random.Random(5)
        results = {}
        for group, pids in (("sample", sample), ("heaviest", worst)):
            got = {(s, op): [] for s in "AB" for op in ("summary", "twin", "read")}
            for pid in pids:
                for side in rng.sample("AB", 2):
                    got[(side, "summary")].append(bench.timed_get(clients[side], f"/Patient/{pid}/$summary")[0])
                    got[(side, "twin")].append(bench.timed_get(clients[side], f"/Patient/{pid}/$twin",
                                                               asOf=bench.END)[0])
                    got[(side, "read")].append(bench.timed_get(clients[side], f"/Patient/{pid}")[0])
            results[group] = got
    finally:
        for proc in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    print(f"store {args.database or 'sqlite'}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for group, pids in (("sample", sample), ("heaviest", worst)):
        rows = []
        for pid in pids:
            t = time.perf_counter()
            bench.floor_rows(store, pid)
            rows.append((time.perf_counter() - t) * 1000)
        results[group][("db", "rows")] = rows
    for group, got in results.items():
        for (side, op), samples in got.items():
            label = {"read": "floor: GET Patient/{id}", "rows": "floor: the rows read"}.get(op, f"${op}")
            print(bench.line(f"{group} {side} {label}", samples))
        for op in ("summary", "twin"):
            ratio = [b / a for a, b in zip(got[("A", op)], got[("B", op)])]
            print(f"{group} ${op}: B/A per citizen, median {statistics.median(ratio):.2f}")


if __name__ == "__main__":
    main()
