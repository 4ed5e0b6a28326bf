"""REST semantics from R4 http.html the server must keep, on both databases: what it cannot do it refuses
clearly, and what the CapabilityStatement lists is what works."""
from __future__ import annotations

import pytest

SUBSCRIPTION = {"resourceType": "Subscription", "status": "requested", "reason": "notify me",
                "criteria": "Observation?code=http://loinc.org|4548-4",
                "channel": {"type": "rest-hook", "endpoint": "https://example.org/hook", "payload": "application/fhir+json"}}


def _refused_as_unsupported(r) -> None:
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-supported" and "Subscription" in issue["diagnostics"]


def test_subscriptions_are_refused_while_nothing_delivers_them(client):
    _refused_as_unsupported(client.post("/fhir/Subscription", json=SUBSCRIPTION))
    _refused_as_unsupported(client.put("/fhir/Subscription/s1", json={**SUBSCRIPTION, "id": "s1"}))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "tp"}, "request": {"method": "PUT", "url": "Patient/tp"}},
        {"resource": SUBSCRIPTION, "request": {"method": "POST", "url": "Subscription"}}]}
    _refused_as_unsupported(client.post("/fhir", json=bundle))
    assert client.get("/fhir/Patient/tp").status_code == 404  # the transaction stored nothing
    assert client.get("/fhir/Subscription?_summary=count").json()["total"] == 0


def test_capability_statement_lists_only_what_works(client):
    cs = client.get("/fhir/metadata").json()
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert "Subscription" not in types and {"Patient", "Observation"} <= types
    assert cs["format"] == ["application/fhir+json", "json"]  # no XML: asking for it is 406


FIN = "https://health.gov.az/fhir/sid/fin"


def _fin_patient(value: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": FIN, "value": value}]}


def test_post_with_criteria_in_the_url_is_a_conditional_create(client):
    # fhirpy's get_or_create sends `POST Patient?identifier=…`: the second POST finds the first, not a duplicate.
    url = f"/fhir/Patient?identifier={FIN}|AAA1111"
    first = client.post(url, json=_fin_patient("AAA1111"))
    assert first.status_code == 201, first.text
    again = client.post(url, json=_fin_patient("AAA1111"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.get(f"/fhir/Patient?identifier={FIN}|AAA1111&_summary=count").json()["total"] == 1
    # the header and the URL together must agree; output parameters are not criteria
    assert client.post(url, json=_fin_patient("AAA1111"), headers={"If-None-Exist": "identifier=other"}
                       ).status_code == 400
    assert client.post(url + "&_pretty=true", json=_fin_patient("AAA1111"),
                       headers={"If-None-Exist": f"identifier={FIN}|AAA1111"}).status_code == 200
    assert client.post("/fhir/Patient?_format=json", json=_fin_patient("BBB2222")).status_code == 201
    # criteria the server does not know are refused, not ignored (nothing created)
    r = client.post("/fhir/Patient?no-such-param=1", json=_fin_patient("CCC3333"))
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient?identifier={FIN}|CCC3333&_summary=count").json()["total"] == 0
    # and inside a transaction the entry's URL is honoured the same way
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _fin_patient("AAA1111"), "request": {"method": "POST", "url": f"Patient?identifier={FIN}|AAA1111"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("200"), r.text
    assert client.get(f"/fhir/Patient?identifier={FIN}|AAA1111&_summary=count").json()["total"] == 1


def test_writes_never_ignore_query_parameters(client):
    pid = client.post("/fhir/Patient", json=_fin_patient("DDD4444")).json()["id"]
    body = {**_fin_patient("DDD4444"), "id": pid, "gender": "male"}
    for r in (client.put(f"/fhir/Patient/{pid}?identifier=x", json=body),
              client.patch(f"/fhir/Patient/{pid}?gender=female", json=[{"op": "add", "path": "/gender", "value": "male"}],
                           headers={"Content-Type": "application/json-patch+json"}),
              client.delete(f"/fhir/Patient/{pid}?_cascade=sometimes"),
              client.post("/fhir?foo=bar", json={"resourceType": "Bundle", "type": "batch", "entry": []})):
        assert r.status_code == 400, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "1"  # nothing was changed
    assert client.put(f"/fhir/Patient/{pid}?_pretty=true", json=body).status_code == 200
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "PUT", "url": f"Patient/{pid}?gender=male"}}]}
    assert client.post("/fhir", json=bundle).status_code == 400


@pytest.fixture
def world(store, tmp_path):
    """The secure application over the security tests' role-play world: (client, headers by role)."""
    from tests.security import world as W
    client, w = W.build(store, tmp_path)
    with client as c:
        W.load(c, w)
        yield c, w.headers


# One resource of several kinds that nothing refers to, so each can be deleted alone.
DELETABLE = [("Observation", "o2"), ("Coverage", "c2"), ("MedicationRequest", "mr2"), ("Encounter", "e2"),
             ("Organization", "org-b")]


@pytest.mark.parametrize("rtype,rid", DELETABLE)
def test_delete_keeps_history_and_earlier_versions(world, rtype, rid):
    client, h = world
    admin = h["administrator"]
    v1 = {k: v for k, v in client.get(f"/fhir/{rtype}/{rid}", headers=admin).json().items() if k != "meta"}
    assert client.put(f"/fhir/{rtype}/{rid}", json={**v1, "language": "az"}, headers=admin).status_code == 200
    assert client.delete(f"/fhir/{rtype}/{rid}", headers=admin).status_code == 200
    # http.html: the delete is a new version; history and vread of the earlier versions keep working
    hist = client.get(f"/fhir/{rtype}/{rid}/_history", headers=admin).json()
    assert hist["total"] == 3, hist
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert client.get(f"/fhir/{rtype}/{rid}/_history/1", headers=admin).json()["id"] == rid
    assert client.get(f"/fhir/{rtype}/{rid}/_history/2", headers=admin).json()["language"] == "az"
    assert client.get(f"/fhir/{rtype}/{rid}/_history/3", headers=admin).status_code == 410
    assert client.get(f"/fhir/{rtype}/{rid}", headers=admin).status_code == 410


def test_deleted_history_keeps_its_access_rules(world):
    client, h = world
    admin, clinician, lab = h["administrator"], h["clinician"], h["laboratory"]
    for rid in ("o1", "o1psy", "o2"):
        assert client.delete(f"/fhir/Observation/{rid}", headers=admin).status_code == 200
    # the clinician treats p1: its deleted observation stays in their view (gone, with its history) ...
    assert client.get("/fhir/Observation/o1", headers=clinician).status_code == 410
    assert client.get("/fhir/Observation/o1/_history", headers=clinician).json()["total"] == 2
    assert client.get("/fhir/Observation/o1/_history/1", headers=clinician).status_code == 200
    # ... but not p2's, nor a label withheld from them: hidden answers exactly like absent
    for rid in ("o2", "o1psy"):
        for url in (f"/fhir/Observation/{rid}", f"/fhir/Observation/{rid}/_history",
                    f"/fhir/Observation/{rid}/_history/1"):
            r = client.get(url, headers=clinician)
            assert r.status_code == 404, (url, r.text)
    # a rule only the search index can judge (the laboratory's orders) keeps a deleted resource hidden
    assert client.get("/fhir/Observation/o1/_history/1", headers=lab).status_code == 404
