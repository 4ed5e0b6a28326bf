"""Every role × every read-side interaction × own and other patients, through the real app (both databases).

For each role the ground truth is world.VISIBLE. The assertions are an attacker's:
* nothing outside the visible set ever appears in any answer (matches, includes, $everything, batch entries,
  history), and no count (`_total`, `_summary=count`) includes a hidden row;
* a hidden resource answers exactly like an absent one (status, headers, body once ids are normalised).
"""
from __future__ import annotations

import pytest

from . import world as W

ROLES = list(W.ROLE_TOKENS)
HIDDEN_ONLY = {"administrator"}


def _norm(resp, rid: str, absent: str) -> tuple:
    headers = {k: v for k, v in resp.headers.items() if k not in ("date", "content-length")}
    return resp.status_code, headers, resp.text.replace(absent, "<id>").replace(rid, "<id>")


def _ids(bundle: dict) -> set[str]:
    out = set()
    for e in bundle.get("entry", []):
        res = e.get("resource") or {}
        if res.get("resourceType") not in (None, "OperationOutcome", "Bundle"):
            out.add(res["id"])
        if res.get("resourceType") == "Bundle":  # batch-response entries
            out |= _ids(res)
    return out


def _leaks(role: str, ids: set[str]) -> set[str]:
    return (ids & W.PATIENT_LEVEL) - W.VISIBLE[role]


@pytest.mark.parametrize("role", ROLES)
def test_read_vread_history_hidden_equals_absent(app, role):
    c, world, _ = app
    h = world.headers[role]
    for rid in sorted(W.PATIENT_LEVEL):
        rtype = W.TYPES[rid]
        absent = "zz" + rid
        for tail in ("", "/_history/1", "/_history"):
            got = c.get(f"/fhir/{rtype}/{rid}{tail}", headers=h)
            if rid in W.VISIBLE[role]:
                assert got.status_code == 200, (role, rid, tail, got.text)
                assert not _leaks(role, _ids(got.json()) if tail == "/_history" else {got.json()["id"]})
                continue
            ref = c.get(f"/fhir/{rtype}/{absent}{tail}", headers=h)
            assert got.status_code in (403, 404), (role, rid, tail, got.status_code)
            assert _norm(got, rid, absent) == _norm(ref, rid, absent), (role, rid, tail)
        # PATCH and update of a hidden resource answer like an absent one too
        patch = [{"op": "replace", "path": "/status", "value": "final"}]
        if rid not in W.VISIBLE[role] and rtype == "Observation":
            got = c.patch(f"/fhir/{rtype}/{rid}", json=patch, headers={**h, "content-type": "application/json-patch+json"})
            ref = c.patch(f"/fhir/{rtype}/{absent}", json=patch, headers={**h, "content-type": "application/json-patch+json"})
            assert _norm(got, rid, absent) == _norm(ref, rid, absent), (role, rid, "patch")


@pytest.mark.parametrize("role", ROLES)
def test_searches_never_match_or_count_hidden_rows(app, role):
    c, world, _ = app
    h = world.headers[role]
    queries = {
        "Observation": ["", "?_include=*&_revinclude=*", "?_include=Observation:subject",
                        "?_include=Observation:based-on", "?subject:Patient.name=Mammadov",
                        "?subject:Patient.identifier=" + W.FIN + "|BBB2222", "?code=4548-4&_total=accurate",
                        "?_security=PSY", "?_security=V", "?based-on:ServiceRequest.performer=Organization/org-lab2"],
        "Patient": ["", "?_revinclude=Observation:subject", "?_has:Observation:subject:code=4548-4",
                    "?_has:Observation:subject:_security=PSY", "?identifier=" + W.FIN + "|BBB2222",
                    "?_revinclude=Coverage:beneficiary", "?_total=accurate"],
        "Encounter": ["", "?patient=Patient/p2", "?_include=Encounter:subject&_total=accurate"],
        "ServiceRequest": ["", "?_revinclude=Observation:based-on"],
        "Coverage": ["", "?_include=Coverage:beneficiary"],
        "MedicationRequest": ["?identifier=" + W.RX + "|RX2", "?identifier=" + W.RX + "|RX1&_include=MedicationRequest:subject"],
        "RelatedPerson": [""],
    }
    for rtype, qs in queries.items():
        for q in qs:
            got = c.get(f"/fhir/{rtype}{q}", headers=h)
            assert got.status_code in (200, 403), (role, rtype, q, got.text)
            if got.status_code == 403:
                continue
            bundle = got.json()
            ids = _ids(bundle)
            if role == "pharmacy" and rtype == "MedicationRequest":
                ids -= {"mr1", "mr2"}  # by design: a prescription presented by its identifier
            assert not _leaks(role, ids), (role, rtype, q, ids)
            matches = {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}
            if "total" in bundle:
                assert bundle["total"] == len(matches), (role, rtype, q)
            count = c.get(f"/fhir/{rtype}{q}{'&' if q else '?'}_summary=count", headers=h)
            if count.status_code == 200:
                assert count.json()["total"] == len(matches), (role, rtype, q)
    # compartment searches of the other patient come back empty (as for a patient that does not exist)
    for pid in ("p2", "kid"):
        got = c.get(f"/fhir/Patient/{pid}/Observation?_total=accurate", headers=h)
        if got.status_code == 200:
            assert not _leaks(role, _ids(got.json())) and got.json()["total"] == len(_ids(got.json()))


@pytest.mark.parametrize("role", ROLES)
def test_everything_batch_and_transaction_entries(app, role):
    c, world, _ = app
    h = world.headers[role]
    for pid in ("p1", "p2", "kid"):
        got = c.get(f"/fhir/Patient/{pid}/$everything", headers=h)
        if pid in W.VISIBLE[role]:
            assert got.status_code == 200
            bundle = got.json()
            assert not _leaks(role, _ids(bundle)) and bundle["total"] == len(bundle.get("entry", []))
        else:
            ref = c.get(f"/fhir/Patient/zz{pid}/$everything", headers=h)
            assert _norm(got, pid, "zz" + pid) == _norm(ref, pid, "zz" + pid), (role, pid)
    entries = [{"request": {"method": "GET", "url": f"{W.TYPES[r]}/{r}"}} for r in sorted(W.PATIENT_LEVEL)]
    entries += [{"request": {"method": "GET", "url": "Observation?_include=Observation:subject"}},
                {"request": {"method": "GET", "url": "Patient/zzabsent"}}]
    for btype in ("batch", "transaction"):
        got = c.post("/fhir", json={"resourceType": "Bundle", "type": btype, "entry": entries}, headers=h)
        if got.status_code != 200:
            assert got.status_code in (403, 404) and btype == "transaction"  # all-or-nothing: one refusal fails it
            continue
        body = got.json()
        assert not _leaks(role, _ids(body)), (role, btype)
        absent = body["entry"][-1]["response"]["status"]
        for rid, entry in zip(sorted(W.PATIENT_LEVEL), body["entry"]):
            if rid not in W.VISIBLE[role]:
                assert entry["response"]["status"] == absent or entry["response"]["status"].startswith("403")


def test_insurer_sees_a_masked_patient_and_cannot_search_masked_fields(app):
    c, world, _ = app
    h = world.headers["insurer"]
    p = c.get("/fhir/Patient/p1", headers=h).json()
    assert "telecom" not in p and "address" not in p and p["name"][0]["family"] == "Aliyeva"
    assert any(s["code"] == "MASKED" for s in p["meta"]["security"])
    assert c.get("/fhir/Patient?address-city=Bakı", headers=h).status_code == 403
    assert c.get("/fhir/Patient?_sort=address", headers=h).status_code == 403
    inc = c.get("/fhir/Coverage?_include=Coverage:beneficiary", headers=h).json()
    included = [e["resource"] for e in inc["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert included and all("telecom" not in p for p in included)


def test_pharmacy_needs_the_prescription_identifier(app):
    c, world, _ = app
    h = world.headers["pharmacy"]
    assert c.get("/fhir/MedicationRequest", headers=h).status_code == 403
    assert c.get("/fhir/MedicationRequest/mr1", headers=h).status_code == 403
    assert c.get("/fhir/MedicationRequest?identifier=RX1", headers=h).status_code == 403
    got = c.get(f"/fhir/MedicationRequest?identifier={W.RX}|RX1", headers=h).json()
    assert _ids(got) == {"mr1"}
    dispense = {"resourceType": "MedicationDispense", "status": "completed", "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {"text": "metformin"},
                "performer": [{"actor": {"reference": "Organization/org-pharm"}}],
                "authorizingPrescription": [{"reference": "MedicationRequest/mr1"}]}
    assert c.post("/fhir/MedicationDispense", json=dispense, headers=h).status_code == 201
    wrong = dict(dispense, subject={"reference": "Patient/p2"})
    assert c.post("/fhir/MedicationDispense", json=wrong, headers=h).status_code == 403
    other = dict(dispense, performer=[{"actor": {"reference": "Organization/org-b"}}])
    assert c.post("/fhir/MedicationDispense", json=other, headers=h).status_code == 403
    assert _ids(c.get("/fhir/MedicationDispense", headers=h).json()) <= {e for e in _ids(
        c.get("/fhir/MedicationDispense", headers=world.headers["administrator"]).json())}


def test_writes_check_the_resource_being_written(app):
    c, world, _ = app
    obs = W._obs("new", "p1", based_on="ServiceRequest/sr1")
    obs.pop("id")
    other = W._obs("new", "p2", based_on="ServiceRequest/sr2")
    other.pop("id")
    assert c.post("/fhir/Observation", json=obs, headers=world.headers["citizen"]).status_code == 403
    assert c.post("/fhir/Observation", json=obs, headers=world.headers["clinician"]).status_code == 201
    assert c.post("/fhir/Observation", json=other, headers=world.headers["clinician"]).status_code == 403
    assert c.post("/fhir/Observation", json=obs, headers=world.headers["laboratory"]).status_code == 201
    assert c.post("/fhir/Observation", json=other, headers=world.headers["laboratory"]).status_code == 403
    for role in ("insurer", "analyst", "auditor"):
        assert c.post("/fhir/Observation", json=obs, headers=world.headers[role]).status_code == 403
    # moving a visible Observation onto a hidden patient, or overwriting a hidden one, is refused alike
    moved = dict(W._obs("o1", "p2"))
    assert c.put("/fhir/Observation/o1", json=moved, headers=world.headers["clinician"]).status_code == 403
    hidden = dict(W._obs("o2", "p1"))
    absent = dict(W._obs("zz-o2", "p1"))
    a = c.put("/fhir/Observation/o2", json=hidden, headers=world.headers["clinician"])
    b = c.put("/fhir/Observation/zz-o2", json=absent, headers=world.headers["clinician"])
    assert a.status_code == b.status_code == 403
    assert c.delete("/fhir/Observation/o1", headers=world.headers["clinician"]).status_code == 403
    # conditional create cannot reveal a hidden match
    cond = c.post("/fhir/Observation", json=obs, headers={**world.headers["clinician"],
                                                            "if-none-exist": "_id=o2"})
    assert cond.status_code == 201 and cond.json()["id"] != "o2"
    # a citizen may record their own consent, not someone else's
    consent = {"resourceType": "Consent", "status": "active", "scope": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"}, "policyRule": {"text": "no sharing"},
        "provision": {"type": "deny"}}
    assert c.post("/fhir/Consent", json=consent, headers=world.headers["citizen"]).status_code == 201
    assert c.post("/fhir/Consent", json=dict(consent, patient={"reference": "Patient/p2"}),
                  headers=world.headers["citizen"]).status_code == 403


def test_anonymous_and_scope_limits(app):
    c, world, _ = app
    assert c.get("/fhir/metadata").status_code == 200
    r = c.get("/fhir/Patient/p1")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/fhir/Patient").status_code == 401
    assert c.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": []}).status_code == 401
    assert c.get("/.well-known/smart-configuration").status_code == 200
    # r without s cannot search; s without r cannot read; granular scopes filter
    read_only = world.mint("x", subject="alice", kind="person", scopes=["user/Observation.r"], roles=["citizen"],
                           patient="Patient/p1")
    assert c.get("/fhir/Observation", headers=read_only).status_code == 403
    assert c.get("/fhir/Observation/o1", headers=read_only).status_code == 200
    search_only = world.mint("x", subject="alice", kind="person", scopes=["user/Observation.s"], roles=["citizen"],
                             patient="Patient/p1")
    assert c.get("/fhir/Observation/o1", headers=search_only).status_code == 403
    granular = world.mint("x", subject="alice", kind="person", scopes=["patient/Observation.rs?code=9999-9"],
                          roles=["citizen"], patient="Patient/p1")
    assert _ids(c.get("/fhir/Observation", headers=granular).json()) == set()
    assert c.get("/fhir/Observation/o1", headers=granular).status_code == 404
    v1 = world.mint("x", subject="alice", kind="person", scopes=["patient/*.read"], roles=["citizen"],
                    patient="Patient/p1")
    assert _ids(c.get("/fhir/Observation", headers=v1).json()) == {"o1", "o1psy", "o1v"}  # no wards in patient/
    # system scopes in a person's token are ignored; admin operations are for administrators
    assert c.post("/fhir/$reindex", headers=world.headers["clinician"]).status_code == 403
    assert c.get("/fhir/_history", headers=world.headers["clinician"]).status_code == 403
    assert c.get("/fhir/Observation/_history", headers=world.headers["citizen"]).status_code == 403
    assert c.get("/fhir?_type=Observation,Patient", headers=world.headers["clinician"]).status_code == 403


def test_the_terminology_service_answers_every_role_and_no_anonymous_caller(app):
    """Code systems and value sets are definitions, not records: every authenticated role may use them."""
    c, world, _ = app
    url = "/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender"
    assert c.get(url).status_code == 401
    for role in ROLES:
        r = c.get(url, headers=world.headers[role])
        assert r.status_code == 200 and r.json()["expansion"]["total"] == 4, (role, r.text)
    lookup = "/fhir/CodeSystem/$lookup?system=http://hl7.org/fhir/administrative-gender&code=male"
    assert c.get(lookup, headers=world.headers["citizen"]).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_meta_operations_follow_the_read_and_write_rules(app, role):
    """$meta reads like a read (hidden equals absent); $meta-add writes like an update; the summaries over
    every row are for administrators."""
    c, world, _ = app
    headers = world.headers[role]
    for rid in ("o1", "o1psy", "o2"):
        meta = c.get(f"/fhir/Observation/{rid}/$meta", headers=headers)
        read = c.get(f"/fhir/Observation/{rid}", headers=headers)
        assert meta.status_code == read.status_code, (role, rid)
        if read.status_code == 200:
            assert meta.json()["parameter"][0]["valueMeta"].get("security") == read.json()["meta"].get("security")
    summary = c.get("/fhir/Observation/$meta", headers=headers)
    assert summary.status_code == (200 if role == "administrator" else 403)
    if role != "administrator":
        assert PSY_CODE not in summary.text
    tag = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [
        {"system": "https://example.org/flags", "code": "reviewed"}]}}]}
    before = c.get("/fhir/Observation/o2/_history", headers=world.headers["administrator"]).json()["total"]
    added = c.post("/fhir/Observation/o2/$meta-add", json=tag, headers=headers)
    after = c.get("/fhir/Observation/o2/_history", headers=world.headers["administrator"]).json()["total"]
    assert (added.status_code == 200) == (after == before + 1), (role, added.status_code)
    if "o2" not in W.VISIBLE[role] and role != "administrator":
        assert added.status_code in (403, 404), (role, added.text)


PSY_CODE = '"PSY"'


@pytest.mark.parametrize("role", ROLES)
def test_lastn_is_the_callers_own_search(app, role):
    c, world, _ = app
    for patient in ("p1", "p2"):
        r = c.get(f"/fhir/Observation/$lastn?patient={patient}&max=10", headers=world.headers[role])
        search = c.get(f"/fhir/Observation?patient={patient}", headers=world.headers[role])
        assert r.status_code == search.status_code, (role, r.text)
        if r.status_code == 200:
            assert not _leaks(role, _ids(r.json())), role
            assert _ids(r.json()) == _ids(search.json()), role  # one code each here: the same rows
