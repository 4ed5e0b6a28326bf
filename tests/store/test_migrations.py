"""Versioned migrations: a new store records every version; a store of an older version is brought up to date
when it is opened, its data untouched (SQLite and PostgreSQL)."""
from __future__ import annotations

import orjson

from healthtwin.store.schema import MIGRATIONS


def _indexes(store) -> set[str]:
    if store.dialect == "postgres":
        return {r[0] for r in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'resources' "
                                          "AND schemaname = current_schema()", [])}
    return {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'resources'",
                                      [])}


def test_a_new_store_has_every_version(store):
    assert store.schema_version() == max(v for v, _, _ in MIGRATIONS) >= 2
    assert "resources_type_rid" in _indexes(store)


def test_an_older_store_is_migrated_when_opened(store):
    with store.transaction() as tx:
        tx.create("Patient", {"resourceType": "Patient", "id": "p1", "gender": "female"}, "p1")
    with store.write_cursor() as cur:  # back to version 1, as a store made before migration 2 would be
        cur.execute("DROP INDEX resources_type_rid")
        cur.execute("DELETE FROM schema_migrations WHERE version > 1")
    assert store.schema_version() == 1 and "resources_type_rid" not in _indexes(store)
    assert store.migrate() == [v for v, _, _ in MIGRATIONS if v > 1]
    assert store.schema_version() == max(v for v, _, _ in MIGRATIONS)
    assert "resources_type_rid" in _indexes(store)
    assert orjson.loads(store.read("Patient", "p1").content)["gender"] == "female"
    assert store.migrate() == []  # applied once


def test_paging_a_type_reads_the_index_in_order(tmp_path):
    """SQLite: a page of a type without other criteria comes from resources_type_rid, not from sorting the
    type (the plan of the statement the search really runs)."""
    from healthtwin.fhir.search_params import SearchRegistry
    from healthtwin.fhir.search_query import SearchParser
    from healthtwin.store.search import run_search
    from healthtwin.store.sqlite import SQLiteStore
    store = SQLiteStore(tmp_path / "s.sqlite")
    try:
        registry = SearchRegistry.default()
        seen: list[tuple[str, list]] = []

        def execute(sql, params):
            seen.append((sql, list(params)))
            return store.query(sql, params)
        for after in (None, 5):
            query = SearchParser(registry).parse(["Observation"], [("_count", "10")] + (
                [("_after", str(after))] if after else []))
            run_search(store, registry, query, execute)
        for sql, params in seen:
            plan = " ".join(str(r[-1]) for r in store.query("EXPLAIN QUERY PLAN " + sql, params))
            assert "resources_type_rid" in plan and "TEMP B-TREE" not in plan, (sql, plan)
    finally:
        store.close()


def test_postgresql_knows_which_values_go_with_which_parameter(store):
    """Migration 3: extended statistics on (pid, code) and (pid, target_type), PostgreSQL only."""
    if store.dialect != "postgres":
        assert store.schema_version() >= 3  # recorded on SQLite too, with nothing to do there
        return
    names = {r[0] for r in store.query("SELECT stxname FROM pg_statistic_ext WHERE stxnamespace = "
                                       "current_schema()::regnamespace", [])}
    assert {"idx_token_pid_code", "idx_reference_pid_type"} <= names
