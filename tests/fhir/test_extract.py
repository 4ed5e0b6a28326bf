"""Search index extraction: hand-checked rows on known resources, registry behaviour, and a differential test
of the compiled extractors against fhirpathpy over the specification's examples."""
from __future__ import annotations

import itertools
import re
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from healthtwin.fhir.dates import NEG_INF, POS_INF, parse_range
from healthtwin.fhir.extract import convert_untyped, extract, fhirpathpy_eval
from healthtwin.fhir.search_params import SearchRegistry
from tests.conftest import r4_package

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import fhir_package  # noqa: E402


def _package() -> Path:
    return r4_package()


def example(name: str) -> dict:
    return orjson.loads((_package() / f"{name}.json").read_bytes())


def rows_of(resource: dict, code: str, registry: SearchRegistry | None = None) -> list[tuple]:
    return [r[1:] for r in extract(resource, registry) if r[0] == code]


@pytest.fixture(scope="module")
def registry() -> SearchRegistry:
    return SearchRegistry.default()


# ------------------------------------------------------------------------------------- hand-checked rows

def test_observation_example() -> None:
    obs = example("Observation-example")
    codes = rows_of(obs, "code")
    assert ("token", "http://loinc.org", "29463-7", "body weight") in codes
    assert ("token", "http://snomed.info/sct", "27113001", "body weight") in codes
    assert ("token", None, None, "body weight") not in codes or obs["code"].get("text")
    assert rows_of(obs, "subject") == [("reference", "Patient", "example", "Patient/example")]
    assert rows_of(obs, "patient") == [("reference", "Patient", "example", "Patient/example")]
    assert rows_of(obs, "date") == [("date",) + parse_range("2016-03-28")]
    (q,) = rows_of(obs, "value-quantity")
    assert q[:7] == ("quantity", 185, 184.5, 185.5, "http://unitsofmeasure.org", "[lb_av]", "lbs")
    assert q[7] == "g" and q[8] == pytest.approx(185 * 453.59237)
    assert rows_of(obs, "status") == [("token", None, "final", None)]
    assert not rows_of(obs, "_id") and not rows_of(obs, "_lastUpdated")


def test_concept_text_row_only_when_it_adds_a_text() -> None:
    """`:text` reads the text column of every row, so CodeableConcept.text gets its own code-less row only when
    no coding's display already gives that text (after folding); a composite pairs only the rows kept."""
    def concept(**c: object) -> dict:
        return {"resourceType": "Observation", "status": "final", "code": c, "valueQuantity": {"value": 1}}
    loinc = {"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}
    assert rows_of(concept(coding=[loinc], text="body  weight"), "code") == [
        ("token", "http://loinc.org", "29463-7", "body weight")]
    assert rows_of(concept(coding=[loinc], text="Weight"), "code") == [
        ("token", "http://loinc.org", "29463-7", "body weight"), ("token", None, None, "weight")]
    assert rows_of(concept(coding=[{"system": "http://loinc.org", "code": "29463-7"}], text="Weight"), "code") == [
        ("token", "http://loinc.org", "29463-7", None), ("token", None, None, "weight")]
    assert rows_of(concept(text="Weight"), "code") == [("token", None, None, "weight")]
    pairs = rows_of(concept(coding=[loinc], text="Body weight"), "code-value-quantity")
    assert [p[1][0] for p in pairs] == [("token", "http://loinc.org", "29463-7", "body weight")]


def test_composite_keeps_code_and_value_paired() -> None:
    bp = example("Observation-blood-pressure")
    comps = rows_of(bp, "component-code-value-quantity")
    pairs = {(c[1][0][2], c[1][1][1]) for c in comps}  # (component code, value)
    assert ("8480-6", 107) in pairs and ("8462-4", 60) in pairs
    assert ("8480-6", 60) not in pairs and ("8462-4", 107) not in pairs
    assert all(c[0] == "composite" and c[1][0][0] == "token" and c[1][1][0] == "quantity" for c in comps)
    # `combo-` also pairs the component codes with their own values
    combo = {(c[1][0][2], c[1][1][1]) for c in rows_of(bp, "combo-code-value-quantity")}
    assert ("8480-6", 60) not in combo and ("8480-6", 107) in combo


def test_patient_names_normalized_and_deceased() -> None:
    patient = {"resourceType": "Patient", "id": "p1",
               "name": [{"family": "Müller-Lüdenscheidt", "given": ["José  Ángel", "Zoë"], "prefix": ["Dr."]}],
               "address": [{"line": ["Rue de l'Église 3"], "city": "Genève", "postalCode": "1204"}],
               "telecom": [{"system": "phone", "value": "+41 22 000 00 00"}],
               "birthDate": "1970-02", "active": True}
    names = rows_of(patient, "name")
    assert ("string", "muller-ludenscheidt", "Müller-Lüdenscheidt") in names
    assert ("string", "jose angel", "José  Ángel") in names
    assert ("string", "dr.", "Dr.") in names
    assert ("string", "zoe", "Zoë") in rows_of(patient, "given")
    assert ("string", "geneve", "Genève") in rows_of(patient, "address-city")
    assert ("string", "rue de l'eglise 3", "Rue de l'Église 3") in rows_of(patient, "address")
    assert rows_of(patient, "phone") == [("token", None, "+41 22 000 00 00", None)]
    assert rows_of(patient, "birthdate") == [("date",) + parse_range("1970-02")]
    assert rows_of(patient, "active") == [("token", None, "true", None)]
    assert rows_of(patient, "deceased") == [("token", None, "false", None)]
    assert rows_of({**patient, "deceasedDateTime": "2020-01-01"}, "deceased") == [("token", None, "true", None)]
    assert rows_of({**patient, "deceasedBoolean": False}, "deceased") == [("token", None, "false", None)]


def test_period_open_end_and_identifier() -> None:
    enc = {"resourceType": "Encounter", "id": "e", "status": "in-progress",
           "period": {"start": "2021-05-04T10:00:00+02:00"},
           "identifier": [{"system": "urn:oid:1.2.3", "value": "E-1", "type": {"text": "Visit Number"}}],
           "subject": {"reference": "http://other.example/fhir/Patient/9/_history/3",
                       "identifier": {"system": "urn:ahv", "value": "756.1"}}}
    (period,) = rows_of(enc, "date")
    assert period == ("date", parse_range("2021-05-04T10:00:00+02:00")[0], POS_INF)
    assert rows_of({**enc, "period": {"end": "2021"}}, "date") == [("date", NEG_INF, parse_range("2021")[1])]
    assert rows_of(enc, "identifier") == [("token", "urn:oid:1.2.3", "E-1", "visit number")]
    assert rows_of(enc, "subject") == [("reference", "Patient", "9", "http://other.example/fhir/Patient/9")]
    assert rows_of(enc, "subject:identifier") == [("token", "urn:ahv", "756.1", None)]
    assert rows_of(enc, "patient") == [("reference", "Patient", "9", "http://other.example/fhir/Patient/9")]


def test_reference_forms() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Group/g1"},
           "performer": [{"reference": "Practitioner/pr1/_history/2"}, {"reference": "#c1"},
                         {"reference": "urn:uuid:1b0c1a9e-0000-4000-8000-000000000001"}],
           "basedOn": [{"identifier": {"value": "only-identifier"}}]}
    assert rows_of(obs, "subject") == [("reference", "Group", "g1", "Group/g1")]
    assert rows_of(obs, "patient") == []  # where(resolve() is Patient) filters the Group out
    assert rows_of(obs, "performer") == [("reference", "Practitioner", "pr1", "Practitioner/pr1"),
                                         ("reference", None, None, "urn:uuid:1b0c1a9e-0000-4000-8000-000000000001")]
    assert rows_of(obs, "based-on") == []
    assert rows_of(obs, "based-on:identifier") == [("token", None, "only-identifier", None)]
    vs = {"resourceType": "Questionnaire", "status": "active", "derivedFrom": ["http://x.org/Questionnaire/q|2.0"]}
    assert rows_of(vs, "definition") == [] and rows_of(vs, "url") == []
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"},
            "instantiatesCanonical": ["http://x.org/PlanDefinition/p|1.2"]}
    assert rows_of(plan, "instantiates-canonical") == [("reference", None, None, "http://x.org/PlanDefinition/p")]


def test_money_range_and_extension_params() -> None:
    charge = {"resourceType": "ChargeItem", "status": "billed", "code": {"text": "x"},
              "subject": {"reference": "Patient/1"}, "priceOverride": {"value": 40.5, "currency": "EUR"},
              "factorOverride": 0.8}
    assert rows_of(charge, "price-override") == [
        ("quantity", 40.5, 40.45, 40.55, "urn:iso:std:iso:4217", "EUR", None, None, None)]
    (factor,) = rows_of(charge, "factor-override")
    assert factor[0:2] == ("number", 0.8) and factor[2:] == pytest.approx((0.75, 0.85))
    act = {"resourceType": "ActivityDefinition", "status": "active",
           "useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                                    "code": "age"},
                           "valueRange": {"low": {"value": 18, "unit": "a", "system": "http://unitsofmeasure.org",
                                                  "code": "a"}}}]}
    (rng,) = rows_of(act, "context-quantity")
    assert rng == ("quantity", None, 18, POS_INF, "http://unitsofmeasure.org", "a", "a", None, None)
    (comp,) = rows_of(act, "context-type-quantity")
    assert comp[1] == [("token", "http://terminology.hl7.org/CodeSystem/usage-context-type", "age", None), rng]
    url = "http://hl7.org/fhir/StructureDefinition/patient-extensions-Patient-mothersMaidenName"
    patient = {"resourceType": "Patient", "extension": [{"url": url, "valueString": "Åberg"},
                                                        {"url": "http://other", "valueString": "no"}]}
    assert rows_of(patient, "mothersMaidenName") == [("string", "aberg", "Åberg")]


def test_meta_bundle_location_and_dedup() -> None:
    res = {"resourceType": "Location", "id": "l", "meta": {
        "profile": ["http://x.org/p"], "source": "http://src#1", "lastUpdated": "2020-01-01T00:00:00Z",
        "tag": [{"system": "http://t", "code": "a"}, {"system": "http://t", "code": "a"}],
        "security": [{"system": "http://s", "code": "R", "display": "Restricted"}]},
        "position": {"latitude": 46.2, "longitude": 6.1}, "name": "A", "alias": ["A"]}
    rows = extract(res)
    assert ("_profile", "uri", "http://x.org/p") in rows and ("_source", "uri", "http://src#1") in rows
    assert rows.count(("_tag", "token", "http://t", "a", None)) == 1
    assert ("_security", "token", "http://s", "R", "restricted") in rows
    assert ("near", "special", 46.2, 6.1) in rows
    assert not any(r[0] in ("_id", "_lastUpdated") for r in rows)
    assert len(rows) == len(set(map(repr, rows)))
    bundle = {"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:x", "value": "1"},
              "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]}
    assert rows_of(bundle, "composition") == [("reference", "Composition", "c1", "Composition/c1")]


def test_malformed_resource_does_not_raise() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": "not-a-concept",
           "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2020-13-45"}
    rows = extract(obs)
    assert ("subject", "reference", "Patient", "1", "Patient/1") in rows
    assert not [r for r in rows if r[0] == "date"]


# -------------------------------------------------------------------------------------------- registry

def test_registry_lookup(registry: SearchRegistry) -> None:
    obs = registry.for_type("Observation")
    for code in ("_id", "_lastUpdated", "_profile", "_tag", "_security", "_source", "_text", "code", "subject"):
        assert code in obs, code
    assert "_text" not in registry.for_type("Bundle")
    assert registry.get("Observation", "code").type == "token"
    assert registry.get("Patient", "code") is None
    assert registry.by_url("http://hl7.org/fhir/SearchParameter/clinical-code").code == "code"
    assert "Patient" in registry.get("Observation", "patient").targets
    assert registry.get("Observation", "code-value-quantity").components[1][1] == "value.as(Quantity)"
    assert registry.compartment_params("Patient", "Observation") == ("subject", "performer")
    assert registry.compartment_params("Patient", "Nope") == ()
    assert registry.extractor("Observation") is registry.extractor("Observation")


def test_registry_add_and_remove() -> None:
    registry = SearchRegistry.load()
    before = registry.extractor("Patient")
    p = registry.add({"resourceType": "SearchParameter", "url": "http://example.org/sp/nickname",
                      "code": "nickname", "base": ["Patient"], "type": "string",
                      "expression": "Patient.name.where(use = 'nickname').given"})
    assert p.code == "nickname" and registry.get("Patient", "nickname") == p
    assert registry.extractor("Patient") is not before
    patient = {"resourceType": "Patient", "name": [{"use": "nickname", "given": ["Bob"]},
                                                   {"use": "official", "given": ["Robert"]}]}
    assert rows_of(patient, "nickname", registry) == [("string", "bob", "Bob")]
    for bad, why in [("Patient.nmae", "no element"), ("Patient.name.given.substring(1)", "substring"),
                     ("Patient.name[", "expected")]:
        with pytest.raises(ValueError, match=why):
            registry.add({"url": "http://example.org/sp/bad", "code": "bad", "base": ["Patient"],
                          "type": "string", "expression": bad})
    with pytest.raises(ValueError, match="lacks"):
        registry.add({"code": "x", "base": ["Patient"], "type": "string", "expression": "Patient.name"})
    registry.remove("http://example.org/sp/nickname")
    assert registry.get("Patient", "nickname") is None
    assert rows_of(patient, "nickname", registry) == []
    assert SearchRegistry.default().get("Patient", "nickname") is None


# ----------------------------------------------------------------------------------- over the examples

def _all_resources() -> list[Path]:
    return sorted(p for p in _package().glob("*.json") if p.name != "package.json" and not p.name.startswith("."))


def test_extraction_never_raises_on_any_package_resource(registry: SearchRegistry) -> None:
    count = 0
    for path in _all_resources():
        res = orjson.loads(path.read_bytes())
        if isinstance(res, dict) and "resourceType" in res:
            extract(res, registry)
            count += 1
    assert count > 5000


def _fhirpathpy_expression(expr: str, rtype: str) -> str:
    # fhirpathpy 2.x does not treat `Resource.` as a type prefix, and (per FHIRPath) raises on `as` over a
    # collection of several items; R4 search expressions mean `ofType` (which R5 rewrote them to).
    expr = re.sub(r"\b(Resource|DomainResource)\.", rtype + ".", expr)
    expr = re.sub(r"\.as\((\w+)\)", r".ofType(\1)", expr)
    return re.sub(r"\s+as\s+(\w+)\)", r".ofType(\1))", expr)


def _expected(registry: SearchRegistry, res: dict, code: str) -> set:
    p = registry.get(res["resourceType"], code)
    expr = _fhirpathpy_expression(p.expression, res["resourceType"])
    if p.type != "composite":
        return {r for r in convert_untyped(p.type, code, fhirpathpy_eval(expr)(res)) if r[0] == code}
    out = set()
    # fhirpathpy loses element types across `|`, so each part of the focus is evaluated on its own
    for part in (s.strip() for s in expr.split("|")):
        for i in range(len(fhirpathpy_eval(part)(res))):
            parts = []
            for definition, component in p.components:
                sub = registry.by_url(definition)
                values = fhirpathpy_eval(f"({part})[{i}].select({_fhirpathpy_expression(component, '')})")(res)
                parts.append([r[1:] for r in convert_untyped(sub.type, sub.code, values)])
            out.update((code, "composite", combo) for combo in itertools.product(*parts))
    return out


@pytest.mark.slow
def test_differential_against_fhirpathpy(registry: SearchRegistry) -> None:
    """Compiled rows == fhirpathpy's results converted by shape, for every parameter of every example (and of
    every 4th definitional resource); prints the tally."""
    _package()  # fetched under the lock first
    paths = fhir_package.examples()
    examples = set(paths)
    paths += [p for i, p in enumerate(_all_resources()) if p not in examples and i % 4 == 0]
    compared = nonempty = 0
    mismatches: dict[tuple[str, str], str] = {}
    for path in paths:
        res = orjson.loads(path.read_bytes())
        rtype = res.get("resourceType")
        got = defaultdict(set)
        for r in extract(res, registry):
            got[r[0]].add(r if r[1] != "composite" else r[:2] + (tuple(r[2]),))
        for code, p in registry.for_type(rtype).items():
            if p.expression is None or p.type == "special" or code in ("_id", "_lastUpdated"):
                continue
            expected = _expected(registry, res, code)
            compared += 1
            nonempty += bool(expected)
            if expected != got.get(code, set()):
                mismatches.setdefault((rtype, code), f"{path.name}: compiled-only "
                                      f"{sorted(got.get(code, set()) - expected, key=repr)[:2]} fhirpathpy-only "
                                      f"{sorted(expected - got.get(code, set()), key=repr)[:2]}")
    print(f"\ndifferential: {len(paths)} resources, {compared} (resource, parameter) pairs, "
          f"{nonempty} non-empty, {len(mismatches)} mismatching parameters")
    assert not mismatches, "\n".join(f"{k}: {v}" for k, v in mismatches.items())
