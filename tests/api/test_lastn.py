"""Observation/$lastn on both databases, through the real app."""
from __future__ import annotations

LOINC = "http://loinc.org"


def _obs(client, oid, patient, code, when, category="vital-signs", text=None):
    resource = {"resourceType": "Observation", "id": oid, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": category}]}],
                "code": {"coding": [{"system": LOINC, "code": code}]} if code else {"text": text},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when}
    assert client.put(f"/fhir/Observation/{oid}", json=resource).status_code == 201


def _ids(bundle):
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_lastn_keeps_the_newest_of_each_code(client):
    for pid in ("a", "b"):
        assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).status_code == 201
    for oid, patient, code, when, category in (
            ("sbp1", "a", "8480-6", "2024-01-01", "vital-signs"), ("sbp2", "a", "8480-6", "2024-03-01", "vital-signs"),
            ("sbp3", "a", "8480-6", "2024-02-01", "vital-signs"), ("hba1", "a", "4548-4", "2023-06-01", "laboratory"),
            ("hba2", "a", "4548-4", "2024-06-01", "laboratory"), ("other", "b", "8480-6", "2025-01-01", "vital-signs")):
        _obs(client, oid, patient, code, when, category)
    _obs(client, "note", "a", None, "2022-01-01", "exam", text="free text")
    one = client.get("/fhir/Observation/$lastn?patient=a").json()
    assert one["type"] == "searchset" and one["total"] == 3
    assert sorted(_ids(one)) == ["hba2", "note", "sbp2"]
    two = client.get("/fhir/Observation/$lastn?patient=Patient/a&max=2").json()
    assert _ids(two) == ["hba2", "sbp2", "sbp3", "hba1", "note"]  # newest first, two per code at most
    labs = client.get("/fhir/Observation/$lastn?subject=Patient/a&category=laboratory&max=5").json()
    assert _ids(labs) == ["hba2", "hba1"]
    since = client.get("/fhir/Observation/$lastn?patient=a&date=ge2024-02-15&max=3").json()
    assert _ids(since) == ["hba2", "sbp2"]


def test_lastn_refuses_what_it_cannot_answer(client):
    for query in ("", "?category=laboratory", "?patient=a&max=0", "?patient=a&max=x", "?patient=a&_sort=date",
                  "?patient=a&_count=5", "?patient=a&bogus=1"):
        r = client.get(f"/fhir/Observation/$lastn{query}", headers={"Prefer": "handling=strict"})
        assert r.status_code == 400, (query, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/$lastn?patient=a").status_code == 404
    assert client.post("/fhir/Observation/$lastn", json={"resourceType": "Parameters"}).status_code == 405
