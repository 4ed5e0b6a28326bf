"""Break-the-glass, consent and security labels, the audit trail and the access log, end to end."""
from __future__ import annotations

import base64

import pytest

from . import world as W


def _ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


def _consent(provision: dict, authors: list[str] | None = None, patient: str = "p1") -> dict:
    consent = {"resourceType": "Consent", "status": "active", "scope": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"}, "policyRule": {"text": "privacy"}, "provision": provision}
    if authors:
        consent["organization"] = [{"reference": a} for a in authors]
    return consent


def test_break_the_glass_grants_time_boxed_audited_reviewable_access(app):
    c, world, store = app
    doc = world.headers["clinician"]
    assert c.get("/fhir/Patient/p2", headers=doc).status_code == 404
    assert c.get("/fhir/Patient/p2", headers={**doc, "x-break-glass": "   "}).status_code == 400
    assert c.get("/fhir/Observation", headers={**doc, "x-break-glass": "no patient named"}).status_code == 400
    assert c.get("/fhir/Patient/p2", headers={**world.headers["insurer"], "x-break-glass": "x"}).status_code == 403
    r = c.get("/fhir/Patient/p2", headers={**doc, "x-break-glass": "unconscious in A&E"})
    assert r.status_code == 200
    # the grant lasts (no header needed), covers the record, but never the withheld labels
    assert _ids(c.get("/fhir/Observation?subject=Patient/p2", headers=doc).json()) == {"o2"}
    assert c.get("/fhir/Patient/p2/$everything", headers=doc).status_code == 200
    # another clinician does not share the grant
    other = world.mint("x", subject="dr-b", kind="person", scopes=["user/*.rs"], roles=["clinician"],
                       organization="Organization/org-a")
    assert c.get("/fhir/Patient/p2", headers=other).status_code == 404
    # the grant expires
    store_sql = store.sql("UPDATE security_break_glass SET expires = ?")
    with store.write_cursor() as cur:
        cur.execute(store_sql, (1.0,))
    assert c.get("/fhir/Patient/p2", headers=doc).status_code == 404
    # administrators review; clinicians cannot
    review = c.get("/fhir/$break-glass-review", headers=world.headers["administrator"]).json()
    grant = {p["name"]: p for p in review["parameter"][0]["part"]}
    assert grant["clinician"]["valueString"] == "dr-a" and grant["reason"]["valueString"] == "unconscious in A&E"
    assert grant["patient"]["valueReference"]["reference"] == "Patient/p2"
    assert c.get("/fhir/$break-glass-review", headers=doc).status_code == 403
    # the citizen p2 sees it in their access log, with purpose BTG and the reason
    p2 = world.mint("x", subject="bob", kind="person", scopes=["user/*.rs"], roles=["citizen"], patient="Patient/p2")
    log = c.get("/fhir/Patient/p2/$access-log", headers=p2).json()
    btg = [e["resource"] for e in log["entry"] if any(
        c_["code"] == "BTG" for p in e["resource"].get("purposeOfEvent", []) for c_ in p["coding"])]
    assert btg and btg[0]["agent"][0]["who"]["identifier"]["value"] == "dr-a"
    assert btg[0]["purposeOfEvent"][0]["text"] == "unconscious in A&E"
    assert {c_["code"] for p in btg[0]["purposeOfEvent"] for c_ in p["coding"]} == {"ETREAT", "BTG"}


@pytest.mark.parametrize("provision,authors,seen", [
    ({"type": "deny"}, [], False),  # refuse every institution
    ({"type": "deny"}, ["Organization/org-a"], True),  # ... except the author
    ({"type": "deny", "actor": [{"role": {"text": "x"}, "reference": {"reference": "Organization/org-b"}}]}, [], True),
    ({"type": "deny", "actor": [{"role": {"text": "x"}, "reference": {"reference": "Organization/org-a"}}]}, [], False),
    ({"type": "deny", "actor": [{"role": {"text": "x"}, "reference": {"display": "the hospital"}}]}, [], False),  # malformed
    ({"type": "deny", "securityLabel": [{"system": "x"}]}, [], False),  # a label without a code: malformed
    ({"type": "deny", "period": {"end": "2001-01-01"}}, [], True),  # expired
])
def test_consent_refusals(app, provision, authors, seen):
    c, world, _ = app
    doc = world.headers["clinician"]
    assert c.post("/fhir/Consent", json=_consent(provision, authors), headers=world.headers["citizen"]).status_code == 201
    got = c.get("/fhir/Patient/p1", headers=doc)
    assert got.status_code == (200 if seen else 404)
    assert (_ids(c.get("/fhir/Observation", headers=doc).json()) == {"o1"}) == seen
    # the citizen still sees their own record; break-the-glass overrides the refusal (and is audited)
    assert c.get("/fhir/Patient/p1", headers=world.headers["citizen"]).status_code == 200
    if not seen:
        assert c.get("/fhir/Patient/p1", headers={**doc, "x-break-glass": "emergency"}).status_code == 200


def test_category_consent_and_labels(app):
    c, world, _ = app
    doc = world.headers["clinician"]
    assert _ids(c.get("/fhir/Observation", headers=doc).json()) == {"o1"}
    psy_doc = world.mint("x", subject="dr-psy", kind="person", scopes=["user/*.rs"],
                         roles=["clinician", "label:PSY"], organization="Organization/org-a")
    assert _ids(c.get("/fhir/Observation", headers=psy_doc).json()) == {"o1", "o1psy"}
    deny_psy = _consent({"type": "deny", "securityLabel": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]})
    assert c.post("/fhir/Consent", json=deny_psy, headers=world.headers["citizen"]).status_code == 201
    assert _ids(c.get("/fhir/Observation", headers=psy_doc).json()) == {"o1"}
    assert c.get("/fhir/Observation/o1psy", headers=psy_doc).status_code == 404
    assert c.get("/fhir/Observation/o1", headers=psy_doc).status_code == 200


def test_every_request_is_audited_and_the_access_log_is_private(app):
    c, world, store = app
    from healthtwin.security.audit import AuditLog
    log = AuditLog(store)
    before = log.head()[0]
    c.get("/fhir/Observation/o1", headers=world.headers["clinician"])
    c.get("/fhir/Observation/o2", headers=world.headers["clinician"])  # refused (404): audited too
    c.get("/fhir/Patient/p1")  # anonymous 401: audited
    c.get("/fhir/Patient/p1", headers={"authorization": "Bearer forged.token.here"})
    after = log.head()[0]
    assert after - before >= 4
    events = log.access_log("Patient/p1")
    outcomes = {(e["agent"][0]["who"]["identifier"]["value"], e["outcome"]) for e in events}
    assert ("dr-a", "0") in outcomes and ("anonymous", "4") in outcomes
    read = [e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0"
            and e["agent"][0]["who"]["identifier"]["value"] == "dr-a"]
    assert read and read[0]["entity"][1]["what"]["reference"] == "Observation/o1"
    # search events keep the query
    c.get("/fhir/Observation?code=4548-4", headers=world.headers["clinician"])
    last = log.access_log("Patient/p1")[-1]
    assert base64.b64decode(last["entity"][-1]["query"]).decode() == "code=4548-4"
    # who may read the log
    assert c.get("/fhir/Patient/p1/$access-log", headers=world.headers["citizen"]).status_code == 200
    assert c.get("/fhir/Patient/kid/$access-log", headers=world.headers["citizen"]).status_code == 200  # a ward
    assert c.get("/fhir/Patient/p2/$access-log", headers=world.headers["citizen"]).status_code == 403
    assert c.get("/fhir/Patient/zz/$access-log", headers=world.headers["citizen"]).status_code == 403
    assert c.get("/fhir/Patient/p1/$access-log", headers=world.headers["clinician"]).status_code == 403
    assert c.get("/fhir/Patient/p1/$access-log", headers=world.headers["auditor"]).status_code == 200
    assert c.get("/fhir/Patient/p1/$access-log").status_code == 401
    assert log.verify().ok


def test_audit_failure_withholds_the_response(app, monkeypatch):
    c, world, _ = app
    from healthtwin.security.audit import AuditError, AuditLog

    def broken(self, events):
        raise AuditError("disk full")
    monkeypatch.setattr(AuditLog, "append", broken)
    r = c.get("/fhir/Observation/o1", headers=world.headers["clinician"])
    assert r.status_code == 500 and "Aliyeva" not in r.text and "4548-4" not in r.text


def test_rate_limit_per_client(store, tmp_path):
    client, world = W.build(store, tmp_path, rate=(0.5, 3))
    with client as c:
        h = world.headers["citizen"]
        codes = [c.get("/fhir/metadata", headers=h).status_code for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[-1] == 429
        r = c.get("/fhir/metadata", headers=h)
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/fhir/metadata", headers=world.headers["clinician"]).status_code == 200  # another client
