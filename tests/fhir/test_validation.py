"""Validation against the R4 base definitions: the spec's examples and Synthea pass, each kind of error is found."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import orjson
import pytest

from healthtwin.fhir import invariants
from healthtwin.fhir.validation import Issue, Validator
from tests.conftest import corpus, r4_package

# Spec examples that really are invalid against R4 (verified by reading each one), with the reason.
KNOWN_INVALID = {
    "ActivityDefinition-blood-tubes-supply.json": ("invariant", "txt-2: the narrative div is empty"),
    "ActivityDefinition-heart-valve-replacement.json": ("invariant", "txt-2: the narrative div is empty"),
    "EventDefinition-example.json": ("invariant", "txt-2: the narrative div is empty"),
    "Questionnaire-zika-virus-exposure-assessment.json": ("invariant", "txt-2: the narrative is an empty <pre>"),
    "Bundle-dataelements.json": ("invariant", "bdl-7: the same fullUrl appears in several entries"),
    "DeviceMetric-example.json": ("structure", "DeviceMetric.parent is Reference(Device), the example points to "
                                               "DeviceDefinition/dc102"),
    "DeviceUseStatement-example.json": ("structure", "reasonReference does not allow Procedure"),
    "MedicationRequest-medrx0301.json": ("structure", "dispenseRequest.performer is Reference(Organization), the "
                                                      "example points to a Practitioner"),
    "Observation-clinical-gender.json": ("structure", "Observation.performer does not allow Encounter"),
    "Questionnaire-qs1.json": ("required", "32 items have no linkId (1..1)"),
    "ig-r4.json": ("required", "no name and no status (both 1..1); a reference id longer than 64 characters"),
}
HUGE = 1_000_000  # the definitional bundles of the spec: run separately (slow) since they hold ~100k elements


def _package() -> Path:
    return r4_package()


def _examples(huge: bool) -> list[Path]:
    definitional = {"StructureDefinition", "SearchParameter", "CompartmentDefinition", "ValueSet", "CodeSystem",
                    "ConceptMap", "OperationDefinition", "NamingSystem", "CapabilityStatement", "ImplementationGuide"}
    return [p for p in sorted(_package().glob("*.json")) if p.name.split("-", 1)[0] not in definitional
            and p.name != "package.json" and (p.stat().st_size >= HUGE) == huge]


@pytest.fixture(scope="module")
def v() -> Validator:
    return Validator.default()


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def only(v: Validator, resource: dict, code: str, location: str) -> Issue:
    """Exactly one error is reported, with this code at this location."""
    found = errors(v.validate(resource))
    assert [(i.code, i.location) for i in found] == [(code, location)], found
    return found[0]


def _check_examples(v: Validator, paths: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # every invariant shortcut is cross-checked against a full fhirpathpy evaluation on the way
    monkeypatch.setattr(invariants, "VERIFY", True)
    unexpected, invalid = {}, set()
    for path in paths:
        found = errors(v.validate(orjson.loads(path.read_bytes())))
        if path.name in KNOWN_INVALID:
            invalid.add(path.name)
            assert KNOWN_INVALID[path.name][0] in {i.code for i in found}, (path.name, found)
        elif found:
            unexpected[path.name] = found[:3]
    assert not unexpected
    assert invalid == {p.name for p in paths} & KNOWN_INVALID.keys()


def test_spec_examples_validate(v: Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _examples(huge=False)
    assert len(paths) > 700
    _check_examples(v, paths, monkeypatch)


def test_spec_definitional_bundles_validate_natively(v: Validator) -> None:
    # ~100k ElementDefinitions: the native checks here, the invariants in the slow variant below
    native = Validator(v.profiles, invariants=False)
    paths = _examples(huge=True)
    assert paths
    found = {p.name: errors(native.validate(orjson.loads(p.read_bytes()))) for p in paths}
    # Bundle-dataelements only breaks bdl-7, an invariant: not checked here
    assert {name for name, issues in found.items() if issues} == {"ig-r4.json"}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HEALTHTWIN_SLOW_TESTS") != "1", reason="~2.5 min; HEALTHTWIN_SLOW_TESTS=1")
def test_spec_definitional_bundles_validate(v: Validator, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_examples(v, _examples(huge=True), monkeypatch)


def test_synthea_bundles_validate(v: Validator) -> None:
    paths = sorted(corpus("synthea", "bundles").glob("*.json"))
    assert paths
    for path in paths:
        bundle = orjson.loads(path.read_bytes())
        assert errors(v.validate(bundle)) == [], path.name
        for entry in bundle["entry"]:
            assert v.validate(entry["resource"]) == [], (path.name, entry["fullUrl"])


# ---- negative cases -------------------------------------------------------------------------------------------------

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-02-29",
           "name": [{"family": "Virtanen", "given": ["Aino", "Maria"]}], "active": True}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2021-03-04T10:00:00+02:00",
               "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def patient(**changes: object) -> dict:
    r = copy.deepcopy(PATIENT)
    r.update(changes)
    return r


def observation(**changes: object) -> dict:
    r = copy.deepcopy(OBSERVATION)
    r.update(changes)
    return r


def test_valid_resources_have_no_issues(v: Validator) -> None:
    assert v.validate(patient()) == []
    assert v.validate(observation()) == []


def test_unknown_element(v: Validator) -> None:
    only(v, patient(nickname="Ai"), "structure", "Patient.nickname")
    r = patient()
    r["name"][0]["middle"] = "x"
    only(v, r, "structure", "Patient.name[0].middle")


def test_misspelt_choice_type(v: Validator) -> None:
    r = observation()
    r["valueFoo"] = r.pop("valueQuantity")
    issue = only(v, r, "structure", "Observation.valueFoo")
    assert "valueQuantity" not in issue.message and "Quantity" in issue.message


def test_two_choice_types(v: Validator) -> None:
    only(v, observation(valueString="x"), "structure", "Observation.valueString")


def test_unknown_resource_type(v: Validator) -> None:
    assert [i.code for i in v.validate({"resourceType": "Patientt"})] == ["not-supported"]
    assert v.validate({"id": "x"})[0].severity == "fatal"


def test_missing_required_element(v: Validator) -> None:
    r = observation()
    del r["status"]
    only(v, r, "required", "Observation.status")
    r = observation()
    del r["code"]
    only(v, r, "required", "Observation.code")


def test_single_element_given_as_array(v: Validator) -> None:
    only(v, patient(gender=["female"]), "structure", "Patient.gender")


def test_array_element_given_as_single_value(v: Validator) -> None:
    only(v, patient(name={"family": "Virtanen"}), "structure", "Patient.name")


@pytest.mark.parametrize("field,value,location", [
    ("birthDate", "2020-13-01", "Patient.birthDate"),
    ("birthDate", "2021-02-29", "Patient.birthDate"),
    ("active", "true", "Patient.active"),
    ("id", "has spaces", "Patient.id"),
    ("id", "x" * 65, "Patient.id"),
    ("multipleBirthInteger", 2**31, "Patient.multipleBirthInteger"),
    ("multipleBirthInteger", 1.5, "Patient.multipleBirthInteger"),
    ("deceasedDateTime", "2020-01-01T10:00", "Patient.deceasedDateTime"),
])
def test_wrong_primitive_format(v: Validator, field: str, value: object, location: str) -> None:
    only(v, patient(**{field: value}), "value", location)


def test_instant_without_timezone(v: Validator) -> None:
    only(v, observation(issued="2021-03-04T10:00:00"), "value", "Observation.issued")
    assert v.validate(observation(issued="2021-03-04T10:00:00.123Z")) == []


def test_decimal_as_string(v: Validator) -> None:
    r = observation()
    r["valueQuantity"]["value"] = "72.5"
    only(v, r, "value", "Observation.valueQuantity.value")


def test_code_with_whitespace(v: Validator) -> None:
    issue = only(v, observation(status=" final"), "value", "Observation.status")
    assert "whitespace" in issue.message


def test_empty_values(v: Validator) -> None:
    only(v, patient(name=[{"family": "V", "given": ["Aino", ""]}]), "value", "Patient.name[0].given[1]")
    only(v, patient(telecom=[]), "structure", "Patient.telecom")
    only(v, patient(maritalStatus={}), "structure", "Patient.maritalStatus")
    only(v, patient(gender=None), "structure", "Patient.gender")


def test_primitive_extensions(v: Validator) -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert v.validate(patient(_birthDate=ext)) == []
    aligned = patient(name=[{"given": ["Aino", None], "_given": [None, ext]}])
    assert v.validate(aligned) == []
    only(v, patient(name=[{"given": ["Aino", None]}]), "structure", "Patient.name[0].given[1]")
    only(v, patient(name=[{"given": ["Aino"], "_given": [None, ext]}]), "structure", "Patient.name[0]._given")
    only(v, patient(_birthDate=[ext]), "structure", "Patient._birthDate")
    only(v, patient(_birthDate={"foo": 1}), "structure", "Patient.birthDate.foo")
    only(v, patient(_maritalStatus=ext), "structure", "Patient._maritalStatus")  # not a primitive


def test_extension_needs_value_or_extensions(v: Validator) -> None:
    only(v, patient(extension=[{"url": "http://example.org/x"}]), "invariant", "Patient.extension[0]")
    r = patient(extension=[{"url": "http://example.org/x", "valueCode": "a",
                            "extension": [{"url": "y", "valueString": "z"}]}])
    only(v, r, "invariant", "Patient.extension[0]")
    r = patient(extension=[{"valueCode": "a"}])
    only(v, r, "required", "Patient.extension[0].url")


def test_required_binding(v: Validator) -> None:
    only(v, patient(gender="male2"), "code-invalid", "Patient.gender")
    only(v, observation(status="foo"), "code-invalid", "Observation.status")
    r = patient(telecom=[{"system": "pager2", "value": "1"}])
    only(v, r, "code-invalid", "Patient.telecom[0].system")


def test_reference_shape(v: Validator) -> None:
    only(v, observation(subject={"reference": "Patient / 1"}), "value", "Observation.subject")
    only(v, observation(subject={"reference": "Patientt/1"}), "value", "Observation.subject")
    only(v, observation(subject={"reference": "urn:uuid:not-a-uuid"}), "value", "Observation.subject")
    for ok in ("Patient/p1/_history/2", "https://example.org/fhir/Patient/p1", "urn:uuid:7e0c1f5e-4d7c-4a2a-9e70-"
               "5c0e0f0b5f51", "urn:oid:1.2.246.21", "Patient?identifier=urn:oid:1.2.246.21|010101-123N"):
        assert v.validate(observation(subject={"reference": ok})) == [], ok


def test_reference_to_disallowed_type(v: Validator) -> None:
    issue = only(v, observation(subject={"reference": "Medication/m1"}), "structure", "Observation.subject")
    assert "Medication" in issue.message
    only(v, observation(subject={"reference": "http://example.org/fhir/Medication/m1"}), "structure",
         "Observation.subject")
    only(v, observation(subject={"reference": "Patient/p1", "type": "Group"}), "value", "Observation.subject")


def test_invariants(v: Validator) -> None:
    issue = only(v, patient(contact=[{"gender": "male"}]), "invariant", "Patient.contact[0]")
    assert issue.message.startswith("pat-1")
    assert v.validate(patient(contact=[{"name": {"family": "V"}}])) == []
    issue = only(v, observation(dataAbsentReason={"text": "lost"}), "invariant", "Observation")
    assert issue.message.startswith("obs-6")
    component = {"code": OBSERVATION["code"], "valueQuantity": {"value": 1}}
    issue = only(v, observation(component=[component]), "invariant", "Observation")
    assert issue.message.startswith("obs-7")
    r = observation()
    r["valueQuantity"] = {"value": 1, "code": "kg"}
    assert only(v, r, "invariant", "Observation.valueQuantity").message.startswith("qty-3")
    r = observation(effectivePeriod={"start": "2021-03-05", "end": "2021-03-04"})
    del r["effectiveDateTime"]
    assert only(v, r, "invariant", "Observation.effectivePeriod").message.startswith("per-1")


def test_invariants_compiled_to_python_agree_with_fhirpath(v: Validator) -> None:
    """con-4 and con-5 (a where() inside an operand) run as compiled Python, and decide as fhirpathpy does."""
    from healthtwin.fhir.fhirpath_compile import compile_boolean
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    base = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
            "code": {"text": "asthma"}}
    registry = v.model.invariants
    before = registry.stats["compiled"]
    abated = dict(base, abatementDateTime="2020-01-01",
                  clinicalStatus={"coding": [{"system": clinical, "code": "active"}]})
    assert only(v, abated, "invariant", "Condition").message.startswith("con-4")
    resolved = dict(abated, clinicalStatus={"coding": [{"system": clinical, "code": "resolved"}]})
    assert errors(v.validate(resolved)) == []
    voided = dict(resolved, verificationStatus={"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]})
    assert only(v, voided, "invariant", "Condition").message.startswith("con-5")
    assert registry.stats["compiled"] > before
    for inv in registry.all():
        if inv.key in ("con-4", "con-5"):
            native = compile_boolean(inv.expression, "Condition")
            for node in (base, abated, resolved, voided):
                assert native(node, node) is registry._evaluate(inv.fn, node, "Condition", _Ctx(node))


def test_compiled_comparisons_of_several_values_decide_as_fhirpath() -> None:
    """`=` and `!=` between a path with several values and a literal: false and true, as FHIRPath says (a
    collection of several items never equals one value); empty where the path has none."""
    import fhirpathpy

    from healthtwin.fhir.fhirpath_compile import compile_boolean
    for expression in ("name.given = 'Ann'", "name.given != 'Ann'", "gender = 'female' and name.given = 'Ann'",
                       "name.given = 'Ann' or gender = 'female'"):
        native = compile_boolean(expression, "Patient")
        for given in ([], ["Ann"], ["Bo"], ["Ann", "Bo"], ["Bo", "Ann", "Cy"]):
            node = {"resourceType": "Patient", "gender": "female", "name": [{"given": given}] if given else []}
            expected = fhirpathpy.evaluate(node, expression)
            assert native(node, node) is (expected[0] if expected else None), (expression, given)


class _Ctx:
    def __init__(self, resource: dict) -> None:
        self.resource = self.root = resource


def test_invariants_can_be_turned_off(v: Validator) -> None:
    fast = Validator(v.profiles, invariants=False)
    assert errors(fast.validate(patient(contact=[{"gender": "male"}]))) == []


def test_contained_resources(v: Validator) -> None:
    practitioner = {"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Lahti"}], "gender": "x"}
    r = patient(contained=[practitioner], generalPractitioner=[{"reference": "#gp"}])
    only(v, r, "code-invalid", "Patient.contained[0].gender")
    practitioner["gender"] = "male"
    assert v.validate(r) == []
    only(v, patient(contained=[practitioner]), "invariant", "Patient.contained[0]")  # dom-3: not referenced
    only(v, patient(generalPractitioner=[{"reference": "#nope"}]), "invariant", "Patient.generalPractitioner[0]")
    nested = dict(practitioner, contained=[{"resourceType": "Organization", "id": "o", "name": "x"}])
    r = patient(contained=[nested], generalPractitioner=[{"reference": "#gp"}])
    assert ("invariant", "Patient.contained[0].contained") in {(i.code, i.location) for i in v.validate(r)}
    medication = {"resourceType": "Medication", "id": "m"}
    only(v, observation(contained=[medication], subject={"reference": "#m"}), "structure", "Observation.subject")


def test_bundle_entries(v: Validator) -> None:
    bad = observation(status="foo")
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "resource": patient()},
                        {"fullUrl": "urn:uuid:5f1bd9b7-9c3a-4a4e-8f48-9a6d1a1d0f1e", "resource": bad}]}
    only(v, bundle, "code-invalid", "Bundle.entry[1].resource.status")
    bundle["entry"][1]["resource"] = observation(subject={"reference": "Medication/m1"})
    only(v, bundle, "structure", "Bundle.entry[1].resource.subject")
    bundle["entry"][1]["resource"] = {"resourceType": "Nope"}
    only(v, bundle, "not-supported", "Bundle.entry[1].resource")
    del bundle["type"]
    bundle["entry"].pop()
    # (bdl-3/bdl-4 compare with the missing type too, so they fail as well)
    assert ("required", "Bundle.type") in {(i.code, i.location) for i in v.validate(bundle)}


def test_parameters_resource(v: Validator) -> None:
    params = {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": patient(gender="x")}]}
    only(v, params, "code-invalid", "Parameters.parameter[0].resource.gender")


def test_content_reference(v: Validator) -> None:
    q = {"resourceType": "Questionnaire", "status": "active",
         "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "foo": 1}]}]}
    only(v, q, "structure", "Questionnaire.item[0].item[0].foo")


def test_unknown_profile_is_a_warning(v: Validator) -> None:
    issues = v.validate(patient(meta={"profile": ["http://example.org/unknown"]}))
    assert [(i.severity, i.location) for i in issues] == [("warning", "Patient.meta.profile[0]")]


def test_narrative(v: Validator) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Aino</p></div>'
    assert v.validate(patient(text={"status": "generated", "div": div})) == []
    bad = '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'
    only(v, patient(text={"status": "generated", "div": bad}), "invariant", "Patient.text.div")
    only(v, patient(text={"status": "generated", "div": "<p>x</p>"}), "invariant", "Patient.text.div")


def test_default_is_cached() -> None:
    assert Validator.default() is Validator.default()


def test_invariant_results_are_reused_for_identical_data_type_nodes(v: Validator) -> None:
    """drt-1 on a Duration depends on the Duration alone: evaluated once, then reused — and a violation is
    reused as a violation, on every resource that carries the same bad value."""
    def request(n: int, system: str) -> dict:
        return {"resourceType": "MedicationRequest", "id": f"m{n}", "status": "active", "intent": "order",
                "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/p"},
                "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d", "system": system}}}
    stats = v.model.invariants.stats
    before = stats["memo"]
    bad = "http://example.org/not-ucum"
    for n in range(3):
        found = errors(v.validate(request(n, bad)))
        assert [i.message.split(":")[0] for i in found] == ["drt-1"], found
    assert stats["memo"] >= before + 2
    assert not errors(v.validate(request(9, "http://unitsofmeasure.org")))


def test_invariants_that_read_the_resource_are_never_reused() -> None:
    assert invariants._pure("code.exists() implies ((system = %ucum) and value.exists())")
    assert not invariants._pure("reference.startsWith('#').not() or %resource.contained.id.exists()")
    assert not invariants._pure("%rootResource.meta.exists()") and not invariants._pure("start <= now()")
