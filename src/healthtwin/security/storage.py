"""Opening the store as every server and command does: protected at rest with the data folder's keys."""
from __future__ import annotations

from pathlib import Path

from ..store import Store, connect
from .at_rest import AtRest
from .rotation import ensure_sealed


def open_store(database: str | None, data_dir: str | Path) -> Store:
    """`database` is None (SQLite in the data folder), a sqlite:///path URL, or a postgresql:// URL.

    Direct identifiers are encrypted at rest with the keys of `data_dir` (generated on first start): every
    process that opens the store, server or command, reads and writes the same protected form."""
    store = connect(database, data_dir)
    store.protect(AtRest.for_data_dir(data_dir))
    ensure_sealed(store)  # once: a store from before encryption at rest gets its identifiers sealed
    return store
