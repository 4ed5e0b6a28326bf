"""Matching on create (HEALTHTWIN_MPI_ON_MATCH), on both databases: a certain match answers with the stored
citizen or 409 by configuration, a probable one is stored and queued as a review Task with its evidence, and a
stranger is simply stored."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.mpi import review
from healthtwin.request import OpenPolicy


def _patient(family, given, birth, district="Nəsimi rayonu") -> dict:
    return {"resourceType": "Patient", "active": True, "gender": "female", "birthDate": birth,
            "name": [{"use": "official", "family": family, "given": [given, "Vüqar qızı"]}],
            "address": [{"district": district}]}


@pytest.fixture
def app(store, tmp_path):
    def make(mode):
        return TestClient(build_app(store, AppSettings(data_dir=tmp_path / "d", rate=None, mpi_on_match=mode),
                                    policy=OpenPolicy()))
    return make


def _reviews(c) -> list[dict]:
    bundle = c.get(f"/fhir/Task?code={review.TASK_SYSTEM}|{review.REVIEW_CODE}").json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_certain_match_answers_with_the_stored_citizen_or_409(app):
    with app("existing") as c:
        first = c.post("/fhir/Patient", json=_patient("Kərimova", "Nigar", "1985-06-14")).json()["id"]
        again = c.post("/fhir/Patient", json=_patient("Керимова", "Нигяр", "1985-06-14"))
        assert again.status_code == 200 and again.json()["id"] == first
        assert c.get("/fhir/Patient?_summary=count").json()["total"] == 1
    with app("refuse") as c:
        r = c.post("/fhir/Patient", json=_patient("Kerimova", "Nigar", "1985-06-14"))
        assert r.status_code == 409 and first in r.json()["issue"][0]["diagnostics"]


def test_probable_match_is_stored_and_queued_with_its_evidence(app):
    with app("review") as c:
        first = c.post("/fhir/Patient", json=_patient("Kərimova", "Nigar", "1985-06-04")).json()["id"]
        # another district, a changed surname ending, day and month swapped: probable, not certain
        second = c.post("/fhir/Patient", json=_patient("Kərimli", "Nigar", "1985-04-06",
                                                       district="Xətai rayonu"))
        assert second.status_code == 201
        tasks = _reviews(c)
        assert len(tasks) == 1
        task = tasks[0]
        assert task["focus"]["reference"] == f"Patient/{second.json()['id']}"
        inputs = {i["type"]["text"]: i for i in task["input"]}
        assert inputs["candidate"]["valueReference"]["reference"] == f"Patient/{first}"
        assert "surname stem equal" in inputs["family"]["valueString"] and "district" in inputs
        # a stranger is stored without a review
        assert c.post("/fhir/Patient", json=_patient("Orucova", "Səbinə", "2002-02-02")).status_code == 201
        assert len(_reviews(c)) == 1
