"""What the migration upgrade tests share: a store's tables among some, and a store taken back to an earlier
schema version (its later migrations forgotten, their tables dropped or kept) so that migrating it again
shows what an older database gets."""
from __future__ import annotations

from typing import Iterable


def tables_among(store, names: Iterable[str]) -> set[str]:
    if store.dialect == "postgres":
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {r[0] for r in store.query(sql, [])} & set(names)


def back_to_version(store, version: int, tables: Iterable[str], drop: bool) -> None:
    with store.write_cursor() as cur:
        if drop:
            for table in tables:
                cur.execute(f"DROP TABLE {table}")
        cur.execute(store.sql("DELETE FROM schema_migrations WHERE version > ?"), (version,))
