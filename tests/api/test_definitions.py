"""Definitions created at run time change behaviour: SearchParameters (with reindexing) and profiles."""
from __future__ import annotations

import time

MMN = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
SP = {"resourceType": "SearchParameter", "url": "https://health.gov.az/fhir/SearchParameter/mothers-maiden-name",
      "name": "mothers-maiden-name", "status": "active", "description": "Mother's maiden name",
      "code": "mothers-maiden-name", "base": ["Patient"], "type": "string",
      "expression": f"Patient.extension('{MMN}').value"}


def _wait_for_jobs(client, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = client.get("/fhir/$reindex").json()["parameter"]
        states = [next(p["valueCode"] for p in j["part"] if p["name"] == "status") for j in jobs]
        if states and all(s == "done" for s in states):
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"reindex did not finish: {jobs}")


def test_runtime_search_parameter_reindexes_existing(client):
    older = client.post("/fhir/Patient", json={"resourceType": "Patient",
                                               "extension": [{"url": MMN, "valueString": "Qasımova"}]}).json()
    assert client.post("/fhir/SearchParameter", json=SP).status_code == 201
    jobs = _wait_for_jobs(client)
    done = next(p["valueInteger"] for p in jobs[-1]["part"] if p["name"] == "done")
    assert done >= 1
    newer = client.post("/fhir/Patient", json={"resourceType": "Patient",
                                               "extension": [{"url": MMN, "valueString": "Qasımlı"}]}).json()
    found = client.get("/fhir/Patient?mothers-maiden-name=qasım").json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted([older["id"], newer["id"]])
    exact = client.get("/fhir/Patient?mothers-maiden-name:exact=Qasımlı").json()
    assert [e["resource"]["id"] for e in exact["entry"]] == [newer["id"]]
    names = {p["name"] for r in client.get("/fhir/metadata").json()["rest"][0]["resource"] if r["type"] == "Patient"
             for p in r["searchParam"]}
    assert "mothers-maiden-name" in names


def test_uncompilable_search_parameter_is_refused(client):
    bad = dict(SP, url="https://x/sp/bad", code="bad", expression="Patient.nonsense((")
    r = client.post("/fhir/SearchParameter", json=bad)
    assert r.status_code in (400, 422) and r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/SearchParameter?_summary=count").json()["total"] == 0


def test_reindex_operation_reports_progress(client):
    for _ in range(3):
        client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "Poliklinika"})
    r = client.post("/fhir/Organization/$reindex")
    assert r.status_code == 202
    jobs = _wait_for_jobs(client)
    job = {p["name"]: p.get("valueInteger", p.get("valueCode")) for p in jobs[-1]["part"]}
    assert job["total"] == 3 and job["done"] == 3
    assert client.get("/fhir/Organization?name=poliklinika&_summary=count").json()["total"] == 3


def test_hostile_search_parameter_cannot_inject_code(client, tmp_path):
    marker = tmp_path / "pwned"
    for expression in (
            f"Patient.extension('x\\'); __import__(\\'os\\').system(\\'touch {marker}\\'); (\\'').value",
            f"Patient.extension('x\"); __import__(\"os\").system(\"touch {marker}\"); (\"').value",
            f"Patient.name.where(family = '\\'; open(\\'{marker}\\', \\'w\\'); \\'')"):
        sp = dict(SP, url=f"https://x/sp/{abs(hash(expression))}", code=f"c{abs(hash(expression)) % 10**6}",
                  expression=expression)
        r = client.post("/fhir/SearchParameter", json=sp)
        assert r.status_code in (201, 400, 422)
        client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "x"}],
                                           "extension": [{"url": "x", "valueString": "y"}]})
    assert not marker.exists()


def test_profiles_uploaded_are_enforced_and_validate_reports(client):
    import copy
    import uuid

    from tests.fhir.test_profiles import ACCEPTED, NATIONAL_PATIENT
    url = f"https://health.gov.az/fhir/StructureDefinition/patient-{uuid.uuid4().hex[:8]}"
    profile = copy.deepcopy(NATIONAL_PATIENT)
    profile["url"] = url
    profile.pop("id", None)
    assert client.post("/fhir/StructureDefinition", json=profile).status_code == 201
    good = copy.deepcopy(ACCEPTED)
    good["meta"] = {"profile": [url]}
    good.pop("id")
    gp = {"resourceType": "Practitioner", "id": "gp1"}  # the general practitioner it names must exist
    assert client.put("/fhir/Practitioner/gp1", json=gp).status_code == 201
    assert client.post("/fhir/Patient", json=good).status_code == 201
    bad = copy.deepcopy(good)
    del bad["birthDate"]
    r = client.post("/fhir/Patient", json=bad)
    assert r.status_code == 422
    assert any("Patient.birthDate" in (i.get("expression") or [""])[0] for i in r.json()["issue"])
    # $validate reports without storing, for the profile asked for even when the resource does not claim it
    unclaimed = copy.deepcopy(bad)
    unclaimed.pop("meta")
    before = client.get("/fhir/Patient?_summary=count").json()["total"]
    r = client.post(f"/fhir/Patient/$validate?profile={url}", json=unclaimed)
    assert r.status_code == 200 and any(i["severity"] == "error" for i in r.json()["issue"])
    r = client.post("/fhir/Patient/$validate", json=unclaimed)
    assert r.status_code == 200 and not any(i["severity"] == "error" for i in r.json()["issue"])
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == before
    assert client.post("/fhir/Patient/$validate?profile=https://unknown/p", json=unclaimed).status_code == 400
    broken = dict(profile, url=url + "-broken", differential={"element": [{"path": "Nonsense.x"}]})
    r = client.post("/fhir/StructureDefinition", json=broken)
    assert r.status_code in (400, 422) and r.json()["resourceType"] == "OperationOutcome"


def test_definitions_reach_other_server_processes(store, tmp_path):
    """Two applications on one database stand for two worker processes: a SearchParameter created through
    one becomes searchable through the other, and deleting it withdraws it there too."""
    from starlette.testclient import TestClient

    from healthtwin.composition import create_app
    from healthtwin.request import OpenPolicy
    from healthtwin.api.services import Services
    from healthtwin.fhir.search_params import SearchRegistry
    from healthtwin.fhir.validation import Validator

    def app(name, own_store):  # each "process" has its own store connection and registry
        services = Services(own_store, SearchRegistry.load(), Validator.default(), OpenPolicy(),
                            data_dir=tmp_path / name)
        own_store.set_extractor(lambda r: services.registry.index_extractor(r["resourceType"])(r))
        from healthtwin.api.jobs import Jobs
        services.jobs = Jobs(services)
        return create_app(own_store, services=services, data_dir=tmp_path / name, rate=None, audit=False)

    second = type(store)(store.path) if store.dialect == "sqlite" else type(store)(store.dsn, min_size=1)
    second.protect(store.at_rest)  # every process of one deployment holds the same keys

    sp = dict(SP, url="https://health.gov.az/fhir/SearchParameter/mmn-2", code="mmn2")
    with TestClient(app("a", store)) as a, TestClient(app("b", second)) as b:
        assert b.get("/fhir/Patient?mmn2=x", headers={"Prefer": "handling=strict"}).status_code == 400
        assert a.post("/fhir/SearchParameter", json=sp).status_code == 201
        a.post("/fhir/Patient", json={"resourceType": "Patient", "extension": [{"url": MMN, "valueString": "Əsədova"}]})
        deadline = time.time() + 20
        while time.time() < deadline:
            r = b.get("/fhir/Patient?mmn2=əsəd", headers={"Prefer": "handling=strict"})
            if r.status_code == 200 and r.json().get("total") == 1:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and r.json()["total"] == 1, r.text
        sp_id = a.get("/fhir/SearchParameter?url=https://health.gov.az/fhir/SearchParameter/mmn-2").json()[
            "entry"][0]["resource"]["id"]
        assert a.delete(f"/fhir/SearchParameter/{sp_id}").status_code in (200, 204)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = b.get("/fhir/Patient?mmn2=x", headers={"Prefer": "handling=strict"})
            if r.status_code == 400:
                break
            time.sleep(0.2)
        assert r.status_code == 400
    second.close()
