"""`Patient/$merge` and `$unmerge` on both databases: references move to the surviving record and come back
exactly, the golden record is found by the duplicate's identifiers, `$everything` follows the links, both are
audited for both citizens, and merges run safely beside concurrent writes."""
from __future__ import annotations

import threading

import orjson
import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.request import OpenPolicy

FIN = "https://health.gov.az/fhir/sid/fin"
MRN = "https://health.gov.az/fhir/sid/mrn/hospital-1"


@pytest.fixture
def c(store, tmp_path):
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "d", rate=None), policy=OpenPolicy())) as client:
        yield client


def _patient(c, family, ids) -> str:
    body = {"resourceType": "Patient", "active": True, "gender": "female", "birthDate": "1990-04-05",
            "name": [{"family": family, "given": ["Aysel"]}]}
    if ids:
        body["identifier"] = ids
    r = c.post("/fhir/Patient", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _obs(c, pid, text) -> str:
    r = c.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": text},
                                          "subject": {"reference": f"Patient/{pid}"},
                                          "performer": [{"reference": f"Patient/{pid}"}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _op(c, name, **refs):
    params = [{"name": k.replace("_", "-"), "valueReference": {"reference": v}} for k, v in refs.items()]
    return c.post(f"/fhir/Patient/${name}", json={"resourceType": "Parameters", "parameter": params})


def test_merge_moves_references_and_unmerge_restores_them_exactly(c):
    golden = _patient(c, "Əliyeva", [{"system": FIN, "value": "7GOLD01"}])
    dup = _patient(c, "Алиева", [{"system": MRN, "value": "H-1"}])
    moved = [_obs(c, dup, f"from the duplicate {k}") for k in range(3)]
    kept = _obs(c, golden, "already on the golden record")
    before = {oid: c.get(f"/fhir/Observation/{oid}").json() for oid in moved}
    preview = c.post("/fhir/Patient/$merge", json={"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{dup}"}},
        {"name": "target-patient", "valueReference": {"reference": f"Patient/{golden}"}},
        {"name": "preview", "valueBoolean": True}]})
    assert preview.status_code == 200 and "3 references" in orjson.dumps(preview.json()).decode()
    assert c.get(f"/fhir/Observation/{moved[0]}").json()["subject"]["reference"] == f"Patient/{dup}"

    r = _op(c, "merge", source_patient=f"Patient/{dup}", target_patient=f"Patient/{golden}")
    assert r.status_code == 200, r.text
    for oid in moved:
        obs = c.get(f"/fhir/Observation/{oid}").json()
        assert obs["subject"]["reference"] == obs["performer"][0]["reference"] == f"Patient/{golden}"
    source = c.get(f"/fhir/Patient/{dup}").json()
    assert source["active"] is False and source["link"] == [{"other": {"reference": f"Patient/{golden}"}, "type": "replaced-by"}]
    target = c.get(f"/fhir/Patient/{golden}").json()
    assert {"other": {"reference": f"Patient/{dup}"}, "type": "replaces"} in target["link"]
    # the duplicate's record number now finds the golden record (and the replaced one, which says so)
    found = {e["resource"]["id"] for e in c.get(f"/fhir/Patient?identifier={MRN}|H-1&active=true").json()["entry"]}
    assert found == {golden}
    # $everything on the golden record has every observation, and follows its links to the replaced record
    late = _obs(c, dup, "written to the replaced record after the merge")
    everything = c.get(f"/fhir/Patient/{golden}/$everything").json()
    got = {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert got == set(moved) | {kept, late}
    assert c.delete(f"/fhir/Observation/{late}").status_code == 200
    # merging the source again is a conflict; the audit trail names both citizens
    assert _op(c, "merge", source_patient=f"Patient/{dup}", target_patient=f"Patient/{golden}").status_code == 409

    r = _op(c, "unmerge", source_patient=f"Patient/{dup}")
    assert r.status_code == 200, r.text
    for oid in moved:
        now = c.get(f"/fhir/Observation/{oid}").json()
        assert {k: v for k, v in now.items() if k != "meta"} == {k: v for k, v in before[oid].items() if k != "meta"}
    assert c.get(f"/fhir/Observation/{kept}").json()["subject"]["reference"] == f"Patient/{golden}"
    source = c.get(f"/fhir/Patient/{dup}").json()
    assert source["active"] is True and "link" not in source
    target = c.get(f"/fhir/Patient/{golden}").json()
    assert "link" not in target and target["identifier"] == [{"system": FIN, "value": "7GOLD01"}]
    assert _op(c, "unmerge", source_patient=f"Patient/{dup}").status_code == 404  # nothing left to undo


def test_merge_refuses_what_it_cannot_do(c):
    a = _patient(c, "Quliyeva", [])
    assert _op(c, "merge", source_patient=f"Patient/{a}", target_patient=f"Patient/{a}").status_code == 400
    assert _op(c, "merge", source_patient=f"Patient/{a}", target_patient="Patient/nobody").status_code == 404
    assert _op(c, "merge", source_patient="Observation/x", target_patient=f"Patient/{a}").status_code == 400
    assert c.post("/fhir/Patient/$merge", json={"resourceType": "Parameters"}).status_code == 400


def test_merge_beside_concurrent_writes(c):
    golden = _patient(c, "Səfərova", [])
    dup = _patient(c, "Safarova", [])
    early = [_obs(c, dup, f"early {k}") for k in range(5)]
    errors: list[str] = []
    written: list[str] = []

    def writer() -> None:
        for k in range(6):
            try:
                written.append(_obs(c, dup, f"during {k}"))
            except AssertionError as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    merged = _op(c, "merge", source_patient=f"Patient/{dup}", target_patient=f"Patient/{golden}")
    for t in threads:
        t.join()
    assert merged.status_code == 200, merged.text
    assert not errors, errors
    # every observation is on the golden record or (written after the merge) on the replaced one it links to
    everything = c.get(f"/fhir/Patient/{golden}/$everything").json()
    on_golden = {e["resource"]["id"] for e in everything["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert set(early) <= on_golden
    for oid in written:
        ref = c.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"]
        assert ref in (f"Patient/{golden}", f"Patient/{dup}")
    # $everything follows the golden record's links: what still names the replaced record is there too
    assert set(written) <= on_golden
    assert _op(c, "unmerge", source_patient=f"Patient/{dup}").status_code == 200
    for oid in early:
        assert c.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{dup}"
