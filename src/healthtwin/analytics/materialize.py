"""Materialized ViewDefinitions: flat tables in DuckDB (`<data_dir>/analytics.duckdb`) and Parquet files
(`<data_dir>/parquet/<view>/`, a base file plus delta files: see "Parquet layout" below), refreshed
incrementally from the store.

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
(and the others still refresh).

Parquet layout, per view folder `parquet/<view>/` (merge-on-read, so an incremental refresh writes only what
changed instead of rewriting every row):

* `base-<gen>.parquet`: every row of the view as of generation `<gen>` (a zero-padded integer);
* `delta-<gen>.parquet`, one per later refresh that changed the view: the rows of the resources changed in
  that generation (`_op = 'I'`) and one marker row per changed or deleted resource that had rows before
  (`_op = 'D'`, the view's own columns null), meaning "rows of this `_rkey` from earlier generations are void".
* every file has the view's columns, then `_rkey` (id of the source resource), `_gen` and `_op`.

The current rows are the `I` rows of the newest base and of the deltas above it that no `D` marker of a
*later* generation voids (`parquet_relation`, `read_view_parquet`; `spark.read_materialized` for Spark).
Files are written under a hidden temporary name and renamed into place, so each generation appears whole or
not at all. When the deltas since the base hold more than `compact_ratio` of the base's rows (or there are
more than `max_deltas` of them) the refresh writes a new base instead (compaction); files below the newest
base are deleted once that base is `retain` seconds old, so a reader that listed the folder just before has
time to finish. `_ht_parquet_state` records, in the same DuckDB transaction as the table swap, which
generation the files must reach; if they do not (a write failed after the commit, files were removed), the
next refresh writes a new base from the table.

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
import re
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol

import duckdb
import orjson

from .duckdb_views import (_PARTIAL, NotCompilable, _q, _sql_type, _to_param, compile_view_sql, ndjson_source,
                           sample_structure)
from .views import CompiledView, ViewDefinitionError, compile_view

log = logging.getLogger("healthtwin.analytics")

STATE_TABLE = "_ht_view_state"
RECENT_TABLE = "_ht_view_recent"  # versions applied inside the overlap window
PARQUET_STATE = "_ht_parquet_state"  # per view: the Parquet generation the files must reach
# The change journal, read by the indicator tables' incremental maintenance (`cube_delta.py`): the resources
# whose rows changed since the indicator tables were last brought up to date (id NULL: the whole view was
# replaced), in `_ht_journal_<view>` their rows as they were then (only the first change is kept), and in
# `_ht_jnew_<view>` their rows as they are now (so the indicator update reads the changed rows without a scan).
JOURNAL_IDS = "_ht_journal"
JOURNAL_PREFIX = "_ht_journal_"
JOURNAL_NEW_PREFIX = "_ht_jnew_"
PAGE = 5000
THREADS = min(4, os.cpu_count() or 1)  # resource types refreshed side by side
# DuckDB folds its WAL into the database file (a checkpoint, 0.1-0.35 s at a million resources) once the WAL
# passes this size; at DuckDB's 16 MB default that landed inside roughly every other small refresh. The tables
# are derived data, so a longer WAL costs only a longer replay at start; a full refresh ends with a checkpoint
# of its own (`checkpoint()`), and an incremental one adds about 2 MB per 1 % of a million resources changed.
CHECKPOINT_THRESHOLD_BYTES = 256 << 20
CHECKPOINT_THRESHOLD = f"{CHECKPOINT_THRESHOLD_BYTES >> 20}MiB"


# -- where resources come from --------------------------------------------------------------------------------
class ResourceSource(Protocol):
    incremental: bool

    def max_updated(self, rtype: str) -> float | None: ...

    def write_all(self, rtype: str, out: BinaryIO) -> int: ...

    def changes(self, rtype: str, since: float) -> Iterable[tuple[str, float, bool, bytes | None]]: ...


class StoreSource:
    """Reads the store's `resources` table (SQLite or PostgreSQL) in pages, so memory stays flat.

    On a protected store (every store `open_store` opens) the views read resources under pseudonymous keys:
    ids and references keyed by HMAC, birth dates reduced to the month, names and identifiers dropped
    (`security/pseudonym.py::AnalyticsKeys`), so the DuckDB tables, Parquet files and journals hold no id of
    the store and no full birth date. `keys` overrides the store's; `keys=False` (or an unprotected store)
    hands the views resources as stored."""

    incremental = True

    def __init__(self, store: Any, overlap: float | None = None, keys: Any = None) -> None:
        self.store = store
        self.overlap = overlap if overlap is not None else (0.0 if store.dialect == "sqlite" else 10.0)
        if keys is None:
            keys = getattr(getattr(store, "at_rest", None), "analytics", None)
        self.keys = keys or None

    def _content(self, rtype: str, rid: str, content: Any) -> bytes:
        opened = self.store.open_content(rtype, rid, content)
        return opened if self.keys is None else self.keys.resource(rtype, rid, opened)

    def max_updated(self, rtype: str) -> float | None:
        return self.store.query("SELECT MAX(last_updated) FROM resources WHERE type = ?", [rtype])[0][0]

    def write_all(self, rtype: str, out: BinaryIO) -> int:
        n, last = 0, ""
        while True:
            rows = self.store.query("SELECT id, content FROM resources WHERE type = ? AND id > ? AND deleted = 0 "
                                    "ORDER BY id LIMIT ?", [rtype, last, PAGE])
            for _id, content in rows:
                out.write(self._content(rtype, _id, content))
                out.write(b"\n")
            n += len(rows)
            if len(rows) < PAGE:
                return n
            last = rows[-1][0]

    def changes(self, rtype: str, since: float) -> Iterable[tuple[str, float, bool, bytes | None]]:
        ts, last = since - self.overlap, None
        while True:  # pages keyed on (last_updated, rid): several writers may share a millisecond
            # A row value, not `a > ? OR (a = ? AND id > ?)`: with the OR, SQLite used the index for the type
            # only and read every resource of it for each page after the first (2 s at 1.4M Observations).
            # The row id, not the resource id, breaks ties: the index (type, last_updated) ends with it, so
            # SQLite walks the index in order; ordered by id it sorted every remaining change, content and
            # all, for each page (0.27-1.0 s for 14,000 changed Observations at 3M resources, now 0.05 s).
            rows = self.store.query(
                "SELECT rid, id, last_updated, deleted, content FROM resources WHERE type = ? AND "
                + ("last_updated > ? " if last is None else "(last_updated, rid) > (?, ?) ")
                + "ORDER BY last_updated, rid LIMIT ?",
                [rtype, ts, PAGE] if last is None else [rtype, ts, last, PAGE])
            for _, rid, updated, deleted, content in rows:
                key = rid if self.keys is None else self.keys.key(rtype, rid)
                yield key, float(updated), bool(deleted), None if content is None else self._content(rtype, rid, content)
            if len(rows) < PAGE:
                return
            ts, last = rows[-1][2], rows[-1][0]


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
    parquet: str = ""         # Parquet file written: "base-<gen>" | "delta-<gen>" | "" (none)


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


# -- Parquet layout: base + deltas, merged on read -------------------------------------------------------------
_PARQUET_FILE = re.compile(r"^(base|delta)-(\d+)\.parquet$")


@dataclass
class ParquetLayout:
    """What a view's Parquet folder holds, by the file-name rule (see the module docstring)."""
    base: int | None                  # generation of the newest base file
    deltas: list[int]                 # generations of the delta files above it, ascending
    files: list[Path]                 # the current files: the base, then those deltas
    superseded: list[Path]            # files below the newest base (and a pre-delta `data.parquet`)
    max_gen: int                      # highest generation of any file, 0 if none


def parquet_layout(folder: str | Path) -> ParquetLayout:
    folder = Path(folder)
    bases: dict[int, Path] = {}
    deltas: dict[int, Path] = {}
    legacy: list[Path] = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _PARQUET_FILE.match(p.name)
            if m:
                (bases if m[1] == "base" else deltas)[int(m[2])] = p
            elif p.name == "data.parquet":  # the single-file layout of earlier versions
                legacy.append(p)
    base = max(bases, default=None)
    above = sorted(g for g in deltas if base is not None and g > base)
    files = [] if base is None else [bases[base]] + [deltas[g] for g in above]
    superseded = legacy + [p for g, p in bases.items() if g != base] + [
        p for g, p in deltas.items() if base is None or g <= base]
    return ParquetLayout(base, above, files, superseded, max([*bases, *deltas], default=0))


def parquet_relation(folder: str | Path) -> str:
    """DuckDB SQL (a parenthesised subquery) for the current rows of a view's Parquet folder, without the
    bookkeeping columns: `SELECT ... FROM {parquet_relation(folder)} AS t`. The file list is taken now."""
    lay = parquet_layout(folder)
    if lay.base is None:
        raise FileNotFoundError(f"no materialized view in {folder} (no base-*.parquet)")
    files = "[" + ", ".join(_q(str(p)) for p in lay.files) + "]"
    if not lay.deltas:
        return f"(SELECT * EXCLUDE (_rkey, _gen, _op) FROM read_parquet({files}) WHERE _op = 'I')"
    return (f"(WITH f AS (SELECT * FROM read_parquet({files})), "
            f"v AS (SELECT _rkey, max(_gen) AS _void FROM f WHERE _op = 'D' GROUP BY _rkey) "
            f"SELECT f.* EXCLUDE (_rkey, _gen, _op) FROM f LEFT JOIN v ON f._rkey = v._rkey "
            f"WHERE f._op = 'I' AND (v._void IS NULL OR v._void <= f._gen))")


def read_view_parquet(folder: str | Path, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyRelation:
    """The current rows of a view's Parquet folder as a DuckDB relation (on `con`, default a new in-memory one)."""
    return (con or duckdb.connect()).sql(f"SELECT * FROM {parquet_relation(folder)} AS t")


# -- the materializer ---------------------------------------------------------------------------------------
class Materializer:
    """Keeps one DuckDB table (and one Parquet file) per ViewDefinition up to date with a source."""

    def __init__(self, source: ResourceSource | Any, data_dir: str | Path, views: Iterable[dict[str, Any]],
                 parquet: bool = True, con: duckdb.DuckDBPyConnection | None = None, *,
                 compact_ratio: float = 0.25, max_deltas: int = 64, retain: float = 300.0) -> None:
        self.source = source if hasattr(source, "write_all") else StoreSource(source)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.parquet = parquet
        # Parquet compaction: a new base once the deltas hold more than compact_ratio x the base's rows (both
        # row kinds counted) or number more than max_deltas; superseded files go once the base is retain s old.
        self.compact_ratio, self.max_deltas, self.retain = compact_ratio, max_deltas, retain
        self.views: dict[str, dict[str, Any]] = {}
        self.compiled: dict[str, CompiledView] = {}
        for view in views:  # compile all first: a broken definition stops nothing else at refresh time
            compiled = compile_view(view)
            name = str(view["name"])
            if name.startswith(("_ht", "base_", "ind_")):
                raise ViewDefinitionError(f"view name '{name}' is reserved", "name")
            self.views[name] = view
            self.compiled[name] = compiled
        self._con = con or duckdb.connect(str(self.data_dir / "analytics.duckdb"))
        if con is None:
            self._con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        self._thread = threading.local()  # a refresh's worker threads each use a connection of their own
        self.lock = threading.Lock()  # one refresh at a time; readers use cursors and see committed data
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (name VARCHAR PRIMARY KEY, resource VARCHAR, "
                         "digest VARCHAR, watermark DOUBLE, row_count BIGINT, refreshed_at DOUBLE, mode VARCHAR)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {RECENT_TABLE} (resource VARCHAR, id VARCHAR, last_updated DOUBLE)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {PARQUET_STATE} (name VARCHAR PRIMARY KEY, gen BIGINT, "
                         "base_gen BIGINT, base_rows BIGINT, delta_rows BIGINT)")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {JOURNAL_IDS} (view VARCHAR, id VARCHAR)")
        self._recent: dict[str, list[tuple[str, float]]] = {}
        self._whole: set[str] = set()
        self._journals: set[str] = set()
        self._type_seconds: dict[str, float] = {}  # resource type -> its last refresh's time (for the order)
        # resource type -> the JSON shape its last refresh sampled, reused by incremental ones (`_keep_shape`)
        self._shapes: dict[str, Any] = {}
        # Test seam: called with the view name after staging and before the swap.
        self.before_swap: Callable[[str], None] | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection: the database's, or inside a refresh's worker thread that thread's own (its
        temporary tables, such as the spool, are its own too)."""
        return getattr(self._thread, "con", None) or self._con

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
            # Read once per refresh for the journal (_journal): views replaced whole, journal tables present.
            self._whole = {v for (v,) in self.con.execute(f"SELECT DISTINCT view FROM {JOURNAL_IDS} "
                                                          "WHERE id IS NULL").fetchall()}
            self._journals = {t[len(JOURNAL_PREFIX):] for t in tables if t.startswith(JOURNAL_PREFIX)}
            legacy = {v for v in self._journals if JOURNAL_NEW_PREFIX + v not in tables}
            if legacy:  # journalled by a version without the current rows: the indicator tables are rebuilt
                with self._transaction() as con:
                    for v in legacy:
                        con.execute(f"DROP TABLE {_ident(JOURNAL_PREFIX + v)}")
                        con.execute(f"INSERT INTO {JOURNAL_IDS} VALUES (?, NULL)", [v])
                self._journals -= legacy
                self._whole |= legacy
            by_type: dict[str, list[str]] = defaultdict(list)
            for n in names:
                by_type[self.compiled[n].resource].append(n)
            work = []
            for rtype, group in by_type.items():
                rebuild, incremental = [], []
                for n in group:
                    old = state.get(n)
                    if (full or old is None or old[0] != view_digest(self.views[n]) or old[1] is None
                            or n not in tables or not self.source.incremental):
                        rebuild.append(n)
                    else:
                        incremental.append(n)
                work.append((rtype, rebuild, incremental, state))
            # Resource types are independent (their own views, tables and files): they run side by side,
            # each on a DuckDB connection and a store connection of its own. The longest first (by what the
            # type took last time in this process, else by its views' rows): Observations, half of the store,
            # started last made the whole refresh wait for them.
            work.sort(key=lambda item: (-self._type_seconds.get(item[0], 0.0),
                                        -sum((state.get(n) or (None, None, 0))[2] or 0 for n in item[1] + item[2])))
            if len(work) > 1 and THREADS > 1:
                with ThreadPoolExecutor(max_workers=THREADS) as pool:
                    for views in pool.map(self._refresh_type, work):
                        report.views += views
            else:
                for item in work:
                    report.views += self._refresh_type(item)
        report.seconds = time.perf_counter() - started
        for v in report.failed:
            log.error("view %s was not refreshed: %s", v.name, v.error)
        return report

    def _refresh_type(self, item: tuple[str, list[str], list[str], dict[str, Any]]) -> list[ViewReport]:
        rtype, rebuild, incremental, state = item
        self._thread.con = self._con.cursor()  # this thread's connection for the type's work
        t0 = time.perf_counter()
        try:
            views = []
            if rebuild:
                views += self._full(rtype, rebuild)
            if incremental:
                views += self._incremental(rtype, incremental, min(state[n][1] for n in incremental),
                                           {n: state[n][2] for n in incremental})
            return views
        finally:
            self._type_seconds[rtype] = time.perf_counter() - t0
            self._thread.con.close()
            self._thread.con = None

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
                    stage = self._stage(n, spool.relation, spool.shapes)
                    if self.before_swap:
                        self.before_swap(n)
                    rep.rows, rep.parquet = self._swap_full(n, stage, watermark or 0.0)
                except Exception as exc:  # the view keeps its previous table; the others go on
                    rep.mode, rep.error = "failed", _describe(exc)
                    self._drop_stage(n)
                rep.seconds = time.perf_counter() - t1 + (spool.seconds if n == names[0] else 0.0)
                reports.append(rep)
            self._keep_shape(rtype, spool.shapes)
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

    def _swap_full(self, name: str, stage: str, watermark: float) -> tuple[int, str]:
        with self._transaction() as con:
            con.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
            con.execute(f"ALTER TABLE {_ident(stage)} RENAME TO {_ident(name)}")
            # Rows may have changed anywhere (and the columns too): the indicator tables are rebuilt whole.
            con.execute(f"DROP TABLE IF EXISTS {_ident(JOURNAL_PREFIX + name)}")
            con.execute(f"DROP TABLE IF EXISTS {_ident(JOURNAL_NEW_PREFIX + name)}")
            con.execute(f"DELETE FROM {JOURNAL_IDS} WHERE view = ?", [name])
            con.execute(f"INSERT INTO {JOURNAL_IDS} VALUES (?, NULL)", [name])
            rows = self._count(name)
            self._set_state(name, watermark, "full", rows)
            plan = self._plan_parquet(name, rows, None)
        self._whole.add(name)
        self._journals.discard(name)
        return rows, self._write_parquet(name, plan)

    # -- incremental ----------------------------------------------------------------------------------------
    def _incremental(self, rtype: str, names: list[str], since: float, rows: dict[str, int]) -> list[ViewReport]:
        t0 = time.perf_counter()
        changed: list[str] = []
        watermark = since
        with _Spool(self.source, rtype, lambda out: self._changes(rtype, since, out, changed)) as spool:
            if changed:
                watermark = max(watermark, spool.max_updated)
            relation = spool.relation
            if rtype in self._shapes:
                spool.shapes[rtype] = self._shapes[rtype]
            if changed and spool.count:  # read and split the spooled NDJSON once for all views of the type
                self.con.execute(f"CREATE OR REPLACE TEMP TABLE _ht_spool AS SELECT * FROM {relation}")
                relation = "_ht_spool"
            if changed:  # one list parameter, not executemany: DuckDB inserts a list in one step
                self.con.execute("CREATE OR REPLACE TEMP TABLE _ht_changed AS SELECT unnest(?::VARCHAR[]) AS id",
                                 [changed])
            read_seconds = spool.seconds
            reports = []
            for n in names:
                t1 = time.perf_counter()
                rep = ViewReport(n, "incremental" if changed else "unchanged", read=spool.count,
                                 removed=len(changed))
                try:
                    if not changed:
                        rep.rows = rows[n]
                        rep.parquet = self._check_parquet(n, rows[n])
                        rep.seconds = time.perf_counter() - t1
                        reports.append(rep)
                        continue
                    stage = self._stage(n, relation, spool.shapes, temp=True)
                    if self.before_swap:
                        self.before_swap(n)
                    rep.rows, rep.parquet = self._apply(n, stage, changed, watermark, rows[n])
                except Exception as exc:
                    rep.mode, rep.error = "failed", _describe(exc)
                    self._drop_stage(n)
                rep.seconds = time.perf_counter() - t1 + (read_seconds if n == names[0] else 0.0)
                reports.append(rep)
            self.con.execute("DROP TABLE IF EXISTS temp._ht_spool")
            self.con.execute("DROP TABLE IF EXISTS temp._ht_changed")
            self._keep_shape(rtype, spool.shapes)
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

    def _apply(self, name: str, stage: str, changed: list[str], watermark: float, old_rows: int) -> tuple[int, str]:
        """The changed resources' rows replaced by the staged ones, in one transaction with the journal and state.

        The temporary table `_ht_changed` holds the ids of `changed` (made once per type by `_incremental`)."""
        con = self.con
        try:
            with self._transaction():
                # One scan of the view: the rows going are kept aside for the journal and the Parquet markers
                # (a journal insert, then a delete, each scanned the table).
                removed = con.execute(f"CREATE OR REPLACE TEMP TABLE _ht_gone AS WITH gone AS (DELETE FROM "
                                      f"{_ident(name)} WHERE _rkey IN (SELECT id FROM _ht_changed) RETURNING *) "
                                      "SELECT * FROM gone").fetchone()[0]
                self._journal(name, stage)
                # The delta file's markers: one per changed resource that had rows, so at most this many (counted
                # exactly it cost a statement per view; the figure only decides when the deltas are compacted).
                voided = min(removed, len(changed))
                added = con.execute(f"INSERT INTO {_ident(name)} BY NAME SELECT * FROM {_ident(stage)}").fetchone()[0]
                rows = old_rows - removed + added  # counted, not COUNT(*): a scan of the table per view
                self._set_state(name, watermark, "incremental", rows)
                # No row removed or added (e.g. changed Observations none of which is a death): no new file.
                # Otherwise the resources that had rows get a marker voiding their earlier rows (others had none).
                plan = self._plan_parquet(name, rows, added + voided) if removed or added else None
            if plan is None:
                return rows, self._check_parquet(name, rows)
            return rows, self._write_parquet(name, plan, stage)
        finally:
            self._drop_stage(name)
            con.execute("DROP TABLE IF EXISTS temp._ht_gone")

    def _journal(self, name: str, stage: str) -> None:
        """In the apply's transaction, after the changed resources' rows went into `_ht_gone`: notes the
        resources and keeps their rows as they were (unless an earlier change since the last indicator update
        kept them already) and as they are now (`stage`)."""
        con = self.con
        if name in self._whole:
            return  # the whole view counts as changed until the indicator tables are rebuilt
        journal, now = _ident(JOURNAL_PREFIX + name), _ident(JOURNAL_NEW_PREFIX + name)
        if name not in self._journals:
            con.execute(f"CREATE TABLE IF NOT EXISTS {journal} AS SELECT * FROM {_ident(name)} LIMIT 0")
            con.execute(f"CREATE TABLE IF NOT EXISTS {now} AS SELECT * FROM {_ident(name)} LIMIT 0")
            self._journals.add(name)
        known = f"(SELECT id FROM {JOURNAL_IDS} WHERE view = ? AND id IS NOT NULL)"
        con.execute(f"INSERT INTO {journal} SELECT * FROM _ht_gone WHERE _rkey NOT IN {known}", [name])
        con.execute(f"DELETE FROM {now} WHERE _rkey IN (SELECT id FROM _ht_changed)")
        con.execute(f"INSERT INTO {now} BY NAME SELECT * FROM {_ident(stage)}")
        con.execute(f"INSERT INTO {JOURNAL_IDS} SELECT ?, id FROM _ht_changed WHERE id NOT IN {known}", [name, name])

    # -- shared steps ---------------------------------------------------------------------------------------
    def _stage(self, name: str, relation: str, shapes: dict[str, Any] | None = None, temp: bool = False) -> str:
        """Rows of view `name` over `relation` in a staging table, each with the key of its resource.

        `temp`: in memory (an incremental refresh's few rows, copied into the table), rather than in the
        database file (a full refresh's stage is renamed into the table, so it must live there)."""
        compiled = self.compiled[name]
        stage = f"_ht_stage_{name}"
        con = self.con
        con.execute(f"DROP TABLE IF EXISTS {_ident(stage)}")
        try:
            if shapes is not None and compiled.resource not in shapes:  # sampled once per spool and type
                shapes[compiled.resource] = sample_structure(con, relation, compiled.resource)
            sql, _ = compile_view_sql(compiled, con, relation,
                                      structure=None if shapes is None else shapes[compiled.resource])
        except NotCompilable:
            sql = None
        if sql is not None:
            assert sql.startswith("SELECT\n")
            sql = 'SELECT\n  r.id AS "_rkey",' + sql[len("SELECT"):]
            try:
                con.execute(f"CREATE {'TEMP ' if temp else ''}TABLE {_ident(stage)} AS {sql}")
            except duckdb.Error as exc:
                from .duckdb_views import located_error
                located = located_error(exc)
                if located is not None:
                    raise ViewDefinitionError(located[1], located[0]) from None
                raise
            return stage
        # The Python engine, one resource at a time so each row keeps its resource's key. An incremental
        # refresh stages in the view's own column types (a column without a declared type may be VARCHAR
        # there, as the DuckDB path made it, where the Python path alone would make it JSON).
        types = {}
        if temp:  # the view's table exists: an incremental refresh follows a full one
            table = con.table(_ident(name))
            types = {c: str(t) for c, t in zip(table.columns, table.types)}
        if len(types) != len(compiled.columns) + 1:
            types = {"_rkey": "VARCHAR", **{c.name: _sql_type(c.type, c.collection) for c in compiled.columns}}
        cols = ", ".join(f"{_ident(c)} {t}" for c, t in types.items())
        con.execute(f'CREATE {"TEMP " if temp else ""}TABLE {_ident(stage)} ({cols})')
        kinds = [types[c.name] for c in compiled.columns]
        # Read on this connection, not a new cursor: an incremental refresh's relation is its temporary spool
        # table, which other connections do not see.
        con.execute(f"SELECT id, content FROM {relation} WHERE resource_type = ?", [compiled.resource])
        rows = []
        while batch := con.fetchmany(1000):
            for rid, content in batch:
                for t in compiled.tuples([orjson.loads(content)]):
                    rows.append([rid, *(_param(v, k) for v, k in zip(t, kinds))])
        if rows:
            con.executemany(f"INSERT INTO {_ident(stage)} VALUES ({', '.join('?' * (len(compiled.columns) + 1))})",
                            rows)
        return stage

    def _keep_shape(self, rtype: str, shapes: dict[str, Any]) -> None:
        """Keeps a type's sampled JSON shape for its next incremental refreshes, which then compile their views
        without sampling the changed resources (a sixth of an incremental refresh's DuckDB time).

        Safe because an element's JSON form (array or object) is fixed by the specification, and an element the
        shape lacks is read row by row. The one thing a sample cannot vouch for in other resources is which
        types a choice element takes, so the kept shape is marked partial: a view with a choice element
        without ofType() then runs on the Python engine, as it does over a partial sample in a full refresh."""
        shape = shapes.get(rtype)
        if isinstance(shape, dict) and not shape.get(_PARTIAL):
            shape = {**shape, _PARTIAL: True}
        if shape is not None:
            self._shapes[rtype] = shape

    def _drop_stage(self, name: str) -> None:
        try:
            self.con.execute(f"DROP TABLE IF EXISTS {_ident('_ht_stage_' + name)}")
        except duckdb.Error:
            pass

    def _set_state(self, name: str, watermark: float, mode: str, rows: int) -> None:
        # An UPDATE where the row exists: INSERT OR REPLACE through the primary key cost 3-4 times as much.
        digest = view_digest(self.views[name])
        if not self.con.execute(f"UPDATE {STATE_TABLE} SET resource = ?, digest = ?, watermark = ?, row_count = ?, "
                                "refreshed_at = ?, mode = ? WHERE name = ?",
                                [self.compiled[name].resource, digest, watermark, rows, time.time(), mode,
                                 name]).fetchone()[0]:
            self.con.execute(f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [name, self.compiled[name].resource, digest, watermark, rows, time.time(), mode])

    def _count(self, name: str) -> int:
        return self.con.execute(f"SELECT COUNT(*) FROM {_ident(name)}").fetchone()[0]

    # -- Parquet: base + delta files (layout in the module docstring) -----------------------------------------
    def parquet_folder(self, name: str) -> Path:
        return self.data_dir / "parquet" / name

    def _parquet_consistent(self, name: str, st: tuple[Any, ...] | None, lay: ParquetLayout) -> bool:
        return (st is not None and lay.base == st[1]
                and lay.deltas == list(range(st[1] + 1, st[0] + 1)))

    def _plan_parquet(self, name: str, rows: int, added: int | None) -> tuple[str, int] | None:
        """Inside the swap's transaction: which file the refresh writes, recorded with the table's new state.

        `added` is the number of rows a delta would hold (None: the table was rebuilt, so a base). A delta is
        written only if the files on disk are exactly what the state says (otherwise a base repairs them)."""
        con = self.con
        if not self.parquet:  # the files (if any) fall behind the table: the next Parquet refresh rebuilds them
            con.execute(f"DELETE FROM {PARQUET_STATE} WHERE name = ?", [name])
            return None
        st = con.execute(f"SELECT gen, base_gen, base_rows, delta_rows FROM {PARQUET_STATE} WHERE name = ?",
                         [name]).fetchone()
        lay = parquet_layout(self.parquet_folder(name))
        gen = max(st[0] if st else 0, lay.max_gen) + 1
        if added is not None and st is not None and self._parquet_consistent(name, st, lay):
            delta_rows = st[3] + added
            if delta_rows <= self.compact_ratio * st[2] and gen - st[1] <= self.max_deltas:
                con.execute(f"UPDATE {PARQUET_STATE} SET gen = ?, delta_rows = ? WHERE name = ?",
                            [gen, delta_rows, name])
                return "delta", gen
        con.execute(f"INSERT OR REPLACE INTO {PARQUET_STATE} VALUES (?, ?, ?, ?, 0)", [name, gen, gen, rows])
        return "base", gen

    def _write_parquet(self, name: str, plan: tuple[str, int] | None, stage: str | None = None) -> str:
        """After the commit: writes the planned file under a hidden name, then renames it into place.

        A delta's rows are the staging table's (what was just inserted), cast to the table's column types."""
        if plan is None:
            return ""
        kind, gen = plan
        folder = self.parquet_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{kind}-{gen:012d}.parquet"
        tmp = folder / f".{final.name}.tmp"  # hidden, and not *.parquet: Spark and DuckDB globs skip it
        rows = f"SELECT * EXCLUDE (_rkey), _rkey, {int(gen)}::BIGINT AS _gen, 'I' AS _op FROM {_ident(name)}"
        if kind == "delta":  # the changed resources' new rows, and a marker for each of them that had rows
            assert stage is not None
            table = self.con.table(_ident(name))
            cols = ", ".join(f"CAST({_ident(c)} AS {t}) AS {_ident(c)}"
                             for c, t in zip(table.columns, table.types) if c != "_rkey")
            rows = (f"SELECT {cols}, _rkey::VARCHAR AS _rkey, {int(gen)}::BIGINT AS _gen, 'I' AS _op "
                    f"FROM {_ident(stage)} UNION ALL BY NAME "
                    f"SELECT DISTINCT _rkey::VARCHAR AS _rkey, {int(gen)}::BIGINT AS _gen, 'D' AS _op FROM _ht_gone")
        try:
            self.con.execute(f"COPY ({rows}) TO {_q(str(tmp))} (FORMAT parquet)")
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._tidy(folder)
        return f"{kind}-{gen}"

    def _tidy(self, folder: Path) -> None:
        """Deletes files below the newest base once it is `retain` seconds old, and stray temporary files."""
        for p in folder.glob(".*.parquet.tmp"):  # a write killed half-way (DuckDB's lock keeps one writer)
            p.unlink(missing_ok=True)
        lay = parquet_layout(folder)
        if lay.superseded and lay.files and time.time() - lay.files[0].stat().st_mtime >= self.retain:
            for p in lay.superseded:
                p.unlink(missing_ok=True)

    def _check_parquet(self, name: str, rows: int) -> str:
        """For a view the refresh left unchanged: rebuilds its Parquet if the files are not what the state says."""
        if not self.parquet:
            return ""
        st = self.con.execute(f"SELECT gen, base_gen FROM {PARQUET_STATE} WHERE name = ?", [name]).fetchone()
        folder = self.parquet_folder(name)
        if self._parquet_consistent(name, st, parquet_layout(folder)):
            self._tidy(folder)
            return ""
        return self._compact(name, rows)

    def _compact(self, name: str, rows: int) -> str:
        with self._transaction():
            plan = self._plan_parquet(name, rows, None)
        return self._write_parquet(name, plan)

    def compact_parquet(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Writes a new base file for each materialized view (all by default); returns the file written."""
        if not self.parquet:
            return {}
        with self.lock:
            state = self.state()
            return {n: self._compact(n, state[n][2]) for n in self.views
                    if (names is None or n in set(names)) and n in state}

    def checkpoint(self) -> None:
        """Folds the WAL into the database file: after a rebuild wrote much, rather than inside a later refresh."""
        with self.lock:
            self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self._con.close()


class _Spool:
    """A temporary NDJSON file of resources, exposed to DuckDB as a (resource_type, id, content) relation."""

    def __init__(self, source: Any, rtype: str, fill: Callable[[BinaryIO], tuple[int, float]] | None = None) -> None:
        self.source, self.rtype, self.fill = source, rtype, fill
        self.count, self.max_updated, self.seconds = 0, 0.0, 0.0
        self.path: str | None = None
        self.relation = ""
        self.shapes: dict[str, Any] = {}  # resource type -> sampled JSON structure, shared by its views

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


def _param(value: Any, sql_type: str) -> Any:
    """A Python engine value as a parameter for a column of `sql_type`: JSON columns take JSON text."""
    if value is None:
        return None
    if sql_type == "JSON":
        return orjson.dumps(value).decode()
    if sql_type == "JSON[]":
        return [orjson.dumps(v).decode() for v in value] if isinstance(value, list) else [orjson.dumps(value).decode()]
    return _to_param(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ViewDefinitionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
