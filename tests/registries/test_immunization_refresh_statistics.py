"""The refresh brings PostgreSQL's planner statistics up to date once it has written ANALYZE_AFTER
recommendations: a type the statistics have never seen is estimated at one row, and the chunks' lookups of
their recommendations by id were then planned as a scan of every recommendation written before them."""
from __future__ import annotations

import pytest

from healthtwin.registries.immunization import refresh
from healthtwin.security.storage import open_store

from .imm_world import database_url

TYPE = "ImmunizationRecommendation"


def _known_types(store) -> set[str]:
    """The resource types the planner's statistics list as common values of resources.type."""
    rows = store.query("SELECT most_common_vals::text FROM pg_stats WHERE schemaname = current_schema() "
                       "AND tablename = 'resources' AND attname = 'type'", [])
    return set(rows[0][0].strip("{}").split(",")) if rows and rows[0][0] else set()


@pytest.fixture
def pg_store(tmp_path):
    store = open_store(database_url("postgres", tmp_path), tmp_path / "data")
    with store.transaction() as tx:  # a store the statistics know: Patients only, analyzed
        tx.put_many([({"resourceType": "Patient", "id": f"p{i}"}, []) for i in range(300)])
    store.refresh_statistics(300)
    with store.transaction() as tx:  # then a new type, written as a refresh writes it, no statistics
        tx.put_many([({"resourceType": TYPE, "id": f"r{i}", "status": "x"}, []) for i in range(200)])
    yield store
    store.close()


def _results(written: list[int]) -> list[tuple]:
    return [(1000, w, 0.0, 0.0, 0.0, 0) for w in written]


def test_statistics_are_refreshed_once_enough_is_written(pg_store, monkeypatch):
    assert _known_types(pg_store) == {"Patient"}
    monkeypatch.setattr(refresh, "ANALYZE_AFTER", 150)
    done = refresh._collect(pg_store, iter(_results([100, 100, 100])))
    assert [r[1] for r in done] == [100, 100, 100]  # every result kept, in order
    assert TYPE in _known_types(pg_store)


def test_statistics_are_left_alone_below_the_threshold(pg_store, monkeypatch):
    monkeypatch.setattr(refresh, "ANALYZE_AFTER", 1000)
    refresh._collect(pg_store, iter(_results([100, 100, 100])))
    assert _known_types(pg_store) == {"Patient"}


def test_on_sqlite_there_is_nothing_to_refresh(tmp_path, monkeypatch):
    store = open_store(database_url("sqlite", tmp_path), tmp_path / "data")
    try:
        monkeypatch.setattr(refresh, "ANALYZE_AFTER", 1)
        assert len(refresh._collect(store, iter(_results([5, 5])))) == 2
    finally:
        store.close()
