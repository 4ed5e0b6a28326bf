"""The prescribing tables are part of the store's versioned schema (store/schema.py, migration 5), on SQLite and
PostgreSQL: a new store has them with their constraints, and a store made before the migration is brought up to
date when opened, whether the prescribing registry had already made the tables (their rows kept) or not."""
from __future__ import annotations

import pytest

from healthtwin.store.schema import MIGRATIONS
from tests.schema_rollback import back_to_version, tables_among

TABLES = ("rx_dispense_balance", "rx_cds_cards")


def _tables(store) -> set[str]:
    return tables_among(store, TABLES)


def _back_to_version_4(store, drop: bool) -> None:
    back_to_version(store, 4, TABLES, drop)


def _overdraw_refused(store) -> None:
    with store.transaction() as tx:
        tx.execute("INSERT INTO rx_dispense_balance VALUES ('full', 1, 1, 60, 60)")
    for bad in ("UPDATE rx_dispense_balance SET quantity_used = quantity_used + 1 WHERE prescription = 'full'",
                "INSERT INTO rx_dispense_balance VALUES ('fills', 2, 3, NULL, 0)",
                "INSERT INTO rx_dispense_balance VALUES ('neg', 1, -1, NULL, 0)"):
        with pytest.raises(Exception):
            with store.transaction() as tx:
                tx.execute(bad)


def test_a_new_store_has_the_prescribing_tables_and_their_constraints(store):
    assert 5 in {v for v, _, _ in MIGRATIONS} and store.schema_version() >= 5
    assert _tables(store) == set(TABLES)
    _overdraw_refused(store)


def test_a_store_without_them_gets_them_when_migrated(store):
    _back_to_version_4(store, drop=True)
    assert _tables(store) == set() and store.schema_version() == 4
    assert store.migrate() == [v for v, _, _ in MIGRATIONS if v >= 5]
    assert _tables(store) == set(TABLES)
    _overdraw_refused(store)


def test_tables_the_registry_made_before_the_migration_keep_their_rows(store):
    """Before 2026-12-02 the registry created the tables at start: such a database is at version 4 with the
    tables present and in use; the migration records itself and leaves them, rows and all."""
    with store.transaction() as tx:
        tx.execute("INSERT INTO rx_dispense_balance VALUES ('mr1', 2, 1, 120, 60)")
        tx.execute("INSERT INTO rx_cds_cards (uuid, issued, subject, patient, hook, kind, finding) "
                   "VALUES ('c1', 1.0, 'dr', 'p1', 'order-sign', 'duplicate', ?)", (b"{}",))
    _back_to_version_4(store, drop=False)
    assert store.migrate() == [v for v, _, _ in MIGRATIONS if v >= 5]
    assert store.query("SELECT fills_used, quantity_used FROM rx_dispense_balance WHERE prescription = 'mr1'",
                       []) == [(1, 60.0)]
    assert store.query("SELECT patient FROM rx_cds_cards", []) == [("p1",)]
    assert store.migrate() == []


def test_the_registry_makes_no_tables_of_its_own():
    """The plugin and the CDS Hooks routes no longer issue DDL at start (the server needs no DDL rights beyond
    the migrations)."""
    from pathlib import Path

    import healthtwin.registries.prescribing as pkg
    for f in Path(pkg.__file__).parent.glob("*.py"):
        assert "CREATE TABLE" not in f.read_text(), f.name
