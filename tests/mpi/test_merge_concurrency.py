"""A merge and its unmerge while other clients keep writing (threads against the real application, both
databases): once undone, every reference is exactly as its writer wrote it, whether it was written before the
merge (moved, then moved back), while it ran, between the two, or during the unmerge."""
from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.request import OpenPolicy

FIN = "https://health.gov.az/fhir/sid/fin"


@pytest.fixture
def c(store, tmp_path):
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "d", rate=None), policy=OpenPolicy())) as client:
        yield client


def _patient(c, family: str, fin: str | None = None) -> str:
    body = {"resourceType": "Patient", "active": True, "gender": "male", "birthDate": "1975-09-30",
            "name": [{"family": family, "given": ["Tural"]}]}
    if fin:
        body["identifier"] = [{"system": FIN, "value": fin}]
    r = c.post("/fhir/Patient", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _obs(c, subject: str, performer: str, text: str) -> str:
    r = c.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": text},
        "subject": {"reference": f"Patient/{subject}"}, "performer": [{"reference": f"Patient/{performer}"}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _op(c, name: str, **refs) -> dict:
    params = [{"name": k.replace("_", "-"), "valueReference": {"reference": v}} for k, v in refs.items()]
    r = c.post(f"/fhir/Patient/${name}", json={"resourceType": "Parameters", "parameter": params})
    assert r.status_code == 200, r.text
    return r.json()


def _refs(c, oid: str) -> tuple[str, str]:
    doc = c.get(f"/fhir/Observation/{oid}").json()
    return doc["subject"]["reference"], doc["performer"][0]["reference"]


def _body(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "meta"}


def test_unmerge_restores_every_reference_exactly_beside_concurrent_writers(c):
    golden = _patient(c, "Hüseynov", "5HUSEY1")
    dup = _patient(c, "Гусейнов")
    other = _patient(c, "Quliyev")
    # before the merge: on the duplicate alone, on both (one element each), on the golden record alone
    before = [_obs(c, dup, dup, f"dup {k}") for k in range(6)] + [_obs(c, dup, golden, f"mixed {k}") for k in range(3)]
    before += [_obs(c, golden, golden, f"golden {k}") for k in range(3)]
    contents = {oid: _body(c.get(f"/fhir/Observation/{oid}").json()) for oid in before}
    unrelated = _obs(c, other, other, "rewritten by a writer")

    written: dict[str, tuple[str, str]] = {}  # what each writer wrote: id → (subject, performer) it sent
    errors: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    counts = [0]

    def writer(n: int) -> None:
        k = 0
        while not stop.is_set():
            k += 1
            subject, performer = [(dup, dup), (dup, golden), (golden, dup), (golden, golden)][k % 4]
            try:
                oid = _obs(c, subject, performer, f"writer {n}.{k}")
                doc = c.get(f"/fhir/Observation/{unrelated}").json()
                doc["note"] = [{"text": f"writer {n}.{k}"}]
                r = c.put(f"/fhir/Observation/{unrelated}", json=doc)
                assert r.status_code in (200, 409, 412), r.text
            except AssertionError as exc:
                errors.append(str(exc))
                return
            with lock:
                written[oid] = (f"Patient/{subject}", f"Patient/{performer}")
                counts[0] += 1

    def wait_for(more: int) -> None:
        start = counts[0]
        while counts[0] < start + more and not errors:
            threading.Event().wait(0.01)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(4)
        merged = _op(c, "merge", source_patient=f"Patient/{dup}", target_patient=f"Patient/{golden}")
        assert "references moved" in str(merged)
        # the merge did move what referred to the duplicate before it
        assert all(_refs(c, oid)[0] == f"Patient/{golden}" for oid in before)
        wait_for(4)
        undone = _op(c, "unmerge", source_patient=f"Patient/{dup}")
        wait_for(4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert "left as they are" not in str(undone), undone  # nothing moved was changed since by anyone
    for oid, content in contents.items():
        assert _body(c.get(f"/fhir/Observation/{oid}").json()) == content, oid
    assert len(written) >= 12
    for oid, sent in written.items():  # written before, during, between or after: as it was sent
        assert _refs(c, oid) == sent, oid
    source = c.get(f"/fhir/Patient/{dup}").json()
    assert source["active"] is True and "link" not in source
    target = c.get(f"/fhir/Patient/{golden}").json()
    assert "link" not in target and target["identifier"] == [{"system": FIN, "value": "5HUSEY1"}]
