"""A resource written several times in one transaction keeps only its last version's index rows, whether its
earlier rows were still waiting for flush or already written; other resources' waiting rows are untouched."""
from __future__ import annotations

from collections import Counter

import orjson

from healthtwin.store.indexer import COLUMNS

def _observation(code: str, value: float) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
            "subject": {"reference": f"Patient/p-{code}"}, "effectiveDateTime": f"2026-0{1 + int(value) % 9}-01"}

def _index_rows(store) -> Counter:
    out: Counter = Counter()
    for table, cols in COLUMNS.items():
        for row in store.query(f"SELECT rid, pid, {', '.join(cols)} FROM {table}", []):
            out[(table, *row)] += 1
    return out

def _codes(store, code: str) -> list[str]:
    rows = store.query("SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid JOIN search_params p "
                       "ON p.pid = t.pid WHERE p.code = 'code' AND p.type = 'Observation' AND t.code = ? "
                       "AND r.deleted = 0", [code])
    return sorted(r[0] for r in rows)

def test_rewrites_in_one_transaction_leave_the_last_versions_rows(store) -> None:
    with store.transaction() as tx:
        made = [tx.create("Observation", _observation(f"c{i}", i)).id for i in range(40)]
        for i in range(0, 40, 3):  # rows still waiting: dropped by key
            tx.update("Observation", made[i], {**_observation(f"u{i}", i + 100), "id": made[i]})
        tx.execute("SELECT 1")  # everything so far written: the next rewrites delete written rows
        for i in range(0, 40, 5):
            tx.update("Observation", made[i], {**_observation(f"v{i}", i + 200), "id": made[i]})
            tx.update("Observation", made[i], {**_observation(f"w{i}", i + 300), "id": made[i]})
        tx.delete("Observation", made[7])
    after = _index_rows(store)
    # the same final contents indexed afresh, each resource alone: the rows must be the same, one for one
    with store.transaction() as tx:
        for rid in made:
            current = tx.current("Observation", rid)
            if current is not None and current[1].content is not None:

                tx.reindex(current[0], "Observation", orjson.loads(current[1].content))
    assert _index_rows(store) == after
    assert after  # the comparison is not of two empty sets
    for i in range(40):
        last = f"w{i}" if i % 5 == 0 else f"u{i}" if i % 3 == 0 else f"c{i}"
        expected = [] if i == 7 else [made[i]]
        assert _codes(store, last) == expected, (i, last)
        for stale in {f"c{i}", f"u{i}", f"v{i}"} - {last}:
            assert _codes(store, stale) == [], (i, stale)


def _rowids(store) -> dict:
    """SQLite's rowid of every index row, by its values: what stays in place when a rewrite keeps a row."""
    out: dict = {}
    for table, cols in COLUMNS.items():
        for row in store.query(f"SELECT rowid, rid, pid, {', '.join(cols)} FROM {table}", []):
            out[(table, *row[1:])] = row[0]
    return out


def test_update_many_writes_only_the_rows_that_changed(store) -> None:
    """A rewrite through update_many leaves the same rows as indexing the new versions afresh; on SQLite, where
    each row has a rowid, the rows both versions share are not deleted and inserted again (their rowids stay)."""
    with store.transaction() as tx:
        made = [tx.create("Observation", _observation(f"c{i}", i)) for i in range(30)]
    before = _rowids(store) if store.dialect == "sqlite" else {}
    with store.transaction() as tx:
        items = []
        for i, old in enumerate(made):
            new = _observation(f"c{i}", i + (9 if i % 2 else 0))  # odd: a new value and date; even: the same
            new["id"] = old.id
            if i % 3 == 0:
                new["code"]["coding"].append({"system": "http://snomed.info/sct", "code": f"s{i}"})
            items.append((tx.current("Observation", old.id), new, store.index_rows_for(new)))
        tx.update_many("Observation", items)
    after = _index_rows(store)
    written = _rowids(store) if store.dialect == "sqlite" else {}
    with store.transaction() as tx:
        for old in made:
            current = tx.current("Observation", old.id)
            tx.reindex(current[0], "Observation", orjson.loads(current[1].content))
    assert _index_rows(store) == after and after
    assert _codes(store, "s3") == [made[3].id] and _codes(store, "c3") == [made[3].id]
    if store.dialect == "sqlite":
        kept = [key for key in written if key in before]
        assert kept and len(kept) < len(written)  # some rows shared, some new
        assert all(before[key] == written[key] for key in kept)
