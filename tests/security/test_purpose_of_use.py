"""X-Purpose-Of-Use: a caller states why it accesses a record; only its role's purposes are accepted, and the
citizen sees the stated purpose in their access log (SQLite and PostgreSQL)."""
from __future__ import annotations


def purposes_seen(c, world, patient="p1"):
    log = c.get(f"/fhir/Patient/{patient}/$access-log", headers=world.headers["citizen"]).json()
    return [[coding["code"] for p in e["resource"].get("purposeOfEvent", []) for coding in p["coding"]]
            for e in log["entry"]]


def test_a_declared_purpose_is_checked_and_recorded(app):
    c, world, _ = app
    me = world.headers["citizen"]
    assert c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "PATRQT"}).status_code == 200
    assert ["PATRQT"] in purposes_seen(c, world)
    # a citizen cannot claim to be doing research, nor an analyst to be treating
    refused = c.get("/fhir/Patient/p1", headers={**me, "X-Purpose-Of-Use": "HRESCH"})
    assert refused.status_code == 403 and "HRESCH" in refused.text and "PATRQT" in refused.text
    analyst = c.get("/fhir/Observation", headers={**world.headers["analyst"], "X-Purpose-Of-Use": "TREAT"})
    assert analyst.status_code == 403
    insurer = c.get("/fhir/Coverage", headers={**world.headers["insurer"], "X-Purpose-Of-Use": "HPAYMT"})
    assert insurer.status_code == 200
    # emergency treatment comes only with break-the-glass, never by saying so
    doc = {**world.headers["clinician"], "X-Purpose-Of-Use": "ETREAT"}
    assert c.get("/fhir/Patient/p1", headers=doc).status_code == 403


def test_a_malformed_purpose_is_a_clear_400(app):
    c, world, _ = app
    for bad in ("treat", "TREAT,HPAYMT", "", "X" * 20):
        r = c.get("/fhir/Patient/p1", headers={**world.headers["citizen"], "X-Purpose-Of-Use": bad})
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", bad


def test_refusals_for_a_purpose_are_audited(app):
    c, world, store = app
    from healthtwin.security.audit import decode_event
    before = store.query("SELECT count(*) FROM audit_log", [])[0][0]
    assert c.get("/fhir/Patient/p1", headers={**world.headers["citizen"],
                                             "X-Purpose-Of-Use": "HRESCH"}).status_code == 403
    rows = store.query("SELECT event FROM audit_log WHERE seq > ? ORDER BY seq", [before])
    events = [decode_event(bytes(r[0])) for r in rows]
    assert events and events[-1]["outcome"] == "4"
