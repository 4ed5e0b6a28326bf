"""The cheap pre-check before partial sealing (at_rest.may_name_a_person) must never pass a resource that holds
a person part: whenever it says False, the full walk (_strip) finds nothing to seal. Checked on seeded random
documents built from the members that matter (displays in and out of Codings, references, names, telecoms,
identifiers, escaped strings, every member order), and on the registry's own recommendations."""
from __future__ import annotations

import random

import orjson

from healthtwin.security.at_rest import _strip, may_name_a_person

KEYS = ["display", "code", "system", "reference", "text", "value", "url", "identifier", "name", "telecom",
        "coding", "valueCoding", "subject", "extension", "status"]
PRIMITIVE = {"display", "code", "system", "reference", "url", "status"}
STRINGS = ["Anna Aliyeva", "c", "http://loinc.org", 'say "display"', 'back\\slash', "{", "}", "display",
           '"code":"x","display":', "Patient/p1", "https://health.gov.az/fhir/sid/fin"]


def _node(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice(STRINGS)
    if roll < 0.6:
        return [_node(rng, depth + 1) for _ in range(rng.randint(1, 3))]
    keys = rng.sample(KEYS, rng.randint(1, 5))
    # primitives stay primitives (as validated FHIR has them); the rest may nest anything
    return {k: rng.choice(STRINGS) if k in PRIMITIVE else _node(rng, depth + 1) for k in keys}


def _coding(rng: random.Random) -> dict:
    members = [("system", "http://loinc.org"), ("code", rng.choice(["30981-5", 'q"uote', "a\\b"])),
               ("display", rng.choice(STRINGS))]
    if rng.random() < 0.3:
        rng.shuffle(members)
    return dict(members)


def _document(rng: random.Random) -> dict:
    doc: dict = {"resourceType": "ImmunizationRecommendation", "id": "r1"}
    for i in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.4:
            doc[f"c{i}"] = {"coding": [_coding(rng) for _ in range(rng.randint(1, 3))], "text": "t"}
        elif kind < 0.55:
            doc[f"r{i}"] = {"reference": "Practitioner/1", "display": rng.choice(STRINGS)}
        else:
            doc[f"x{i}"] = _node(rng, 0)
    return doc


def test_a_document_the_precheck_passes_has_nothing_to_seal():
    rng = random.Random(20261203)
    passed = 0
    for _ in range(20_000):
        doc = _document(rng)
        content = orjson.dumps(doc)
        if may_name_a_person(content):
            continue
        passed += 1
        found: list = []
        _strip(orjson.loads(content), [], found)
        assert found == [], content
    assert passed > 1_000  # the check was exercised on documents it lets through, not only on refusals


def test_codings_pass_and_a_reference_display_does_not():
    coded = {"resourceType": "ImmunizationRecommendation", "recommendation": [{"forecastStatus": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status", "code": "due",
         "display": "Due"}]}}]}
    assert not may_name_a_person(orjson.dumps(coded))
    with_person = dict(coded, patient={"reference": "Patient/p1", "display": "Anna Aliyeva"})
    assert may_name_a_person(orjson.dumps(with_person))
    after_code = {"resourceType": "Observation", "performer": [{"reference": "Practitioner/1", "display": "Dr Aliyev"}],
                  "code": {"coding": [{"code": "x", "display": "y"}]}}
    assert may_name_a_person(orjson.dumps(after_code))
