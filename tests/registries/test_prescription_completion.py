"""When dispensing completes a prescription, and when a withdrawn dispense reopens it (SQLite and PostgreSQL):
completed only once nothing remains and no dispense is still in-progress; active again only if it was its fills,
not the prescriber, that completed it."""
from __future__ import annotations

from . import rx


def _setup(client, **kw):
    client.put("/fhir/Patient/p1", json=rx.patient())
    r = client.put("/fhir/MedicationRequest/mr1", json=rx.prescription(**kw))
    assert r.status_code == 201, r.text


def _status(client):
    return client.get("/fhir/MedicationRequest/mr1").json()["status"]


def _post(client, **kw):
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(**kw))
    assert r.status_code == 201, r.text
    return r.json()


def test_not_completed_while_another_pharmacys_dispense_is_in_progress(client):
    _setup(client, quantity=30, repeats=1)
    held = _post(client, quantity=30, status="in-progress")  # pharmacy A starts on a fill
    _post(client, quantity=30)  # pharmacy B hands over the last fill
    assert _status(client) == "active"  # pharmacy A has not handed its fill over yet
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=30)).status_code == 409  # none left
    done = client.put(f"/fhir/MedicationDispense/{held['id']}", json={**held, "status": "completed"})
    assert done.status_code == 200 and _status(client) == "completed"


def test_a_stopped_in_progress_dispense_leaves_the_rest_to_dispense(client):
    _setup(client, quantity=30, repeats=1)
    held = _post(client, quantity=30, status="in-progress")
    _post(client, quantity=30)
    stopped = client.put(f"/fhir/MedicationDispense/{held['id']}", json={**held, "status": "stopped"})
    assert stopped.status_code == 200 and _status(client) == "active"
    _post(client, quantity=30)
    assert _status(client) == "completed"


def test_withdrawing_a_dispense_does_not_reopen_a_prescription_the_prescriber_completed(client):
    _setup(client, quantity=30, repeats=2)
    first = _post(client, quantity=30)
    mr = client.get("/fhir/MedicationRequest/mr1").json()
    assert client.put("/fhir/MedicationRequest/mr1", json={**mr, "status": "completed"}).status_code == 200
    back = client.put(f"/fhir/MedicationDispense/{first['id']}", json={**first, "status": "entered-in-error"})
    assert back.status_code == 200
    mr = client.get("/fhir/MedicationRequest/mr1").json()
    assert mr["status"] == "completed" and rx.balance(mr)["quantityRemaining"] == 90


def test_withdrawing_the_completing_dispense_reopens_it(client):
    _setup(client, quantity=30)
    only = _post(client, quantity=30)
    assert _status(client) == "completed"
    back = client.put(f"/fhir/MedicationDispense/{only['id']}", json={**only, "status": "entered-in-error"})
    assert back.status_code == 200 and _status(client) == "active"
