"""A FIN belongs to one active Patient (mpi/fin.py), on SQLite and PostgreSQL: a second holder is refused with
an OperationOutcome and nothing is stored, or answered with the first, or linked, by configuration; concurrent
creates of one FIN store exactly one."""
from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from healthtwin.api.interactions import write
from healthtwin.api.services import Services
from healthtwin.composition import AppSettings, build_app
from healthtwin.fhir.outcome import FHIRError
from healthtwin.mpi.plugin import contribution
from healthtwin.request import Caller, OpenPolicy, RequestContext

FIN = "https://health.gov.az/fhir/sid/fin"


def _patient(fin: str | None, family: str = "Məmmədov", **extra) -> dict:
    body = {"resourceType": "Patient", "name": [{"family": family, "given": ["Rəşad"]}], "gender": "male",
            "birthDate": "1980-02-11", **extra}
    if fin:
        body["identifier"] = [{"system": FIN, "value": fin}]
    return body


def _count(client, fin: str) -> int:
    return client.get(f"/fhir/Patient?identifier={FIN}|{fin}&_summary=count").json()["total"]


@pytest.fixture
def app_client(store, tmp_path):
    def make(mode: str = "refuse"):
        return TestClient(build_app(store, AppSettings(data_dir=tmp_path / "data", rate=None, mpi_on_duplicate=mode),
                                    policy=OpenPolicy()))
    return make


def test_a_second_active_holder_is_refused_and_nothing_stored(app_client):
    with app_client() as c:
        first = c.post("/fhir/Patient", json=_patient("5ABCD7K"))
        assert first.status_code == 201
        second = c.post("/fhir/Patient", json=_patient("5abcd7k", family="Mamedov"))  # case does not hide it
        assert second.status_code == 409, second.text
        issue = second.json()["issue"][0]
        assert issue["code"] == "duplicate" and first.json()["id"] in issue["diagnostics"]
        assert _count(c, "5ABCD7K") == 1
        # an update that gives another Patient the FIN is refused too; updating the holder itself is fine
        other = c.post("/fhir/Patient", json=_patient(None, family="Qurbanov")).json()
        other["identifier"] = [{"system": FIN, "value": "5ABCD7K"}]
        assert c.put(f"/fhir/Patient/{other['id']}", json=other).status_code == 409
        mine = {**first.json(), "gender": "male", "birthDate": "1980-02-12"}
        assert c.put(f"/fhir/Patient/{mine['id']}", json=mine).status_code == 200
        # a transaction with two holders stores neither
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient("7TX0001"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": _patient("7TX0001"), "request": {"method": "POST", "url": "Patient"}}]}
        assert c.post("/fhir", json=bundle).status_code == 409
        assert _count(c, "7TX0001") == 0


def test_inactive_or_replaced_records_hold_no_fin(app_client):
    with app_client() as c:
        first = c.post("/fhir/Patient", json=_patient("8INACT1")).json()
        c.put(f"/fhir/Patient/{first['id']}", json={**first, "active": False})
        assert c.post("/fhir/Patient", json=_patient("8INACT1")).status_code == 201
        # an inactive duplicate may always be recorded (history from an institution), it holds nothing
        assert c.post("/fhir/Patient", json=_patient("8INACT1", active=False)).status_code == 201


def test_existing_mode_answers_with_the_holder(app_client):
    with app_client("existing") as c:
        first = c.post("/fhir/Patient", json=_patient("6EXIST1"))
        again = c.post("/fhir/Patient", json=_patient("6EXIST1", family="Mamedov"))
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        assert again.json()["name"][0]["family"] == "Məmmədov"  # the stored record, not the one sent
        assert _count(c, "6EXIST1") == 1


def test_link_mode_stores_the_second_with_a_seealso_link(app_client):
    with app_client("link") as c:
        first = c.post("/fhir/Patient", json=_patient("4LINKED"))
        second = c.post("/fhir/Patient", json=_patient("4LINKED"))
        assert second.status_code == 201
        assert second.json()["link"] == [{"other": {"reference": f"Patient/{first.json()['id']}"}, "type": "seealso"}]


def test_an_unknown_mode_is_a_clear_error(store):
    services = Services.build(store, OpenPolicy())
    with pytest.raises(ValueError, match="HEALTHTWIN_MPI_ON_DUPLICATE"):
        contribution(services, on_duplicate="merge-silently")


def test_concurrent_creates_of_one_fin_store_one(store):
    services = Services.build(store, OpenPolicy())
    services.write_rules = contribution(services).write_rules
    ctx = RequestContext(Caller(subject="test", kind="system"), "http://test/fhir")
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def create() -> None:
        start.wait()
        try:
            with store.transaction() as tx:
                write.create(services, ctx, tx, "Patient", _patient("9RACE01"))
            outcomes.append("created")
        except FHIRError as exc:
            outcomes.append(str(exc.status))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["409"] * 5 + ["created"]
    rows = store.query("SELECT COUNT(*) FROM resources WHERE type = 'Patient' AND deleted = 0", ())
    assert rows[0][0] == 1
