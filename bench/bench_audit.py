"""Audit-trail append throughput: one event per call, sequential and from many threads (group commit).

Every append is durable when it returns (SQLite: synchronous=FULL for the audit commit; PostgreSQL:
synchronous_commit as configured, on by default), exactly as a request handler would use it. Prints
appends/s and per-append latency (p50/p99) for 1, 8, 32 and 64 concurrent callers, then verifies the chain.

    .venv/bin/python bench/bench_audit.py [--database postgresql://…] [--seconds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from healthtwin.api.context import Caller, RequestContext  # noqa: E402
from healthtwin.security.audit import AuditLog, rest_events  # noqa: E402
from healthtwin.store import open_store  # noqa: E402


def run(audit: AuditLog, threads: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(n: int) -> None:
        ctx = RequestContext(Caller(subject=f"user{n}", kind="person", roles=frozenset({"practitioner"})),
                             "http://x/fhir", client_address="10.0.0.1")
        mine = []
        i = 0
        while time.perf_counter() < stop:
            events = rest_events(ctx, "read", 200, "Observation", f"o{i}", patients=[f"Patient/{n}-{i % 50}"])
            t0 = time.perf_counter()
            audit.append(events)
            mine.append(time.perf_counter() - t0)
            i += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, help="postgresql://… (default: SQLite in a temp folder)")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--window", type=float, default=0.0, help="group-commit wait in seconds (default 0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.database, tmp)
        audit = AuditLog(store, batch_window=args.window)
        audit.ensure_schema()
        print(f"store: {store.dialect}   window: {args.window * 1000:.1f} ms")
        print(f"{'callers':>8} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for threads in (1, 8, 32, 64):
            rate, p50, p99 = run(audit, threads, args.seconds)
            print(f"{threads:>8} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f}")
        t0 = time.perf_counter()
        result = audit.verify()
        print(f"verify: ok={result.ok} entries={result.checked} in {time.perf_counter() - t0:.2f} s "
              f"({result.checked / (time.perf_counter() - t0):.0f}/s)")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
