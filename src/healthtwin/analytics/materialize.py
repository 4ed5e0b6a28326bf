"""Materialized ViewDefinitions: flat tables in DuckDB (`<data_dir>/analytics.duckdb`) and Parquet files
(`<data_dir>/parquet/<view>/data.parquet`), refreshed incrementally from the store.

How a refresh works, per resource type (every view of that type shares one read of the store):

* **full** (first run, `--full`, or the ViewDefinition changed): every live resource of the type is streamed
  from the store, by keyset pages on `(type, id)`, into a temporary NDJSON file; each view runs over it
  through the DuckDB compiler (`duckdb_views`) into a staging table, which then replaces the old table.
* **incremental**: only rows of `resources` with `last_updated` above the view's watermark are read,
  tombstones (`deleted = 1`) included. In one DuckDB transaction the rows of every changed or deleted
  resource are removed (each row carries the key of the resource it came from, `_rkey`) and the rows of the
  new versions inserted. A resource that stops matching the view's `where` therefore loses its rows too.

Each view is all-or-nothing: rows are computed into a staging table first, and the swap plus the new
watermark commit in one transaction, so a failing view leaves its previous table and watermark untouched
(and the others still refresh). Parquet files are written to a hidden temporary name and renamed into place.

Why a watermark overlap on PostgreSQL: a writer takes its `last_updated` inside its transaction but may
commit after a later-stamped writer, so a reader could see 101 before 100 appears. Rows from the last
`overlap` seconds are therefore re-read (re-applying them is idempotent). SQLite needs none: its writers
hold the database lock from the moment they take a timestamp until they commit.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol

import duckdb
import orjson

from .duckdb_views import NotCompilable, _sql_type, _to_param, compile_view_sql, ndjson_source
from .views import CompiledView, ViewDefinitionError, compile_view

log = logging.getLogger("healthtwin.analytics")

STATE_TABLE = "_ht_view_state"
RECENT_TABLE = "_ht_view_recent"  # versions applied inside the overlap window
PAGE = 5000


# -- where resources come from --------------------------------------------------------------------------------
class ResourceSource(Protocol):
    incremental: bool

    def max_updated(self, rtype: str) -> float | None: ...

    def write_all(self, rtype: str, out: BinaryIO) -> int: ...

    def changes(self, rtype: str, since: float) -> Iterable[tuple[str, float, bool, bytes | None]]: ...


class StoreSource:
    """Reads the store's `resources` table (SQLite or PostgreSQL) in pages, so memory stays flat."""

    incremental = True

    def __init__(self, store: Any, overlap: float | None = None) -> None:
        self.store = store
        self.overlap = overlap if overlap is not None else (0.0 if store.dialect == "sqlite" else 10.0)

    def max_updated(self, rtype: str) -> float | None:
        return self.store.query("SELECT MAX(last_updated) FROM resources WHERE type = ?", [rtype])[0][0]

    def write_all(self, rtype: str, out: BinaryIO) -> int:
        n, last = 0, ""
        while True:
            rows = self.store.query("SELECT id, content FROM resources WHERE type = ? AND id > ? AND deleted = 0 "
                                    "ORDER BY id LIMIT ?", [rtype, last, PAGE])
            for _id, content in rows:
                out.write(self.store.open_content(rtype, _id, content))
                out.write(b"\n")
            n += len(rows)
            if len(rows) < PAGE:
                return n
            last = rows[-1][0]

    def changes(self, rtype: str, since: float) -> Iterable[tuple[str, float, bool, bytes | None]]:
        ts, last = since - self.overlap, None
        while True:  # pages keyed on (last_updated, id): several writers may share a millisecond
            rows = self.store.query(
                "SELECT id, last_updated, deleted, content FROM resources WHERE type = ? AND "
                + ("last_updated > ? " if last is None else "(last_updated > ? OR (last_updated = ? AND id > ?)) ")
                + "ORDER BY last_updated, id LIMIT ?",
                [rtype, ts, PAGE] if last is None else [rtype, ts, ts, last, PAGE])
            for rid, updated, deleted, content in rows:
                yield rid, float(updated), bool(deleted), self.store.open_content(rtype, rid, content)
            if len(rows) < PAGE:
                return
            ts, last = rows[-1][1], rows[-1][0]


class NdjsonSource:
    """A Bulk Data folder (`<Type>.ndjson`), e.g. the population generator's output: full refreshes only."""

    incremental = False

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, rtype: str) -> Path | None:
        p = self.folder / f"{rtype}.ndjson"
        return p if p.exists() else None

    def max_updated(self, rtype: str) -> float | None:
        p = self.path(rtype)
        return p.stat().st_mtime if p else None

    def write_all(self, rtype: str, out: BinaryIO) -> int:
        p = self.path(rtype)
        if p is None:
            return 0
        with p.open("rb") as f:
            data = f.read()
        out.write(data if data.endswith(b"\n") or not data else data + b"\n")
        return data.count(b"\n")

    def changes(self, rtype: str, since: float) -> Iterable[tuple[str, float, bool, bytes | None]]:
        raise NotImplementedError("an NDJSON folder has no change log: use a full refresh")


# -- results ------------------------------------------------------------------------------------------------
@dataclass
class ViewReport:
    name: str
    mode: str                 # full | incremental | unchanged | failed
    rows: int = 0             # rows in the table after the refresh
    read: int = 0             # resources read from the source
    removed: int = 0          # resources whose rows were replaced or removed
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RefreshReport:
    views: list[ViewReport] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. indicator cubes rebuilt afterwards

    @property
    def changed(self) -> bool:
        return any(v.mode == "full" or (v.mode == "incremental" and v.read + v.removed > 0) for v in self.views)

    @property
    def failed(self) -> list[ViewReport]:
        return [v for v in self.views if v.mode == "failed"]


def view_digest(view: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(view, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the materializer ---------------------------------------------------------------------------------------
class Materializer:
    """Keeps one DuckDB table (and one Parquet file) per ViewDefinition up to date with a source."""

    def __init__(self, source: ResourceSource | Any, data_dir: str | Path, views: Iterable[dict[str, Any]],
                 parquet: bool = True, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.source = source if hasattr(source, "write_all") else StoreSource(source)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.parquet = parquet
        self.views: dict[str, dict[str, Any]] = {}
        self.compiled: dict[str, CompiledView] = {}
        for view in views:  # compile all first: a broken definition stops nothing else at refresh time
            compiled = compile_view(view)
            name = str(view["name"])
            if name.startswith(("_ht", "base_", "ind_")):
                raise ViewDefinitionError(f"view name '{name}' is reserved", "name")
            self.views[name] = view
            self.compiled[name] = compiled
        self.con = con or duckdb.connect(str(self.data_dir / "analytics.duckdb"))
        self.lock = threading.Lock()  # one refresh at a time; readers use cursors and see committed data
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name VARCHAR PRIMARY KEY, resource VARCHAR, "
                         "digest VARCHAR, watermark DOUBLE, row_count BIGINT, refreshed_at DOUBLE, mode VARCHAR)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {RECENT_TABLE} (resource VARCHAR, id VARCHAR, last_updated DOUBLE)")
        self._recent: dict[str, list[tuple[str, float]]] = {}
        # Test seam: called with the view name after staging and before the swap.
        self.before_swap: Callable[[str], None] | None = None

    def state(self) -> dict[str, tuple[str, float | None, int, float]]:
        rows = self.con.cursor().execute(f"SELECT name, digest, watermark, row_count, refreshed_at "
                                         f"FROM {STATE_TABLE}").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def refresh(self, full: bool = False, only: Iterable[str] | None = None) -> RefreshReport:
        started = time.perf_counter()
        report = RefreshReport()
        names = [n for n in self.views if only is None or n in set(only)]
        with self.lock:
            state = self.state()
            tables = {r[0] for r in self.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            by_type: dict[str, list[str]] = defaultdict(list)
            for n in names:
                by_type[self.compiled[n].resource].append(n)
            for rtype, group in by_type.items():
                rebuild, incremental = [], []
                for n in group:
                    old = state.get(n)
                    if (full or old is None or old[0] != view_digest(self.views[n]) or old[1] is None
                            or n not in tables or not self.source.incremental):
                        rebuild.append(n)
                    else:
                        incremental.append(n)
                if rebuild:
                    report.views += self._full(rtype, rebuild)
                if incremental:
                    report.views += self._incremental(rtype, incremental, min(state[n][1] for n in incremental))
        report.seconds = time.perf_counter() - started
        for v in report.failed:
            log.error("view %s was not refreshed: %s", v.name, v.error)
        return report

    # -- full -----------------------------------------------------------------------------------------------
    def _full(self, rtype: str, names: list[str]) -> list[ViewReport]:
        t0 = time.perf_counter()
        watermark = self.source.max_updated(rtype)  # taken before reading: later changes are read next time
        with _Spool(self.source, rtype) as spool:
            reports = []
            for n in names:
                t1 = time.perf_counter()
                rep = ViewReport(n, "full", read=spool.count)
                try:
                    stage = self._stage(n, spool.relation)
                    if self.before_swap:
                        self.before_swap(n)
                    self._swap_full(n, stage, watermark or 0.0)
                    rep.rows = self._count(n)
                except Exception as exc:  # the view keeps its previous table; the others go on
                    rep.mode, rep.error = "failed", _describe(exc)
                    self._drop_stage(n)
                rep.seconds = time.perf_counter() - t1 + (spool.seconds if n == names[0] else 0.0)
                reports.append(rep)
        log.info("full refresh of %s views %s in %.2fs", rtype, names, time.perf_counter() - t0)
        return reports

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction: the swap of a view's table and its watermark commit together or not at all."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _swap_full(self, name: str, stage: str, watermark: float) -> None:
        with self._transaction() as con:
            con.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
            con.execute(f"ALTER TABLE {_ident(stage)} RENAME TO {_ident(name)}")
            self._set_state(name, watermark, "full")
        self._export(name)

    # -- incremental ----------------------------------------------------------------------------------------
    def _incremental(self, rtype: str, names: list[str], since: float) -> list[ViewReport]:
        t0 = time.perf_counter()
        changed: list[str] = []
        watermark = since
        with _Spool(self.source, rtype, lambda out: self._changes(rtype, since, out, changed)) as spool:
            if changed:
                watermark = max(watermark, spool.max_updated)
            read_seconds = spool.seconds
            reports = []
            for n in names:
                t1 = time.perf_counter()
                rep = ViewReport(n, "incremental" if changed else "unchanged", read=spool.count,
                                 removed=len(changed))
                if not changed:
                    rep.rows = self._count(n)
                    reports.append(rep)
                    continue
                try:
                    stage = self._stage(n, spool.relation)
                    if self.before_swap:
                        self.before_swap(n)
                    self._apply(n, stage, changed, watermark)
                    rep.rows = self._count(n)
                except Exception as exc:
                    rep.mode, rep.error = "failed", _describe(exc)
                    self._drop_stage(n)
                rep.seconds = time.perf_counter() - t1 + (read_seconds if n == names[0] else 0.0)
                reports.append(rep)
        self._remember(rtype, watermark, not any(r.mode == "failed" for r in reports))
        log.info("incremental refresh of %s views %s: %d changed in %.2fs", rtype, names, len(changed),
                 time.perf_counter() - t0)
        return reports

    def _changes(self, rtype: str, since: float, out: BinaryIO, changed: list[str]) -> tuple[int, float]:
        n, latest, seen = 0, since, set()
        # Versions re-read only because of the overlap were applied last time: (id, last_updated) is a version.
        applied = set(self.con.execute(f"SELECT id, last_updated FROM {RECENT_TABLE} WHERE resource = ?",
                                       [rtype]).fetchall())
        recent: list[tuple[str, float]] = []
        for rid, updated, deleted, content in self.source.changes(rtype, since):
            recent.append((rid, updated))
            if (rid, updated) in applied:
                continue
            if rid not in seen:
                seen.add(rid)
                changed.append(rid)
            latest = max(latest, updated)
            if not deleted and content is not None:
                out.write(content)
                out.write(b"\n")
                n += 1
        self._recent[rtype] = recent
        return n, latest

    def _remember(self, rtype: str, watermark: float, ok: bool) -> None:
        """Keeps the versions inside the overlap window (all of them forgotten if a view of the type failed)."""
        overlap = getattr(self.source, "overlap", 0.0)
        keep = [(rtype, i, u) for i, u in self._recent.pop(rtype, []) if ok and overlap and u > watermark - overlap]
        self.con.execute(f"DELETE FROM {RECENT_TABLE} WHERE resource = ?", [rtype])
        if keep:
            self.con.executemany(f"INSERT INTO {RECENT_TABLE} VALUES (?, ?, ?)", keep)

    def _apply(self, name: str, stage: str, changed: list[str], watermark: float) -> None:
        con = self.con
        # One list parameter, not executemany: DuckDB inserts a list in one step, row-wise inserts one by one.
        con.execute("CREATE OR REPLACE TEMP TABLE _ht_changed AS SELECT unnest(?::VARCHAR[]) AS id", [changed])
        try:
            with self._transaction():
                con.execute(f"DELETE FROM {_ident(name)} WHERE _rkey IN (SELECT id FROM _ht_changed)")
                con.execute(f"INSERT INTO {_ident(name)} BY NAME SELECT * FROM {_ident(stage)}")
                self._set_state(name, watermark, "incremental")
        finally:
            self._drop_stage(name)
        self._export(name)

    # -- shared steps ---------------------------------------------------------------------------------------
    def _stage(self, name: str, relation: str) -> str:
        """Rows of view `name` over `relation` in a staging table, each with the key of its resource."""
        compiled = self.compiled[name]
        stage = f"_ht_stage_{name}"
        con = self.con
        con.execute(f"DROP TABLE IF EXISTS {_ident(stage)}")
        try:
            sql, _ = compile_view_sql(compiled, con, relation)
        except NotCompilable:
            sql = None
        if sql is not None:
            assert sql.startswith("SELECT\n")
            sql = 'SELECT\n  r.id AS "_rkey",' + sql[len("SELECT"):]
            try:
                con.execute(f"CREATE TABLE {_ident(stage)} AS {sql}")
            except duckdb.Error as exc:
                from .duckdb_views import located_error
                located = located_error(exc)
                if located is not None:
                    raise ViewDefinitionError(located[1], located[0]) from None
                raise
            return stage
        # The Python engine, one resource at a time so each row keeps its resource's key.
        cols = ", ".join(f'{_ident(c.name)} {_sql_type(c.type, c.collection)}' for c in compiled.columns)
        con.execute(f'CREATE TABLE {_ident(stage)} ("_rkey" VARCHAR, {cols})')
        cur = con.cursor()
        cur.execute(f"SELECT id, content FROM {relation} WHERE resource_type = ?", [compiled.resource])
        rows = []
        for rid, content in iter(cur.fetchone, None):
            for t in compiled.tuples([orjson.loads(content)]):
                rows.append([rid, *(_to_param(v) for v in t)])
        if rows:
            con.executemany(f"INSERT INTO {_ident(stage)} VALUES ({', '.join('?' * (len(compiled.columns) + 1))})",
                            rows)
        return stage

    def _drop_stage(self, name: str) -> None:
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {_ident('_ht_stage_' + name)}")
        except duckdb.Error:
            pass

    def _set_state(self, name: str, watermark: float, mode: str) -> None:
        self.con.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES (?, ?, ?, ?, "
                         f"(SELECT COUNT(*) FROM {_ident(name)}), ?, ?)",
                         [name, self.compiled[name].resource, view_digest(self.views[name]), watermark,
                          time.time(), mode])

    def _count(self, name: str) -> int:
        return self.con.execute(f"SELECT COUNT(*) FROM {_ident(name)}").fetchone()[0]

    def _export(self, name: str) -> None:
        if not self.parquet:
            return
        folder = self.data_dir / "parquet" / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / ".data.parquet.tmp"  # hidden: Spark and DuckDB globs skip it
        self.con.execute(f"COPY (SELECT * EXCLUDE (_rkey) FROM {_ident(name)}) TO '{tmp}' (FORMAT parquet)")
        os.replace(tmp, folder / "data.parquet")

    def close(self) -> None:
        self.con.close()


class _Spool:
    """A temporary NDJSON file of resources, exposed to DuckDB as a (resource_type, id, content) relation."""

    def __init__(self, source: Any, rtype: str, fill: Callable[[BinaryIO], tuple[int, float]] | None = None) -> None:
        self.source, self.rtype, self.fill = source, rtype, fill
        self.count, self.max_updated, self.seconds = 0, 0.0, 0.0
        self.path: str | None = None
        self.relation = ""

    def __enter__(self) -> "_Spool":
        t0 = time.perf_counter()
        direct = getattr(self.source, "path", None)
        if self.fill is None and direct is not None and direct(self.rtype) is not None:
            self.relation = ndjson_source(str(direct(self.rtype)))
            self.count = -1  # not counted: DuckDB reads the file directly
        else:
            fd, self.path = tempfile.mkstemp(prefix=f"ht-{self.rtype}-", suffix=".ndjson")
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                if self.fill is None:
                    self.count = self.source.write_all(self.rtype, out)
                else:
                    self.count, self.max_updated = self.fill(out)
            # An empty file has no JSON shape for DuckDB to read; an empty relation of the same shape instead.
            self.relation = (ndjson_source(self.path) if self.count else
                             "(SELECT NULL::VARCHAR AS resource_type, NULL::VARCHAR AS id, NULL::JSON AS content "
                             "WHERE false)")
        self.seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.path:
            os.unlink(self.path)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ViewDefinitionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# -- refresh of views and indicators together, on a schedule -----------------------------------------------------
def refresh_all(materializer: Materializer, full: bool = False) -> RefreshReport:
    """Views, then the indicator tables computed from them (only if a view changed or they are missing)."""
    from .indicators import build_cubes
    report = materializer.refresh(full=full)
    with materializer.lock:
        t0 = time.perf_counter()
        built = build_cubes(materializer.con, force=full or report.changed)
        report.extra["indicators"] = built
        report.extra["indicator_seconds"] = time.perf_counter() - t0
    return report


class Scheduler:
    """A daemon thread that refreshes every `minutes`; `stop()` waits for a refresh under way to finish."""

    def __init__(self, materializer: Materializer, minutes: float) -> None:
        self.materializer, self.interval = materializer, minutes * 60.0
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
        from ..store import open_store
        store = open_store(args.database, data_dir)
        source = StoreSource(store)
    mat_ = Materializer(source, out, indicator_views(), parquet=not args.no_parquet)
    try:
        report = refresh_all(mat_, full=args.full)
    finally:
        mat_.close()
        if store is not None:
            store.close()
    for v in report.views:
        print(f"{v.name:20s} {v.mode:12s} rows={v.rows:>10} read={v.read:>9} changed={v.removed:>8} "
              f"{v.seconds:7.2f}s" + (f"  ERROR {v.error}" if v.error else ""))
    print(f"indicators rebuilt: {len(report.extra.get('indicators', []))} "
          f"in {report.extra.get('indicator_seconds', 0.0):.2f}s; total {report.seconds:.2f}s -> {out}")
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(views_main())
