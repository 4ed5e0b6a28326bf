"""The CDSi engine against the CDC test cases, and its date arithmetic and FHIR shape on small cases."""
from __future__ import annotations

import json
from datetime import date

import pytest

from healthtwin.registries.immunization import dates, rules, testcases
from healthtwin.registries.immunization.engine import assess
from healthtwin.registries.immunization.fhir_io import patient_from_parameters, result_parameters
from healthtwin.registries.immunization.patient import Dose, Patient
from tests.conftest import corpus

# The cases this engine passes (healthy v4.45: 1,013; underlying conditions v4.6: 337), with the adjudication
# file applied; a change that loses a case fails here. The targets were 99.9 % and 95 %.
HEALTHY_PASSED = 1013
CONDITIONS_PASSED = 323


def test_cdsi_dates_follow_the_logic_specification() -> None:
    assert dates.add(date(2025, 1, 31), "1 month") == date(2025, 3, 1)  # 31 February -> 1 March
    assert dates.add(date(2024, 2, 29), "1 year") == date(2025, 3, 1)
    assert dates.add(date(2025, 1, 10), "6 months - 4 days") == date(2025, 7, 6)
    assert dates.add(date(2025, 1, 10), "19 months + 4 weeks") == date(2026, 9, 7)
    with pytest.raises(ValueError):
        dates.parse("soon")


def test_the_committed_rule_files_load_every_schedule() -> None:
    cdc = rules.load("cdc")
    assert "DTaP/Tdap/Td" in cdc.groups and len(cdc.antigens) == 30
    assert rules.load("who").groups["DTP"].antigens == ["Diphtheria", "Tetanus", "Pertussis"]
    aze = rules.load()  # the default: Azerbaijan's calendar
    assert aze.key == "aze" and {"BCG", "HepB", "DTP", "Polio", "MMR", "PCV"} <= set(aze.groups)


def test_a_dose_too_young_is_not_valid_and_repeated() -> None:
    # DTaP #2 at 10 weeks - 5 days: below the absolute minimum age (CDC case 2013-0002's facts).
    child = Patient(date(2025, 9, 6), "Female", date(2025, 11, 10),
                    [Dose("d1", date(2025, 10, 15), "107"), Dose("d2", date(2025, 11, 10), "107")])
    dtap = next(f for f in assess(child, rules.load("cdc")) if f.group == "DTaP/Tdap/Td")
    results = {r.dose.id: (r.status, r.reason) for r in dtap.antigens[0].evaluations()}
    assert results == {"d1": ("Valid", None), "d2": ("Not Valid", "Age: Too Young")}
    assert (dtap.status, dtap.dose_number) == ("Not Complete", 2)
    assert (dtap.earliest, dtap.recommended, dtap.past_due) == (date(2025, 12, 8), date(2026, 1, 6),
                                                                date(2026, 3, 5))


def test_azerbaijan_calendar_forecasts_a_newborn() -> None:
    baby = Patient(date(2026, 1, 1), "Male", date(2026, 1, 1))
    by_group = {f.group: f for f in assess(baby)}
    assert by_group["HepB"].recommended == date(2026, 1, 1)
    assert by_group["DTP"].recommended == date(2026, 3, 1)
    assert by_group["MMR"].recommended == date(2027, 1, 1)


def test_forecast_parameters_have_the_immds_shape() -> None:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentDate", "valueDate": "2025-11-10"},
        {"name": "patient", "resource": {"resourceType": "Patient", "id": "p1", "birthDate": "2025-09-06",
                                         "gender": "female"}},
        {"name": "immunization", "resource": {
            "resourceType": "Immunization", "id": "imm1", "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "107"}]},
            "occurrenceDateTime": "2025-10-15"}}]}
    schedule = rules.load("cdc")
    patient = patient_from_parameters(params, schedule)
    out = result_parameters("p1", patient, assess(patient, schedule))
    evaluations = [p["resource"] for p in out["parameter"] if p["name"] == "evaluation"]
    assert {e["targetDisease"]["text"] for e in evaluations} == {"Diphtheria", "Tetanus", "Pertussis"}
    assert all(e["immunizationEvent"]["reference"] == "Immunization/imm1" for e in evaluations)
    assert evaluations[0]["doseStatus"]["text"] == "Valid"
    rec = next(p["resource"] for p in out["parameter"] if p["name"] == "recommendation")
    dtap = next(r for r in rec["recommendation"] if r["vaccineCode"][0]["text"] == "DTaP/Tdap/Td")
    assert dtap["forecastStatus"]["text"] == "Not Complete"
    codes = {c["code"]["coding"][0]["code"]: c["value"] for c in dtap["dateCriterion"]}
    # earliest: 10 weeks of age (after 4 weeks from dose 1); recommended: 4 months of age
    assert codes["30981-5"] == "2025-11-15" and codes["30980-7"] == "2026-01-06"
    json.dumps(out)


def test_cdc_test_cases_pass_at_the_engines_rates() -> None:
    folder = corpus("cdsi", "test-cases", "csv")
    report = testcases.run(folder, adjudicated=testcases.read_adjudication())
    rates = testcases.summary(report)
    assert rates["healthy"]["cases"] == 1013 and rates["conditions"]["cases"] == 337
    assert rates["healthy"]["passed"] >= HEALTHY_PASSED, rates["lines"]
    assert rates["conditions"]["passed"] >= CONDITIONS_PASSED, rates["lines"]
    assert rates["healthy"]["rate"] >= 0.999 and rates["conditions"]["rate"] >= 0.95
    for entry in report:
        if not entry["passed"]:
            assert entry["mismatches"] and all({"field", "expected", "actual"} <= set(m) for m in entry["mismatches"])


def test_the_fhir_input_gives_the_same_results_as_the_csv_cases() -> None:
    """The cicada-ndjson Parameters of each case, read through fhir_io (Patient, Immunizations with CVX,
    Conditions coded in CDSi and SNOMED), pass exactly the cases the CSV rows pass."""
    folder = corpus("cdsi", "test-cases")
    cases = {c.id: c for c in testcases.read_cases(folder / "csv")}
    adjudicated = testcases.read_adjudication()
    schedule = rules.load("cdc")
    passed = {"healthy": 0, "conditions": 0}
    for name in ("healthyTestCases.ndjson", "conditionTestCases.ndjson"):
        for line in (folder / "cicada-ndjson" / name).read_text().splitlines():
            params = json.loads(line)
            case = cases.get(params["id"].removeprefix("parameters-").strip())
            if case is None:  # cicada's own cases beyond the CDC workbooks
                continue
            patient = patient_from_parameters(params, schedule)
            dose_ids = [p["resource"]["id"] for p in params["parameter"]
                        if (p.get("resource") or {}).get("resourceType") == "Immunization"]
            read = testcases.Case(case.id, case.kind, patient, case.group, case.expected, dose_ids)
            mismatches = testcases.compare(read, testcases.actual_fields(read, assess(patient, schedule)))
            passed[case.kind] += all((case.id, m["field"]) in adjudicated for m in mismatches)
    assert passed == {"healthy": HEALTHY_PASSED, "conditions": CONDITIONS_PASSED}


def test_the_forecast_command_writes_one_parameters_per_line(tmp_path, capsys) -> None:
    from healthtwin.cli import main
    good = {"resourceType": "Parameters", "parameter": [
        {"name": "assessmentDate", "valueDate": "2026-03-01"},
        {"name": "patient", "resource": {"resourceType": "Patient", "id": "baby", "birthDate": "2026-01-01"}}]}
    src = tmp_path / "in.ndjson"
    src.write_text(json.dumps(good) + "\n" + '{"resourceType": "Patient"}\n')
    out = tmp_path / "out.ndjson"
    assert main(["immunization", "forecast", "--input", str(src), "--out", str(out)]) == 1  # one line refused
    assert "line 2: the input is not a FHIR Parameters resource" in capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    rec = next(p["resource"] for p in json.loads(lines[0])["parameter"] if p["name"] == "recommendation")
    groups = {r["vaccineCode"][0]["text"]: r for r in rec["recommendation"]}
    assert set(groups) == {"BCG", "HepB", "DTP", "Hib", "Polio", "PCV", "MMR"}  # the Azerbaijani calendar
    assert groups["DTP"]["dateCriterion"][1] == {
        "code": {"coding": [{"system": "http://loinc.org", "code": "30980-7", "display": "Date vaccine due"}]},
        "value": "2026-03-01"}
