"""$meta, $meta-add and $meta-delete on both databases, through the real app."""
from __future__ import annotations

LOST = {"system": "https://health.gov.az/fhir/CodeSystem/record-flags", "code": "paper-lost"}
PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
PROFILE = "https://health.gov.az/fhir/StructureDefinition/az-patient"


def _meta(response) -> dict:
    (part,) = response.json()["parameter"]
    assert part["name"] == "return"
    return part["valueMeta"]


def _put(client, resource):
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


def test_meta_add_and_delete_make_versions_and_keep_labels_sets(client):
    _put(client, {"resourceType": "Patient", "id": "m1", "meta": {"tag": [LOST]}, "gender": "female"})
    assert _meta(client.get("/fhir/Patient/m1/$meta")) == {"tag": [LOST]}
    added = client.post("/fhir/Patient/m1/$meta-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"tag": [{**LOST, "display": "ignored: same system and code"}],
                                       "security": [PSY], "profile": [PROFILE]}}]})
    assert added.status_code == 200, added.text
    assert _meta(added) == {"tag": [LOST], "security": [PSY], "profile": [PROFILE]}
    patient = client.get("/fhir/Patient/m1").json()
    assert patient["meta"]["versionId"] == "2" and patient["gender"] == "female"
    again = client.post("/fhir/Patient/m1/$meta-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"security": [PSY]}}]})
    assert _meta(again)["security"] == [PSY]
    assert client.get("/fhir/Patient/m1").json()["meta"]["versionId"] == "2"  # nothing new: no new version
    removed = client.post("/fhir/Patient/m1/$meta-delete", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"tag": [LOST], "profile": [PROFILE]}}]})
    assert _meta(removed) == {"security": [PSY]}
    history = client.get("/fhir/Patient/m1/_history").json()
    assert history["total"] == 3
    assert [t["code"] for t in client.get("/fhir/Patient?_security=PSY").json()["entry"][0]["resource"]["meta"]
            ["security"]] == ["PSY"]  # the labels are indexed as any update's are


def test_meta_in_use_by_type_and_system(client):
    _put(client, {"resourceType": "Patient", "id": "m2", "meta": {"tag": [LOST], "profile": [PROFILE]}})
    _put(client, {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "x"},
                  "meta": {"security": [PSY]}})
    by_type = _meta(client.get("/fhir/Patient/$meta"))
    assert by_type == {"profile": [PROFILE], "tag": [LOST]}
    everywhere = _meta(client.get("/fhir/$meta"))
    assert everywhere["security"] == [PSY] and everywhere["tag"] == [LOST]


def test_meta_operations_answer_bad_requests_with_outcomes(client):
    _put(client, {"resourceType": "Patient", "id": "m3"})
    for body, status in (({"resourceType": "Parameters", "parameter": []}, 400),
                         ({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {
                             "tag": [{"system": "x"}]}}]}, 400),
                         ({"resourceType": "Patient"}, 400)):
        r = client.post("/fhir/Patient/m3/$meta-add", json=body)
        assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome"
    assert client.post("/fhir/Patient/absent/$meta-add", json={"resourceType": "Parameters", "parameter": [
        {"name": "meta", "valueMeta": {"tag": [LOST]}}]}).status_code == 404
    assert client.get("/fhir/Patient/absent/$meta").status_code == 404
    assert client.get("/fhir/Patient/m3/$meta-add").status_code == 405
    assert client.delete("/fhir/Patient/m3").status_code in (200, 204)
    assert client.get("/fhir/Patient/m3/$meta").status_code == 410
    assert client.get("/fhir/Patient/m3").status_code == 410
    assert client.get("/fhir/Patient/_history").json()["total"] == 2  # no version was made by the refusals
