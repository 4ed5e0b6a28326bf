"""The database's own share of a bulk load: the rows a load wrote, written again by the database alone.

A load validates each resource, extracts its search-index rows, protects identifiers and writes the resource
row with its index rows (about 13 per resource). This module takes those very rows, as the load left them in
a SQLite store, and writes them into a fresh store of the same schema through the store's own write path
(`write_cursor` + `bulk_insert`: SQLite `executemany`, PostgreSQL `COPY`), in the loader's batches of 1,000
resources per transaction. No parsing, validation or extraction is left: what remains is what the database
does to keep the resource rows and the search indexes. No load with indexing on can beat this figure, so
bench_load.py prints it beside the load's rate as its floor.

`deferred=True` drops the search indexes' B-trees before the inserts and builds them after, timed in: the most
generous bound, for a load that leaves the store unsearchable until it ends.
"""
from __future__ import annotations

import bisect
import multiprocessing
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from healthtwin.loading import BATCH  # the loader's transaction size
from healthtwin.store.indexer import COLUMNS
from healthtwin.store.schema import INDEX_TABLES

RESOURCE_COLUMNS = ("rid", "type", "id", "version", "last_updated", "deleted", "content")
Batch = tuple[list[tuple], dict[str, list[tuple]]]


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every process, the database servers included)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def checks_cpu(lines: list[bytes], at_rest) -> float:
    """CPU seconds per resource for what a load does before writing (parse, validate, extract and blind the
    index rows), in this process: `healthtwin.loading`'s own worker code."""
    from healthtwin import loading
    loading._worker_init(at_rest)
    t0 = time.process_time()
    good, bad = loading._worker_check([(i, line) for i, line in enumerate(lines, 1)])
    seconds = time.process_time() - t0
    if bad:
        raise RuntimeError(f"{len(bad)} of the lines did not pass: {bad[0]}")
    return seconds / len(good)


def stored_batches(sqlite_path: Path) -> list[Batch]:
    """The current resources of a SQLite store with their index rows, in batches of BATCH resources."""
    src = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    resources = src.execute(f"SELECT {', '.join(RESOURCE_COLUMNS)} FROM resources WHERE deleted = 0 "
                            "ORDER BY rid").fetchall()
    starts = [resources[i][0] for i in range(0, len(resources), BATCH)]
    batches: list[Batch] = [(resources[i:i + BATCH], {}) for i in range(0, len(resources), BATCH)]
    for table in INDEX_TABLES:
        for row in src.execute(f"SELECT rid, pid, {', '.join(COLUMNS[table])} FROM {table} ORDER BY rid"):
            batches[bisect.bisect_right(starts, row[0]) - 1][1].setdefault(table, []).append(row)
    src.close()
    return batches


def _write(store, batches: list[Batch]) -> None:
    for resources, index in batches:
        with store.write_cursor() as cur:
            store.bulk_insert(cur, "resources", RESOURCE_COLUMNS, resources)
            for table, rows in index.items():
                store.bulk_insert(cur, table, ("rid", "pid") + COLUMNS[table], rows)


def sqlite_floor(batches: list[Batch], deferred: bool = False) -> float:
    """Seconds for one writer (SQLite has one) to write `batches` into a fresh store file."""
    from healthtwin.store.sqlite import SQLiteStore
    with tempfile.TemporaryDirectory(prefix="ht-floor-") as tmp:
        store = SQLiteStore(Path(tmp) / "floor.sqlite")
        with store.cursor() as cur:
            cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                        "AND tbl_name LIKE 'idx_%'")
            indexes = cur.fetchall() if deferred else []
        t0 = time.perf_counter()
        with store.write_cursor() as cur:
            for name, _ in indexes:
                cur.execute(f"DROP INDEX {name}")
        _write(store, batches)
        with store.write_cursor() as cur:
            for _, sql in indexes:
                cur.execute(sql)
        seconds = time.perf_counter() - t0
        store.close()
    return seconds


def _pg_indexes(dsn: str) -> list[tuple[str, str]]:
    import psycopg
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                            "AND tablename LIKE 'idx_%'").fetchall()


def _pg_run(dsn: str, statements: list[str]) -> None:
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _pg_writer(dsn: str, batches: list[Batch]) -> None:
    from healthtwin.store.postgres import PostgresStore
    store = PostgresStore(dsn, min_size=1, max_size=1)
    _write(store, batches)
    store.close()


def postgres_floor(batches: list[Batch], dsn: str, writers: int = 2, deferred: bool = False) -> float:
    """Seconds for `writers` processes, each with its share of the batches, to COPY them into the fresh, migrated
    PostgreSQL store at `dsn` (PostgreSQL takes parallel writers, as the loader's workers are)."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_pg_writer, args=(dsn, batches[i::writers])) for i in range(writers)]
    indexes = _pg_indexes(dsn) if deferred else []
    t0 = time.perf_counter()
    _pg_run(dsn, [f"DROP INDEX {name}" for name, _ in indexes])
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a floor writer failed with exit code {p.exitcode}")
    _pg_run(dsn, [sql for _, sql in indexes])
    return time.perf_counter() - t0
