"""Patient/{id}/$immds-forecast and Immunization/$evaluate: the engine's answer for the record the caller may
see, in the Immunization Decision Support Forecast IG's shape, and clear errors for bad input."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.registries.immunization import rules
from healthtwin.registries.immunization.engine import assess
from healthtwin.registries.immunization.recommendations import GROUP_SYSTEM, engine_patient

from .imm_world import imm_population, imm_world, read  # noqa: F401  (fixtures)

LOINC_RECOMMENDED = "30980-7"


def _parts(params: dict, name: str) -> list[dict]:
    return [p["resource"] for p in params["parameter"] if p["name"] == name]


def _expected(world, schedule: str, on: dt.date) -> dict[str, str]:
    """Each vaccine group's status, straight from the engine over the child's generated record."""
    child = world.child
    imms = [i for i in read(world.folder, "Immunization") if i["patient"]["reference"] == f"Patient/{child['id']}"]
    conds = [c for c in read(world.folder, "Condition") if c["subject"]["reference"] == f"Patient/{child['id']}"]
    sched = rules.load(schedule)
    return {g.group: g.status for g in assess(engine_patient(child, imms, conds, sched, on), sched)}


@pytest.mark.parametrize("schedule", [None, "cdc", "who"])
def test_the_forecast_is_the_engines_for_the_stored_record(imm_world, schedule):
    pid = imm_world.child["id"]
    query = "assessmentDate=2024-06-01" + (f"&schedule={schedule}" if schedule else "")
    got = imm_world.client.get(f"/fhir/Patient/{pid}/$immds-forecast?{query}", headers=imm_world.headers["admin"])
    assert got.status_code == 200, got.text
    params = got.json()
    [rec] = _parts(params, "recommendation")
    assert rec["resourceType"] == "ImmunizationRecommendation" and rec["patient"]["reference"] == f"Patient/{pid}"
    assert rec["date"] == "2024-06-01"
    assert rec["meta"]["tag"][0]["code"] == (schedule or "aze")
    statuses = {r["vaccineCode"][0]["text"]: r["forecastStatus"]["text"] for r in rec["recommendation"]}
    assert statuses == _expected(imm_world, schedule or "aze", dt.date(2024, 6, 1))
    for r in rec["recommendation"]:
        assert r["vaccineCode"][0]["coding"][0] == {"system": GROUP_SYSTEM, "code": r["vaccineCode"][0]["text"],
                                                    "display": r["vaccineCode"][0]["text"]}
        for c in r.get("dateCriterion", []):
            assert c["code"]["coding"][0]["system"] == "http://loinc.org"
    evaluations = _parts(params, "evaluation")
    stored = {i["id"] for i in read(imm_world.folder, "Immunization") if i["patient"]["reference"] == f"Patient/{pid}"}
    assert evaluations and {e["immunizationEvent"]["reference"][13:] for e in evaluations} <= stored
    assert all(e["doseStatus"]["coding"][0]["code"] in ("valid", "notvalid") for e in evaluations)


def test_the_forecast_obeys_the_callers_access(imm_world):
    pid = imm_world.child["id"]
    url = f"/fhir/Patient/{pid}/$immds-forecast?assessmentDate=2024-06-01"
    admin = imm_world.client.get(url, headers=imm_world.headers["admin"]).json()
    mine = imm_world.client.get(url, headers=imm_world.headers["own_doctor"])
    assert mine.status_code == 200, mine.text
    assert mine.json() == admin
    assert imm_world.client.get(url, headers=imm_world.headers["stranger_doctor"]).status_code == 404
    assert imm_world.client.get(url, headers=imm_world.headers["analyst"]).status_code == 403
    assert imm_world.client.get(url).status_code == 401


@pytest.mark.parametrize("query,status,where", [
    ("assessmentDate=yesterday", 400, "assessmentDate"), ("schedule=nowhere", 400, "schedule"),
    ("patient=Patient/x", 400, "patient")])
def test_bad_forecast_input_is_a_clear_outcome(imm_world, query, status, where):
    pid = imm_world.child["id"]
    got = imm_world.client.get(f"/fhir/Patient/{pid}/$immds-forecast?{query}", headers=imm_world.headers["admin"])
    assert got.status_code == status
    outcome = got.json()
    assert outcome["resourceType"] == "OperationOutcome" and where in str(outcome)
    missing = imm_world.client.get("/fhir/Patient/nobody/$immds-forecast", headers=imm_world.headers["admin"])
    assert missing.status_code == 404


def _dose(iid: str, cvx: str, day: str) -> dict:
    return {"resourceType": "Immunization", "id": iid, "status": "completed", "patient": {"reference": "Patient/p"},
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]},
            "occurrenceDateTime": day}


def test_evaluate_posted_immunizations_for_a_posted_patient(imm_world):
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "2024-01-01", "gender": "female"}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentDate", "valueDate": "2024-12-01"}, {"name": "schedule", "valueCode": "cdc"},
        {"name": "patient", "resource": patient},
        {"name": "immunization", "resource": _dose("mmr-early", "03", "2024-05-01")},  # at 4 months: too young
        {"name": "immunization", "resource": _dose("hepb-1", "08", "2024-01-01")}]}
    got = imm_world.client.post("/fhir/Immunization/$evaluate", json=body, headers=imm_world.headers["admin"])
    assert got.status_code == 200, got.text
    evaluations = {(e["immunizationEvent"]["reference"], e["targetDisease"]["text"]): e
                   for e in _parts(got.json(), "evaluation")}
    assert not _parts(got.json(), "recommendation")
    assert evaluations[("Immunization/hepb-1", "HepB")]["doseStatus"]["coding"][0]["code"] == "valid"
    measles = evaluations[("Immunization/mmr-early", "Measles")]
    assert measles["doseStatus"]["coding"][0]["code"] == "notvalid" and measles["doseStatusReason"]


def test_evaluate_a_planned_dose_against_the_stored_record(imm_world):
    pid = imm_world.child["id"]
    planned = _dose("planned", "03", "2024-06-01")
    planned["patient"] = {"reference": f"Patient/{pid}"}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentDate", "valueDate": "2024-06-01"},
        {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}},
        {"name": "immunization", "resource": planned}]}
    got = imm_world.client.post("/fhir/Immunization/$evaluate", json=body, headers=imm_world.headers["own_doctor"])
    assert got.status_code == 200, got.text
    events = {e["immunizationEvent"]["reference"] for e in _parts(got.json(), "evaluation")}
    assert "Immunization/planned" in events and len(events) > 1  # the stored doses are evaluated beside it
    hidden = imm_world.client.post("/fhir/Immunization/$evaluate", json=body,
                                   headers=imm_world.headers["stranger_doctor"])
    assert hidden.status_code == 404


@pytest.mark.parametrize("parameter,where", [
    ({"name": "immunization", "resource": {"resourceType": "Patient"}}, "immunization"),
    ({"name": "patient", "valueString": "Observation/1"}, "patient"),
    ({"name": "colour", "valueString": "red"}, "colour")])
def test_bad_evaluate_input_is_a_clear_outcome(imm_world, parameter, where):
    body = {"resourceType": "Parameters", "parameter": [parameter]}
    got = imm_world.client.post("/fhir/Immunization/$evaluate", json=body, headers=imm_world.headers["admin"])
    assert got.status_code == 400 and where in str(got.json())
    no_patient = {"resourceType": "Parameters", "parameter": [{"name": "immunization", "resource": _dose("a", "03", "2024-01-01")}]}
    got = imm_world.client.post("/fhir/Immunization/$evaluate", json=no_patient, headers=imm_world.headers["admin"])
    assert got.status_code == 400 and "patient" in got.text
    unborn = {"resourceType": "Parameters", "parameter": [{"name": "patient", "resource": {"resourceType": "Patient"}}]}
    got = imm_world.client.post("/fhir/Immunization/$evaluate", json=unborn, headers=imm_world.headers["admin"])
    assert got.status_code == 422 and "birthDate" in got.text


def test_the_igs_posted_form_and_the_type_level_form_by_reference(imm_world):
    """`$immds-forecast` with the patient and doses in the body (the IG's shape), and
    `Immunization/$immds-forecast?patient=Patient/{id}` (as the citizen portal asks): the same engine."""
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "2024-01-01", "gender": "male"}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentDate", "valueDate": "2024-12-01"}, {"name": "patient", "resource": patient},
        {"name": "immunization", "resource": _dose("hepb-1", "08", "2024-01-01")}]}
    got = imm_world.client.post("/fhir/$immds-forecast", json=body, headers=imm_world.headers["admin"])
    assert got.status_code == 200, got.text
    [rec] = _parts(got.json(), "recommendation")
    hepb = next(r for r in rec["recommendation"] if r["vaccineCode"][0]["text"] == "HepB")
    assert hepb["forecastStatus"]["text"] == "Not Complete" and hepb["doseNumberPositiveInt"] == 2
    assert _parts(got.json(), "evaluation")[0]["immunizationEvent"]["reference"] == "Immunization/hepb-1"
    pid = imm_world.child["id"]
    by_ref = imm_world.client.get(f"/fhir/Immunization/$immds-forecast?patient=Patient/{pid}&assessmentDate=2024-06-01",
                                  headers=imm_world.headers["own_doctor"])
    by_path = imm_world.client.get(f"/fhir/Patient/{pid}/$immds-forecast?assessmentDate=2024-06-01",
                                   headers=imm_world.headers["own_doctor"])
    assert by_ref.status_code == 200 and by_ref.json() == by_path.json()
    hidden = imm_world.client.get(f"/fhir/Immunization/$immds-forecast?patient=Patient/{pid}",
                                  headers=imm_world.headers["stranger_doctor"])
    assert hidden.status_code == 404


@pytest.mark.parametrize("coded_as", ["code", "value"])
def test_a_coded_clinical_fact_of_the_record_is_read(imm_world, coded_as):
    """Laboratory evidence of hepatitis B immunity (SNOMED 271511000, one of the CDC schedule's coded
    observations), recorded as the Observation's code or as its value, makes the child's HepB forecast Immune."""
    pid = imm_world.child["id"]
    immunity = {"system": "http://snomed.info/sct", "code": "271511000"}
    obs = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
           "effectiveDateTime": "2023-01-01"}
    if coded_as == "code":
        obs["code"] = {"coding": [immunity]}
    else:
        obs["code"] = {"coding": [{"system": "http://loinc.org", "code": "16935-9"}]}  # HBsAb
        obs["valueCodeableConcept"] = {"coding": [immunity]}
    url = f"/fhir/Patient/{pid}/$immds-forecast?assessmentDate=2024-06-01&schedule=cdc"

    def hepb() -> str:
        [rec] = _parts(imm_world.client.get(url, headers=imm_world.headers["admin"]).json(), "recommendation")
        return next(r["forecastStatus"]["text"] for r in rec["recommendation"] if r["vaccineCode"][0]["text"] == "HepB")
    assert hepb() != "Immune"
    made = imm_world.client.post("/fhir/Observation", json=obs, headers=imm_world.headers["admin"])
    assert made.status_code == 201, made.text
    try:
        assert hepb() == "Immune"
    finally:
        imm_world.client.delete(f"/fhir/Observation/{made.json()['id']}", headers=imm_world.headers["admin"])
