"""Storage: FHIR resources, versions and search indexes on SQLite (embedded) or PostgreSQL (production)."""
from __future__ import annotations

from pathlib import Path

from .base import Store, Transaction
from .records import Page, Stored


def open_store(database: str | None, data_dir: str | Path) -> Store:
    """`database` is None (SQLite in the data folder), a sqlite:///path URL, or a postgresql:// URL."""
    if database and database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore
        return PostgresStore(database)
    from .sqlite import SQLiteStore
    if database and database.startswith("sqlite:///"):
        return SQLiteStore(database[len("sqlite:///"):])
    if database:
        raise ValueError(f"unsupported database URL {database!r}: use postgresql://… or sqlite:///path")
    return SQLiteStore(Path(data_dir) / "healthtwin.sqlite")


__all__ = ["Store", "Transaction", "Page", "Stored", "open_store"]
