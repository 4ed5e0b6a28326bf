"""PostgreSQL, the production store: a psycopg 3 connection pool, READ COMMITTED, explicit locks.

Writers that must not race (conditional create/update/delete on the same criteria, migrations) take a
transaction-scoped advisory lock on a hash of their key, so the database, not the application's luck,
guarantees that 50 identical conditional creates make exactly one resource. Row updates take FOR UPDATE.

When the database restarts (or an administrator ends its backends), every connection the pools hold is dead,
and psycopg's pool hands them out as if they were not. Each checkout therefore polls the connection's socket
(no round trip: an idle connection the server closed is readable) and, on finding one dead, has the pool test
and replace all its idle connections at once; a read that meets a connection dying under it is tried once more
(faults.read_once_more). What still fails answers 503 with Retry-After (faults.Unavailable): a lost
connection, no connection within the wait (OUTAGE_WAIT seconds once the database was seen gone, so requests
during an outage are told at once rather than after the pool's 30), a transaction cancelled in a deadlock.
"""
from __future__ import annotations

import hashlib
import select
import time
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Sequence

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .base import Store
from .faults import Unavailable, unavailable
from .records import Stored
from .schema import INDEX_TABLES

_READ = "SELECT type, id, version, last_updated, deleted, content FROM resources WHERE type = %s AND id = %s"


ANALYZE_SHARE = 0.1  # a load that grows the store by this share refreshes its statistics (refresh_statistics)
POOL_WAIT = 30.0  # seconds a request waits for a free connection while the database is up (psycopg's default)
OUTAGE_WAIT = 1.0  # seconds it waits once the database was seen gone, until a connection is made again
# A pool retries a failed connection with growing pauses (1, 2, 4… s) until this many seconds have passed, then
# gives it up; the next request that waits starts a new attempt at once. Kept short, so a database back after a
# long outage is used by the next request, not after the pool's next pause (psycopg's default is 300 s).
RECONNECT_WAIT = 4.0
_LOST = "The connection to the database was lost (it restarted or cannot be reached)"


def advisory_key(key: str) -> int:
    """The bigint of PostgreSQL's advisory lock that stands for `key` (Store.lock: a conditional reference's
    or a child's guard)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _custom_plans(conn: Any) -> None:
    """Statements run five times are prepared on the server (prepare_threshold), and PostgreSQL then plans a
    prepared statement once for any parameters (a generic plan) when that plan's estimate looks no worse.
    For searches the estimate is blind to the values: `Observation?patient=…&code=…` got a generic plan
    that merges the patient's rows with every row of the code (9 ms) where the plan for the actual values
    probes the patient's 139 rows (0.7 ms), once the bench had run it five times at one million resources.
    Each execution is planned for its values; the statements stay prepared, so parsing is still saved.
    (Reads by id run on the event-loop pool, whose single plan is the right one for every id.)"""
    conn.execute("SET plan_cache_mode = force_custom_plan")


def _closed_by_server(conn: Any) -> bool:
    """Whether an idle connection is dead, or may be: the server has closed it (a restart or
    pg_terminate_backend leaves its socket readable, with the FATAL message or end of file). A poll of the
    socket, not a round trip; a readable socket is then settled by the caller with an empty statement."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _dead(conn: Any) -> bool:
    if not _closed_by_server(conn):
        return False
    try:
        conn.execute("")  # whatever made the socket readable is read; a closed connection raises
        return False
    except psycopg.Error:
        return True


async def _adead(conn: Any) -> bool:
    if not _closed_by_server(conn):
        return False
    try:
        await conn.execute("")
        return False
    except psycopg.Error:
        return True


class _Health:
    """Whether the database was seen gone: from a lost connection or a failed connection attempt until a
    connection is made again. Shared by the store's pools (threads and the event loop only set and read it)."""

    def __init__(self) -> None:
        self.lost_at: float | None = None

    def lost(self) -> None:
        self.lost_at = time.monotonic()

    def ok(self) -> None:
        self.lost_at = None

    def slices(self) -> Iterator[float]:
        """The timeouts of successive waits for a pooled connection: OUTAGE_WAIT each, up to POOL_WAIT in all,
        and none after one that ended with the database seen gone."""
        deadline = time.monotonic() + POOL_WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            yield min(OUTAGE_WAIT, left)
            if self.lost_at is not None:
                return

    def no_connection(self) -> Unavailable:
        if self.lost_at is not None:
            return unavailable("The database cannot be reached (it is restarting or down); nothing was done")
        return unavailable(f"No database connection became free within {POOL_WAIT:g} s (the server is "
                           f"overloaded); nothing was done")

    def translate(self, conn: Any, exc: BaseException, committing: bool = False) -> Unavailable | None:
        """The 503 a driver error becomes, or None (a fault of the statement: it stays what it is)."""
        if isinstance(exc, PoolTimeout):
            return self.no_connection()
        if conn is None or conn.closed or conn.broken:
            self.lost()
            if committing:
                return unavailable(f"{_LOST} while the change was being committed: whether it was stored is not "
                                   f"known; read it before trying again")
            return unavailable(f"{_LOST}; nothing was stored", lost=True)
        if (getattr(exc, "sqlstate", None) or "").startswith("40"):  # rolled back: deadlock, serialization
            return unavailable("The database cancelled this request's transaction in a conflict with a "
                               "concurrent one; nothing was stored", conflict=True)
        return None


def _watched(base: type, health: _Health) -> type:
    """`base` (psycopg's connection class, plain or async) whose connection attempts tell `health` whether the
    database answered: the pools' own reconnections, in their workers, are how an outage is first seen."""
    if issubclass(base, psycopg.AsyncConnection):
        class WatchedAsync(base):  # type: ignore[misc, valid-type]
            @classmethod
            async def connect(cls, *args: Any, **kwargs: Any) -> Any:
                try:
                    conn = await super().connect(*args, **kwargs)
                except psycopg.OperationalError:
                    health.lost()
                    raise
                health.ok()
                return conn
        return WatchedAsync

    class Watched(base):  # type: ignore[misc, valid-type]
        @classmethod
        def connect(cls, *args: Any, **kwargs: Any) -> Any:
            try:
                conn = super().connect(*args, **kwargs)
            except psycopg.OperationalError:
                health.lost()
                raise
            health.ok()
            return conn
    return Watched


class PostgresStore(Store):
    dialect = "postgres"
    blocking = True
    batched_creates = True

    def __init__(self, dsn: str, min_size: int = 2, max_size: int = 16) -> None:
        super().__init__()
        self.dsn = dsn
        self.health = _Health()
        self.pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, open=True, timeout=POOL_WAIT,
                                   connection_class=_watched(psycopg.Connection, self.health),
                                   reconnect_timeout=RECONNECT_WAIT,
                                   kwargs={"autocommit": True, "prepare_threshold": 5}, configure=_custom_plans)
        self._apool = None
        self._pid_conn = None
        self.migrate()
        self.observe_clock()

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def _getconn(self) -> Any:
        """A live connection of the pool; a dead one makes the pool test and replace every idle one."""
        for _ in range(2):
            conn = self._wait_for_connection()
            if not _dead(conn):
                return conn
            self.health.lost()
            conn.close()  # closed: the pool discards it and connects anew
            self.pool.putconn(conn)
            self.pool.check()  # the others died with it: replaced now, not one failed request at a time
        raise unavailable(f"{_LOST}; nothing was done", lost=True)

    def _wait_for_connection(self) -> Any:
        for timeout in self.health.slices():
            try:
                return self.pool.getconn(timeout=timeout)
            except PoolTimeout:
                continue
        raise self.health.no_connection()

    @contextmanager
    def _connection(self, state: dict[str, bool] | None = None) -> Iterator[Any]:
        """A pooled connection; the driver's errors that mean "not now" leave as faults.Unavailable (503)."""
        conn = self._getconn()
        lost = False
        try:
            yield conn
            self.health.ok()
        except (psycopg.Error, PoolTimeout) as exc:
            fault = self.health.translate(conn, exc, bool(state and state.get("committing")))
            if fault is None:
                raise
            lost = conn.closed or conn.broken
            raise fault from exc
        finally:
            self.pool.putconn(conn)
            if lost:
                self.pool.check()  # its idle neighbours most likely went with it

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        bound = self.bound_cursor()
        if bound is not None:  # inside reads_within(tx): the transaction's own connection
            yield bound
            return
        with self._connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def write_cursor(self) -> Iterator[Any]:
        state = {"committing": False}
        with ExitStack() as stack:
            conn = self._begin(stack, state)
            with conn.cursor() as cur:
                yield cur
            state["committing"] = True  # what fails from here on is the COMMIT

    def _begin(self, stack: ExitStack, state: dict[str, bool]) -> Any:
        """A pooled connection with a transaction begun, both to be ended by `stack`. A connection found lost
        at BEGIN has done nothing yet: the transaction begins once more on a fresh one."""
        for attempt in range(2):
            try:
                with ExitStack() as begun:
                    conn = begun.enter_context(self._connection(state))
                    begun.enter_context(conn.transaction())
                    stack.push(begun.pop_all())
                    return conn
            except Unavailable as exc:
                if attempt or not exc.lost:
                    raise
        raise AssertionError("unreachable")

    def bulk_insert(self, cur: Any, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        # COPY is several times faster than batched INSERTs for index rows and bulk loads.
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _pid_connection(self) -> Any:
        """A connection of its own for the parameter ids, outside the pool; callers hold the store's pid lock.

        Outside the pool because its callers often hold a pooled connection already (a conditional create's
        search runs inside its transaction): 16 such requests on a fresh store each waited, holding theirs, for
        a 17th from a pool of 16, and one failed after the pool's timeout."""
        if self._pid_conn is not None and _dead(self._pid_conn):
            self._pid_conn.close()
            self._pid_conn = None
        if self._pid_conn is None:
            try:
                self._pid_conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
            except psycopg.OperationalError as exc:
                self.health.lost()
                raise unavailable(f"{_LOST}; nothing was done") from exc
        return self._pid_conn

    def _on_pid_connection(self, work: Any) -> Any:
        """work(conn), once more on a new connection if this one was lost under it (the statements are
        idempotent); a second loss is a 503."""
        for attempt in range(2):
            conn = self._pid_connection()
            try:
                return work(conn)
            except psycopg.Error as exc:
                fault = self.health.translate(conn, exc)
                if fault is None:
                    raise
                if attempt or not fault.lost:
                    raise fault from exc

    def _reload_pids(self) -> None:
        def load(conn: Any) -> None:
            with conn.cursor() as cur:
                self._load_pids(cur)
        self._on_pid_connection(load)

    def _create_pid(self, cur: Any, key: tuple[str, str]) -> int:
        # Committed at once on the pid connection: parallel writers that each met a new parameter would
        # otherwise wait on each other's uncommitted search_params rows, and could deadlock.
        def create(conn: Any) -> int:
            conn.execute("INSERT INTO search_params (type, code) VALUES (%s, %s) ON CONFLICT DO NOTHING", key)
            return conn.execute("SELECT pid FROM search_params WHERE type = %s AND code = %s", key).fetchone()[0]
        return self._on_pid_connection(create)

    def reserve_rids(self, cur: Any, n: int, after: int = 0) -> list[int]:  # the sequence never repeats
        if n == 0:
            return []
        cur.execute("SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, %s)", (n,))
        return [r[0] for r in cur.fetchall()]

    def for_update(self) -> str:
        return " FOR UPDATE"

    def for_share(self) -> str:
        return " FOR KEY SHARE"

    def lock(self, cur: Any, key: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(key),))

    def lock_many(self, cur: Any, keys: Sequence[str]) -> None:
        # One round trip for a batch's keys (a refresh of 1,000 children took 1,000 otherwise), in their order.
        digests = [advisory_key(k) for k in keys]
        if digests:
            cur.execute("SELECT COUNT(pg_advisory_xact_lock(d)) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(d, n)",
                        (digests,))

    async def aread(self, rtype: str, rid: str) -> Stored | None:
        """Read by id on the event loop (no worker-thread hop): the hottest path of the server. Once more on a
        fresh connection if the connection was lost under it."""
        try:
            return await self._aread(rtype, rid)
        except Unavailable as exc:
            if not exc.lost:
                raise
        return await self._aread(rtype, rid)

    async def _aread(self, rtype: str, rid: str) -> Stored | None:
        if self._apool is None:
            from psycopg_pool import AsyncConnectionPool
            self._apool = AsyncConnectionPool(self.dsn, min_size=2, max_size=16, open=False, timeout=POOL_WAIT,
                                              connection_class=_watched(psycopg.AsyncConnection, self.health),
                                              reconnect_timeout=RECONNECT_WAIT,
                                              kwargs={"autocommit": True, "prepare_threshold": 1})
            await self._apool.open()
        conn = await self._agetconn()
        try:
            cur = await conn.execute(_READ, (rtype, rid))
            row = await cur.fetchone()
            self.health.ok()
        except psycopg.Error as exc:
            fault = self.health.translate(conn, exc)
            if fault is None:
                raise
            raise fault from exc
        finally:
            await self._apool.putconn(conn)
            if conn.closed or conn.broken:
                await self._apool.check()  # its idle neighbours most likely went with it
        return self.stored(row) if row else None

    async def _agetconn(self) -> Any:
        pool = self._apool
        for _ in range(2):
            conn = None
            for timeout in self.health.slices():
                try:
                    conn = await pool.getconn(timeout=timeout)
                    break
                except PoolTimeout:
                    continue
            if conn is None:
                raise self.health.no_connection()
            if not await _adead(conn):
                return conn
            self.health.lost()
            await conn.close()
            await pool.putconn(conn)
            await pool.check()
        raise unavailable(f"{_LOST}; nothing was done", lost=True)

    async def aclose(self) -> None:
        """Closes the event-loop pool; called on the application's shutdown, in the loop that opened it."""
        if self._apool is not None:
            pool, self._apool = self._apool, None
            await pool.close()

    def refresh_statistics(self, written: int) -> None:
        """VACUUM (ANALYZE) of the tables a load writes, so that searches over freshly loaded data are planned
        with statistics and counted from the index alone (the vacuum sets the visibility map). Autovacuum
        would get there in its own time, if it is on at all (it is off on the CI machine); until then, at 1M
        resources, `Observation?patient=…&code=…` took 49 ms (p50) instead of 3, and with statistics but no
        vacuum a count visited every matching heap row (see docs/performance.md, 2026-11-26).

        Only when the load wrote at least a tenth of what the store held before (autovacuum's own analyze
        threshold), or the store was never analyzed: a small import into a large store is left to
        autovacuum rather than paying for statistics on every table."""
        with self._connection() as conn:  # pooled connections are autocommit: VACUUM needs that
            known = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'resources'::regclass").fetchone()[0]
            if known >= 0 and written < ANALYZE_SHARE * max(known - written, 0):
                return
            conn.execute(f"VACUUM (ANALYZE) resources, history, {', '.join(INDEX_TABLES)}")

    def analyze_resources(self) -> None:
        """ANALYZE of `resources` (a sample of 30,000 rows: about a second at 1.5M). Why a job needs it: a type
        the statistics have not seen is estimated at one row, so `type = ? AND id IN (…500 ids…)` is planned as
        a scan of every row of that type by (type, rid) with the ids as a filter, rather than 500 probes of
        the (type, id) key. The cohort refresh, reading its recommendations by id, took 0.5 ms a row that way
        at 130,000 recommendations (277 ms for 500; each chunk scanned all the rows written before it)."""
        with self._connection() as conn:
            conn.execute("ANALYZE resources")

    def close(self) -> None:
        if self._pid_conn is not None:
            self._pid_conn.close()
        self.pool.close()
