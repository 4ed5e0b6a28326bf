"""Dispensed once only: repeats, partial dispenses, validity and withdrawal, and the database's own refusal of an
overdraw (SQLite and PostgreSQL). The race of many pharmacies is in test_dispense_race.py."""
from __future__ import annotations

import pytest

from healthtwin.fhir.outcome import FHIRError
from healthtwin.registries.prescribing import balance as B

from . import rx


def _setup(client, **kw):
    client.put("/fhir/Patient/p1", json=rx.patient())
    r = client.put(f"/fhir/MedicationRequest/{kw.get('rid', 'mr1')}", json=rx.prescription(**kw))
    assert r.status_code == 201, r.text


def _mr(client, rid="mr1"):
    return client.get(f"/fhir/MedicationRequest/{rid}").json()


def _count(client):
    return client.get("/fhir/MedicationDispense", params={"_summary": "count"}).json()["total"]


def test_partial_dispenses_add_up_to_the_prescription_then_it_is_completed(client):
    _setup(client, quantity=60)
    for q in (20, 30):
        assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=q)).status_code == 201
    assert rx.balance(_mr(client)) == {"fillsDispensed": 2, "quantityDispensed": 50, "quantityRemaining": 10,
                                       "fillsRemaining": 1}
    assert _mr(client)["status"] == "active"
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=20))
    assert r.status_code == 409 and "10 dose left" in r.json()["issue"][0]["diagnostics"]
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=10)).status_code == 201
    mr = _mr(client)
    assert mr["status"] == "completed" and rx.balance(mr)["quantityRemaining"] == 0
    assert _count(client) == 3


def test_repeats_allow_one_fill_each_then_refuse(client):
    _setup(client, quantity=30, repeats=2)
    for _ in range(3):
        assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=30)).status_code == 201
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=30))
    assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
    assert rx.balance(_mr(client))["fillsDispensed"] == 3 and _mr(client)["status"] == "completed"


def test_without_a_quantity_each_dispense_is_one_fill(client):
    _setup(client, quantity=None, repeats=1)
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=None)).status_code == 201
    assert _mr(client)["status"] == "active"
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=None)).status_code == 201
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=None))
    assert r.status_code == 409 and "no repeats left" in r.text
    assert _mr(client)["status"] == "completed"


def test_a_dispense_is_at_most_one_fill_in_the_prescriptions_unit(client):
    _setup(client, quantity=30, repeats=3)
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=60))
    assert r.status_code == 422 and "one fill" in r.text
    wrong = rx.dispense(quantity=30)
    wrong["quantity"]["unit"] = "mL"
    assert client.post("/fhir/MedicationDispense", json=wrong).status_code == 422
    assert _count(client) == 0


@pytest.mark.parametrize("validity, says", [({"end": "2020-01-31"}, "expired"),
                                            ({"start": "2999-01-01"}, "valid from")])
def test_outside_its_validity_period_a_prescription_is_not_dispensed(client, validity, says):
    _setup(client, validity=validity)
    r = client.post("/fhir/MedicationDispense", json=rx.dispense())
    assert r.status_code == 409 and says in r.text
    assert _count(client) == 0 and rx.balance(_mr(client)) == {}


def test_in_progress_holds_the_fill_and_entered_in_error_gives_it_back(client):
    _setup(client, quantity=60)
    held = client.post("/fhir/MedicationDispense", json=rx.dispense(status="in-progress")).json()
    assert client.post("/fhir/MedicationDispense", json=rx.dispense()).status_code == 409
    assert _mr(client)["status"] == "active"  # being handed over, not yet handed over
    done = client.put(f"/fhir/MedicationDispense/{held['id']}", json={**held, "status": "completed"})
    assert done.status_code == 200 and _mr(client)["status"] == "completed"
    # a completed dispense is not deleted: it is withdrawn, and the prescription can be dispensed again
    assert client.delete(f"/fhir/MedicationDispense/{held['id']}").status_code == 409
    back = client.put(f"/fhir/MedicationDispense/{held['id']}", json={**held, "status": "entered-in-error"})
    assert back.status_code == 200
    mr = _mr(client)
    assert mr["status"] == "active" and rx.balance(mr)["quantityRemaining"] == 60
    assert client.post("/fhir/MedicationDispense", json=rx.dispense()).status_code == 201


def test_declined_and_preparation_take_nothing(client):
    _setup(client, quantity=60)
    for status in ("declined", "preparation"):
        assert client.post("/fhir/MedicationDispense", json=rx.dispense(status=status)).status_code == 201
    assert client.post("/fhir/MedicationDispense", json=rx.dispense()).status_code == 201


def test_the_balance_is_the_servers_not_the_clients(client):
    _setup(client, quantity=30, repeats=1)
    assert client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=30)).status_code == 201
    forged = _mr(client)
    for part in forged["dispenseRequest"]["extension"][0]["extension"]:
        if part["url"] == "fillsDispensed":
            part["valueUnsignedInt"] = 0
    assert client.put("/fhir/MedicationRequest/mr1", json=forged).status_code == 200
    assert rx.balance(_mr(client))["fillsDispensed"] == 1
    # the prescriber may add a repeat, but not take away what was dispensed
    more = _mr(client)
    more["dispenseRequest"]["numberOfRepeatsAllowed"] = 2
    assert client.put("/fhir/MedicationRequest/mr1", json=more).status_code == 200
    assert rx.balance(_mr(client))["quantityRemaining"] == 60
    less = _mr(client)
    less["dispenseRequest"]["quantity"]["value"] = 10
    less["dispenseRequest"]["numberOfRepeatsAllowed"] = 0
    r = client.put("/fhir/MedicationRequest/mr1", json=less)
    assert r.status_code == 409 and "beyond" in r.text


def test_a_transaction_with_two_dispenses_of_the_only_fill_stores_nothing(client):
    _setup(client, quantity=60)
    entry = {"resource": rx.dispense(), "request": {"method": "POST", "url": "MedicationDispense"}}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]})
    assert r.status_code == 409, r.text
    assert _count(client) == 0 and rx.balance(_mr(client)) == {} and _mr(client)["meta"]["versionId"] == "1"


def test_dispenses_loaded_in_bulk_count_against_the_prescription(client, store):
    """The generated population is loaded without write rules: its dispenses still use up its prescriptions."""
    with store.transaction() as tx:
        tx.create("Patient", rx.patient(), "p1")
        tx.create("MedicationRequest", rx.prescription(quantity=60), "mr1")
        tx.create("MedicationDispense", rx.dispense(quantity=60), "d-loaded")
    r = client.post("/fhir/MedicationDispense", json=rx.dispense(quantity=60))
    assert r.status_code == 409
    assert _count(client) == 1


def test_the_database_refuses_an_overdraw_by_itself(store):
    """Past every check in Python, the balance row's constraints still refuse more than is allowed."""
    with store.transaction() as tx:
        tx.execute("INSERT INTO rx_dispense_balance VALUES ('x', 1, 1, 60, 60)")
    with pytest.raises(FHIRError) as info:
        with store.transaction() as tx:
            B.apply(tx, "x", 0, 1)
    assert info.value.status == 409
    with pytest.raises(FHIRError):
        with store.transaction() as tx:
            tx.execute("INSERT INTO rx_dispense_balance VALUES ('y', 2, 0, NULL, 0)")
            B.apply(tx, "y", 3, 0)
    with store.transaction() as tx:
        assert B.current(tx, "x") == B.Balance(1, 1, 60.0, 60.0) and B.current(tx, "y") is None
