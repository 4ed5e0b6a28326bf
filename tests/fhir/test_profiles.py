"""Profiles: a national Patient profile written here, the spec's own profiles, loading errors."""
from __future__ import annotations

import copy

import orjson
import pytest

from healthtwin.fhir.validation import Issue, Validator
from tests.conftest import r4_package

URL = "http://example.org/fhir/StructureDefinition/national-patient"
FIN = "urn:oid:1.2.246.21"
NATIONAL_PATIENT = {
    "resourceType": "StructureDefinition", "url": URL, "version": "1.0.0", "name": "NationalPatient",
    "status": "active", "kind": "resource", "abstract": False, "type": "Patient",
    "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
    "differential": {"element": [
        {"id": "Patient", "path": "Patient"},
        {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1,
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
        {"id": "Patient.identifier:fin", "path": "Patient.identifier", "sliceName": "fin", "min": 1, "max": "1"},
        {"id": "Patient.identifier:fin.system", "path": "Patient.identifier.system", "min": 1, "fixedUri": FIN},
        {"id": "Patient.identifier:fin.value", "path": "Patient.identifier.value", "min": 1},
        {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
        {"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{"code": "boolean"}]},
        {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
         "binding": {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/marital-status"}},
        {"id": "Patient.contact.relationship", "path": "Patient.contact.relationship", "patternCodeableConcept":
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131"}]}},
        {"id": "Patient.generalPractitioner", "path": "Patient.generalPractitioner", "max": "1",
         "type": [{"code": "Reference",
                   "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Practitioner"]}]},
        {"id": "Patient.photo", "path": "Patient.photo", "max": "0"},
        {"id": "Patient.name", "path": "Patient.name", "constraint": [{
            "key": "nat-1", "severity": "error", "human": "a name has a family name",
            "expression": "family.exists()"}]},
    ]},
}
ACCEPTED = {
    "resourceType": "Patient", "id": "n1", "meta": {"profile": [URL]},
    "identifier": [{"system": "http://example.org/mrn", "value": "123"}, {"system": FIN, "value": "010180-123A"}],
    "name": [{"family": "Virtanen", "given": ["Aino"]}], "birthDate": "1980-01-01", "deceasedBoolean": False,
    "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
    "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                               "code": "N"}]}], "name": {"family": "Virtanen"}}],
    "generalPractitioner": [{"reference": "Practitioner/gp1"}],
}


@pytest.fixture()
def v() -> Validator:
    validator = Validator()
    validator.add_profile(copy.deepcopy(NATIONAL_PATIENT))
    return validator


def accepted(**changes: object) -> dict:
    r = copy.deepcopy(ACCEPTED)
    r.update(changes)
    return r


def errors(issues: list[Issue]) -> list[tuple[str, str]]:
    return [(i.code, i.location) for i in issues if i.severity in ("error", "fatal")]


def test_conforming_resource_passes(v: Validator) -> None:
    assert v.validate(accepted()) == []
    assert v.validate(accepted(meta={"profile": [URL + "|1.0.0"]})) == []


@pytest.mark.parametrize("change,expected", [
    ({"identifier": [{"system": "http://example.org/mrn", "value": "1"}]}, [("required", "Patient.identifier")]),
    ({"identifier": [{"system": FIN, "value": "1"}, {"system": FIN, "value": "2"}]},
     [("structure", "Patient.identifier")]),
    ({"identifier": [{"system": FIN}]}, [("required", "Patient.identifier[0].value")]),
    ({"birthDate": None}, [("required", "Patient.birthDate")]),
    ({"deceasedBoolean": None, "deceasedDateTime": "2020-01-01"}, [("structure", "Patient.deceasedDateTime")]),
    ({"maritalStatus": {"coding": [{"system": "http://example.org", "code": "M"}]}},
     [("code-invalid", "Patient.maritalStatus")]),
    ({"contact": [{"relationship": [{"coding": [{"system": "http://example.org", "code": "N"}]}],
                   "name": {"family": "V"}}]}, [("value", "Patient.contact[0].relationship[0]")]),
    ({"generalPractitioner": [{"reference": "Organization/o1"}]}, [("structure", "Patient.generalPractitioner[0]")]),
    ({"generalPractitioner": [{"reference": "Practitioner/a"}, {"reference": "Practitioner/b"}]},
     [("structure", "Patient.generalPractitioner")]),
    ({"photo": [{"contentType": "image/png", "url": "http://example.org/p.png"}]}, [("structure", "Patient.photo")]),
    ({"name": [{"given": ["Aino"]}]}, [("invariant", "Patient.name[0]")]),
])
def test_violations_are_reported_with_location(v: Validator, change: dict, expected: list) -> None:
    r = accepted(**change)
    for key in [k for k, value in change.items() if value is None]:
        del r[key]
    assert errors(v.validate(r)) == expected


def test_profile_checked_only_when_claimed_or_asked(v: Validator) -> None:
    r = accepted()
    del r["meta"], r["birthDate"]
    assert v.validate(r) == []
    assert errors(v.validate(r, profile=URL)) == [("required", "Patient.birthDate")]
    assert errors(Validator().validate(r, profile=URL)) == [("not-supported", "Patient")]  # not loaded there


def test_profile_applies_to_bundle_entries(v: Validator) -> None:
    r = accepted()
    del r["birthDate"]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r}]}
    assert errors(v.validate(bundle)) == [("required", "Bundle.entry[0].resource.birthDate")]


def test_closed_slicing() -> None:
    sd = copy.deepcopy(NATIONAL_PATIENT)
    sd["url"] = URL + "-closed"
    sd["differential"]["element"][1]["slicing"]["rules"] = "closed"
    v = Validator()
    v.add_profile(sd)
    r = accepted(meta={"profile": [sd["url"]]})
    assert errors(v.validate(r)) == [("structure", "Patient.identifier[0]")]


def test_remove_profile(v: Validator) -> None:
    v.remove_profile(URL)
    r = accepted()
    del r["birthDate"]
    assert [(i.severity, i.location) for i in v.validate(r)] == [("warning", "Patient.meta.profile[0]")]


def test_profile_on_profile() -> None:
    v = Validator()
    v.add_profile(copy.deepcopy(NATIONAL_PATIENT))
    child = {"resourceType": "StructureDefinition", "url": URL + "-strict", "name": "Strict", "kind": "resource",
             "type": "Patient", "baseDefinition": URL, "derivation": "constraint",
             "differential": {"element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]}}
    v.add_profile(child)
    r = accepted(meta={"profile": [URL + "-strict"]})
    assert errors(v.validate(r)) == [("required", "Patient.gender")]
    del r["birthDate"]
    assert set(errors(v.validate(r))) == {("required", "Patient.gender"), ("required", "Patient.birthDate")}


@pytest.mark.parametrize("mutate,message", [
    (lambda sd: sd.update(resourceType="Patient"), "StructureDefinition"),
    (lambda sd: sd.pop("url"), "url"),
    (lambda sd: sd.update(type="Nope"), "Nope"),
    (lambda sd: sd.update(derivation="specialization"), "constraint"),
    (lambda sd: sd.update(baseDefinition="http://example.org/other"), "baseDefinition"),
    (lambda sd: sd.pop("differential"), "neither a differential nor a snapshot"),
    (lambda sd: sd["differential"]["element"].append({"id": "Patient.nickname", "path": "Patient.nickname"}),
     "nickname"),
    (lambda sd: sd["differential"]["element"].append({"id": "Patient.gender", "path": "Patient.gender",
                                                      "max": "*"}), "above the base maximum"),
    (lambda sd: sd["differential"]["element"].append({"id": "Patient.gender", "path": "Patient.gender",
                                                      "type": [{"code": "string"}]}), "not allowed"),
    (lambda sd: sd["differential"]["element"][1]["slicing"]["discriminator"][0].update(type="position"),
     "not supported"),
    (lambda sd: sd["differential"]["element"].pop(3), "no fixed or pattern value"),
])
def test_unusable_profiles_raise(mutate, message: str) -> None:
    sd = copy.deepcopy(NATIONAL_PATIENT)
    mutate(sd)
    with pytest.raises(ValueError, match=message):
        Validator().add_profile(sd)


# ---- the specification's profiles --------------------------------------------------------------------------------

def _spec(name: str) -> dict:
    return orjson.loads((r4_package() / name).read_bytes())


def test_spec_profiles_are_loaded_by_default() -> None:
    store = Validator.default().profiles
    assert "http://hl7.org/fhir/StructureDefinition/bodyweight" in store
    assert "http://hl7.org/fhir/StructureDefinition/bp" in store
    # the ones the engine cannot use are listed, not silently dropped (see docs/validation.md)
    assert set(store.spec_failures) == {"http://hl7.org/fhir/StructureDefinition/catalog",
                                        "http://hl7.org/fhir/StructureDefinition/familymemberhistory-genetic",
                                        "http://hl7.org/fhir/StructureDefinition/lipidprofile"}


def test_spec_bodyheight_profile() -> None:
    v = Validator.default()
    url = "http://hl7.org/fhir/StructureDefinition/bodyheight"
    height = _spec("Observation-body-height.json")
    assert v.validate(height, profile=url) == []
    wrong = copy.deepcopy(height)
    wrong["code"]["coding"][0]["code"] = "3141-9"  # another LOINC code: the BodyHeightCode slice is missing
    assert ("required", "Observation.code.coding") in errors(v.validate(wrong, profile=url))
    wrong = copy.deepcopy(height)
    wrong["valueQuantity"]["code"] = "kg"  # required binding of the unit (BodyLengthUnits)
    assert errors(v.validate(wrong, profile=url)) == [("code-invalid", "Observation.valueQuantity.code")]
    wrong = copy.deepcopy(height)
    del wrong["category"]  # vitalsigns (the parent profile): category 1..*, slice VSCat 1..1
    assert set(errors(v.validate(wrong, profile=url))) == {("required", "Observation.category")}


def test_snapshot_only_profile() -> None:
    sd = _spec("StructureDefinition-vitalsigns.json")
    del sd["differential"]
    sd["url"] = "http://example.org/snapshot-vitalsigns"
    v = Validator()
    v.add_profile(sd)
    obs = _spec("Observation-heart-rate.json")
    obs["meta"] = {"profile": [sd["url"]]}
    assert v.validate(obs) == []
    del obs["category"]
    assert ("required", "Observation.category") in errors(v.validate(obs))
