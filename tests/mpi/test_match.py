"""`Patient/$match` on both databases: transliterated, mistyped and re-dated records of one citizen are found and
graded, strangers are not, the FIN makes a match certain, `onlyCertainMatches` and `count` narrow the answer,
a "not the same person" decision is respected, and bad input is a clear OperationOutcome."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.mpi.match import MATCH_GRADE
from healthtwin.request import OpenPolicy

FIN = "https://health.gov.az/fhir/sid/fin"


def _patient(family, given, father, birth, fin=None, sex="male", district="Nəsimi rayonu", **extra) -> dict:
    body = {"resourceType": "Patient", "active": True, "gender": sex, "birthDate": birth,
            "name": [{"use": "official", "family": family, "given": [given, f"{father} {'oğlu' if sex == 'male' else 'qızı'}"]}],
            "address": [{"district": district, "city": "Bakı"}], **extra}
    if fin:
        body["identifier"] = [{"system": FIN, "value": fin}]
    return body


def _match(c, resource, **params):
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}
    for name, value in params.items():
        body["parameter"].append({"name": name, ("valueBoolean" if isinstance(value, bool) else "valueInteger"): value})
    return c.post("/fhir/Patient/$match", json=body)


def _grades(bundle) -> list[tuple[str, str]]:
    return [(e["resource"]["id"], e["search"]["extension"][0]["valueCode"]) for e in bundle.get("entry", [])]


@pytest.fixture
def c(store, tmp_path):
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "d", rate=None), policy=OpenPolicy())) as client:
        yield client


def _create(c, body) -> str:
    r = c.post("/fhir/Patient", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_match_finds_one_citizen_written_many_ways(c):
    rashad = _create(c, _patient("Məmmədov", "Rəşad", "Elçin", "1980-02-11", fin="5ABC001"))
    _create(c, _patient("Məmmədov", "Rəşad", "Elçin", "1991-07-30", fin="7XQ2K9M"))  # a namesake, born later
    _create(c, _patient("Quliyev", "Tural", "Vaqif", "1980-02-11", fin="9PLM3TR"))  # born the same day
    russian = {"resourceType": "Patient", "gender": "male", "birthDate": "1980-11-02",  # day and month swapped
               "name": [{"family": "Мамедов", "given": ["Рашад", "Эльчин оглы"]}],
               "address": [{"district": "Nəsimi rayonu"}]}
    r = _match(c, russian)
    assert r.status_code == 200, r.text
    grades = _grades(r.json())
    assert grades[0][0] == rashad and grades[0][1] in ("certain", "probable"), grades
    assert all(rid == rashad or grade == "possible" for rid, grade in grades), grades
    entry = r.json()["entry"][0]
    assert 0 < entry["search"]["score"] <= 1 and entry["search"]["extension"][0]["url"] == MATCH_GRADE
    # the FIN alone makes it certain; onlyCertainMatches leaves the rest out; count cuts the list
    by_fin = _match(c, _patient("Mamedov", "Rashad", "Elchin", "1980-01-01", fin="5ABC001"), onlyCertainMatches=True)
    assert _grades(by_fin.json()) == [(rashad, "certain")]
    assert len(_match(c, _patient("Məmmədov", "Rəşad", "Elçin", "1980-02-11"), count=1).json()["entry"]) == 1
    # a stranger matches nothing
    stranger = _match(c, _patient("Hacıyeva", "Günay", "Fuad", "2001-05-05", sex="female"))
    assert stranger.json()["total"] == 0


def test_match_refuses_bad_input(c):
    assert _match(c, {"resourceType": "Observation"}).status_code == 400
    bad = c.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": {
        "resourceType": "Patient", "name": [{"text": 7, "given": [1]}], "birthDate": "1980-13-45"}}]})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert c.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": _patient("A", "B", "C", "2000-01-01")}, {"name": "count", "valueInteger": 0}]}
    ).status_code == 400
    r = c.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [{"name": "nonsense", "valueString": "x"}]})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_a_not_the_same_person_decision_is_respected(c):
    first = _create(c, _patient("Həsənov", "Orxan", "Rauf", "1975-03-04"))
    second = _create(c, _patient("Həsənli", "Orxan", "Rauf", "1975-03-04", district="Xətai rayonu"))
    probe = _patient("Həsənli", "Orxan", "Rauf", "1975-03-04", district="Xətai rayonu")
    assert {rid for rid, _ in _grades(_match(c, probe).json())} == {first, second}
    from healthtwin.mpi import review
    task = review.review_task(second, first, 8.0, [])
    task.update(status="completed", businessStatus={"text": review.NOT_SAME})
    assert c.post("/fhir/Task", json=task).status_code == 201
    probe["id"] = second
    # matching the second record again no longer offers the first
    read = c.get(f"/fhir/Patient/{second}").json()
    assert [rid for rid, _ in _grades(_match(c, read).json())] == [second]


def test_bulk_loaded_patients_are_matched_after_the_index_is_rebuilt(c, store):
    from healthtwin.mpi import keys
    loaded = _patient("Nəsirov", "Kamran", "Elnur", "1969-09-09")
    loaded["id"] = "bulk-1"
    with store.transaction() as tx:  # as `healthtwin load` writes: no write rules run
        tx.put_many([(loaded, store.index_rows_for(loaded))])
    probe = _patient("Nasirov", "Kamran", "Elnur", "1969-09-09")
    assert _match(c, probe).json()["total"] == 0
    assert keys.rebuild(store) == 1
    assert [rid for rid, _ in _grades(_match(c, probe).json())] == ["bulk-1"]
