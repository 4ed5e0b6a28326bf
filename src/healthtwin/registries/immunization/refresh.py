"""`healthtwin immunization refresh`: every child re-forecast and their ImmunizationRecommendation rewritten,
after a bulk load (which runs no write rules) or once a day (a dose falls due without any write).

The children (patients younger than recommendations.CHILD_YEARS on the day) are listed once from the birthdate
index and cut into chunks of `CHUNK` ids; each worker process opens the store itself and, per chunk, reads the
chunk's records in four plain queries, forecasts them and writes the changed recommendations in one
transaction, which also takes each child's guard and re-checks the record's versions, so a refresh and the
live write rule never leave a recommendation behind the record (cohort.py). Work is split across processes
because the forecast (pure Python) is the cost: two workers use both cores.

`per_child=True` runs the older path instead (batches of `BATCH`, each read with the live rule's searches,
live.refresh_in): the same recommendations, several times slower; kept as the reference the bulk path is
tested against."""
from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from ...api.services import utc_today
from ...security.auth_audit import DCM, record_in_store
from . import live_schedule, rules
from .dates import parse_date
from .recommendations import CHILD_YEARS

BATCH = 250  # children per batch of the per-child path
CHUNK = 1000  # children per chunk of the bulk path: one transaction, four reads
ANALYZE_AFTER = 5000  # recommendations written before the run refreshes the planner's statistics (_collect)


@dataclass
class Totals:
    children: int = 0
    written: int = 0
    seconds: float = 0.0  # wall, from listing the children to the last batch (worker start-up included)
    busy: float = 0.0  # the workers' time in batches, summed: the rate at scale, past start-up, is children/busy
    cpu: float = 0.0  # the workers' CPU time in batches, summed: on a shared machine, what the work itself costs
    writing: float = 0.0  # the workers' CPU time inside the write transactions, summed (on SQLite they take turns)
    again: int = 0  # children whose record changed between the bulk read and the write: forecast once more


def add_parser(commands: Any) -> None:
    ref = commands.add_parser("refresh", help="re-forecast every child and rewrite their ImmunizationRecommendation")
    ref.add_argument("--data-dir", default="./data", help="folder for the embedded database and keys (default ./data)")
    ref.add_argument("--database", default=None,
                     help="postgresql://user@host/db for PostgreSQL; default: SQLite in the data folder")
    ref.add_argument("--date", default=None, help="the assessment date, YYYY-MM-DD (default today, UTC)")
    ref.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="worker processes (default: 2, or the cores there are)")


def run(args: argparse.Namespace) -> int:
    try:
        on = (parse_date(args.date) if args.date else None) or utc_today()
    except ValueError:
        raise ValueError(f"--date takes YYYY-MM-DD, not {args.date!r}") from None
    schedule = live_schedule.checked()
    if args.workers < 1:
        raise ValueError("--workers is at least 1")
    totals = refresh_all(args.database, Path(args.data_dir), on, args.workers)
    rate = totals.children / totals.seconds if totals.seconds else 0.0
    per_worker = totals.children / totals.busy if totals.busy else 0.0
    print(f"{totals.children:,} children re-forecast ({schedule}) on {on}, {totals.written:,} "
          f"recommendations written, in {totals.seconds:.1f} s ({rate:,.0f} children/s with {args.workers} "
          f"workers; {per_worker:,.0f} children/s per worker past start-up)")
    return 0


def _open(database: str | None, data_dir: Path):
    from ...api.services import Services
    from ...security.storage import open_store
    from .due import register
    services = Services.build(open_store(database, data_dir))
    register(services.registry)  # the due lists' parameters, as the server has them
    return services


def child_ids(services: Any, on: date, size: int = BATCH) -> list[list[str]]:
    """The ids of the patients younger than CHILD_YEARS on `on`, in batches: straight from the birthdate index
    (ids only: a search would read every child's whole resource just to list them)."""
    from ...fhir.dates import parse_range
    store = services.store
    pid = store.pid("Patient", "birthdate")
    if pid is None:
        return []
    born_after = parse_range(date(on.year - CHILD_YEARS, on.month, min(on.day, 28)).isoformat())[1]
    rows = store.query("SELECT DISTINCT r.id FROM resources r JOIN idx_date d ON d.rid = r.rid "
                       "WHERE r.type = 'Patient' AND r.deleted = 0 AND d.pid = ? AND d.lo >= ? ORDER BY r.id",
                       [pid, born_after])
    ids = [row[0] for row in rows]
    return [ids[i:i + size] for i in range(0, len(ids), size)]


_worker: dict[str, Any] = {}


def _init(database: str | None, data_dir: str, settle: bool = False) -> None:
    services = _worker["services"] = _open(database, Path(data_dir))
    rules.load(live_schedule.key())
    services.registry.index_extractor("ImmunizationRecommendation")  # built now, so it is frozen below
    if settle:  # a worker process (not the caller's, which may be a test run): see runtime.py
        from ...runtime import settle_after_start
        settle_after_start()


def _batch(job: tuple[list[str], str, bool]) -> tuple[int, int, float, float, float, int]:
    pids, on, per_child = job
    services = _worker["services"]
    started, cpu = time.perf_counter(), time.process_time()
    enabled = gc.isenabled()
    gc.disable()  # a chunk's records and forecasts are freed by reference counting; cycles collected once, after
    try:
        written, again, writing = _run(services, pids, date.fromisoformat(on), per_child)
    finally:
        if enabled:
            gc.enable()
    # The youngest generation only: with collection off, everything the chunk made is in it, so its cycles go
    # here; a full collection also re-scanned what earlier chunks left alive (the extraction's memos, up to
    # 100,000 entries), 23-34 ms a chunk against 6-7 ms (2026-12-06, the 130,000-child store). Counted below.
    gc.collect(0)
    return len(pids), written, time.perf_counter() - started, time.process_time() - cpu, writing, again


def _run(services: Any, pids: list[str], on: date, per_child: bool) -> tuple[int, int, float]:
    """(recommendations written, children forecast again inside the write, CPU seconds inside the write)."""
    from .cohort import commit_chunk, prepare_chunk
    from .live import refresh_in
    if per_child:
        begun = time.process_time()
        with services.store.transaction() as tx:
            written = refresh_in(tx, services, pids, on, reindex_patients=True)
        return written, 0, time.process_time() - begun
    prepared = prepare_chunk(services, pids, on)
    begun = time.process_time()
    written, again = commit_chunk(services, prepared)
    return written, again, time.process_time() - begun


def audit_event(on: date, totals: Totals, workers: int) -> dict[str, Any]:
    """The refresh as one AuditEvent: the system as the actor (no person asked for it), the recommendations
    rewritten (DICOM 110100 Application Activity, action U), with the run's counts."""
    from ...store.records import instant
    counts = {"children": totals.children, "recommendations written": totals.written,
              "forecast again inside the write": totals.again, "workers": workers}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110100", "display": "Application Activity"},
        "action": "U", "recorded": instant(time.time()), "outcome": "0",
        "outcomeDesc": f"{totals.children} children re-forecast on {on.isoformat()} ({live_schedule.key()}), "
                       f"{totals.written} ImmunizationRecommendation versions written in {totals.seconds:.1f} s",
        "agent": [{"who": {"identifier": {"value": "system"}}, "requestor": True, "type": {"text": "system job"}}],
        "source": {"observer": {"display": "healthtwin immunization refresh"}},
        "entity": [{"what": {"display": "ImmunizationRecommendation"}, "type": {"code": "2", "display": "System Object"},
                    "description": f"every child's forecast, assessment date {on.isoformat()}",
                    "detail": [{"type": k, "valueString": str(v)} for k, v in counts.items()]}],
    }


def _collect(store: Any, results: Iterable[tuple]) -> list[tuple]:
    """The batches' results as they come, with the planner's statistics refreshed once ANALYZE_AFTER
    recommendations are written (store.analyze_resources): a first refresh creates a type PostgreSQL's
    statistics have never seen, and every later chunk's lookup by id was planned as a scan of all of it."""
    done, written, analyzed = [], 0, False
    for result in results:
        done.append(result)
        written += result[1]
        if not analyzed and written >= ANALYZE_AFTER:
            store.analyze_resources()
            analyzed = True
    return done


def refresh_all(database: str | None, data_dir: Path, on: date, workers: int = 2, per_child: bool = False) -> Totals:
    """Re-forecasts every child; the run is recorded in the audit trail (audit_event) once it has committed."""
    started = time.perf_counter()
    services = _open(database, data_dir)
    batches = list(child_ids(services, on, BATCH if per_child else CHUNK))
    totals = Totals()
    jobs = [(ids, on.isoformat(), per_child) for ids in batches]
    if workers == 1:
        _init(database, str(data_dir))
        done = _collect(services.store, map(_batch, jobs))
        _worker["services"].store.close()
    else:
        ctx = multiprocessing.get_context("spawn")  # no inherited connections or threads
        with ctx.Pool(workers, _init, (database, str(data_dir), True)) as pool:
            done = _collect(services.store, pool.imap_unordered(_batch, jobs))
    for children, written, busy, cpu, writing, again in done:
        totals.children += children
        totals.written += written
        totals.busy += busy
        totals.cpu += cpu
        totals.writing += writing
        totals.again += again
    # As after a load: the due lists search what was just written (on PostgreSQL, when the run wrote a tenth
    # of the store or more; less is left to autovacuum)
    services.store.refresh_statistics(totals.written)
    totals.seconds = time.perf_counter() - started
    try:
        record_in_store(services.store, audit_event(on, totals, workers))
    finally:
        services.store.close()
    return totals
