"""Storage: FHIR resources, versions and search indexes on SQLite (embedded) or PostgreSQL (production)."""
from __future__ import annotations

from pathlib import Path

from .base import Store, Transaction
from .records import Page, Stored


def open_store(database: str | None, data_dir: str | Path) -> Store:
    """`database` is None (SQLite in the data folder), a sqlite:///path URL, or a postgresql:// URL.

    Direct identifiers are encrypted at rest with the keys of `data_dir` (generated on first start): every
    process that opens the store, server or command, reads and writes the same protected form."""
    from ..security.at_rest import AtRest
    if database and database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore
        store: Store = PostgresStore(database)
    elif database and database.startswith("sqlite:///"):
        from .sqlite import SQLiteStore
        store = SQLiteStore(database[len("sqlite:///"):])
    elif database:
        raise ValueError(f"unsupported database URL {database!r}: use postgresql://… or sqlite:///path")
    else:
        from .sqlite import SQLiteStore
        store = SQLiteStore(Path(data_dir) / "healthtwin.sqlite")
    store.protect(AtRest.for_data_dir(data_dir))
    from ..security.rotation import ensure_sealed
    ensure_sealed(store)  # once: a store from before encryption at rest gets its identifiers sealed
    return store


__all__ = ["Store", "Transaction", "Page", "Stored", "open_store"]
