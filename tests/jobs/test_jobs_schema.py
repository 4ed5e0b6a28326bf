"""The scheduled jobs' tables are part of the store's versioned schema (store/schema.py, migration 6), on SQLite
and PostgreSQL: a new store has them before any job runs, and a store made before the migration is brought up
to date when opened, whether the jobs code had already made the tables (their rows kept) or not."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from healthtwin.jobs.book import JobBook
from healthtwin.store.schema import MIGRATIONS
from tests.schema_rollback import back_to_version, tables_among

TABLES = ("ht_jobs", "ht_job_runs")
T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
# What jobs/book.py ran in every JobBook until 2026-12-03, as it ran it.
OLD_DDL = ("CREATE TABLE IF NOT EXISTS ht_jobs (name TEXT PRIMARY KEY, cadence TEXT NOT NULL, enabled INTEGER NOT NULL, "
           "next_due TEXT NOT NULL, running TEXT, running_since TEXT)",
           "CREATE TABLE IF NOT EXISTS ht_job_runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, started TEXT NOT NULL, "
           "finished TEXT, outcome TEXT NOT NULL, detail TEXT, ran_by TEXT)",
           "CREATE INDEX IF NOT EXISTS ht_job_runs_job ON ht_job_runs (job, started)")


def _tables(store) -> set[str]:
    return tables_among(store, TABLES)


def _indexes(store) -> set[str]:
    if store.dialect == "postgres":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    return {r[0] for r in store.query(sql, [])}


def _back_to_version_5(store, drop: bool) -> None:
    back_to_version(store, 5, TABLES, drop)


def _books_a_run(store) -> None:
    book = JobBook(store)
    book.register([("nightly", "daily 02:00")], T0)
    run = book.claim("nightly", T0 + dt.timedelta(days=1))
    assert run is not None
    book.finish(run, "ok", {"n": 1}, T0 + dt.timedelta(days=1, minutes=1))
    assert [r["outcome"] for r in book.runs("nightly")] == ["ok"]


def test_a_new_store_has_the_jobs_tables_before_any_job(store):
    assert 6 in {v for v, _, _ in MIGRATIONS} and store.schema_version() >= 6
    assert _tables(store) == set(TABLES) and "ht_job_runs_job" in _indexes(store)
    _books_a_run(store)


def test_a_store_without_them_gets_them_when_migrated(store):
    _back_to_version_5(store, drop=True)
    assert _tables(store) == set() and store.schema_version() == 5
    assert store.migrate() == [v for v, _, _ in MIGRATIONS if v >= 6]
    assert _tables(store) == set(TABLES) and "ht_job_runs_job" in _indexes(store)
    _books_a_run(store)


def test_tables_the_jobs_code_made_before_the_migration_keep_their_rows(store):
    """Before 2026-12-03 a JobBook created the tables on first use: such a database is at version 5 with the
    tables present and in use (a job configured by an operator, its runs); the migration records itself and
    leaves them, rows and all, and the book goes on from them."""
    _back_to_version_5(store, drop=True)
    with store.transaction() as tx:
        for statement in OLD_DDL:
            tx.execute(statement)
        tx.execute("INSERT INTO ht_jobs VALUES ('immunization-refresh', 'daily 04:15', 0, '2025-01-02T04:15:00+00:00', "
                   "NULL, NULL)")
        tx.execute("INSERT INTO ht_job_runs VALUES ('r1', 'immunization-refresh', '2025-01-01T04:15:00+00:00', "
                   "'2025-01-01T04:16:00+00:00', 'ok', '{\"children\": 3}', 'host:1')")
    assert store.schema_version() == 5
    assert store.migrate() == [v for v, _, _ in MIGRATIONS if v >= 6]
    book = JobBook(store)
    book.register([("immunization-refresh", "daily 01:30")], T0)  # an operator's setting is kept
    assert [(j["name"], j["cadence"], j["enabled"]) for j in book.jobs()] == [("immunization-refresh", "daily 04:15",
                                                                            False)]
    assert [(r["id"], r["outcome"], r["detail"]) for r in book.runs()] == [("r1", "ok", '{"children": 3}')]
    assert store.migrate() == []


def test_the_jobs_code_makes_no_tables_of_its_own():
    """The jobs package issues no DDL (the tables come with the store's migrations)."""
    import healthtwin.jobs as pkg
    for f in Path(pkg.__file__).parent.glob("*.py"):
        assert "CREATE TABLE" not in f.read_text() and "CREATE INDEX" not in f.read_text(), f.name
