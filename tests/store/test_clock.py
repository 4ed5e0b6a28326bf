"""Timestamps: one per write transaction, never running ahead of the wall clock, never below what is stored."""
from __future__ import annotations

import time

from tests.conftest import _plain_store


def _patients(start: int, n: int) -> list[tuple[dict, list]]:
    return [({"resourceType": "Patient", "id": f"p{i}", "gender": "female"}, []) for i in range(start, start + n)]


def test_one_timestamp_per_transaction_and_no_run_ahead(store):
    t0 = time.time()
    for start in range(0, 6000, 1000):  # a bulk load of 6,000 resources in six transactions
        with store.transaction() as tx:
            tx.put_many(_patients(start, 1000))
    stamps = [r[0] for r in store.query("SELECT DISTINCT last_updated FROM resources", [])]
    assert len(stamps) == 6  # one per transaction, not one per resource
    # Stamped 1 ms apart per resource, 6,000 resources would have run 6 s ahead of the wall clock.
    assert max(stamps) <= time.time() + 0.5 and min(stamps) >= t0 - 0.001


def test_a_new_process_never_stamps_below_what_is_stored(store, tmp_path):
    with store.transaction() as tx:
        tx.create("Patient", {"resourceType": "Patient"}, "early")
    future = time.time() + 3600  # e.g. written by a server whose clock was an hour ahead
    with store.write_cursor() as cur:
        cur.execute(store.sql("UPDATE resources SET last_updated = ? WHERE id = 'early'"), (future,))
    other = _plain_store(store.dialect, tmp_path) if store.dialect == "sqlite" else type(store)(store.dsn)
    try:
        with other.transaction() as tx:
            later = tx.create("Patient", {"resourceType": "Patient"}, "later")
        assert later.last_updated > future  # _since and incremental analytics see it as newer
    finally:
        other.close()
