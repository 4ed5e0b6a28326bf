"""The citizen's $access-log is written for a person: who (name, role, organization), when, what in words, why in
words, person or automated system; no raw queries and no network addresses (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64


def _log(c, world, patient="p1"):
    r = c.get(f"/fhir/Patient/{patient}/$access-log", headers=world.headers["citizen"])
    assert r.status_code == 200
    return r


def test_the_access_log_says_who_what_and_why_in_words(app):
    c, world, _ = app
    lab = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}}
    assert c.post("/fhir/Observation", json=lab, headers=world.headers["administrator"]).status_code == 201
    doc = {**world.headers["clinician"], "X-Purpose-Of-Use": "TREAT"}
    assert c.get("/fhir/Observation?patient=p1&category=laboratory", headers=doc).status_code == 200
    assert c.get("/fhir/Patient/p1", headers=doc).status_code == 200
    r = _log(c, world)
    events = [e["resource"] for e in r.json()["entry"]]
    texts = [e["text"]["div"] for e in events]
    search = next(t for t in texts if "laboratory results" in t)
    # who: the practitioner's name from their record, their role and organization in words; what; why
    assert "Doc, doctor or nurse, org-a" in search
    assert "looked up your laboratory results" in search
    assert "to treat you" in search
    assert any("read your personal details" in t and "Doc" in t for t in texts)
    event = next(e for e in events if "laboratory results" in e["text"]["div"])
    requestor = next(a for a in event["agent"] if a["requestor"])
    assert requestor["who"]["display"] == "Doc" and requestor["who"]["reference"] == "Practitioner/doc-a"
    assert requestor["role"][0]["text"] == "doctor or nurse"
    assert requestor["extension"][0]["valueReference"]["display"] == "org-a"
    assert event["outcomeDesc"] == "allowed: a person"
    assert event["purposeOfEvent"][0]["coding"][0]["display"] == "to treat you"
    assert event["text"]["status"] == "generated"


def test_the_access_log_holds_no_queries_or_addresses(app):
    c, world, _ = app
    assert c.get("/fhir/Observation?code=4548-4&patient=p1", headers=world.headers["clinician"]).status_code == 200
    r = _log(c, world)
    for entry in r.json()["entry"]:
        event = entry["resource"]
        assert all("query" not in e for e in event.get("entity", []))
        assert all("network" not in a for a in event["agent"])
        assert "extension" not in event  # the request id is the auditors' business
    assert base64.b64encode(b"code=4548-4").decode() not in r.text and "4548-4" not in r.text
    assert "testclient" not in r.text  # the test client's address, which the audit log records


def test_an_automated_system_is_named_as_such(app):
    c, world, _ = app
    assert c.get("/fhir/ServiceRequest/sr1", headers=world.headers["laboratory"]).status_code == 200
    events = [e["resource"] for e in _log(c, world).json()["entry"]]
    lab = next(e for e in events if "your referrals and test orders" in e["text"]["div"])
    assert lab["outcomeDesc"] == "allowed: an automated system"
    assert "laboratory, org-lab" in lab["text"]["div"]
    assert "An automated system (a backend service, not a person)" in lab["text"]["div"]
    requestor = next(a for a in lab["agent"] if a["requestor"])
    assert requestor["who"]["display"] == "an automated system"


def test_the_citizen_reading_their_own_log_is_you(app):
    c, world, _ = app
    _log(c, world)
    events = [e["resource"] for e in _log(c, world).json()["entry"]]
    assert any("you read who saw your record" in e["text"]["div"] for e in events)
