"""Audit-trail append throughput: one event per call, sequential and from many threads (group commit).

Every append is durable when it returns (SQLite: synchronous=FULL for the audit commit; PostgreSQL:
synchronous_commit as configured, on by default), exactly as a request handler would use it. Prints
appends/s and per-append latency (p50/p99) for 1, 8, 32 and 64 concurrent callers, then verifies the chain.

Then, on SQLite, what the log's indexes cost per appended event: with all of them, and with the citizen's
access-log index alone (the floor), in the same run (`index_cost`).

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

from healthtwin.request import Caller, RequestContext  # noqa: E402
from healthtwin.security import audit as audit_module  # noqa: E402
from healthtwin.security.audit import AuditLog, rest_events  # noqa: E402
from healthtwin.security.storage import open_store  # noqa: E402
from healthtwin.store.sqlite import SQLiteStore  # noqa: E402


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


def index_cost(indexes: dict[str, str], batches: int = 600, size: int = 32) -> float:
    """µs of one appended event with `indexes` on a fresh SQLite log (best of three rounds). Events as the
    server builds them for reads, 32 to a batch as the group commit gathers them under load, for 500
    requestors and 9,000 patients; not fsynced (the flush is the same with any index and would hide it)."""
    saved = audit_module._INDEXES
    audit_module._INDEXES = indexes
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = SQLiteStore(Path(folder) / "audit.sqlite")
            log = AuditLog(store, durable=False)
            log.ensure_schema()
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                for b in range(batches):
                    events = []
                    for i in range(size):
                        n = b * size + i
                        ctx = RequestContext(Caller(subject=f"dr-{n % 500}", kind="person"), "http://x/fhir")
                        events += rest_events(ctx, "read", 200, "Observation", str(n), [f"Patient/p{n % 9000}"])
                    log.append(events)
                best = min(best, time.perf_counter() - t0)
            store.close()
    finally:
        audit_module._INDEXES = saved
    return best / (batches * size) * 1e6


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
    indexes = dict(audit_module._INDEXES)
    floor = index_cost({"audit_log_patient": indexes["audit_log_patient"]})
    full = index_cost(indexes)
    print(f"append cost, SQLite, access-log index only (floor): {floor:.1f} µs/event; with all "
          f"({', '.join(indexes)}): {full:.1f} µs/event (+{full - floor:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
