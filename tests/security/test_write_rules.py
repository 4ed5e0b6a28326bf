"""Who may change what: a caller changes or deletes only what it may read (a hidden row answers exactly like an
absent one, and stays as it was), and a privacy Consent is written only by the citizen, their representative or an
administrator (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from . import world as W

CONSENT = {"resourceType": "Consent", "status": "active", "scope": {"coding": [
    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
    "patient": {"reference": "Patient/p1"}, "policyRule": {"text": "no sharing"},
    "provision": {"type": "deny", "actor": [{"role": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
        "reference": {"reference": "Organization/org-b"}}]}}  # refuses org-b: org-a still treats her
TREATMENT = {**CONSENT, "scope": {"coding": [
    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
    "provision": {"type": "permit"}}


def _integration(world) -> dict[str, str]:
    """A backend with every system scope and no role: rows by scope, sensitive labels withheld."""
    return world.mint("x", subject="etl", kind="system", scopes=["system/*.cruds"], client_id="etl")


def _norm(resp, rid: str, absent: str) -> tuple:
    headers = {k: v for k, v in resp.headers.items() if k not in ("date", "content-length")}
    return resp.status_code, headers, resp.text.replace(absent, "<id>").replace(rid, "<id>")


def _admin_view(c, world, path: str) -> dict:
    r = c.get(f"/fhir/{path}", headers=world.headers["administrator"])
    assert r.status_code == 200, r.text
    return r.json()


def test_a_backend_cannot_overwrite_or_delete_what_it_cannot_read(app):
    c, world, _ = app
    h = _integration(world)
    assert c.get("/fhir/Observation/o1psy", headers=h).status_code == 404
    assert c.get("/fhir/Observation/o1", headers=h).status_code == 200
    hidden, absent = W._obs("o1psy", "p1"), W._obs("zz-o1psy", "p1")
    put = c.put("/fhir/Observation/o1psy", json=hidden, headers=h)
    ref = c.put("/fhir/Observation/zz-o1psy", json=absent, headers=h)
    assert _norm(put, "o1psy", "zz-o1psy") == _norm(ref, "o1psy", "zz-o1psy"), (put.text, ref.text)
    assert put.status_code == 403
    gone = c.delete("/fhir/Observation/o1psy", headers=h)
    ref = c.delete("/fhir/Observation/zz-o1psy", headers=h)
    assert _norm(gone, "o1psy", "zz-o1psy") == _norm(ref, "o1psy", "zz-o1psy"), (gone.text, ref.text)
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    ph = {**h, "content-type": "application/json-patch+json"}
    a, b = c.patch("/fhir/Observation/o1psy", json=patch, headers=ph), c.patch("/fhir/Observation/zz", json=patch, headers=ph)
    assert _norm(a, "o1psy", "zz") == _norm(b, "o1psy", "zz")
    # inside a Bundle, an entry on the hidden row answers like one on an absent row
    entries = lambda rid: [{"resource": W._obs(rid, "p1"), "request": {"method": "PUT", "url": f"Observation/{rid}"}},  # noqa: E731
                           {"request": {"method": "DELETE", "url": f"Observation/{rid}"}}]
    for rid in ("o1psy", "zz-o1psy"):
        got = c.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries(rid)}, headers=h)
        statuses = [e["response"]["status"] for e in got.json()["entry"]]
        if rid == "o1psy":
            hidden_statuses = statuses
    assert hidden_statuses == statuses
    # the labelled row is untouched: still version 1, still labelled
    row = _admin_view(c, world, "Observation/o1psy")
    assert row["meta"]["versionId"] == "1" and row["meta"]["security"][0]["code"] == "PSY"
    # what it can read, it may change and delete (its scopes say so)
    visible = W._obs("o1", "p1", based_on="ServiceRequest/sr1")
    assert c.put("/fhir/Observation/o1", json=visible, headers=h).status_code == 200
    assert c.delete("/fhir/Observation/o1", headers=h).status_code == 200


def test_update_as_create_is_for_callers_from_whom_no_row_of_the_type_is_hidden(app):
    c, world, _ = app
    h = _integration(world)
    # no Patient is hidden from it, so a PUT on a new id creates one ...
    new = {"resourceType": "Patient", "id": "p-new", "name": [{"family": "New"}]}
    assert c.put("/fhir/Patient/p-new", json=new, headers=h).status_code == 201
    # ... whereas Observations can be hidden (labels): a new id might be a hidden one, so both are refused
    assert c.put("/fhir/Observation/o-new", json=W._obs("o-new", "p1"), headers=h).status_code == 403
    assert c.put("/fhir/Observation/o-new", json=W._obs("o-new", "p1"),
                 headers=world.headers["administrator"]).status_code == 201


def _consent(c, world) -> str:
    """The citizen records her refusal; its id."""
    r = c.post("/fhir/Consent", json={k: v for k, v in CONSENT.items() if k != "id"}, headers=world.headers["citizen"])
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("writer", ["clinician", "integration"])
def test_only_the_citizen_or_an_administrator_changes_a_privacy_consent(app, writer):
    c, world, _ = app
    cid = _consent(c, world)
    h = _integration(world) if writer == "integration" else world.headers[writer]
    assert c.get(f"/fhir/Consent/{cid}", headers=h).status_code == 200  # it may read it ...
    lifted = {**CONSENT, "id": cid, "status": "inactive"}
    assert c.put(f"/fhir/Consent/{cid}", json=lifted, headers=h).status_code == 403  # ... not lift it
    rescoped = {**CONSENT, "id": cid, "scope": TREATMENT["scope"]}
    assert c.put(f"/fhir/Consent/{cid}", json=rescoped, headers=h).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "inactive"}]
    assert c.patch(f"/fhir/Consent/{cid}", json=patch,
                   headers={**h, "content-type": "application/json-patch+json"}).status_code == 403
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": lifted, "request": {"method": "PUT", "url": f"Consent/{cid}"}}]}
    assert c.post("/fhir", json=tx, headers=h).status_code == 403
    assert c.delete(f"/fhir/Consent/{cid}", headers=h).status_code == 403
    assert c.post("/fhir/Consent", json=CONSENT, headers=h).status_code == 403
    assert _admin_view(c, world, f"Consent/{cid}")["status"] == "active"
    assert _admin_view(c, world, f"Consent/{cid}")["meta"]["versionId"] == "1"
    # a Consent that restricts nothing (treatment) is theirs to record
    assert c.post("/fhir/Consent", json=TREATMENT, headers=h).status_code == 201


def test_the_citizen_and_the_administrator_withdraw_a_privacy_consent(app):
    c, world, _ = app
    cid = _consent(c, world)
    lifted = {**CONSENT, "id": cid, "status": "inactive"}
    assert c.put(f"/fhir/Consent/{cid}", json=lifted, headers=world.headers["citizen"]).status_code == 200
    assert c.put(f"/fhir/Consent/{cid}", json={**CONSENT, "id": cid}, headers=world.headers["administrator"]).status_code == 200
    # the mother (a RelatedPerson her child's record names) writes her child's Consent
    kid = {**CONSENT, "patient": {"reference": "Patient/kid"}}
    assert c.post("/fhir/Consent", json=kid, headers=world.headers["citizen"]).status_code == 201
    assert c.delete(f"/fhir/Consent/{cid}", headers=world.headers["administrator"]).status_code == 200


def test_only_an_administrator_records_who_represents_a_patient(app):
    """A representative sees the whole record and speaks for the citizen on consent: a clinician or a backend
    cannot make someone one (a guardian RelatedPerson, or a Patient.link to a RelatedPerson)."""
    c, world, _ = app
    mother = {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/p1"},
              "identifier": [{"system": W.FIN, "value": "BBB2222"}],
              "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                            "code": "GUARD"}]}]}
    kin = {**mother, "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                                   "code": "FRND"}]}]}
    for h in (world.headers["clinician"], _integration(world)):
        assert c.post("/fhir/RelatedPerson", json=mother, headers=h).status_code == 403
        friend = c.post("/fhir/RelatedPerson", json=kin, headers=h)  # represents no one: theirs to record
        assert friend.status_code == 201, friend.text
        p1 = _admin_view(c, world, "Patient/p1")
        linked = {**p1, "link": [{"other": {"reference": f"RelatedPerson/{friend.json()['id']}"}, "type": "seealso"}]}
        assert c.put("/fhir/Patient/p1", json=linked, headers=h).status_code == 403
        assert c.put("/fhir/Patient/p1", json={**p1, "gender": "female"}, headers=h).status_code == 200
    h = _integration(world)
    rp = _admin_view(c, world, "RelatedPerson/rp-kid")  # the mother the child's record names
    assert c.put("/fhir/RelatedPerson/rp-kid", json={**rp, "identifier": [{"system": W.FIN, "value": "BBB2222"}]},
                 headers=h).status_code == 403
    assert c.delete("/fhir/RelatedPerson/rp-kid", headers=h).status_code == 403
    assert c.post("/fhir/RelatedPerson", json=mother, headers=world.headers["administrator"]).status_code == 201
