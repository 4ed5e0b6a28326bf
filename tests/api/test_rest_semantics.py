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
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert "enforced" in patient["referencePolicy"]  # a literal reference must name a stored resource


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


def _obs(subject: str, **extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
            "subject": {"reference": subject}, **extra}


def test_a_reference_to_nothing_is_refused(client):
    r = client.post("/fhir/Observation", json=_obs("Patient/nobody"))
    assert r.status_code == 422, r.text
    assert "Patient/nobody" in r.json()["issue"][0]["diagnostics"]
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    oid = client.post("/fhir/Observation", json=_obs(f"Patient/{pid}")).json()["id"]
    # an update, a version-specific reference, a contained resource's reference: all checked
    for body in (_obs("Patient/nobody", id=oid), _obs(f"Patient/{pid}", id=oid, focus=[{"reference": "Group/g/_history/1"}]),
                 _obs(f"Patient/{pid}", id=oid, contained=[_obs("Patient/ghost", id="c1")])):
        r = client.put(f"/fhir/Observation/{oid}", json=body)
        assert r.status_code == 422, r.text
    assert client.get(f"/fhir/Observation/{oid}").json()["meta"]["versionId"] == "1"
    # what is not a literal reference to this server is not checked
    ok = _obs(f"Patient/{pid}", performer=[{"reference": "https://other.example/fhir/Practitioner/p9"},
                                           {"identifier": {"value": "x"}}])
    assert client.post("/fhir/Observation", json=ok).status_code == 201
    # a deleted target is no target
    assert client.delete(f"/fhir/Observation/{oid}").status_code == 200
    assert client.post("/fhir/Observation", json=_obs(f"Patient/{pid}", derivedFrom=[{"reference": f"Observation/{oid}"}])
                       ).status_code == 422


def test_a_transaction_is_judged_as_a_whole(client):
    # a reference to a later entry (urn:uuid and plain Type/id) is fine; to nothing, the whole Bundle is refused
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b7e0e8c-5a7e-4c36-9b5e-7d1a5f0c1e01", "resource": _obs("urn:uuid:0b7e0e8c-5a7e-4c36-9b5e-7d1a5f0c1e02"),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("Patient/later", id="o-later"), "request": {"method": "PUT", "url": "Observation/o-later"}},
        {"fullUrl": "urn:uuid:0b7e0e8c-5a7e-4c36-9b5e-7d1a5f0c1e02", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "later"}, "request": {"method": "PUT", "url": "Patient/later"}}]}
    assert client.post("/fhir", json=bundle).status_code == 200
    bundle["entry"][1]["resource"]["subject"]["reference"] = "Patient/nobody"
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 422 and "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"], r.text
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 2  # the refused Bundle stored nothing
    # in a batch, only the entry with the bad reference fails
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _obs("Patient/nobody"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("Patient/later"), "request": {"method": "POST", "url": "Observation"}}]}
    statuses = [e["response"]["status"] for e in client.post("/fhir", json=batch).json()["entry"]]
    assert statuses[0].startswith("422") and statuses[1].startswith("201"), statuses


def test_a_delete_never_leaves_references_dangling(client):
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    assert client.put("/fhir/Encounter/e1", json={"resourceType": "Encounter", "id": "e1", "status": "finished",
                                                  "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}}
                      ).status_code == 201
    oid = client.post("/fhir/Observation", json=_obs("Patient/p1", encounter={"reference": "Encounter/e1"})).json()["id"]
    r = client.delete("/fhir/Patient/p1")
    assert r.status_code == 409 and "_cascade=delete" in r.json()["issue"][0]["diagnostics"], r.text
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.delete("/fhir/Patient?_id=p1").status_code == 409  # conditional delete alike
    # a transaction that removes the reference first may then delete the target
    obs = client.get(f"/fhir/Observation/{oid}").json()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Encounter/e1"}},
        {"resource": {**obs, "encounter": None} and {k: v for k, v in obs.items() if k != "encounter"},
         "request": {"method": "PUT", "url": f"Observation/{oid}"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    # _cascade=delete (as HAPI names it) deletes the referrers with it, and their history stays
    r = client.delete("/fhir/Patient/p1?_cascade=delete")
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Observation/{oid}").status_code == 410
    assert client.get(f"/fhir/Observation/{oid}/_history/1").status_code == 200
    assert client.delete("/fhir/Patient/p1?_cascade=maybe").status_code == 400


def test_referential_integrity_can_be_relaxed_for_bulk_loads(store, tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from healthtwin.api.services import Limits
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    monkeypatch.setenv("HEALTHTWIN_REFERENTIAL_INTEGRITY", "off")  # what `serve --referential-integrity off` sets
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "data", rate=None), policy=OpenPolicy())) as c:
        assert c.post("/fhir/Observation", json=_obs("Patient/not-yet")).status_code == 201
        pid = c.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
        c.post("/fhir/Observation", json=_obs(f"Patient/{pid}"))
        assert c.delete(f"/fhir/Patient/{pid}").status_code == 200
    monkeypatch.setenv("HEALTHTWIN_REFERENTIAL_INTEGRITY", "sometimes")
    try:
        Limits()
    except ValueError as exc:
        assert "strict" in str(exc)
    else:
        raise AssertionError("an unknown setting was accepted")


def test_export_kick_off_with_a_body_that_is_no_parameters_is_a_400(client):
    # schemathesis found POST $export with a JSON array answering 500: the body was read as a dict unchecked.
    for body in ([None, None], "text", {"resourceType": "Parameters", "parameter": [1]}):
        r = client.post("/fhir/$export", json=body, headers={"Prefer": "respond-async"})
        assert r.status_code == 400, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
