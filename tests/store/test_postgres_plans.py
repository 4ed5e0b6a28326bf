"""PostgreSQL plans every search for its own values, also once psycopg has prepared the statement."""
from __future__ import annotations

from tests.conftest import make_store


def test_prepared_statements_are_planned_for_their_values(tmp_path):
    store = make_store("postgres", tmp_path)
    try:
        # More runs than psycopg's prepare threshold: the statement is prepared on the server by then.
        settings = {store.query("SHOW plan_cache_mode", [])[0][0] for _ in range(8)}
        assert settings == {"force_custom_plan"}
    finally:
        store.close()

