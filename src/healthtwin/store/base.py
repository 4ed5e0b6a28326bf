"""The store: FHIR resources, their versions and their search indexes, behind one interface for SQLite and
PostgreSQL. Dialects differ only in connections, placeholders and locking (sqlite.py, postgres.py); every
statement and rule of versioning lives here once, so both databases behave alike.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import orjson

from ..fhir.outcome import FHIRError
from .faults import read_once_more
from .indexer import COLUMNS, Packed, index_rows, pack_rows
from .records import Stored, instant
from .schema import INDEX_TABLES, MIGRATIONS, statements
from .sealing import Sealer

Extractor = Callable[[dict], list[tuple]]

_COLS = "type, id, version, last_updated, deleted, content"


def _stored(row: Sequence[Any], method: str = "update", at_rest: Any = None) -> Stored:
    """A Stored from (type, id, version, last_updated, deleted, content) with its content opened."""
    content = row[5]
    if content is not None:
        content = bytes(content)
        if at_rest is not None:
            content = at_rest.open(row[0], row[1], content)
    return Stored(row[0], row[1], row[2], row[3], bool(row[4]), content, method)


class Clock:
    """Millisecond timestamps, strictly increasing within a process, so _since and history order are exact.

    One timestamp per write transaction (Transaction.now), not per resource: a bulk load of 5,000 resources
    a second stamped 1 ms apart ran ahead of the wall clock by minutes, and a process started afterwards
    stamped its writes *below* what was stored, which incremental analytics then missed. `observe` starts a
    process after the newest stored stamp for the same reason."""

    def __init__(self) -> None:
        self._last = 0.0
        self._lock = threading.Lock()

    def observe(self, ts: float | None) -> None:
        if ts is not None:
            with self._lock:
                self._last = max(self._last, float(ts))

    def now(self) -> float:
        with self._lock:
            ts = round(time.time(), 3)
            if ts <= self._last:
                ts = round(self._last + 0.001, 3)
            self._last = ts
            return ts


class Store:
    """Dialect-independent storage logic. Subclasses provide `_connect_cursor`, `_begin_write` and `lock`."""

    dialect = "abstract"
    row_locator: str | None = None  # a column naming one row of a table, for writing only changed index rows
    # Put before a column in a condition to keep that column out of the index choice ('+pid' on SQLite, whose
    # planner, without statistics, took the (pid, …) index over a whole parameter where the (rid, pid) one
    # reads a few rows); nothing where the planner chooses by cost (PostgreSQL).
    index_hint = ""
    # Whether calls block on the network (the API then runs them in a worker thread).
    blocking = False
    # Whether a transaction's second and later creates are batched into one insert at flush (with row ids
    # reserved ahead): on PostgreSQL each statement is a network round trip; on SQLite it saves ~7% too.
    batched_creates = False

    def __init__(self) -> None:
        self.clock = Clock()
        self._pids: dict[tuple[str, str], int] = {}
        self._packed: dict[tuple, tuple] = {}  # packed_index_rows: extracted row -> (table, packed row)
        self._pid_lock = threading.Lock()
        self._extractor: Extractor | None = None
        # A Sealer (store/sealing.py; security/at_rest.py's AtRest): encrypts identifying resources and blinds
        # their index rows (None: clear).
        self.at_rest: Sealer | None = None
        self._bound = threading.local()  # a write transaction's cursor that this thread's reads go through

    @contextmanager
    def reads_within(self, tx: "Transaction") -> Iterator[None]:
        """This thread's reads (read, search, policy checks) go through `tx`, seeing its uncommitted writes:
        a transaction Bundle's GET entries run after its writes and before its commit, so a failing GET
        still rolls everything back."""
        tx.flush()
        self._bound.cur = tx.cur
        try:
            yield
        finally:
            self._bound.cur = None

    def bound_cursor(self) -> Any:
        return getattr(self._bound, "cur", None)

    def protect(self, at_rest: Sealer) -> "Store":
        """Encrypts direct identifiers from now on (security/storage.py's open_store does this with the data
        folder's keys)."""
        self.at_rest = at_rest
        return self

    def seal(self, rtype: str, rid: str, content: bytes | None) -> bytes | None:
        """Content as written to the database (encrypted for protected types)."""
        if content is None or self.at_rest is None:
            return content
        return self.at_rest.seal(rtype, rid, content)

    def open_content(self, rtype: str, rid: str, content: Any) -> bytes | None:
        """Content as read from the database, opened: for code that selects `content` itself."""
        if content is None:
            return None
        content = bytes(content)
        return content if self.at_rest is None else self.at_rest.open(rtype, rid, content)

    def stored(self, row: Sequence[Any], method: str = "update") -> Stored:
        return _stored(row, method, self.at_rest)

    def index_values(self, rtype: str, rows: list[tuple]) -> list[tuple]:
        """Extracted index rows as stored: identifier-bearing values blinded for protected types."""
        return rows if self.at_rest is None else self.at_rest.index_rows(rtype, rows)

    def index_rows_for(self, resource: dict) -> list[tuple]:
        """The index rows of `resource` as stored (extracted, then blinded where needed)."""
        return self.index_values(resource["resourceType"], self.extract(resource))

    def packed_index_rows(self, resource: dict) -> Packed | list[tuple]:
        """index_rows_for, packed for the index tables ahead of the write (Transaction.insert_many and
        update_many take either), so a bulk writer packs outside the transaction; the extracted rows as they
        are while one of their parameters has no id yet (the write creates it)."""
        rows = self.index_rows_for(resource)

        def pid_of(rtype: str, code: str) -> int:
            found = self.pid(rtype, code)
            if found is None:
                raise LookupError(code)
            return found
        if len(self._packed) > 100_000:  # bounded: a cohort repeats a few thousand distinct rows
            self._packed.clear()
        try:
            return pack_rows(resource["resourceType"], rows, pid_of, self._packed)
        except LookupError:
            return rows

    # -- dialect hooks ---------------------------------------------------------------------------------------
    @contextmanager
    def cursor(self) -> Iterator[Any]:  # a read cursor (autocommit / snapshot per statement)
        raise NotImplementedError

    @contextmanager
    def write_cursor(self) -> Iterator[Any]:  # a cursor inside a write transaction, committed on exit
        raise NotImplementedError

    def sql(self, text: str) -> str:  # placeholders: the code writes '?', PostgreSQL wants '%s'
        return text

    def close(self) -> None:
        raise NotImplementedError

    def refresh_statistics(self, written: int) -> None:
        """After a bulk load that wrote `written` resources: brings the planner's statistics up to date with
        what was loaded. Nothing on SQLite, whose planner chooses these queries' indexes by their shape, without
        statistics (the one-million-resource search figures in docs/performance.md are measured so)."""

    def analyze_resources(self) -> None:
        """The planner's statistics of the `resources` table, now, whatever the share written: for a job that
        is writing many rows of a type the statistics do not know yet (nothing on SQLite, as above)."""

    # -- schema ------------------------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Applies every migration not yet recorded; returns the versions applied now."""
        applied_now = []
        with self.write_cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            self.lock(cur, "schema-migrations")
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            for version, description, ddl in MIGRATIONS:
                if version in done:
                    continue
                for stmt in statements(self.dialect, ddl):
                    cur.execute(stmt)
                cur.execute(self.sql("INSERT INTO schema_migrations VALUES (?, ?, ?)"),
                            (version, description, instant(time.time())))
                applied_now.append(version)
        return applied_now

    def observe_clock(self) -> None:
        """Never stamp below what is stored (another process, or a clock that was ahead, may have written)."""
        with self.cursor() as cur:
            cur.execute("SELECT MAX(last_updated) FROM resources")
            self.clock.observe(cur.fetchone()[0])

    def schema_version(self) -> int:
        with self.cursor() as cur:
            cur.execute("SELECT MAX(version) FROM schema_migrations")
            return cur.fetchone()[0] or 0

    def bulk_insert(self, cur: Any, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        """Inserts many rows at once (PostgreSQL overrides this with COPY)."""
        cur.executemany(self.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                 f"({', '.join('?' * len(columns))})"), rows)

    def reserve_rids(self, cur: Any, n: int, after: int = 0) -> list[int]:
        """Row ids for `n` new resources, inside a write transaction (SQLite: the writer holds the lock), above
        `after`, the highest this transaction reserved before (its rows may not be written yet)."""
        cur.execute("SELECT COALESCE(MAX(rid), 0) FROM resources")
        start = max(cur.fetchone()[0], after) + 1
        return list(range(start, start + n))

    def for_share(self) -> str:  # rows read to check them keep still until commit (PostgreSQL FOR KEY SHARE)
        return ""

    def for_update(self) -> str:
        """Row-lock suffix for a SELECT inside a write transaction."""
        return ""

    def lock(self, cur: Any, key: str) -> None:
        """Serialises writers that use the same key until the transaction ends (no-op where writes are serial)."""

    def lock_many(self, cur: Any, keys: Sequence[str]) -> None:
        """`lock` for each key, in the order given (PostgreSQL takes them in one statement)."""
        for key in keys:
            self.lock(cur, key)

    # -- search parameter ids --------------------------------------------------------------------------------
    def pid(self, rtype: str, code: str, cur: Any | None = None) -> int | None:
        """The id of a search parameter in index tables; created on first write (cur given), else None."""
        key = (rtype, code)
        found = self._pids.get(key)
        if found is not None:
            return found
        with self._pid_lock:
            if cur is None:
                self._reload_pids()
                return self._pids.get(key)
            self._load_pids(cur)
            if key not in self._pids:
                self._pids[key] = self._create_pid(cur, key)
            return self._pids[key]

    def _create_pid(self, cur: Any, key: tuple[str, str]) -> int:
        cur.execute(self.sql("INSERT INTO search_params (type, code) VALUES (?, ?) ON CONFLICT DO NOTHING"), key)
        cur.execute(self.sql("SELECT pid FROM search_params WHERE type = ? AND code = ?"), key)
        return cur.fetchone()[0]

    def _reload_pids(self) -> None:
        """The ids other processes (or a transaction of this one) gave parameters since; under the pid lock."""
        with self.cursor() as c:
            self._load_pids(c)

    def _load_pids(self, cur: Any) -> None:
        cur.execute("SELECT type, code, pid FROM search_params")
        self._pids.update({(t, c): p for t, c, p in cur.fetchall()})

    def pids(self, types: Sequence[str], code: str) -> list[int]:
        return [p for p in (self.pid(t, code) for t in types) if p is not None]

    # -- reads ---------------------------------------------------------------------------------------------------
    def reading(self, read: Callable[[], Any]) -> Any:
        """Runs an idempotent read, once more if the database connection was lost under it (faults.py)."""
        return read_once_more(read, self.bound_cursor() is not None)

    def read(self, rtype: str, rid: str) -> Stored | None:
        return self.reading(lambda: self._read(rtype, rid))

    def _read(self, rtype: str, rid: str) -> Stored | None:
        with self.cursor() as cur:
            cur.execute(self.sql(f"SELECT {_COLS} FROM resources WHERE type = ? AND id = ?"), (rtype, rid))
            row = cur.fetchone()
        return self.stored(row) if row else None

    def vread(self, rtype: str, rid: str, version: int) -> Stored | None:
        return self.reading(lambda: self._vread(rtype, rid, version))

    def _vread(self, rtype: str, rid: str, version: int) -> Stored | None:
        with self.cursor() as cur:
            cur.execute(self.sql(f"SELECT {_COLS} FROM resources WHERE type = ? AND id = ? AND version = ?"),
                        (rtype, rid, version))
            row = cur.fetchone()
            if row is None:
                cur.execute(self.sql(f"SELECT {_COLS}, method FROM history WHERE type = ? AND id = ? AND version = ?"),
                            (rtype, rid, version))
                row = cur.fetchone()
                return self.stored(row, row[6]) if row else None
        return self.stored(row)

    def fetch_rows(self, rids: Sequence[int]) -> list[Stored]:
        """Current versions by row id, in the order given."""
        if not rids:
            return []
        return self.reading(lambda: self._fetch_rows(rids))

    def _fetch_rows(self, rids: Sequence[int]) -> list[Stored]:
        found: dict[int, Stored] = {}
        with self.cursor() as cur:
            for start in range(0, len(rids), 500):
                chunk = rids[start:start + 500]
                cur.execute(self.sql(f"SELECT {_COLS}, rid FROM resources WHERE rid IN ({','.join('?' * len(chunk))})"),
                            tuple(chunk))
                found.update({row[6]: self.stored(row) for row in cur.fetchall()})
        return [found[r] for r in rids if r in found]

    def history(self, rtype: str | None, rid: str | None, since: float | None, at: float | None,
                count: int, offset: int) -> tuple[list[Stored], int]:
        """Versions newest first (instance, type or system level), and how many there are in all."""
        return self.reading(lambda: self._history(rtype, rid, since, at, count, offset))

    def _history(self, rtype: str | None, rid: str | None, since: float | None, at: float | None,
                 count: int, offset: int) -> tuple[list[Stored], int]:
        where, params = [], []
        if rtype is not None:
            where.append("type = ?")
            params.append(rtype)
        if rid is not None:
            where.append("id = ?")
            params.append(rid)
        if since is not None:
            where.append("last_updated >= ?")
            params.append(since)
        if at is not None:
            where.append("last_updated <= ?")
            params.append(at)
        cond = " AND ".join(where) or "1 = 1"
        # Each table contributes only its rows at or after its own (offset + count)-th newest stamp, found by a
        # backward walk of its last_updated index: the page is sorted from those, not from every version (a
        # system history sorted all 979,276 rows of a 1M store for each page, 0.7 s). Ties at that stamp are
        # all kept, so the order below decides between them exactly as over everything.
        depth = offset + count
        newest = ("COALESCE((SELECT last_updated FROM {t} WHERE {c} ORDER BY last_updated DESC LIMIT 1 OFFSET ?), "
                  "-1e300)")
        # The current row of a deleted resource is its delete; earlier versions are in `history`.
        union = (f"SELECT {_COLS}, CASE WHEN deleted = 1 THEN 'delete' WHEN version = 1 THEN 'create' "
                 f"ELSE 'update' END AS method FROM resources WHERE {cond} AND last_updated >= "
                 f"{newest.format(t='resources', c=cond)} "
                 f"UNION ALL SELECT {_COLS}, method FROM history WHERE {cond} AND last_updated >= "
                 f"{newest.format(t='history', c=cond)}")
        page_params = (params + params + [max(depth - 1, 0)]) * 2
        with self.cursor() as cur:
            # Counted on the tables' indexes, without reading a version's content.
            cur.execute(self.sql(f"SELECT (SELECT COUNT(*) FROM resources WHERE {cond}) + "
                                 f"(SELECT COUNT(*) FROM history WHERE {cond})"), params * 2)
            total = cur.fetchone()[0]
            rows = []
            if count > 0:
                cur.execute(self.sql(f"SELECT * FROM ({union}) h ORDER BY last_updated DESC, version DESC, type, "
                                     f"id LIMIT ? OFFSET ?"), page_params + [count, offset])
                rows = [self.stored(r, r[6]) for r in cur.fetchall()]
        if at is not None and rid is not None:
            rows = rows[:1]  # _at on an instance: the version current at that time
            total = len(rows)
        return rows, total

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        return self.reading(lambda: self._query(sql, params))

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        with self.cursor() as cur:
            cur.execute(self.sql(sql), tuple(params))
            return cur.fetchall()

    # -- writes ------------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator["Transaction"]:
        """All-or-nothing: everything done through the yielded Transaction commits together or not at all."""
        with self.write_cursor() as cur:
            tx = Transaction(self, cur)
            yield tx
            for check in tx.commit_checks:  # last word before commit: a check may still refuse the whole
                check()
            tx.flush()

    def set_extractor(self, extractor: Extractor) -> None:
        self._extractor = extractor

    def extract(self, resource: dict) -> list[tuple]:
        if self._extractor is None:  # a store used without Services: the registry's default indexing
            from ..fhir.search_params import SearchRegistry
            registry = SearchRegistry.default()
            self._extractor = lambda resource: registry.index_extractor(resource["resourceType"])(resource)
        return self._extractor(resource)

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def count_resources(self) -> dict[str, int]:
        return self.reading(self._count_resources)

    def _count_resources(self) -> dict[str, int]:
        with self.cursor() as cur:
            cur.execute("SELECT type, COUNT(*) FROM resources WHERE deleted = 0 GROUP BY type")
            return dict(cur.fetchall())


def _same_content(stored: bytes | None, resource: dict) -> bool:
    """Whether a stored version equals `resource`, ignoring the meta elements the server sets."""
    if stored is None:
        return False
    old = orjson.loads(stored)
    for r in (old, resource):
        meta = r.get("meta")
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
            if meta:
                r["meta"] = meta
            else:
                r.pop("meta")
    return old == resource


class Transaction:
    """Writes inside one database transaction. Index rows are batched and written at flush (commit)."""

    def __init__(self, store: Store, cur: Any) -> None:
        self.store = store
        self.cur = cur
        self.sql = store.sql
        # Index rows waiting for flush, by resource row id then table: re-indexing a resource written earlier in
        # the transaction drops its rows by key (a scan of every pending row was quadratic in the entries).
        self._pending: dict[int, dict[str, list[tuple]]] = {}
        self._reindex_rids: list[int] = []
        self._now: float | None = None
        # Created resources waiting for flush, with row ids reserved ahead (stores with `batched_creates`: on
        # PostgreSQL one INSERT … RETURNING per resource was a network round trip each, a quarter of a
        # transaction Bundle's time).
        self._new_rows: list[tuple] = []
        self._rids: list[int] = []
        self._reserved = 0  # the highest row id reserved so far
        self._creates = 0
        # Checks run just before commit, over what the whole transaction wrote (an exception rolls it back),
        # and the state they keep: referential integrity judges a transaction Bundle as a whole.
        self.commit_checks: list[Callable[[], None]] = []
        self.state: dict[str, Any] = {}

    @property
    def now(self) -> float:
        """This transaction's timestamp: every version it writes carries it (one point in time, as a FHIR
        transaction is), and the clock advances once per transaction, not once per resource."""
        if self._now is None:
            self._now = self.store.clock.now()
        return self._now

    def lock(self, key: str) -> None:
        self.store.lock(self.cur, key)

    def lock_many(self, keys: Sequence[str]) -> None:
        self.store.lock_many(self.cur, keys)

    def current(self, rtype: str, rid: str) -> tuple[int, Stored] | None:
        self._flush_new()
        self.cur.execute(self.sql(f"SELECT {_COLS}, rid FROM resources WHERE type = ? AND id = ?"
                                  + self.store.for_update()), (rtype, rid))
        row = self.cur.fetchone()
        return (row[6], self.store.stored(row)) if row else None

    def _stamp(self, resource: dict, version: int, now: float) -> bytes:
        meta = resource.get("meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(now)
        resource["meta"] = meta
        return orjson.dumps(resource)

    def create(self, rtype: str, resource: dict, rid: str | None = None) -> Stored:
        rid = rid or self.store.new_id()
        resource["id"] = rid
        now = self.now
        content = self._stamp(resource, 1, now)
        sealed = self.store.seal(rtype, rid, content)
        self._creates += 1
        if self.store.batched_creates and self._creates > 1:  # the first goes at once: a lone create stays one trip
            if not self._rids:
                self._rids = self.store.reserve_rids(self.cur, min(256, 8 * self._creates), self._reserved)[::-1]
                self._reserved = self._rids[0]
            row_id = self._rids.pop()
            self._new_rows.append((row_id, rtype, rid, 1, now, 0, sealed))
        else:
            self.cur.execute(self.sql("INSERT INTO resources (type, id, version, last_updated, deleted, content) "
                                      "VALUES (?, ?, 1, ?, 0, ?) RETURNING rid"), (rtype, rid, now, sealed))
            row_id = self.cur.fetchone()[0]
        self._index(row_id, rtype, resource)
        return Stored(rtype, rid, 1, now, False, content, "create")

    def update(self, rtype: str, rid: str, resource: dict, if_match: int | None = None,
               existing: tuple[int, Stored] | None = None) -> Stored:
        """Updates (or creates with the client's id). Returns the new version; method says which happened."""
        existing = existing or self.current(rtype, rid)
        if existing is None:
            if if_match is not None:
                raise FHIRError(412, f"{rtype}/{rid} does not exist, but If-Match asked for version {if_match}")
            return self.create(rtype, resource, rid)
        row_id, old = existing
        if if_match is not None and if_match != old.version:
            raise FHIRError(412, f"{rtype}/{rid} is at version {old.version}, not {if_match} (If-Match)")
        version = old.version + 1
        resource["id"] = rid
        now = self.now
        content = self._stamp(resource, version, now)
        self._archive(old)
        self.cur.execute(self.sql("UPDATE resources SET version = ?, last_updated = ?, deleted = 0, content = ? "
                                  "WHERE rid = ?"), (version, now, self.store.seal(rtype, rid, content), row_id))
        self._drop_index(row_id)
        self._index(row_id, rtype, resource)
        return Stored(rtype, rid, version, now, False, content, "create" if old.deleted else "update")

    def delete(self, rtype: str, rid: str, existing: tuple[int, Stored] | None = None) -> Stored | None:
        """Deletes by writing a tombstone version; None if there was nothing (or nothing live) to delete."""
        existing = existing or self.current(rtype, rid)
        if existing is None or existing[1].deleted:
            return None
        row_id, old = existing
        now = self.now
        self._archive(old)
        self.cur.execute(self.sql("UPDATE resources SET version = ?, last_updated = ?, deleted = 1, content = NULL "
                                  "WHERE rid = ?"), (old.version + 1, now, row_id))
        self._drop_index(row_id)
        return Stored(rtype, rid, old.version + 1, now, True, None, "delete")

    def _archive(self, old: Stored) -> None:
        method = "delete" if old.deleted else ("create" if old.version == 1 else "update")
        self.cur.execute(self.sql("INSERT INTO history (type, id, version, last_updated, deleted, method, content) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                         (old.type, old.id, old.version, old.last_updated, int(old.deleted), method,
                          self.store.seal(old.type, old.id, old.content)))

    def _index(self, row_id: int, rtype: str, resource: dict) -> None:
        rows = self.store.index_values(rtype, self.store.extract(resource))
        index_rows(row_id, rtype, rows, lambda t, c: self.store.pid(t, c, self.cur), self._pending_of(row_id))

    def _pending_of(self, row_id: int) -> dict[str, list[tuple]]:
        found = self._pending.get(row_id)
        if found is None:
            found = self._pending[row_id] = defaultdict(list)
        return found

    def _drop_index(self, row_id: int) -> None:
        self._pending.pop(row_id, None)  # rows for this resource written earlier in the transaction go too
        for table in INDEX_TABLES:
            self.cur.execute(self.sql(f"DELETE FROM {table} WHERE rid = ?"), (row_id,))

    def _pid_of(self) -> Callable[[str, str], int]:
        """Parameter ids for one batch, each (type, code) asked of the store once (a bulk write indexes ~60 rows
        a resource, all of a few parameters)."""
        known: dict[tuple[str, str], int] = {}

        def pid_of(rtype: str, code: str) -> int:
            found = known.get((rtype, code))
            if found is None:
                found = known[(rtype, code)] = self.store.pid(rtype, code, self.cur)
            return found
        return pid_of

    def insert_many(self, rtype: str, items: list[tuple[str, dict, list[tuple]]]) -> list[Stored]:
        """`create` of many new resources of one type with the ids given (each `(id, resource, index rows)`, the
        rows as Store.index_rows_for or packed_index_rows makes them, so a caller can extract and pack them
        outside the transaction)."""
        if not items:
            return []
        self._flush_new()
        now = self.now
        row_ids = self.store.reserve_rids(self.cur, len(items), self._reserved)
        self._reserved = max(self._reserved, row_ids[-1])
        inserts, out = [], []
        pid_of, packed = self._pid_of(), {}
        for (rid, resource, rows), row_id in zip(items, row_ids):
            resource["id"] = rid
            content = self._stamp(resource, 1, now)
            inserts.append((row_id, rtype, rid, 1, now, 0, self.store.seal(rtype, rid, content)))
            index_rows(row_id, rtype, rows, pid_of, self._pending_of(row_id), packed)
            out.append(Stored(rtype, rid, 1, now, False, content, "create"))
        self.store.bulk_insert(self.cur, "resources",
                               ("rid", "type", "id", "version", "last_updated", "deleted", "content"), inserts)
        return out

    def update_many(self, rtype: str, items: list[tuple[tuple[int, Stored], dict, list[tuple] | None]]) -> list[Stored]:
        """`update` of many existing resources of one type at once (each `(existing, resource, index rows or
        None to extract them)`, existing as `current` returns it): the same versions, history rows and index
        rows as one `update` each, in a few statements for all of them rather than ten for each."""
        if not items:
            return []
        self._flush_new()  # a row created earlier in this transaction must be in the table to be archived
        now = self.now
        rows, out = [], []
        for (row_id, old), resource, _ in items:
            version = old.version + 1
            resource["id"] = old.id
            content = self._stamp(resource, version, now)
            rows.append((version, now, self.store.seal(rtype, old.id, content), row_id))
            out.append(Stored(rtype, old.id, version, now, False, content, "create" if old.deleted else "update"))
        row_ids = [row_id for (row_id, _), _, _ in items]
        # The versions replaced go to history as the database holds them (sealed already): copied by the
        # database, not opened and sealed again here (the rows are locked: FOR UPDATE, or SQLite's one writer).
        for start in range(0, len(row_ids), 500):
            chunk = row_ids[start:start + 500]
            self.cur.execute(self.sql(
                "INSERT INTO history (type, id, version, last_updated, deleted, method, content) "
                "SELECT type, id, version, last_updated, deleted, CASE WHEN deleted = 1 THEN 'delete' "
                "WHEN version = 1 THEN 'create' ELSE 'update' END, content FROM resources "
                f"WHERE rid IN ({','.join('?' * len(chunk))})"), tuple(chunk))
        self.cur.executemany(self.sql("UPDATE resources SET version = ?, last_updated = ?, deleted = 0, content = ? "
                                      "WHERE rid = ?"), rows)
        for row_id in row_ids:
            self._pending.pop(row_id, None)  # rows for these written earlier in the transaction go too
        pid_of, packed = self._pid_of(), {}
        for (row_id, _), resource, extracted in items:
            if extracted is None:
                extracted = self.store.index_values(rtype, self.store.extract(resource))
            index_rows(row_id, rtype, extracted, pid_of, self._pending_of(row_id), packed)
        self._keep_unchanged_index(row_ids)
        return out

    def _keep_unchanged_index(self, row_ids: list[int]) -> None:
        """Replaces the stored index rows of `row_ids` by their pending ones, writing only the difference: a
        recommendation rewritten the next day keeps ~98% of its rows (its groups, diseases, identifier,
        patient), and deleting and inserting every one of them was most of the write.

        Where the database names each row (`row_locator`: SQLite's rowid), only the stored rows that are no
        longer wanted are deleted and only the wanted rows not yet stored are inserted, so a new assessment
        date costs one date row, not a resource's ~8 (each with three b-tree entries). Elsewhere (PostgreSQL)
        a table's rows of a resource are kept when they are all the same and otherwise replaced together."""
        locator = self.store.row_locator
        for table in INDEX_TABLES:
            columns = ", ".join(("rid", "pid") + COLUMNS[table])
            stored: dict[int, list] = defaultdict(list)
            select = f"{locator}, {columns}" if locator else columns
            for start in range(0, len(row_ids), 500):
                chunk = row_ids[start:start + 500]
                self.cur.execute(self.sql(f"SELECT {select} FROM {table} WHERE rid IN ({','.join('?' * len(chunk))})"),
                                 tuple(chunk))
                for row in self.cur.fetchall():
                    stored[row[1] if locator else row[0]].append(row)
            gone: list = []  # rowids (with a locator) or row ids (without) whose stored rows go
            for row_id in row_ids:
                tables = self._pending[row_id]
                new = tables.get(table) or []
                old = stored.get(row_id)
                if old is None:
                    continue
                if locator:
                    wanted = Counter(new)
                    for row in old:
                        values = row[1:]
                        if wanted[values] > 0:
                            wanted[values] -= 1
                        else:
                            gone.append(row[0])
                    left = [values for values, n in wanted.items() for _ in range(n)]
                    if left:
                        tables[table] = left
                    else:
                        tables.pop(table, None)
                elif len(new) == len(old) and Counter(new) == Counter(old):
                    tables.pop(table, None)  # the same rows are stored already
                else:
                    gone.append(row_id)
            key = locator or "rid"
            for start in range(0, len(gone), 500):
                chunk = gone[start:start + 500]
                self.cur.execute(self.sql(f"DELETE FROM {table} WHERE {key} IN ({','.join('?' * len(chunk))})"),
                                 tuple(chunk))

    def reindex(self, row_id: int, rtype: str, resource: dict) -> None:
        self._drop_index(row_id)
        self._index(row_id, rtype, resource)

    def _flush_new(self) -> None:
        if self._new_rows:
            self.store.bulk_insert(self.cur, "resources",
                                   ("rid", "type", "id", "version", "last_updated", "deleted", "content"), self._new_rows)
            self._new_rows = []

    def flush(self) -> None:
        self._flush_new()
        by_table: dict[str, list[tuple]] = defaultdict(list)
        for tables in self._pending.values():
            for table, rows in tables.items():
                by_table[table].extend(rows)
        for table, rows in by_table.items():
            if rows:
                self.store.bulk_insert(self.cur, table, ("rid", "pid") + COLUMNS[table], rows)
        self._pending.clear()

    def put_many(self, items: list[tuple[dict, list[tuple]]]) -> tuple[int, int, int]:
        """Bulk upsert of resources that carry their ids, with their extracted index rows.

        New resources are inserted, changed ones get a new version, and ones whose content equals the
        current version (ignoring meta.versionId/lastUpdated) are left alone, so loading a file twice
        changes nothing. The same id twice in one batch: the later one wins. Returns (created, updated,
        unchanged). Index rows come as `Store.index_rows_for` makes them (blinded where needed): loaders
        compute them in worker processes, so this single writer only writes.
        """
        latest = {(r["resourceType"], r["id"]): (r, rows) for r, rows in items}
        existing: dict[tuple[str, str], tuple[int, Stored]] = {}
        by_type: dict[str, list[str]] = defaultdict(list)
        for rtype, rid in latest:
            by_type[rtype].append(rid)
        for rtype, ids in by_type.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                self.cur.execute(self.sql(f"SELECT {_COLS}, rid FROM resources WHERE type = ? AND id IN "
                                          f"({','.join('?' * len(chunk))})"), (rtype, *chunk))
                for row in self.cur.fetchall():
                    existing[(row[0], row[1])] = (row[6], self.store.stored(row))
        fresh = [(key, value) for key, value in latest.items() if key not in existing]
        pids: dict[tuple[str, str], int] = {}

        def pid_of(rtype: str, code: str) -> int:
            found = pids.get((rtype, code))
            if found is None:
                found = pids[(rtype, code)] = self.store.pid(rtype, code, self.cur)
            return found
        inserts = []
        for ((rtype, rid), (resource, rows)), row_id in zip(fresh, self.store.reserve_rids(self.cur, len(fresh))):
            now = self.now
            inserts.append((row_id, rtype, rid, 1, now, 0, self.store.seal(rtype, rid, self._stamp(resource, 1, now))))
            index_rows(row_id, rtype, rows, pid_of, self._pending_of(row_id))
        if inserts:
            self.store.bulk_insert(self.cur, "resources",
                                   ("rid", "type", "id", "version", "last_updated", "deleted", "content"), inserts)
        updated = unchanged = 0
        for key, current in existing.items():
            resource, _ = latest[key]
            if not current[1].deleted and _same_content(current[1].content, resource):
                unchanged += 1
                continue
            self.update(key[0], key[1], resource, None, current)
            updated += 1
        return len(inserts), updated, unchanged

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.flush()  # a query inside the transaction must see this transaction's index rows
        self.cur.execute(self.sql(sql), tuple(params))
        return self.cur.fetchall() if self.cur.description is not None else []
