"""The prescribing checks as a CDS Hooks 2.0 service, over the role-play world with the real access policy
(tests/security/world.py): cards for duplicate therapy, allergies and dose limits; the caller's access rules;
prefetch; feedback recording overrides as DetectedIssues (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64

import pytest

from ..security import world as W
from . import rx

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _order(code: str, dose: float | None = None, unit: str = "mg", per_day: int = 1, rid: str | None = None) -> dict:
    res = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
           "medicationCodeableConcept": {"coding": [{"system": rx.ATC, "code": code}]},
           "subject": {"reference": "Patient/p1"}}
    if rid:
        res["id"] = rid
    if dose is not None:
        res["dosageInstruction"] = [{"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                                     "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit,
                                                                       "system": "http://unitsofmeasure.org",
                                                                       "code": unit}}]}]
    return res


def _hook(orders: list[dict], patient: str = "p1", hook: str = "order-sign", **extra) -> dict:
    return {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/doc-a", "patientId": patient,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": o} for o in orders]}, **extra.pop("context", {})},
            **extra}


@pytest.fixture
def cds(world_app):
    c, world, store = world_app
    admin = world.headers["administrator"]
    for res in (rx.prescription("mr-enal", code="C09AA02", patient="p1"),
                rx.prescription("mr-p2", code="C09AA02", patient="p2"),
                {"resourceType": "AllergyIntolerance", "id": "al1", "patient": {"reference": "Patient/p1"},
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "allergyintolerance-clinical", "code": "active"}]},
                 "criticality": "high",
                 "code": {"coding": [{"system": rx.ATC, "code": "J01C", "display": "penicillins"}]}},
                {"resourceType": "AllergyIntolerance", "id": "al-old", "patient": {"reference": "Patient/p1"},
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                "allergyintolerance-clinical", "code": "resolved"}]},
                 "code": {"coding": [{"system": rx.ATC, "code": "N02BE01", "display": "paracetamol"}]}}):
        r = c.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=admin)
        assert r.status_code == 201, r.text
    return c, world


def _kinds(cards: list[dict]) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in cards)


def test_discovery_lists_both_hooks_with_prefetch(cds):
    c, _ = cds
    services = c.get("/cds-services").json()["services"]
    assert {(s["id"], s["hook"]) for s in services} == {("prescribing-order-sign", "order-sign"),
                                                        ("prescribing-order-select", "order-select")}
    assert all("{{context.patientId}}" in s["prefetch"]["medications"] for s in services)


def test_order_sign_warns_of_duplicate_therapy_allergy_and_dose(cds):
    c, world = cds
    h = world.headers["clinician"]
    orders = [_order("C09AA03", 10), _order("J01CA04", 500, per_day=3), _order("N02BE01", 1000, per_day=6),
              _order("A10BA02", 500, per_day=2)]
    r = c.post("/cds-services/prescribing-order-sign", json=_hook(orders), headers=h)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert _kinds(cards) == ["ALGY", "DOSEH", "DUPTHPY"]
    by = {card["source"]["topic"]["code"]: card for card in cards}
    assert "C09AA" in by["DUPTHPY"]["detail"] and "MedicationRequest/mr-enal" in by["DUPTHPY"]["detail"]
    assert by["ALGY"]["indicator"] == "critical" and "penicillins" in by["ALGY"]["summary"]
    assert "6000 mg a day (maximum 4000 mg)" in by["DOSEH"]["summary"]  # a resolved paracetamol allergy: no card
    for card in cards:
        assert card["uuid"] and len(card["summary"]) <= 140 and card["overrideReasons"]
        assert all(reason["system"] == ACT for reason in card["overrideReasons"])


def test_two_drafts_in_one_class_are_a_duplicate_and_units_convert(cds):
    c, world = cds
    h = world.headers["clinician"]
    cards = c.post("/cds-services/prescribing-order-sign", headers=h, json=_hook(
        [_order("M01AE01", 0.4, unit="g", per_day=3), _order("M01AE02", 250)])).json()["cards"]
    assert _kinds(cards) == ["DUPTHPY", "DUPTHPY"]  # 1.2 g of ibuprofen a day is within its limit
    cards = c.post("/cds-services/prescribing-order-sign", headers=h, json=_hook(
        [_order("M01AE01", 0.8, unit="g", per_day=4)])).json()["cards"]
    assert _kinds(cards) == ["DOSEH"]


def test_the_callers_access_rules_decide_what_the_checks_read(cds):
    c, world = cds
    body = _hook([_order("C09AA03", 10)], patient="p2")
    # p2 is not in the clinician's care: their active enalapril is not read, so no card reveals it
    assert c.post("/cds-services/prescribing-order-sign", json=body,
                  headers=world.headers["clinician"]).json()["cards"] == []
    admin = c.post("/cds-services/prescribing-order-sign", json=body, headers=world.headers["administrator"])
    assert _kinds(admin.json()["cards"]) == ["DUPTHPY"]
    # no token: 401; the hook's fhirAuthorization token stands for the caller when there is no header
    assert c.post("/cds-services/prescribing-order-sign", json=body).status_code == 401
    token = world.headers["clinician"]["authorization"].split()[1]
    own = _hook([_order("C09AA03", 10)], fhirAuthorization={"access_token": token, "token_type": "Bearer",
                                                            "scope": "user/*.rs", "subject": "dr-a"})
    r = c.post("/cds-services/prescribing-order-sign", json=own)
    assert r.status_code == 200 and _kinds(r.json()["cards"]) == ["DUPTHPY"]
    # roles without patient-level access are refused
    assert c.post("/cds-services/prescribing-order-sign", json=body,
                  headers=world.headers["analyst"]).status_code == 403


def test_prefetch_is_used_instead_of_reading(cds):
    c, world = cds
    other = rx.prescription("elsewhere", code="C08CA01")
    body = _hook([_order("C08CA02", 5), _order("J01CA04", 500)], prefetch={
        "medications": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": other}]},
        "allergies": {"resourceType": "Bundle", "type": "searchset", "entry": []}})
    cards = c.post("/cds-services/prescribing-order-sign", json=body, headers=world.headers["clinician"]).json()["cards"]
    assert _kinds(cards) == ["DUPTHPY"] and "MedicationRequest/elsewhere" in cards[0]["detail"]


def test_order_select_answers_for_the_selected_orders(cds):
    c, world = cds
    orders = [_order("C09AA03", 10, rid="sel-1"), _order("J01CA04", 500, rid="sel-2")]
    body = _hook(orders, hook="order-select", context={"selections": ["MedicationRequest/sel-2"]})
    cards = c.post("/cds-services/prescribing-order-select", json=body,
                   headers=world.headers["clinician"]).json()["cards"]
    assert _kinds(cards) == ["ALGY"]
    wrong = c.post("/cds-services/prescribing-order-sign", json=body, headers=world.headers["clinician"])
    assert wrong.status_code == 400 and wrong.json()["resourceType"] == "OperationOutcome"


def test_an_override_is_recorded_as_a_detected_issue_with_its_reason(cds):
    c, world = cds
    h = world.headers["clinician"]
    card = c.post("/cds-services/prescribing-order-sign", json=_hook([_order("C09AA03", 10)]),
                  headers=h).json()["cards"][0]
    reason = card["overrideReasons"][0]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-02T15:00:00Z",
            "overrideReason": {"reason": reason, "userComment": "switching from enalapril, stopped today"}}
    bad = {**item, "overrideReason": {"reason": {"system": ACT, "code": "8"}}}
    assert c.post("/cds-services/prescribing-order-sign/feedback", json={"feedback": [bad]}, headers=h).status_code == 422
    assert c.post("/cds-services/prescribing-order-sign/feedback", json={"feedback": [item]},
                  headers=world.headers["administrator"]).status_code == 404  # not their card
    r = c.post("/cds-services/prescribing-order-sign/feedback", json={"feedback": [item]}, headers=h)
    assert r.status_code == 200, r.text
    [ref] = r.json()["recorded"]
    issue = c.get(f"/fhir/{ref}", headers=h).json()
    assert issue["code"]["coding"][0]["code"] == "DUPTHPY" and issue["patient"]["reference"] == "Patient/p1"
    mitigation = issue["mitigation"][0]
    assert mitigation["action"]["coding"][0]["code"] == reason["code"]
    assert mitigation["action"]["text"] == "switching from enalapril, stopped today"
    assert mitigation["author"] == {"reference": "Practitioner/doc-a"}
    assert issue["implicated"] == [{"reference": "MedicationRequest/mr-enal"}]
    assert issue["identifier"][0]["value"] == f"urn:uuid:{card['uuid']}"
    again = c.post("/cds-services/prescribing-order-sign/feedback", json={"feedback": [item]}, headers=h)
    assert again.status_code == 409
    found = c.get("/fhir/DetectedIssue", params={"patient": "Patient/p1"}, headers=h).json()
    assert found["total"] == 1 if "total" in found else len(found["entry"]) == 1


def test_accepted_cards_record_no_issue(cds):
    c, world = cds
    h = world.headers["clinician"]
    card = c.post("/cds-services/prescribing-order-sign", json=_hook([_order("C09AA03", 10)]),
                  headers=h).json()["cards"][0]
    r = c.post("/cds-services/prescribing-order-sign/feedback",
               json={"feedback": [{"card": card["uuid"], "outcome": "accepted"}]}, headers=h)
    assert r.status_code == 200 and r.json()["recorded"] == []
    assert "entry" not in c.get("/fhir/DetectedIssue", headers=world.headers["administrator"]).json()


def test_hook_calls_and_feedback_are_in_the_audit_trail_of_the_patient(cds):
    c, world = cds
    h = world.headers["clinician"]
    card = c.post("/cds-services/prescribing-order-sign", json=_hook([_order("C09AA03", 10)]),
                  headers=h).json()["cards"][0]
    c.post("/cds-services/prescribing-order-sign/feedback",
           json={"feedback": [{"card": card["uuid"], "outcome": "accepted"}]}, headers=h)
    trail = c.get("/fhir/$audit-trail", params={"agent": "dr-a", "patient": "Patient/p1"},
                  headers=world.headers["auditor"]).json()
    queries = {base64.b64decode(ent["query"]).decode() for e in trail.get("entry", [])
               for ent in e["resource"].get("entity", []) if ent.get("query")}
    assert {"/cds-services/prescribing-order-sign", "/cds-services/prescribing-order-sign/feedback"} <= queries
