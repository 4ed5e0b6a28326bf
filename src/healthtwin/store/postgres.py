"""PostgreSQL, the production store: a psycopg 3 connection pool, READ COMMITTED, explicit locks.

Writers that must not race (conditional create/update/delete on the same criteria, migrations) take a
transaction-scoped advisory lock on a hash of their key, so the database, not the application's luck,
guarantees that 50 identical conditional creates make exactly one resource. Row updates take FOR UPDATE.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from psycopg_pool import ConnectionPool

from .base import Store
from .records import Stored
from .schema import INDEX_TABLES

_READ = "SELECT type, id, version, last_updated, deleted, content FROM resources WHERE type = %s AND id = %s"


ANALYZE_SHARE = 0.1  # a load that grows the store by this share refreshes its statistics (refresh_statistics)


def _custom_plans(conn: Any) -> None:
    """Statements run five times are prepared on the server (prepare_threshold), and PostgreSQL then plans a
    prepared statement once for any parameters (a generic plan) when that plan's estimate looks no worse.
    For searches the estimate is blind to the values: `Observation?patient=…&code=…` got a generic plan
    that merges the patient's rows with every row of the code (9 ms) where the plan for the actual values
    probes the patient's 139 rows (0.7 ms), once the bench had run it five times at one million resources.
    Each execution is planned for its values; the statements stay prepared, so parsing is still saved.
    (Reads by id run on the event-loop pool, whose single plan is the right one for every id.)"""
    conn.execute("SET plan_cache_mode = force_custom_plan")


class PostgresStore(Store):
    dialect = "postgres"
    blocking = True
    batched_creates = True

    def __init__(self, dsn: str, min_size: int = 2, max_size: int = 16) -> None:
        super().__init__()
        self.dsn = dsn
        self.pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, open=True,
                                   kwargs={"autocommit": True, "prepare_threshold": 5}, configure=_custom_plans)
        self._apool = None
        self._pid_conn = None
        self.migrate()
        self.observe_clock()

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        bound = self.bound_cursor()
        if bound is not None:  # inside reads_within(tx): the transaction's own connection
            yield bound
            return
        with self.pool.connection() as conn, conn.cursor() as cur:
            yield cur

    @contextmanager
    def write_cursor(self) -> Iterator[Any]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

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
        if self._pid_conn is None or self._pid_conn.closed:
            import psycopg
            self._pid_conn = psycopg.connect(self.dsn, autocommit=True)
        return self._pid_conn

    def _reload_pids(self) -> None:
        with self._pid_connection().cursor() as cur:
            self._load_pids(cur)

    def _create_pid(self, cur: Any, key: tuple[str, str]) -> int:
        # Committed at once on the pid connection: parallel writers that each met a new parameter would
        # otherwise wait on each other's uncommitted search_params rows, and could deadlock.
        conn = self._pid_connection()
        conn.execute("INSERT INTO search_params (type, code) VALUES (%s, %s) ON CONFLICT DO NOTHING", key)
        return conn.execute("SELECT pid FROM search_params WHERE type = %s AND code = %s", key).fetchone()[0]

    def reserve_rids(self, cur: Any, n: int, after: int = 0) -> list[int]:  # the sequence never repeats
        if n == 0:
            return []
        cur.execute("SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, %s)", (n,))
        return [r[0] for r in cur.fetchall()]

    def for_update(self) -> str:
        return " FOR UPDATE"

    def lock(self, cur: Any, key: str) -> None:
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (digest,))

    async def aread(self, rtype: str, rid: str) -> Stored | None:
        """Read by id on the event loop (no worker-thread hop): the hottest path of the server."""
        if self._apool is None:
            from psycopg_pool import AsyncConnectionPool
            self._apool = AsyncConnectionPool(self.dsn, min_size=2, max_size=16, open=False,
                                              kwargs={"autocommit": True, "prepare_threshold": 1})
            await self._apool.open()
        async with self._apool.connection() as conn:
            cur = await conn.execute(_READ, (rtype, rid))
            row = await cur.fetchone()
        return self.stored(row) if row else None

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
        with self.pool.connection() as conn:  # pooled connections are autocommit: VACUUM needs that
            known = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'resources'::regclass").fetchone()[0]
            if known >= 0 and written < ANALYZE_SHARE * max(known - written, 0):
                return
            conn.execute(f"VACUUM (ANALYZE) resources, history, {', '.join(INDEX_TABLES)}")

    def close(self) -> None:
        if self._pid_conn is not None:
            self._pid_conn.close()
        self.pool.close()
