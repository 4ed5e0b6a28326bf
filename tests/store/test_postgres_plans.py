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



def test_a_type_loaded_after_others_is_read_from_where_it_begins(tmp_path):
    """Resources are loaded type by type: the Observations' row ids come after every Patient's. A page of
    Observations must not walk the Patients' rows to reach them (PostgreSQL took the types to be mixed and
    walked the primary key from the start: 151,680 rows skipped for Observation?_count=10 at 300,000)."""
    import json

    from healthtwin.api.services import Services
    from healthtwin.store import search
    store = make_store("postgres", tmp_path)
    try:
        with store.transaction() as tx:
            for i in range(2000):
                tx.update("Patient", f"p{i}", {"resourceType": "Patient", "id": f"p{i}"})
        with store.transaction() as tx:  # as many Observations, all after: "mixed", they would come at once
            for i in range(2000):
                tx.create("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
        with store.write_cursor() as cur:
            cur.execute("ANALYZE resources")
        services = Services.build(store, None, None, tmp_path)
        removed = []

        def walk(node):
            removed.append(node.get("Rows Removed by Filter", 0))
            for child in node.get("Plans", []):
                walk(child)
        for params in ([("_count", "10")], [("_lastUpdated", "gt2000-01-01"), ("_count", "10")],
                       [("status:not", "cancelled"), ("_count", "10")]):
            query = services.parser.parse(["Observation"], params)

            def execute(sql, args):
                plan = store.query("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args)[0][0]
                walk((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
                return store.query(sql, args)
            page = search.run_search(store, services.registry, query, execute)
            assert len(page.matches) == 10
        assert max(removed) < 100, removed
    finally:
        store.close()
