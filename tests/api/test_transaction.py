"""Batch and transaction Bundles: ordering, urn:uuid and conditional references, atomicity, conditional ops."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import corpus


def tx(entries, btype="transaction"):
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def post(full_url, resource, **request):
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], **request}}


PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:fin", "value": "7XYZ123"}],
           "name": [{"family": "Quliyev"}]}


def test_transaction_rewrites_urn_uuid_references(client):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
           "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"}}
    r = client.post("/fhir", json=tx([post("urn:uuid:22222222-2222-2222-2222-222222222222", obs),
                                      post("urn:uuid:11111111-1111-1111-1111-111111111111", PATIENT)]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]
    obs_loc, pat_loc = (e["response"]["location"] for e in body["entry"])
    pid = pat_loc.split("/")[1]
    stored = client.get("/fhir/" + "/".join(obs_loc.split("/")[:2])).json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_is_all_or_nothing(client):
    bad = {"resourceType": "Observation", "code": {"text": "no status"}}  # invalid: status is required
    r = client.post("/fhir", json=tx([post("urn:uuid:a", PATIENT), post("urn:uuid:b", bad)]))
    assert r.status_code == 422
    assert "Bundle.entry[1]" in json.dumps(r.json())
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_transaction_reads_come_last_see_its_writes_and_can_fail_it(client):
    fin = "https://health.gov.az/fhir/sid/fin"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient?identifier={fin}|7TX0001"}},
        {"request": {"method": "GET", "url": "Patient/tx-read"}},
        {"resource": {"resourceType": "Patient", "id": "tx-read", "gender": "female",
                      "identifier": [{"system": fin, "value": "7TX0001"}]},
         "request": {"method": "PUT", "url": "Patient/tx-read"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 200, r.text
    search, read, _ = r.json()["entry"]
    assert search["resource"]["total"] == 1  # GETs run after the writes, inside the transaction
    assert read["resource"]["gender"] == "female" and read["response"]["status"].startswith("200")
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "gender": "male"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/no-such-patient"}}]}
    r = client.post("/fhir", json=failing)
    assert r.status_code == 404
    assert client.get("/fhir/Patient?gender=male").json()["total"] == 0  # the POST was rolled back


def test_transaction_conditional_create_and_reference(client):
    existing = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient?identifier=urn:fin|7XYZ123"}}
    r = client.post("/fhir", json=tx([
        post("urn:uuid:p", PATIENT, ifNoneExist="identifier=urn:fin|7XYZ123"),
        post("urn:uuid:o", obs)]))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["200 OK", "201 Created"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1
    o = client.get(f"/fhir/Observation?subject=Patient/{existing}").json()
    assert o["total"] == 1
    # a conditional reference that matches nothing fails the whole transaction
    obs["subject"]["reference"] = "Patient?identifier=urn:fin|NOBODY"
    r = client.post("/fhir", json=tx([post("urn:uuid:o2", obs)]))
    assert r.status_code in (404, 412) and r.json()["resourceType"] == "OperationOutcome"


def test_creates_are_validated_whichever_way_their_references_resolve(client):
    """Plain creates are validated before the writer lock, creates holding a conditional reference after it
    resolves: an invalid one of either kind fails the transaction and stores nothing."""
    client.post("/fhir/Patient", json=PATIENT)
    newborn = {"resourceType": "Patient", "name": [{"family": "Yeni"}]}
    good = {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
            "subject": {"reference": "Patient?identifier=urn:fin|7XYZ123"}}
    plain = {"resourceType": "Observation", "status": "final", "code": {"text": "plain"},
             "subject": {"reference": "urn:uuid:p"}}
    for bad in ({**good, "status": "unknown-status"}, {**plain, "valueQuantity": {"value": "nine"}}):
        r = client.post("/fhir", json=tx([post("urn:uuid:p", newborn),
                                          post("urn:uuid:o1", good if bad is not good else bad),
                                          post("urn:uuid:o2", bad)]))
        assert r.status_code == 422, r.text
        assert "Bundle.entry[2].resource" in json.dumps(r.json())
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1
    r = client.post("/fhir", json=tx([post("urn:uuid:p", newborn),
                                      post("urn:uuid:o1", good), post("urn:uuid:o2", plain)]))
    assert r.status_code == 200, r.text
    subjects = {o["resource"]["code"]["text"]: o["resource"]["subject"]["reference"]
                for o in client.get("/fhir/Observation").json()["entry"]}
    assert subjects["pulse"].startswith("Patient/") and subjects["plain"].startswith("Patient/")
    assert subjects["pulse"] != subjects["plain"]  # the existing patient, and the one this Bundle created


def test_transaction_order_delete_before_create(client):
    pid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    r = client.post("/fhir", json=tx([
        post("urn:uuid:new", PATIENT, ifNoneExist="identifier=urn:fin|7XYZ123"),
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}}]))
    assert r.status_code == 200, r.text
    # the DELETE ran first, so the conditional create found nothing and created a new patient
    assert r.json()["entry"][0]["response"]["status"] == "201 Created"
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_batch_entries_fail_alone(client):
    bad = {"resourceType": "Observation", "code": {"text": "no status"}}
    r = client.post("/fhir", json=tx([post("urn:uuid:a", PATIENT), post("urn:uuid:b", bad),
                                      {"request": {"method": "GET", "url": "Patient?identifier=7XYZ123"}}],
                                     btype="batch"))
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "422"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["resource"]["total"] == 1


def test_bundle_limits_and_shape(client):
    assert client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert client.post("/fhir", json=tx([{"request": {"method": "FETCH", "url": "Patient"}}])).status_code == 400
    assert client.post("/fhir", json=tx([{"resource": PATIENT}])).status_code == 400
    many = tx([post(f"urn:uuid:{i}", PATIENT) for i in range(10_001)])
    r = client.post("/fhir", json=many)
    assert r.status_code == 413
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_conditional_update_and_delete(client):
    r = client.put("/fhir/Patient?identifier=urn:fin|7XYZ123", json=PATIENT)
    assert r.status_code == 201
    pid = r.json()["id"]
    r = client.put("/fhir/Patient?identifier=urn:fin|7XYZ123", json={**PATIENT, "gender": "male"})
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    client.post("/fhir/Patient", json=PATIENT)
    assert client.put("/fhir/Patient?identifier=urn:fin|7XYZ123", json=PATIENT).status_code == 412
    assert client.delete("/fhir/Patient?identifier=urn:fin|7XYZ123").status_code == 412
    assert client.delete(f"/fhir/Patient?_id={pid}").status_code in (200, 204)
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_conditional_create_rules(client):
    headers = {"If-None-Exist": "identifier=urn:fin|7XYZ123"}
    first = client.post("/fhir/Patient", json=PATIENT, headers=headers)
    again = client.post("/fhir/Patient", json=PATIENT, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    client.post("/fhir/Patient", json=PATIENT)
    assert client.post("/fhir/Patient", json=PATIENT, headers=headers).status_code == 412


def test_parallel_conditional_creates_make_one(client):
    headers = {"If-None-Exist": "identifier=urn:fin|PAR0001"}
    body = {**PATIENT, "identifier": [{"system": "urn:fin", "value": "PAR0001"}]}
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: client.post("/fhir/Patient", json=body, headers=headers).status_code,
                                 range(50)))
    assert statuses.count(201) == 1 and statuses.count(200) == 49
    assert client.get("/fhir/Patient?identifier=PAR0001&_summary=count").json()["total"] == 1


def test_patch_json_and_fhirpath(client):
    pid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
    r = client.patch(f"/fhir/Patient/{pid}", json=[{"op": "add", "path": "/gender", "value": "female"}],
                     headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["gender"] == "female" and r.json()["meta"]["versionId"] == "2"
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "male"}]}]}
    r = client.patch(f"/fhir/Patient/{pid}", json=params)
    assert r.status_code == 200 and r.json()["gender"] == "male"
    bad = [{"op": "replace", "path": "/gender", "value": "robot"}]
    r = client.patch(f"/fhir/Patient/{pid}", json=bad, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422
    r = client.patch(f"/fhir/Patient/{pid}", json=[{"op": "test", "path": "/gender", "value": "female"}],
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "3"


def test_synthea_bundles_load_unchanged(client):
    folder = corpus("synthea", "bundles")
    files = sorted(folder.glob("*.json"))[:3]
    for path in files:
        bundle = json.loads(path.read_text())
        r = client.post("/fhir", json=bundle, headers={"Prefer": "return=minimal"})
        assert r.status_code == 200, r.text[:2000]
        assert all(e["response"]["status"].startswith("201") for e in r.json()["entry"])
    patients = client.get("/fhir/Patient?_summary=count").json()["total"]
    assert patients == len(files)
    pid = client.get("/fhir/Patient?_count=1").json()["entry"][0]["resource"]["id"]
    everything = client.get(f"/fhir/Patient/{pid}/$everything?_count=1000").json()
    assert everything["total"] > 50


def _fin(value):
    return {**PATIENT, "identifier": [{"system": "urn:fin", "value": value}]}


def _parallel(client, bodies, threads=16):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda body: client.post("/fhir", json=body), bodies))


def test_parallel_transactions_with_if_none_exist_make_one(client):
    """50 transaction Bundles whose entry creates the same Patient if none exists, at once: exactly one Patient
    (on PostgreSQL the Bundle's search ran without the guard a lone If-None-Exist POST takes, and made three)."""
    bundle = tx([post("urn:uuid:p", _fin("PAR0002"), ifNoneExist="identifier=urn:fin|PAR0002"),
                 post("urn:uuid:o", {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                                     "subject": {"reference": "urn:uuid:p"}})])
    answers = _parallel(client, [bundle] * 50)
    assert [r.status_code for r in answers] == [200] * 50, [r.text for r in answers if r.status_code != 200][:1]
    statuses = [r.json()["entry"][0]["response"]["status"] for r in answers]
    assert statuses.count("201 Created") == 1 and statuses.count("200 OK") == 49
    assert client.get("/fhir/Patient?identifier=PAR0002&_summary=count").json()["total"] == 1
    ids = {r.json()["entry"][0]["response"]["location"].split("/")[1] for r in answers}
    assert len(ids) == 1
    # Every Observation points at the one Patient.
    assert client.get(f"/fhir/Observation?subject=Patient/{ids.pop()}&_summary=count").json()["total"] == 50


def test_parallel_conditional_updates_in_bundles_make_one(client):
    """Conditional updates (PUT Type?criteria) in transactions and in batches, 50 at once: one Patient, whose
    version counts every update."""
    put = {"resource": _fin("PAR0003"), "request": {"method": "PUT", "url": "Patient?identifier=urn:fin|PAR0003"}}
    answers = _parallel(client, [tx([put], "transaction" if i % 2 else "batch") for i in range(50)])
    assert all(r.status_code == 200 for r in answers)
    statuses = [r.json()["entry"][0]["response"]["status"] for r in answers]
    assert statuses.count("201 Created") == 1 and statuses.count("200 OK") == 49, statuses
    found = client.get("/fhir/Patient?identifier=PAR0003").json()
    assert found["total"] == 1 and found["entry"][0]["resource"]["meta"]["versionId"] == "50"


def test_parallel_bundles_with_several_conditional_entries_do_not_deadlock(client):
    """Bundles that name the same two identifiers in opposite orders take their guards in one order: none waits
    for another forever (PostgreSQL would cancel one of them with a deadlock, a 500)."""
    a = post("urn:uuid:a", _fin("PAR0004"), ifNoneExist="identifier=urn:fin|PAR0004")
    b = post("urn:uuid:b", _fin("PAR0005"), ifNoneExist="identifier=urn:fin|PAR0005")
    answers = _parallel(client, [tx([a, b] if i % 2 else [b, a]) for i in range(40)])
    assert [r.status_code for r in answers] == [200] * 40, [r.text for r in answers if r.status_code != 200][:1]
    for fin in ("PAR0004", "PAR0005"):
        assert client.get(f"/fhir/Patient?identifier={fin}&_summary=count").json()["total"] == 1


def test_parallel_conditional_creates_spelled_differently_make_one(client):
    """`identifier=urn:fin|X` and `identifier=X` find the same Patient: writers using either take one guard."""
    spellings = ["identifier=urn:fin|PAR0006", "identifier=PAR0006"]
    bodies = [tx([post("urn:uuid:p", _fin("PAR0006"), ifNoneExist=spellings[i % 2])]) for i in range(40)]
    answers = _parallel(client, bodies)
    assert [r.status_code for r in answers] == [200] * 40
    assert client.get("/fhir/Patient?identifier=PAR0006&_summary=count").json()["total"] == 1


def test_transactions_cancelled_in_a_deadlock_answer_503(client):
    """Transactions that update the same two resources in opposite orders may deadlock on PostgreSQL, which
    then cancels one: that one answers 503 with Retry-After and stores nothing, never a 500."""
    for rid in ("dl-a", "dl-b"):
        assert client.put(f"/fhir/Patient/{rid}", json={**PATIENT, "id": rid}).status_code == 201

    def put(rid, i):
        return {"resource": {**PATIENT, "id": rid, "gender": "male" if i % 4 < 2 else "female"},
                "request": {"method": "PUT", "url": f"Patient/{rid}"}}
    bodies = [tx([put("dl-a", i), put("dl-b", i)] if i % 2 else [put("dl-b", i), put("dl-a", i)])
              for i in range(12)]
    answers = _parallel(client, bodies, threads=4)
    assert {r.status_code for r in answers} <= {200, 503}, [r.text for r in answers if r.status_code != 200][:1]
    refused = [r for r in answers if r.status_code == 503]
    assert all(r.headers.get("retry-after") for r in refused)
    versions = [client.get(f"/fhir/Patient/{rid}").json()["meta"]["versionId"] for rid in ("dl-a", "dl-b")]
    assert versions == [str(1 + len(answers) - len(refused))] * 2
