"""The indicator tables follow the store's changes incrementally (cube_delta.py) and end up exactly as a full
rebuild from the same views would make them, on both databases."""
from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import orjson
import pytest

from healthtwin.analytics import cube_delta
from healthtwin.analytics.cube_delta import read_cells
from healthtwin.analytics.indicators import FOLDER, build_cubes, compute, indicator_views, load_indicators
from healthtwin.analytics.materialize import JOURNAL_IDS, Materializer, StoreSource
from healthtwin.analytics.refresh import refresh_all

from .test_materialize import live, loaded, mutate  # noqa: F401  (loaded is a fixture)


def tables(mat: Materializer, raw: bool = False) -> dict[str, Counter]:
    """Every indicator and base table's rows. An update appends the change of a table of sums as rows of their
    own, so unless `raw`, those tables are read as their readers see them (`read_cells`)."""
    names = [r[0] for r in mat.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, 'ind_') "
        "OR starts_with(table_name, 'base_') ORDER BY 1").fetchall()]
    base = orjson.loads((FOLDER / "_base.json").read_bytes())["tables"]
    assert len(names) == len({t for i in load_indicators().values() for t in i.tables}) + len(base)
    return {n: Counter(mat.con.execute(f'SELECT * FROM "{n}"').fetchall() if raw else read_cells(mat.con, n))
            for n in names}


def rebuilt(mat: Materializer) -> dict[str, Counter]:
    assert set(build_cubes(mat.con, force=True).values()) == {"built"}
    return tables(mat)


def first(store, rtype: str, test) -> dict:
    return next(r for r in sorted(live(store, rtype), key=lambda r: r["id"]) if test(r))


def is_lab(r: dict) -> bool:
    return any(c.get("code") == "laboratory" for cat in r.get("category", []) for c in cat.get("coding", []))


def edit(store) -> None:
    """Changes of every kind an indicator reads: persons moving, dying, being born; chronic conditions and
    doses coming and going; events changing, moving to another person or vanishing."""
    patients = sorted(live(store, "Patient"), key=lambda r: r["id"])
    mover, dier, other = patients[1], patients[2], patients[-1]
    with store.transaction() as tx:
        mover["address"] = [{"use": "home", "state": "Şəki-Zaqatala", "district": "Zaqatala"}]
        mover["birthDate"] = "1961-03-04"
        tx.update("Patient", mover["id"], mover)
        dier["deceasedDateTime"] = "2021-02-03T10:00:00+04:00"
        tx.update("Patient", dier["id"], dier)
        tx.create("Patient", {"resourceType": "Patient", "gender": "female", "birthDate": "2019-06-01",
                              "address": [{"use": "home", "state": "Bakı", "district": "Nəsimi"}]}, "born-1")
        tx.create("Immunization", {"resourceType": "Immunization", "status": "completed",
                                   "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "20"}]},
                                   "patient": {"reference": "Patient/born-1"},
                                   "occurrenceDateTime": "2019-08-01",
                                   "protocolApplied": [{"series": "DTP", "doseNumberPositiveInt": 1}]}, "imm-born-1")
        dose = first(store, "Immunization", lambda r: r.get("protocolApplied", [{}])[0].get("series") == "DTP")
        tx.delete("Immunization", dose["id"])
        chronic = first(store, "Condition", lambda r: any(c.get("code") == "problem-list-item"
                                                          for cat in r.get("category", []) for c in cat["coding"]))
        tx.delete("Condition", chronic["id"])
        tx.create("Condition", {"resourceType": "Condition", "subject": {"reference": f"Patient/{other['id']}"},
                                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                          "condition-category", "code": "problem-list-item"}]}],
                                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]},
                                "onsetDateTime": "2018-01-01"}, "cnd-new-1")
        enc = first(store, "Encounter", lambda r: r["subject"]["reference"] != f"Patient/{patients[3]['id']}")
        enc["subject"] = {"reference": f"Patient/{patients[3]['id']}"}  # moves to someone whose data is unchanged
        tx.update("Encounter", enc["id"], enc)
        lab = first(store, "Observation", lambda r: is_lab(r) and r.get("interpretation"))
        lab["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                              "v3-ObservationInterpretation", "code": "HH"}]}]
        tx.update("Observation", lab["id"], lab)
        claim = first(store, "Claim", lambda r: "total" in r)
        claim["total"] = {"value": 1234.56, "currency": "AZN"}
        tx.update("Claim", claim["id"], claim)
        tx.delete("MedicationRequest", first(store, "MedicationRequest", lambda r: True)["id"])
        # the twin's series: diagnoses at a contact (syndrome_cases) and inpatient stays (bed_occupancy)
        seen = first(store, "Encounter", lambda r: r["subject"]["reference"] == f"Patient/{other['id']}")
        tx.create("Condition", {"resourceType": "Condition", "subject": {"reference": f"Patient/{other['id']}"},
                                "encounter": {"reference": f"Encounter/{seen['id']}"},
                                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B05.9"}]},
                                "onsetDateTime": "2022-03-03"}, "cnd-measles-1")
        dx = first(store, "Condition", lambda r: "encounter" in r and r["id"] != "cnd-measles-1")
        dx["code"] = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J11.1"}]}
        dx["onsetDateTime"] = "2021-01-20"
        tx.update("Condition", dx["id"], dx)
        loc = first(store, "Location", lambda r: True)
        tx.create("Encounter", {"resourceType": "Encounter", "status": "finished", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{patients[4]['id']}"},
            "location": [{"location": {"reference": f"Location/{loc['id']}"}}],
            "period": {"start": "2022-01-01T10:00:00+04:00", "end": "2022-01-05T10:00:00+04:00"}}, "enc-stay-1")
        stay = first(store, "Encounter", lambda r: r["class"]["code"] == "IMP" and "end" in r.get("period", {})
                     and r["id"] not in (enc["id"], "enc-stay-1"))
        stay["period"]["end"] = (dt.date.fromisoformat(stay["period"]["end"][:10]) + dt.timedelta(days=3)).isoformat()
        tx.update("Encounter", stay["id"], stay)


@pytest.fixture
def mat(loaded, tmp_path):
    m = Materializer(StoreSource(loaded.store, overlap=0.0), tmp_path / "analytics", indicator_views(),
                     parquet=False)
    report = refresh_all(m, full=True)
    assert set(report.extra["indicators"].values()) == {"built"}
    yield m
    m.close()


def test_incremental_update_equals_a_full_rebuild(loaded, mat) -> None:
    store = loaded.store
    edit(store)
    mat.refresh()  # views only: the journal keeps the rows as they were before both rounds
    mutate(store, random.Random(5), 40, "round-2")
    report = refresh_all(mat)
    assert set(report.extra["indicators"].values()) == {"updated"}, report.extra["indicators"]
    assert mat.con.execute(f"SELECT count(*) FROM {JOURNAL_IDS}").fetchone()[0] == 0
    updated = tables(mat)
    assert updated == rebuilt(mat)
    # The update changed the figures (the comparison above is not between two untouched tables).
    with store.transaction() as tx:
        p = first(store, "Patient", lambda r: r.get("gender") == "female")
        p["gender"] = "male"
        tx.update("Patient", p["id"], p)
    report = refresh_all(mat)
    assert set(report.extra["indicators"].values()) == {"updated"}
    assert tables(mat)["ind_population_num"] != updated["ind_population_num"]
    assert tables(mat) == rebuilt(mat)
    # Nothing changed since: nothing to do.
    assert set(refresh_all(mat).extra["indicators"].values()) == {"current"}


def test_appended_changes_read_as_a_rebuild_until_compacted(loaded, mat, monkeypatch) -> None:
    """An update appends each table's change as rows of its own; readers see the figures a rebuild gives, and
    compaction leaves the tables row for row as a rebuild does."""
    store = loaded.store
    monkeypatch.setattr(cube_delta, "COMPACT_RATIO", 1e9)  # never compact
    edit(store)
    assert set(refresh_all(mat).extra["indicators"].values()) == {"updated"}
    raw, summed = tables(mat, raw=True), tables(mat)
    assert any(sum(raw[n].values()) > sum(summed[n].values()) for n in raw)  # several rows for some cells

    def answers() -> dict:
        return {(name, by): compute(mat.con, ind, {"by": by} if by else {}, threshold=1)["figures"]
                for name, ind in load_indicators().items() for by in ("", "region", ",".join(ind.dimensions))}

    appended = answers()
    rebuilt(mat)
    assert answers() == appended
    monkeypatch.setattr(cube_delta, "COMPACT_RATIO", 0.0)  # compact whatever an update touches
    mutate(store, random.Random(7), 40, "round-3")
    assert set(refresh_all(mat).extra["indicators"].values()) == {"updated"}
    compacted = tables(mat, raw=True)
    assert compacted == rebuilt(mat) and compacted == tables(mat, raw=True)


def test_new_period_year_rebuilds_whole(loaded, mat) -> None:
    store = loaded.store
    last = mat.con.execute("SELECT max(period) FROM base_years").fetchone()[0]
    enc = first(store, "Encounter", lambda r: True)
    enc["period"] = {"start": f"{last + 1}-03-01T10:00:00+04:00", "end": f"{last + 1}-03-01T11:00:00+04:00"}
    with store.transaction() as tx:
        tx.update("Encounter", enc["id"], enc)
    report = refresh_all(mat)
    assert set(report.extra["indicators"].values()) == {"built"}  # every rate has a new year of population
    assert mat.con.execute("SELECT max(period) FROM base_years").fetchone()[0] == last + 1


def test_a_failed_update_leaves_the_tables_and_the_journal(loaded, mat, monkeypatch) -> None:
    before = tables(mat)
    with loaded.store.transaction() as tx:
        p = first(loaded.store, "Patient", lambda r: True)
        p["gender"] = "other"
        tx.update("Patient", p["id"], p)
    mat.refresh()
    journalled = mat.con.execute(f"SELECT count(*) FROM {JOURNAL_IDS}").fetchone()[0]
    assert journalled == 1

    def broken(self, stages, persons):
        self.cur.execute("BEGIN TRANSACTION")
        self.cur.execute("DELETE FROM ind_population_num")
        self.cur.execute("ROLLBACK")
        raise cube_delta.duckdb.IOException("disk gone")
    monkeypatch.setattr(cube_delta._Delta, "_commit", broken)
    monkeypatch.setattr("healthtwin.analytics.indicators._build", lambda con, todo, result, indicators: result)
    build_cubes(mat.con)
    assert tables(mat) == before
    assert mat.con.execute(f"SELECT count(*) FROM {JOURNAL_IDS}").fetchone()[0] == journalled
    monkeypatch.undo()
    assert set(build_cubes(mat.con).values()) == {"updated"}
    assert tables(mat) == rebuilt(mat)


def test_declarations_name_event_views() -> None:
    from healthtwin.analytics.indicators import FOLDER, _incremental
    raw = orjson.loads((FOLDER / "encounter_rate.indicator.json").read_bytes())
    raw["incremental"]["numerator"] = "patient"
    with pytest.raises(ValueError, match="not an event view"):
        _incremental("x.indicator.json", raw)


def test_a_journal_without_current_rows_rebuilds(loaded, mat) -> None:
    """A journal written before the current rows were kept beside it cannot give the event-row part: the
    refresh notices and the indicator tables are rebuilt rather than updated from half a journal."""
    from healthtwin.analytics.materialize import JOURNAL_NEW_PREFIX
    store = loaded.store
    with store.transaction() as tx:
        enc = first(store, "Encounter", lambda r: True)
        enc["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}
        tx.update("Encounter", enc["id"], enc)
    mat.refresh()
    assert mat.con.execute(f"SELECT count(*) FROM {JOURNAL_NEW_PREFIX}encounter").fetchone()[0] >= 1
    mat.con.execute(f"DROP TABLE {JOURNAL_NEW_PREFIX}encounter")  # as an earlier version left it
    with store.transaction() as tx:
        enc["class"]["code"] = "IMP"
        tx.update("Encounter", enc["id"], enc)
    report = refresh_all(mat)
    assert set(report.extra["indicators"].values()) == {"built"}
    assert tables(mat) == rebuilt(mat)
