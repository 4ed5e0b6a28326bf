"""The MedicationRequest and MedicationDispense state machines, enforced on every write (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from healthtwin.registries.prescribing import lifecycle

from . import rx


def _put(client, res):
    return client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res)


def _setup(client, **kw):
    assert _put(client, rx.patient()).status_code in (200, 201)
    r = _put(client, rx.prescription(**kw))
    assert r.status_code == 201, r.text
    return r.json()


def test_every_allowed_request_transition_is_accepted_and_every_other_refused_with_409():
    for old in lifecycle.REQUEST_NEXT:
        for new in lifecycle.REQUEST_STATUSES:
            if new == old or new in lifecycle.REQUEST_NEXT[old]:
                lifecycle.check_request(old, new)
            else:
                with pytest.raises(Exception) as info:
                    lifecycle.check_request(old, new)
                assert info.value.status == 409 and old in info.value.diagnostics


def test_illegal_update_is_a_409_outcome_and_stores_nothing(client):
    _setup(client)
    assert _put(client, rx.prescription(status="cancelled")).status_code == 200
    r = _put(client, rx.prescription(status="active"))
    assert r.status_code == 409
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and "'cancelled' to 'active'" in body["issue"][0]["diagnostics"]
    got = client.get("/fhir/MedicationRequest/mr1").json()
    assert got["status"] == "cancelled" and got["meta"]["versionId"] == "2"
    # PATCH ends in an update: the same rule
    patch = [{"op": "replace", "path": "/status", "value": "draft"}]
    r = client.patch("/fhir/MedicationRequest/mr1", json=patch, headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 409
    # nothing leaves entered-in-error
    assert _put(client, rx.prescription(status="entered-in-error")).status_code == 200
    assert _put(client, rx.prescription(status="entered-in-error")).status_code == 200  # same status: an edit
    assert _put(client, rx.prescription(status="stopped")).status_code == 409


def test_a_prescription_cannot_be_created_as_entered_in_error(client):
    _put(client, rx.patient())
    r = _put(client, rx.prescription(status="entered-in-error"))
    assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/MedicationRequest/mr1").status_code == 404


def test_every_prescription_gets_a_unique_national_number_that_never_changes(client):
    _put(client, rx.patient())
    body = rx.prescription()
    del body["id"]
    r = client.post("/fhir/MedicationRequest", json=body)
    assert r.status_code == 201, r.text
    first = r.json()
    numbers = [i["value"] for i in first["identifier"] if i["system"] == rx.RX]
    assert len(numbers) == 1 and len(numbers[0]) == 12 and numbers[0].isdigit()
    # the pharmacy finds it by the number
    found = client.get("/fhir/MedicationRequest", params={"identifier": f"{rx.RX}|{numbers[0]}"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [first["id"]]
    # an update without the identifier keeps it; one with another number is refused
    update = {k: v for k, v in first.items() if k not in ("identifier", "meta")}
    again = client.put(f"/fhir/MedicationRequest/{first['id']}", json=update).json()
    assert [i["value"] for i in again["identifier"] if i["system"] == rx.RX] == numbers
    other = {**update, "identifier": [{"system": rx.RX, "value": "000000000001"}]}
    assert client.put(f"/fhir/MedicationRequest/{first['id']}", json=other).status_code == 409
    # a second prescription may not take the first one's number
    dup = rx.prescription("mr2", number=numbers[0])
    r = _put(client, dup)
    assert r.status_code == 409 and "already in use" in r.text
    assert client.get("/fhir/MedicationRequest/mr2").status_code == 404


def test_dispense_transitions_are_enforced(client):
    _setup(client, quantity=60, repeats=1)
    d = client.post("/fhir/MedicationDispense", json=rx.dispense(status="preparation")).json()
    for status, code in (("in-progress", 200), ("preparation", 409), ("completed", 200), ("in-progress", 409),
                         ("declined", 409), ("entered-in-error", 200), ("completed", 409)):
        r = client.put(f"/fhir/MedicationDispense/{d['id']}", json={**d, "status": status})
        assert r.status_code == code, (status, r.text)
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(status="entered-in-error")).status_code == 409


def test_cancel_only_before_dispensing_then_stop(client):
    _setup(client, quantity=60, repeats=2)
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=60)).status_code == 201
    r = _put(client, rx.prescription(quantity=60, repeats=2, status="cancelled"))
    assert r.status_code == 409 and "stopped" in r.text
    assert _put(client, rx.prescription(quantity=60, repeats=2, status="stopped")).status_code == 200
    # the prescriber stopped it: the pharmacy's next dispense is refused
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=60))
    assert r.status_code == 409 and "'stopped'" in r.text


def test_a_cancelled_prescription_is_not_dispensed(client):
    _setup(client)
    assert _put(client, rx.prescription(status="cancelled")).status_code == 200
    r = client.post("/fhir/MedicationDispense", json=rx.dispense())
    assert r.status_code == 409 and "'cancelled'" in r.text
    assert client.get("/fhir/MedicationDispense").json().get("total", 0) == 0
