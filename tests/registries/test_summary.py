"""Patient/{id}/$summary: an IPS 2.0.0 document that validates against the IPS Bundle and Composition profiles
(and stops validating when a required section is taken out), built only from what the caller may see."""
from __future__ import annotations

import copy

import pytest

from healthtwin.fhir.validation import Validator

IPS = "http://hl7.org/fhir/uv/ips/StructureDefinition/"


def _errors(resource: dict, profile: str) -> list:
    return [i for i in Validator.default().validate(resource, IPS + profile) if i.severity in ("error", "fatal")]


def _section(bundle: dict, loinc: str) -> dict | None:
    composition = bundle["entry"][0]["resource"]
    return next((s for s in composition["section"] if s["code"]["coding"][0]["code"] == loinc), None)


def test_the_ips_package_is_loaded_into_the_validator():
    profiles = Validator.default().profiles
    for name in ("Bundle-uv-ips", "Composition-uv-ips", "Patient-uv-ips", "Condition-uv-ips",
                 "Observation-results-laboratory-pathology-uv-ips", "Immunization-uv-ips"):
        assert IPS + name in profiles, name
    assert "hl7.fhir.uv.ips@2.0.0" in profiles.packages


def test_the_summary_is_a_valid_ips_document_and_not_without_its_required_sections(loaded):
    client, h, pid = loaded
    got = client.get(f"/fhir/Patient/{pid}/$summary", headers=h["admin"])
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert bundle["type"] == "document" and bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    assert _errors(bundle, "Bundle-uv-ips") == []
    assert _errors(bundle["entry"][0]["resource"], "Composition-uv-ips") == []
    problems, results, vitals = (_section(bundle, c) for c in ("11450-4", "30954-2", "8716-3"))
    assert problems and problems.get("entry") and results and results.get("entry") and vitals and vitals.get("entry")
    for s in bundle["entry"][0]["resource"]["section"]:
        assert s["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">') and "entry" in s or \
            "emptyReason" in s
    # every section entry is in the document
    urls = {e["fullUrl"].split("/fhir/")[-1] for e in bundle["entry"]}
    for s in bundle["entry"][0]["resource"]["section"]:
        assert {e["reference"] for e in s.get("entry", [])} <= urls
    for loinc in ("11450-4", "48765-2", "10160-0"):  # problems, allergies, medications are required
        broken = copy.deepcopy(bundle)
        comp = broken["entry"][0]["resource"]
        comp["section"] = [s for s in comp["section"] if s["code"]["coding"][0]["code"] != loinc]
        assert _errors(comp, "Composition-uv-ips"), loinc
        assert _errors(broken, "Bundle-uv-ips"), loinc
    # a required section with neither entries nor an empty reason breaks ips-comp-1
    broken = copy.deepcopy(bundle)
    section = _section(broken, "48765-2")
    section.pop("emptyReason", None)
    section.pop("entry", None)
    assert _errors(broken["entry"][0]["resource"], "Composition-uv-ips")


def test_every_citizens_summary_validates(loaded, population_dir):
    """Not only the richest record: children (immunizations), the dead, women with mammographies..."""
    import orjson
    client, h, _ = loaded
    for line in (population_dir / "Patient.ndjson").read_bytes().splitlines():
        pid = orjson.loads(line)["id"]
        bundle = client.get(f"/fhir/Patient/{pid}/$summary", headers=h["admin"]).json()
        assert _errors(bundle, "Bundle-uv-ips") == [], pid


@pytest.mark.parametrize("role,status", [("citizen", 200), ("own_doctor", 200), ("other_citizen", 404),
                                         ("stranger_doctor", 404), ("analyst", 403)])
def test_the_summary_obeys_the_callers_access(loaded, role, status):
    client, h, pid = loaded
    got = client.get(f"/fhir/Patient/{pid}/$summary", headers=h[role])
    assert got.status_code == status, (role, got.text[:300])
    if status == 200:
        admin = client.get(f"/fhir/Patient/{pid}/$summary", headers=h["admin"]).json()
        mine = {e["fullUrl"] for e in got.json()["entry"][1:]}
        assert mine <= {e["fullUrl"] for e in admin["entry"][1:]}


def test_an_unknown_patient_and_a_stray_parameter_are_clear_errors(loaded):
    client, h, _ = loaded
    assert client.get("/fhir/Patient/nobody-here/$summary", headers=h["admin"]).status_code == 404
    got = client.get("/fhir/Patient/pat-0/$summary?identifier=x", headers=h["admin"])
    assert got.status_code == 400 and got.json()["resourceType"] == "OperationOutcome"
