"""Creates in one transaction (batched into one insert at flush on PostgreSQL) behave as single inserts: later
steps of the same transaction see them, searches find them, and a clash rolls everything back."""
from __future__ import annotations

import orjson
import pytest


def test_created_rows_are_seen_within_and_after_the_transaction(store) -> None:
    with store.transaction() as tx:
        made = [tx.create("Patient", {"resourceType": "Patient", "gender": "female", "birthDate": f"2001-01-0{i}"})
                for i in range(1, 6)]
        third = made[2]
        updated = tx.update("Patient", third.id, {"resourceType": "Patient", "gender": "male"})
        assert updated.version == 2  # the update found the created row before the commit
        tx.delete("Patient", made[4].id)
        found = tx.execute("SELECT COUNT(*) FROM resources WHERE type = 'Patient' AND deleted = 0")
        assert found[0][0] == 4
    for stored in made:
        assert store.read("Patient", stored.id) is not None
    assert orjson.loads(store.read("Patient", third.id).content)["gender"] == "male"
    assert store.read("Patient", made[4].id).deleted
    rows = store.query("SELECT COUNT(DISTINCT rid) FROM idx_token WHERE pid IN "
                       "(SELECT pid FROM search_params WHERE type = 'Patient' AND code = 'gender')", [])
    assert rows[0][0] == 4  # index rows of every live one, none of the deleted one


def test_a_clash_at_flush_rolls_back_the_whole_transaction(store) -> None:
    before = store.query("SELECT COUNT(*) FROM resources", [])[0][0]
    with pytest.raises(Exception):
        with store.transaction() as tx:
            tx.create("Patient", {"resourceType": "Patient"})
            tx.create("Patient", {"resourceType": "Patient"}, "same")
            tx.create("Patient", {"resourceType": "Patient"}, "same")
    assert store.query("SELECT COUNT(*) FROM resources", [])[0][0] == before


def test_row_ids_continue_past_the_rows_still_waiting(store) -> None:
    """A transaction large enough to reserve row ids several times never hands one out twice."""
    with store.transaction() as tx:
        made = [tx.create("Observation", {"resourceType": "Observation", "status": "final",
                                          "code": {"text": f"n{i}"}}) for i in range(300)]
    assert store.query("SELECT COUNT(DISTINCT rid) FROM resources WHERE type = 'Observation'", [])[0][0] == 300
    assert all(store.read("Observation", s.id) is not None for s in made)
