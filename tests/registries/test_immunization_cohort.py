"""The bulk refresh (cohort.py) against the per-child path it replaced: on the same generated population, the
same recommendations, the same versions and history, the same search index rows; and a dose recorded between
the bulk path's read and its write is not lost."""
from __future__ import annotations

import datetime as dt

import orjson
import pytest

from healthtwin.registries.immunization import rules
from healthtwin.registries.immunization.cohort import commit_chunk, prepare_chunk
from healthtwin.registries.immunization.live import read_cases, recommendations_for
from healthtwin.registries.immunization.recommendations import is_child, is_living, recommendation_id
from healthtwin.registries.immunization.refresh import refresh_all
from healthtwin.store.schema import INDEX_TABLES

from .imm_world import TODAY, TYPES, database_url, imm_population, imm_world  # noqa: F401  (fixtures)

LATER = TODAY + dt.timedelta(days=75)
GIVEN = TODAY + dt.timedelta(days=30)  # the doses _load_later_doses records, between TODAY and LATER


def _loaded(kind: str, tmp_path, folder):
    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.registries.immunization.due import register
    from healthtwin.security.storage import open_store
    database = database_url(kind, tmp_path)
    store = open_store(database, tmp_path / "data")
    services = Services.build(store)
    register(services.registry)
    loader = Loader(services)
    for rtype in TYPES:
        f = folder / f"{rtype}.ndjson"
        if f.exists():
            loader.load_lines(f.read_bytes().splitlines(), f.name)
    return database, store


def _state(store) -> dict:
    """Every recommendation's content (less lastUpdated), its history's versions, and its index rows by
    parameter code: what a reader, a history and a search see."""
    codes = {pid: (t, c) for t, c, pid in store.query("SELECT type, code, pid FROM search_params", [])}
    out: dict = {}
    for rid, version, content, row in store.query("SELECT id, version, content, rid FROM resources WHERE "
                                                  "type = 'ImmunizationRecommendation' AND deleted = 0", []):
        resource = orjson.loads(store.open_content("ImmunizationRecommendation", rid, content))
        resource["meta"].pop("lastUpdated")
        index = []
        # the identifier's index row is a keyed blind index, and each store has its own key: compared as
        # "the blind index of the identifier the content carries"
        blind = store.at_rest.token(resource["identifier"][0]["value"])
        for table in INDEX_TABLES:
            for r in store.query(f"SELECT * FROM {table} WHERE rid = ?", [row]):
                values = tuple("<blind identifier>" if v == blind else v for v in r[2:])
                index.append((table, codes[r[1]], repr(values)))
        history = []
        for v, method, deleted, old in store.query("SELECT version, method, deleted, content FROM history WHERE "
                                                   "type = 'ImmunizationRecommendation' AND id = ? ORDER BY version",
                                                   [rid]):
            was = orjson.loads(store.open_content("ImmunizationRecommendation", rid, old)) if old else None
            if was:
                was["meta"].pop("lastUpdated")
            history.append((v, method, deleted, was))
        out[rid] = (resource, version, history, sorted(index))
    return out


def _load_later_doses(store, folder) -> int:
    """One more dose for every patient with doses (their latest vaccine again, given on GIVEN), bulk-loaded as
    a migration would (no write rule runs), so the next refresh finds most children's records changed."""
    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.registries.immunization.due import register
    from .imm_world import read
    latest: dict[str, dict] = {}
    for imm in read(folder, "Immunization"):
        ref = imm["patient"]["reference"]
        if ref not in latest or imm.get("occurrenceDateTime", "") > latest[ref].get("occurrenceDateTime", ""):
            latest[ref] = imm
    lines = [orjson.dumps({**imm, "id": f"{imm['id']}-later", "occurrenceDateTime": GIVEN.isoformat()})
             for imm in latest.values()]
    services = Services.build(store)
    register(services.registry)
    Loader(services).load_lines(lines, "Immunization.ndjson")
    return len(lines)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_bulk_refresh_writes_what_the_per_child_path_writes(kind, tmp_path, imm_population):
    per_child_db, per_child = _loaded(kind, tmp_path / "a", imm_population)
    bulk_db, bulk = _loaded(kind, tmp_path / "b", imm_population)
    try:
        for day, version in ((TODAY, 1), (LATER, 2)):
            if day == LATER:  # records changed behind the registry's back: the refresh must catch up
                assert _load_later_doses(per_child, imm_population) == _load_later_doses(bulk, imm_population) > 20
            ref = refresh_all(per_child_db, tmp_path / "a" / "data", day, workers=1, per_child=True)
            got = refresh_all(bulk_db, tmp_path / "b" / "data", day, workers=2)
            assert got.children == ref.children > 20 and got.written == ref.written > 20
            want, have = _state(per_child), _state(bulk)
            assert sorted(have) == sorted(want)
            assert have == want  # content, version, history and index rows alike
            assert {v for _, v, _, _ in have.values()} >= {version}
        again = refresh_all(bulk_db, tmp_path / "b" / "data", LATER, workers=1)
        assert again.written == 0 and _state(bulk) == want  # nothing changed, nothing rewritten
    finally:
        per_child.close()
        bulk.close()


def _bare(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("meta", "date")}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_later_day_writes_only_the_forecasts_it_changed(kind, tmp_path):
    """A recommendation is written again when the forecast says something new (a dose falls overdue), not
    because the day moved: the others keep their version and the day they were made, on both paths. What
    changed is worked out here from the engine itself, day by day, not written down."""
    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.registries.immunization.due import register
    from healthtwin.security.storage import open_store
    # newborns to two-year-olds with no doses: their series' dates fall due and overdue over the coming weeks
    patients = [{"resourceType": "Patient", "id": f"c{i}", "birthDate": (TODAY - dt.timedelta(days=23 * i)).isoformat(),
                 "gender": "female" if i % 2 else "male"} for i in range(32)]
    stores = {}
    for path in ("bulk", "per-child"):
        database = database_url(kind, tmp_path / path)
        store = open_store(database, tmp_path / path / "data")
        services = Services.build(store)
        register(services.registry)
        Loader(services).load_lines([orjson.dumps(p) for p in patients], "Patient.ndjson")
        stores[path] = (database, store)
    try:
        made = {p["id"]: (TODAY, recommendations_for((p, [], []), TODAY)) for p in patients}
        changed_on_some_day = 0
        for day in (TODAY, TODAY + dt.timedelta(days=1), TODAY + dt.timedelta(days=40)):
            now = {p["id"]: recommendations_for((p, [], []), day) for p in patients}
            changed = {pid for pid, recs in now.items()
                       if day == TODAY or [_bare(r) for r in recs] != [_bare(r) for r in made[pid][1]]}
            for pid in changed:
                made[pid] = (day, now[pid])
            for path, (database, store) in stores.items():
                got = refresh_all(database, tmp_path / path / "data", day, workers=1, per_child=path == "per-child")
                assert got.children == len(patients) and got.written == len(changed), (path, day)
                for pid, (since, recs) in made.items():
                    [rec] = recs
                    stored = orjson.loads(store.read("ImmunizationRecommendation", rec["id"]).content)
                    assert stored["date"][:10] == since.isoformat() and _bare(stored) == _bare(rec), (path, pid)
            if day != TODAY:
                changed_on_some_day += len(changed)
                assert len(changed) < len(patients)  # the day alone rewrote nothing
        assert changed_on_some_day > 0  # and a dose falling overdue was written
    finally:
        for _, store in stores.values():
            store.close()


def test_a_record_changed_between_the_read_and_the_write_is_forecast_again(imm_world):
    """The bulk path reads outside its transaction; what the live rule wrote in between (a dose recorded for
    one child, another child's death) must not be overwritten by the forecast of the older record, for the
    children the chunk has something to write for."""
    world = imm_world
    pid = world.child["id"]
    admin = world.headers["admin"]
    born = world.client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": TODAY.isoformat(),
                                                    "gender": "female"}, headers=admin)
    assert born.status_code == 201, born.text
    dying = born.json()["id"]
    children = sorted(p["id"] for p in world.patients if is_child(p, TODAY) and is_living(p))[:200]
    children = sorted(set(children) | {pid, dying})
    # the two children's recommendations removed behind the registry's back, so the chunk has them to write
    # (a child with nothing to write is not guarded: no write of this chunk can go over their record)
    with world.store.transaction() as tx:
        for child in (pid, dying):
            tx.delete("ImmunizationRecommendation", recommendation_id(child, rules.DEFAULT_SCHEDULE))
    prepared = prepare_chunk(world.services, children, TODAY)
    assert {child for child, _, _, _ in prepared.plan.values()} >= {pid, dying}
    dose = {"resourceType": "Immunization", "status": "completed", "patient": {"reference": f"Patient/{pid}"},
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "08"}]},
            "occurrenceDateTime": TODAY.isoformat(), "primarySource": True}
    assert world.client.post("/fhir/Immunization", json=dose, headers=admin).status_code == 201
    assert prepared.plan[recommendation_id(dying, rules.DEFAULT_SCHEDULE)][2] is not None  # living at the read ...
    patient = born.json()
    patient["deceasedBoolean"] = True
    assert world.client.put(f"/fhir/Patient/{dying}", json=patient, headers=admin).status_code == 200
    _, stale = commit_chunk(world.services, prepared)
    assert stale == 2  # both children seen to have changed, and forecast again inside the transaction
    [want] = recommendations_for(read_cases(world.services, [pid], None, rules.load())[pid], TODAY)
    stored = world.store.read("ImmunizationRecommendation", recommendation_id(pid, rules.DEFAULT_SCHEDULE))
    got = orjson.loads(stored.content)
    assert {k: v for k, v in got.items() if k != "meta"} == {k: v for k, v in want.items() if k != "meta"}
    gone = world.store.read("ImmunizationRecommendation", recommendation_id(dying, rules.DEFAULT_SCHEDULE))
    assert gone is None or gone.deleted  # ... and left deleted, as the live rule left it


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_patients_read_from_the_index_are_what_the_forecast_reads_from_the_record(kind, tmp_path):
    """The bulk reader takes a child's birth date, sex and living state from the Patient's index rows instead of
    opening the encrypted resource: on every shape the index may not say exactly (a month-only birth date, a
    death by date, no sex, an inactive record, a Patient written without index rows) the forecast's view agrees
    with the record's, and the resource itself is opened where the index falls short."""
    from healthtwin.api.services import Services
    from healthtwin.registries.immunization.cohort import CohortReader
    from healthtwin.registries.immunization.recommendations import engine_patient
    from healthtwin.security.storage import open_store
    store = open_store(database_url(kind, tmp_path), tmp_path / "data")
    Services.build(store)
    schedule = rules.load()
    shapes = {
        "full": {"birthDate": "2025-03-04", "gender": "female"},
        "male-active": {"birthDate": "2024-12-31", "gender": "male", "active": True},
        "inactive": {"birthDate": "2025-01-01", "gender": "male", "active": False},
        "month-only": {"birthDate": "2025-02", "gender": "female"},
        "year-only": {"birthDate": "2024"},
        "no-birth-date": {"gender": "other"},
        "died-on-a-date": {"birthDate": "2025-05-05", "gender": "unknown", "deceasedDateTime": "2025-09-01"},
        "died": {"birthDate": "2025-05-06", "deceasedBoolean": True},
        "alive-false": {"birthDate": "2025-05-07", "deceasedBoolean": False, "gender": "female"},
    }
    with store.transaction() as tx:
        for pid, shape in shapes.items():
            tx.create("Patient", {"resourceType": "Patient", **shape}, pid)
    with store.transaction() as tx:  # without its index rows, as a load without the parameters leaves one
        tx.put_many([({"resourceType": "Patient", "id": "unindexed", "birthDate": "2025-06-01",
                       "gender": "male", "deceasedBoolean": True}, [])])
    reader = CohortReader(store, schedule)
    ids = sorted([*shapes, "unindexed", "missing"])
    got = reader.patients(store.query, ids)
    assert sorted(got) == sorted([*shapes, "unindexed"])
    on = dt.date(2026, 1, 1)
    for pid, (version, patient) in got.items():
        record = orjson.loads(store.read("Patient", pid).content)
        assert version == 1
        assert is_living(patient) == is_living(record), pid
        assert patient.get("birthDate") == record.get("birthDate"), pid
        try:
            want = engine_patient(record, [], [], schedule, on)
        except ValueError:
            want = None
        try:
            have = engine_patient(patient, [], [], schedule, on)
        except ValueError:
            have = None
        assert have == want, pid
    assert got["unindexed"][1] == orjson.loads(store.read("Patient", "unindexed").content)  # opened
    assert "meta" in got["month-only"][1] and "meta" not in got["full"][1]  # opened only where needed
    store.close()


def test_the_bulk_reader_looks_up_a_chunk_by_its_own_rows_not_by_a_parameters_whole_index(tmp_path):
    """Each statement of a chunk's read reaches its rows through the chunk (its ids, row ids or references), on
    SQLite's plans: a step over a parameter's whole index (`(pid=?)` alone) or a table scan costs in proportion
    to the population, not the chunk. The Patient's token and birth-date rows once went by the (pid, code) and
    (pid, lo) indexes, reading every child's rows for every chunk (43-53 ms of a chunk's read at 130,000
    children, and 10.2 million citizens' rows a chunk at national scale). Plans, not timings, are checked."""
    import re

    from healthtwin.api.services import Services
    from healthtwin.registries.immunization.cohort import CohortReader
    from healthtwin.security.storage import open_store
    store = open_store(database_url("sqlite", tmp_path), tmp_path / "data")
    Services.build(store)
    with store.transaction() as tx:
        for i in range(3):
            tx.create("Patient", {"resourceType": "Patient", "birthDate": f"2025-0{i + 1}-01", "gender": "female",
                                  "active": True, "deceasedBoolean": False}, f"c{i}")
            tx.create("Immunization", {"resourceType": "Immunization", "status": "completed",
                                       "patient": {"reference": f"Patient/c{i}"}, "occurrenceDateTime": "2025-06-01",
                                       "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx",
                                                                   "code": "08"}]}})
            tx.create("Condition", {"resourceType": "Condition", "subject": {"reference": f"Patient/c{i}"},
                                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38013005"}]}})
    plans: list[str] = []

    def rows(sql, args):
        plans.extend(detail for _, _, _, detail in store.query("EXPLAIN QUERY PLAN " + sql, args))
        return store.query(sql, args)
    reader = CohortReader(store, rules.load())
    cases, _ = reader.cases(rows, ["c0", "c1", "c2", "absent"])
    reader.versions(rows, ["c0", "c1", "c2"])
    assert sorted(cases) == ["c0", "c1", "c2"] and all(len(case[1]) == 1 for case in cases.values())
    assert any("idx_token" in p for p in plans) and any("idx_date" in p for p in plans)  # the index path ran
    whole = [p for p in plans if re.search(r"INDEX \w+ \(pid=\?\)$", p) or p.startswith("SCAN ")]
    assert not whole, whole
    store.close()
