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


# -- the same create inside a Bundle --------------------------------------------------------------------------
URN = "urn:uuid:3f0c0e2a-8d5e-4c1b-9a57-0d6f1c2b7e11"


def _observation(subject: str, text: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": text},
            "subject": {"reference": subject}}


def _bundle(btype: str, *entries: tuple[dict, str | None]) -> dict:
    return {"resourceType": "Bundle", "type": btype, "entry": [
        {**({"fullUrl": url} if url else {}), "resource": body,
         "request": {"method": "POST", "url": body["resourceType"]}} for body, url in entries]}


def _observations_of(c, pid: str) -> list[str]:
    found = c.get(f"/fhir/Observation?subject=Patient/{pid}").json().get("entry", [])
    return sorted(e["resource"]["code"]["text"] for e in found)


def test_a_transaction_create_of_a_held_fin_is_answered_with_the_holder(app_client):
    with app_client("existing") as c:
        holder = c.post("/fhir/Patient", json=_patient("6TXEXI1")).json()["id"]
        # the Observation comes first in the Bundle and names the Patient entry by its fullUrl
        r = c.post("/fhir", json=_bundle("transaction", (_observation(URN, "before"), None),
                                         (_patient("6txexi1", family="Mamedov"), URN),
                                         (_observation(URN, "after"), None)))
        assert r.status_code == 200, r.text
        first, patient, last = (e["response"] for e in r.json()["entry"])
        assert patient["status"] == "200 OK" and patient["location"].startswith(f"Patient/{holder}/_history/")
        assert r.json()["entry"][1]["resource"]["name"][0]["family"] == "Məmmədov"  # the stored record
        assert first["status"].startswith("201") and last["status"].startswith("201")
        assert _count(c, "6TXEXI1") == 1
        assert _observations_of(c, holder) == ["after", "before"]
        assert c.get("/fhir/Patient?_summary=count").json()["total"] == 1


def test_a_batch_create_of_a_held_fin_is_answered_with_the_holder(app_client):
    with app_client("existing") as c:
        holder = c.post("/fhir/Patient", json=_patient("6BAEXI1")).json()["id"]
        r = c.post("/fhir", json=_bundle("batch", (_patient("6BAEXI1", family="Mamedov"), None),
                                         (_patient("6BANEW1", family="Qurbanov"), None)))
        assert r.status_code == 200, r.text
        held, fresh = (e["response"] for e in r.json()["entry"])
        assert held["status"] == "200 OK" and held["location"].startswith(f"Patient/{holder}/_history/")
        assert fresh["status"].startswith("201")
        assert _count(c, "6BAEXI1") == 1 and _count(c, "6BANEW1") == 1


def test_refuse_mode_fails_a_transaction_whole_and_a_batch_entry_alone(app_client):
    with app_client("refuse") as c:
        holder = c.post("/fhir/Patient", json=_patient("6REFUS1")).json()["id"]
        r = c.post("/fhir", json=_bundle("transaction", (_patient("6REFUS1", family="Mamedov"), URN),
                                         (_observation(URN, "lost"), None)))
        assert r.status_code == 409 and r.json()["issue"][0]["code"] == "duplicate", r.text
        assert _count(c, "6REFUS1") == 1
        assert c.get("/fhir/Observation?_summary=count").json()["total"] == 0
        r = c.post("/fhir", json=_bundle("batch", (_patient("6REFUS1", family="Mamedov"), None),
                                         (_patient("6REFNEW", family="Qurbanov"), None)))
        refused, fresh = (e["response"] for e in r.json()["entry"])
        assert refused["status"] == "409" and refused["outcome"]["issue"][0]["code"] == "duplicate"
        assert holder in refused["outcome"]["issue"][0]["diagnostics"]
        assert fresh["status"].startswith("201")
        assert _count(c, "6REFUS1") == 1 and _count(c, "6REFNEW") == 1


def test_existing_mode_refuses_a_create_with_the_clients_id(app_client):
    """PUT Patient/<new id> is a create whose id the client chose: it cannot be answered with another record."""
    with app_client("existing") as c:
        c.post("/fhir/Patient", json=_patient("6PUTEX1"))
        r = c.put("/fhir/Patient/chosen-1", json={**_patient("6PUTEX1"), "id": "chosen-1"})
        assert r.status_code == 409 and r.json()["issue"][0]["code"] == "duplicate", r.text
        entry = {"fullUrl": "Patient/chosen-2", "resource": {**_patient("6PUTEX1"), "id": "chosen-2"},
                 "request": {"method": "PUT", "url": "Patient/chosen-2"}}
        r = c.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        assert r.status_code == 409, r.text
        assert _count(c, "6PUTEX1") == 1
        assert c.get("/fhir/Patient/chosen-1").status_code == 404 and c.get("/fhir/Patient/chosen-2").status_code == 404


def test_entries_that_refer_to_each_other_and_to_a_held_fin_are_refused_whole(app_client):
    """The RelatedPerson is written before the Patient it names (they name each other), so once the Patient is
    answered with the holder it cannot be redirected: 409, nothing stored."""
    rp_url = "urn:uuid:9d1b7a52-61c4-4c53-8f0e-2a7d6b1e4c90"
    with app_client("existing") as c:
        c.post("/fhir/Patient", json=_patient("6CYCLE1"))
        patient = _patient("6CYCLE1", link=[{"other": {"reference": rp_url}, "type": "seealso"}])
        related = {"resourceType": "RelatedPerson", "patient": {"reference": URN}, "name": [{"family": "Məmmədova"}]}
        r = c.post("/fhir", json=_bundle("transaction", (patient, URN), (related, rp_url)))
        assert r.status_code == 409 and "two requests" in r.text, r.text
        assert c.get("/fhir/RelatedPerson?_summary=count").json()["total"] == 0
        assert _count(c, "6CYCLE1") == 1
