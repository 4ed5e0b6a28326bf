"""Search-parameter ids are found even when every pooled connection is taken: the callers that miss the cache
often hold one already (a conditional create searches inside its transaction)."""
from __future__ import annotations

import time

import pytest


def test_parameter_ids_are_read_outside_the_pool(store):
    if store.dialect != "postgres":
        pytest.skip("SQLite has no pool: each thread has its own connection")
    from healthtwin.store.postgres import PostgresStore
    other = PostgresStore(store.dsn, min_size=1, max_size=2)  # another process, in effect: its own cache
    try:
        with other.write_cursor() as cur:
            pid = other.pid("Patient", "x-pool-test", cur)
    finally:
        other.close()
    held = [store.pool.getconn() for _ in range(store.pool.max_size)]
    try:
        started = time.monotonic()
        assert store.pid("Patient", "x-pool-test") == pid  # not cached here: read from the database
        assert time.monotonic() - started < 5  # not after the pool's 30 s timeout
    finally:
        for conn in held:
            store.pool.putconn(conn)
