"""The patient index under the real (SMART) policy: `$match` offers only the Patients the caller may see, and a
merge is in the audit trail of both citizens, as their access log reads it."""
from __future__ import annotations

from healthtwin.security.access_log import what_in_words
from healthtwin.security.audit import AuditLog

from ..security import world as W
from ..security.conftest import app  # noqa: F401 - the role-play world's fixture


def _match(c, headers, resource):
    return c.post("/fhir/Patient/$match", headers=headers,
                  json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]})


def _ids(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def test_match_offers_only_what_the_caller_may_see(app):  # noqa: F811
    c, world, _ = app
    probe = {"resourceType": "Patient", "name": [{"family": "Мамедов"}], "gender": "male", "birthDate": "1980-05-05"}
    assert "p2" in _ids(_match(c, world.headers["administrator"], probe))
    assert "p2" not in _ids(_match(c, world.headers["clinician"], probe))  # org-a's clinician does not treat p2
    assert _ids(_match(c, world.headers["citizen"], probe)) <= {"p1", "kid"}
    assert _match(c, {}, probe).status_code == 401


def test_a_merge_is_in_both_citizens_access_logs(app):  # noqa: F811
    c, world, store = app
    admin = world.headers["administrator"]
    dup = c.post("/fhir/Patient", headers=admin, json={"resourceType": "Patient", "gender": "female",
                                                        "birthDate": "1990-01-01", "name": [{"family": "Алиева", "given": ["Айсель"]}]})
    assert dup.status_code == 201, dup.text
    dup_id = dup.json()["id"]
    r = c.post("/fhir/Patient/$merge", headers=admin, json={"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{dup_id}"}},
        {"name": "target-patient", "valueReference": {"reference": "Patient/p1"}}]})
    assert r.status_code == 200, r.text
    log = AuditLog(store)
    for patient in ("Patient/p1", f"Patient/{dup_id}"):
        words = [what_in_words(e) for e in log.access_log(patient)]
        assert "merged two records of yours into one" in words, (patient, words)
    # and the citizen reads it in her own access log
    mine = c.get("/fhir/Patient/p1/$access-log", headers=world.headers["citizen"])
    assert mine.status_code == 200 and "merged two records of yours into one" in mine.text
