"""The pharmacy's part: it finds a prescription by the national number the patient presents, never by browsing,
and dispenses it once; on the role-play world and on the generated population (SQLite and PostgreSQL)."""
from __future__ import annotations

import collections

import orjson
import pytest

from healthtwin.population import generate_stream
from healthtwin.population.common import SYS_PRESCRIPTION
from healthtwin.registries.prescribing.numbers import PRESCRIPTION_SYSTEM

from ..security import world as W
from . import rx


def test_the_number_system_is_the_populations():
    assert PRESCRIPTION_SYSTEM == SYS_PRESCRIPTION == rx.RX


def _number(c, world, rid: str) -> str:
    mr = c.get(f"/fhir/MedicationRequest/{rid}", headers=world.headers["administrator"]).json()
    return next(i["value"] for i in mr["identifier"] if i["system"] == rx.RX)


def test_a_pharmacy_finds_by_number_and_dispenses_once(world_app):
    c, world, _ = world_app
    h = world.headers["pharmacy"]
    number = _number(c, world, "mr1")  # mr1 was written without one: the server gave it its number
    found = c.get("/fhir/MedicationRequest", params={"identifier": f"{rx.RX}|{number}"}, headers=h).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["mr1"]
    # no browsing: not without the number, not by the bare value, not by id
    assert c.get("/fhir/MedicationRequest", params={"patient": "Patient/p1"}, headers=h).status_code == 403
    assert c.get("/fhir/MedicationRequest", params={"identifier": number}, headers=h).status_code == 403
    assert c.get("/fhir/MedicationRequest/mr1", headers=h).status_code in (403, 404)
    body = rx.dispense("mr1", quantity=None, pharmacy="Organization/org-pharm")
    assert c.post("/fhir/MedicationDispense", json=body, headers=h).status_code == 201
    again = c.post("/fhir/MedicationDispense", json=body, headers=h)
    assert again.status_code == 409 and again.json()["issue"][0]["code"] == "conflict"
    after = c.get("/fhir/MedicationRequest", params={"identifier": f"{rx.RX}|{number}"}, headers=h).json()
    assert after["entry"][0]["resource"]["status"] == "completed"
    # a pharmacy records its own dispenses only, and does not change prescriptions
    other = rx.dispense("mr2", quantity=None, patient="p2", pharmacy="Organization/org-b")
    assert c.post("/fhir/MedicationDispense", json=other, headers=h).status_code == 403
    stop = {**after["entry"][0]["resource"], "status": "stopped"}
    assert c.put("/fhir/MedicationRequest/mr1", json=stop, headers=h).status_code == 403


def test_the_prescriber_cancels_and_the_pharmacy_is_refused(world_app):
    c, world, _ = world_app
    mr = c.get("/fhir/MedicationRequest/mr1", headers=world.headers["clinician"]).json()
    assert c.put("/fhir/MedicationRequest/mr1", json={**mr, "status": "cancelled"},
                 headers=world.headers["clinician"]).status_code == 200
    r = c.post("/fhir/MedicationDispense", json=rx.dispense("mr1", quantity=None, pharmacy="Organization/org-pharm"),
               headers=world.headers["pharmacy"])
    assert r.status_code == 409 and "'cancelled'" in r.text


@pytest.fixture
def population(store, tmp_path, monkeypatch):
    """300 generated citizens' prescriptions and dispenses stored as a bulk load stores them (no write rules),
    served with the real policy: (client, world, resources by id, dispense counts by prescription). The
    generated chronic prescriptions are renewed every 90 days, so the default validity is set to 90 days here
    (its 30 days are tested in test_prescription_validity.py)."""
    from healthtwin.registries.prescribing import validity
    monkeypatch.setenv(validity.ENV, "90")
    keep = {"Patient", "Organization", "MedicationRequest", "MedicationDispense", "Practitioner", "AllergyIntolerance"}
    byid: dict[str, dict] = {}
    dispensed: collections.Counter = collections.Counter()
    with store.transaction() as tx:
        for rtype, res in generate_stream(300, 7):
            if rtype in keep:
                res = orjson.loads(orjson.dumps(res))
                tx.create(rtype, res, res["id"])
                byid[res["id"]] = res
                if rtype == "MedicationDispense":
                    dispensed[res["authorizingPrescription"][0]["reference"].split("/")[1]] += 1
    client, world = W.build(store, tmp_path)
    with client as c:
        yield c, world, byid, dispensed


def _pharmacy(world, org: str) -> dict[str, str]:
    return world.mint("pharmacy", subject="apteka", kind="system", scopes=["system/*.rs", "system/MedicationDispense.c"],
                      roles=["pharmacy"], organization=org, client_id="apteka")


def test_on_generated_data_a_pharmacy_dispenses_what_is_left_and_nothing_twice(population):
    c, world, byid, dispensed = population
    active = [r for r in byid.values() if r["resourceType"] == "MedicationRequest" and r["status"] == "active"]
    fresh = max((r for r in active if r["id"] not in dispensed), key=lambda r: r["authoredOn"])
    taken = next(r for r in active if r["id"] in dispensed)
    org = next(r["id"] for r in byid.values() if r["resourceType"] == "Organization" and "Aptek" in r.get("name", ""))
    h = _pharmacy(world, f"Organization/{org}")
    for mr, first in ((fresh, 201), (taken, 409)):
        number = next(i["value"] for i in mr["identifier"] if i["system"] == rx.RX)
        found = c.get("/fhir/MedicationRequest", params={"identifier": f"{rx.RX}|{number}"}, headers=h).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [mr["id"]]
        body = {"resourceType": "MedicationDispense", "status": "completed",
                "medicationCodeableConcept": mr["medicationCodeableConcept"], "subject": mr["subject"],
                "performer": [{"actor": {"reference": f"Organization/{org}"}}],
                "authorizingPrescription": [{"reference": f"MedicationRequest/{mr['id']}"}],
                "quantity": mr["dispenseRequest"]["quantity"]}
        r = c.post("/fhir/MedicationDispense", json=body, headers=h)
        assert r.status_code == first, r.text
        if first == 201:
            assert c.post("/fhir/MedicationDispense", json=body, headers=h).status_code == 409
        after = c.get("/fhir/MedicationRequest", params={"identifier": f"{rx.RX}|{number}"}, headers=h).json()
        assert after["entry"][0]["resource"]["status"] == ("completed" if first == 201 else "active")


def test_on_generated_data_the_checks_see_a_duplicate_statin(population):
    c, world, byid, _ = population
    statin = next(r for r in byid.values() if r["resourceType"] == "MedicationRequest" and r["status"] == "active"
                  and r["medicationCodeableConcept"]["coding"][0]["code"] == "C10AA05")
    patient = statin["subject"]["reference"].split("/")[1]
    order = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": rx.ATC, "code": "C10AA01", "display": "simvastatin"}]},
             "subject": {"reference": f"Patient/{patient}"}}
    body = {"hook": "order-sign", "hookInstance": "h1", "context": {
        "userId": "Practitioner/x", "patientId": patient,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    cards = c.post("/cds-services/prescribing-order-sign", json=body,
                   headers=world.headers["administrator"]).json()["cards"]
    assert any(card["source"]["topic"]["code"] == "DUPTHPY" and f"MedicationRequest/{statin['id']}" in card["detail"]
               for card in cards)


def test_on_generated_data_a_penicillin_allergy_warns_against_amoxicillin(population):
    c, world, byid, _ = population
    allergy = next(r for r in byid.values() if r["resourceType"] == "AllergyIntolerance"
                   and r["code"]["coding"][0]["code"] == "J01C" and r["criticality"] == "low")
    patient = allergy["patient"]["reference"].split("/")[1]
    order = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": rx.ATC, "code": "J01CA04", "display": "amoxicillin"}]},
             "subject": {"reference": f"Patient/{patient}"}}
    body = {"hook": "order-sign", "hookInstance": "h2", "context": {
        "userId": "Practitioner/x", "patientId": patient,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}}}
    cards = c.post("/cds-services/prescribing-order-sign", json=body,
                   headers=world.headers["administrator"]).json()["cards"]
    (card,) = [card for card in cards if card["source"]["topic"]["code"] == "ALGY"]
    assert card["indicator"] == "warning" and "penicillins" in card["summary"]
