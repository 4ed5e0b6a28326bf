"""Refreshing the analytics as a whole: the views, then the indicator tables from them (`refresh_all`), on a
schedule in the server (`Scheduler`), or once from the command line (`healthtwin views materialize`)."""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import duckdb

from .indicators import build_cubes
from .materialize import Materializer, NdjsonSource, RefreshReport, StoreSource, _describe

log = logging.getLogger("healthtwin.analytics")


# -- refresh of views and indicators together, on a schedule -----------------------------------------------------
def refresh_all(materializer: Materializer, full: bool = False) -> RefreshReport:
    """Views, then the indicator tables: updated from the changes the views journalled, rebuilt if missing."""
    report = materializer.refresh(full=full)
    with materializer.lock:
        t0 = time.perf_counter()
        built = build_cubes(materializer.con, force=full)
        report.extra["indicators"] = built
        report.extra["indicator_seconds"] = time.perf_counter() - t0
    if any(v.mode == "full" for v in report.views) or "built" in built.values():
        materializer.checkpoint()  # a rebuild's WAL is folded now, as part of the rebuild's own cost
    return report


class Scheduler:
    """A daemon thread that refreshes every `minutes`; `stop()` waits for a refresh under way to finish."""

    def __init__(self, materializer: Materializer, minutes: float, after: Callable[[], None] | None = None) -> None:
        """`after`: called after each successful refresh (the server publishes a snapshot for its workers)."""
        self.materializer, self.interval, self.after = materializer, minutes * 60.0, after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: RefreshReport | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="healthtwin-views", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = refresh_all(self.materializer)
                self.last_error = None
                if self.after is not None:
                    self.after()
            except Exception as exc:  # keep the schedule alive; the error is visible in /analytics/status
                self.last_error = _describe(exc)
                log.exception("scheduled view refresh failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


# -- command line: `healthtwin views materialize` --------------------------------------------------------------
def views_main(argv: list[str] | None = None) -> int:
    """`healthtwin views materialize [--data-dir D] [--database URL] [--out DIR] [--full] [--from-ndjson DIR]`."""
    parser = argparse.ArgumentParser(prog="healthtwin views", description="materialize the analytics views")
    sub = parser.add_subparsers(dest="action", required=True)
    mat = sub.add_parser("materialize", help="refresh the DuckDB tables and Parquet files of the indicator views")
    mat.add_argument("--data-dir", default="./data", help="folder of the embedded database (default ./data)")
    mat.add_argument("--database", default=None, help="postgresql://… or sqlite:///path (default: SQLite in --data-dir)")
    mat.add_argument("--out", default=None, help="folder for analytics.duckdb and parquet/ (default: --data-dir)")
    mat.add_argument("--full", action="store_true", help="rebuild every view instead of applying changes")
    mat.add_argument("--from-ndjson", default=None, metavar="DIR",
                     help="read a Bulk Data NDJSON folder instead of the store (always a full refresh)")
    mat.add_argument("--no-parquet", action="store_true", help="DuckDB tables only")
    args = parser.parse_args(argv)
    from .indicators import indicator_views
    data_dir = Path(args.data_dir).resolve()
    out = Path(args.out).resolve() if args.out else data_dir
    store = None
    if args.from_ndjson:
        source: Any = NdjsonSource(args.from_ndjson)
    else:
        from ..security.storage import open_store
        store = open_store(args.database, data_dir)
        source = StoreSource(store)
    try:
        mat_ = Materializer(source, out, indicator_views(), parquet=not args.no_parquet)
    except duckdb.IOException as exc:  # DuckDB allows one writing process per file: a server owns it
        if store is not None:
            store.close()
        print(f"healthtwin views: the analytics database in {out} is in use by another process, such as a running "
              "`healthtwin serve`, which refreshes it on its schedule (POST /analytics/refresh asks it now); "
              f"stop that process to refresh from here. DuckDB said: {exc}", file=sys.stderr)
        return 2
    try:
        report = refresh_all(mat_, full=args.full)
    finally:
        mat_.close()
        if store is not None:
            store.close()
    for v in report.views:
        print(f"{v.name:20s} {v.mode:12s} rows={v.rows:>10} read={v.read:>9} changed={v.removed:>8} "
              f"{v.seconds:7.2f}s" + (f"  parquet {v.parquet}" if v.parquet else "")
              + (f"  ERROR {v.error}" if v.error else ""))
    outcomes = Counter(v.split(":")[0] for v in report.extra.get("indicators", {}).values())
    print(f"indicators: {', '.join(f'{n} {k}' for k, n in sorted(outcomes.items())) or 'none'} "
          f"in {report.extra.get('indicator_seconds', 0.0):.2f}s; views {report.seconds:.2f}s -> {out}")
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(views_main())
