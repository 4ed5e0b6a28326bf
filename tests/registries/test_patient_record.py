"""The record the summary and the twin are built from is the caller's own search, read a faster way: the same
resources in the same order as the general search (run_search), and the newest of each code the same as taking
the newest of each from everything the search matches."""
from __future__ import annotations

import orjson
import pytest

from healthtwin.registries.patient_record import SCAN_LIMIT, PatientRecord, Read, latest_per_code
from healthtwin.request import Caller, RequestContext
from healthtwin.store.search import run_search

READS = [("Condition", [("clinical-status", "active,recurrence,relapse")], "-onset-date", SCAN_LIMIT),
         ("MedicationRequest", [("status", "active,on-hold")], "-authoredon", SCAN_LIMIT),
         ("Immunization", [("status", "completed")], "-date", 3), ("Procedure", [], "date", SCAN_LIMIT),
         ("Observation", [("category", "vital-signs")], "-date", 7), ("Observation", [], "date", SCAN_LIMIT),
         ("Condition", [], None, 2), ("AllergyIntolerance", [], None, SCAN_LIMIT),
         ("MedicationStatement", [("status", "active,intended")], "-effective", SCAN_LIMIT)]  # none stored


def _callers(client, pid):
    services = client.app.fhir.services
    patient = orjson.loads(services.store.read("Patient", pid).content)
    admin = Caller("root", "person", frozenset({"administrator"}), frozenset({"user/*.rs"}))
    doctor = Caller("gp", "person", frozenset({"clinician"}), frozenset({"user/*.rs"}),
                    organization=patient["managingOrganization"]["reference"],
                    fhir_user=patient["generalPractitioner"][0]["reference"])
    return services, [admin, doctor]


def _general(services, record, rtype, criteria, sort, limit):
    query = record._query(rtype, criteria, sort, "patient")
    query.count = limit
    page = run_search(services.store, services.registry, query)
    return [r["id"] for r in record._released(page.matches)], page.has_more


def test_the_records_reads_are_the_general_searchs_answers(loaded, population_dir):
    client, _, pid = loaded
    services, callers = _callers(client, pid)
    pids = [orjson.loads(line)["id"] for line in (population_dir / "Patient.ndjson").read_bytes().splitlines()]
    compared = 0
    for caller in callers:
        for patient in pids:
            record = PatientRecord(services, RequestContext(caller=caller, base_url="http://x/fhir"), patient)
            for rtype, criteria, sort, limit in READS:
                got = record.search(rtype, criteria, sort, limit)
                assert ([r["id"] for r in got.resources], got.truncated) == _general(
                    services, record, rtype, criteria, sort, limit), (caller.roles, patient, rtype, sort)
                compared += len(got.resources)
    assert compared > 1000  # the population has records to compare


def test_the_newest_of_each_code_reads_less_and_answers_the_same(loaded, population_dir):
    client, h, pid = loaded
    services, callers = _callers(client, pid)
    # a result coded twice (LOINC and a local code) and one coded by text alone, newer than the rest: the
    # index gives them several codes or none, so they are read and judged on their content
    for code in ({"coding": [{"system": "urn:local", "code": "HR"}, {"system": "http://loinc.org", "code": "8867-4"}]},
                 {"text": "pulse by hand"}):
        obs = {"resourceType": "Observation", "status": "final", "code": code, "subject": {"reference": f"Patient/{pid}"},
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                         "code": "vital-signs"}]}],
               "effectiveDateTime": "2024-12-30T10:00:00+04:00", "valueQuantity": {"value": 70, "unit": "/min"}}
        assert client.post("/fhir/Observation", json=obs, headers=h["admin"]).status_code == 201
    pids = [orjson.loads(line)["id"] for line in (population_dir / "Patient.ndjson").read_bytes().splitlines()]
    kept = 0
    for caller in callers:
        for patient in pids:
            record = PatientRecord(services, RequestContext(caller=caller, base_url="http://x/fhir"), patient)
            for category in ("vital-signs", "laboratory"):
                criteria = [("category", category), ("status", "final,amended,corrected")]
                everything = record.search("Observation", criteria, "-date")
                newest = record.latest_of_each("Observation", criteria)
                assert [r["id"] for r in newest.resources] == [r["id"] for r in latest_per_code(everything.resources)]
                assert newest.withheld == everything.withheld and newest.truncated == everything.truncated
                kept += len(newest.resources)
    assert kept > 100
    own = PatientRecord(services, RequestContext(caller=callers[0], base_url="http://x/fhir"), pid)
    texts = [r["code"].get("text") for r in own.latest_of_each("Observation", [("category", "vital-signs")]).resources]
    assert "pulse by hand" in texts


def test_the_reads_taken_together_answer_as_each_on_its_own(loaded, population_dir):
    """read_all (on PostgreSQL one statement for every read and the Patient's row) gives each read's answer
    as search / latest_of_each give it alone, for each caller, including a role that may search nothing."""
    client, _, pid = loaded
    services, callers = _callers(client, pid)
    callers.append(Caller("ana", "person", frozenset({"analyst"}), frozenset({"user/*.rs"})))
    reads = [Read(rtype, tuple(criteria), sort, limit) for rtype, criteria, sort, limit in READS] + [
        Read("Observation", (("category", c), ("status", "final,amended,corrected")), "-date", latest=True)
        for c in ("vital-signs", "laboratory")]
    pids = [orjson.loads(line)["id"] for line in (population_dir / "Patient.ndjson").read_bytes().splitlines()]
    compared = withheld = 0
    for caller in callers:
        for patient in pids[:40] + ["no-such-patient"]:
            ctx = RequestContext(caller=caller, base_url="http://x/fhir")
            together, alone = PatientRecord(services, ctx, patient), PatientRecord(services, ctx, patient)
            got = together.read_all(reads)
            for read in reads:
                one = alone._one(read)
                assert ([r["id"] for r in got[read].resources], got[read].withheld, got[read].truncated) == (
                    [r["id"] for r in one.resources], one.withheld, one.truncated), (caller.roles, patient, read)
                compared += len(one.resources)
                withheld += one.withheld
            try:
                expected = alone.patient()
            except Exception as exc:  # absent or not the caller's to read: the same answer either way
                with pytest.raises(type(exc)):
                    together.patient()
            else:
                assert together.patient() == expected
    assert compared > 1000 and withheld > 0


@pytest.mark.parametrize("role", ["analyst"])
def test_a_type_the_role_may_not_search_is_withheld(loaded, role):
    client, _, pid = loaded
    services = client.app.fhir.services
    caller = Caller("ana", "person", frozenset({role}), frozenset({"user/*.rs"}))
    record = PatientRecord(services, RequestContext(caller=caller, base_url="http://x/fhir"), pid)
    assert record.latest_of_each("Observation", [("category", "laboratory")]).withheld


def test_a_type_never_stored_answers_empty_without_a_search_and_is_found_once_stored(loaded):
    client, h, pid = loaded
    services, callers = _callers(client, pid)
    record = PatientRecord(services, RequestContext(caller=callers[0], base_url="http://x/fhir"), pid)
    criteria = [("status", "active")]
    assert record.never_indexed("DeviceUseStatement", "patient")  # the population holds none
    assert record.search("DeviceUseStatement", criteria, "-_lastUpdated").resources == []
    use = {"resourceType": "DeviceUseStatement", "status": "active", "subject": {"reference": f"Patient/{pid}"},
           "device": {"display": "glucose meter"}, "timingDateTime": "2024-12-01"}
    created = client.post("/fhir/DeviceUseStatement", json=use, headers=h["admin"])
    assert created.status_code == 201, created.text
    assert not record.never_indexed("DeviceUseStatement", "patient")
    got = record.search("DeviceUseStatement", criteria, "-_lastUpdated")
    assert [r["id"] for r in got.resources] == [created.json()["id"]]
    assert ([r["id"] for r in got.resources], got.truncated) == _general(
        services, record, "DeviceUseStatement", criteria, "-_lastUpdated", SCAN_LIMIT)
