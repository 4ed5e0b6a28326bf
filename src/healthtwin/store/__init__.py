"""Storage: FHIR resources, versions and search indexes on SQLite (embedded) or PostgreSQL (production)."""
from __future__ import annotations

from pathlib import Path

from .base import Store, Transaction
from .records import Page, Stored


def connect(database: str | None, data_dir: str | Path) -> Store:
    """`database` is None (SQLite in the data folder), a sqlite:///path URL, or a postgresql:// URL.

    The store as opened, in clear: every server and command opens it through security/storage.py's
    `open_store`, which hands it its sealer (direct identifiers encrypted at rest with the data folder's keys)."""
    if database and database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore
        return PostgresStore(database)
    if database and database.startswith("sqlite:///"):
        from .sqlite import SQLiteStore
        return SQLiteStore(database[len("sqlite:///"):])
    if database:
        raise ValueError(f"unsupported database URL {database!r}: use postgresql://… or sqlite:///path")
    from .sqlite import SQLiteStore
    return SQLiteStore(Path(data_dir) / "healthtwin.sqlite")


__all__ = ["Store", "Transaction", "Page", "Stored", "connect"]
