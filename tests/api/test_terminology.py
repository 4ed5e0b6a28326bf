"""The terminology service ($lookup, $validate-code, $subsumes, $expand, $translate) over the R4 package's code
systems and over definitions stored on the server, on both databases, through the real app."""
from __future__ import annotations

import pytest

GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD = "https://health.gov.az/fhir/CodeSystem/icd10-az"
ICD_VS = "https://health.gov.az/fhir/ValueSet/circulatory"
MAP = "https://health.gov.az/fhir/ConceptMap/icd10-to-local"


def _params(resource: dict) -> dict:
    """Parameters as {name: value or [parts]} (repeated names as lists)."""
    out: dict = {}
    for p in resource["parameter"]:
        value = p.get("part") if "part" in p else next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _codes(valueset: dict) -> list[str]:
    return [c["code"] for c in valueset["expansion"].get("contains", [])]


@pytest.fixture
def national(client):
    """A national ICD-10 fragment with a hierarchy, a value set over it, and a map to local codes."""
    concepts = [{"code": "I00-I99", "display": "Diseases of the circulatory system", "concept": [
        {"code": "I10-I15", "display": "Hypertensive diseases", "concept": [
            {"code": "I10", "display": "Essential (primary) hypertension",
             "designation": [{"language": "az", "value": "Essensial (birincili) hipertenziya"}]},
            {"code": "I11", "display": "Hypertensive heart disease"}]},
        {"code": "I20-I25", "display": "Ischaemic heart diseases", "concept": [
            {"code": "I21", "display": "Acute myocardial infarction"},
            {"code": "I25", "display": "Chronic ischaemic heart disease",
             "property": [{"code": "status", "valueCode": "retired"}]}]}]},
        {"code": "E11", "display": "Type 2 diabetes mellitus"}]
    for resource in (
            {"resourceType": "CodeSystem", "id": "icd10-az", "url": ICD, "version": "2024", "name": "ICD10AZ",
             "status": "active", "content": "fragment", "hierarchyMeaning": "is-a", "concept": concepts,
             "property": [{"code": "status", "type": "code"}]},
            {"resourceType": "ValueSet", "id": "circulatory", "url": ICD_VS, "name": "Circulatory",
             "status": "active", "compose": {
                 "include": [{"system": ICD, "filter": [{"property": "concept", "op": "is-a", "value": "I00-I99"}]}],
                 "exclude": [{"system": ICD, "concept": [{"code": "I00-I99"}, {"code": "I10-I15"},
                                                         {"code": "I20-I25"}]}]}},
            {"resourceType": "ConceptMap", "id": "icd-local", "url": MAP, "status": "active",
             "group": [{"source": ICD, "target": "https://health.gov.az/fhir/CodeSystem/local-dx",
                        "element": [{"code": "I10", "target": [{"code": "HT-1", "display": "Hipertoniya",
                                                                "equivalence": "equivalent"}]},
                                    {"code": "E11", "target": [{"equivalence": "unmatched"}]}]}]}):
        r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text
    return client


# -- $lookup -------------------------------------------------------------------------------------------------------

def test_lookup_in_the_packaged_code_systems(client):
    r = client.get(f"/fhir/CodeSystem/$lookup?system={GENDER}&code=female")
    assert r.status_code == 200, r.text
    out = _params(r.json())
    assert (out["name"], out["version"], out["display"]) == ("AdministrativeGender", "4.0.1", "Female")
    out = _params(client.get(f"/fhir/CodeSystem/$lookup?system={ACT}&code=AMB").json())
    assert out["display"] == "ambulatory"
    assert [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "_ActEncounterCode"}] \
        in (out["property"] if isinstance(out["property"][0], list) else [out["property"]])


def test_lookup_in_a_stored_code_system_with_properties_and_designations(national):
    r = national.get(f"/fhir/CodeSystem/$lookup?system={ICD}&code=I10")
    out = _params(r.json())
    assert (out["name"], out["version"], out["display"]) == ("ICD10AZ", "2024", "Essential (primary) hypertension")
    assert out["designation"] == [{"name": "language", "valueCode": "az"},
                                  {"name": "value", "valueString": "Essensial (birincili) hipertenziya"}]
    assert out["property"] == [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "I10-I15"}]
    children = _params(national.get("/fhir/CodeSystem/icd10-az/$lookup?code=I20-I25&property=child").json())
    assert [p[1]["valueCode"] for p in children["property"]] == ["I21", "I25"]
    retired = _params(national.get(f"/fhir/CodeSystem/$lookup?system={ICD}&code=I25&property=status").json())
    assert retired["property"] == [{"name": "code", "valueCode": "status"}, {"name": "value", "valueCode": "retired"}]
    post = national.post("/fhir/CodeSystem/$lookup", json={"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": ICD, "code": "E11"}}]})
    assert _params(post.json())["display"] == "Type 2 diabetes mellitus"


@pytest.mark.parametrize("query,status", [
    (f"system={GENDER}&code=nope", 404),
    ("system=http://example.org/unknown&code=x", 404),
    (f"system={GENDER}", 400),
    ("code=female", 400),
    (f"system={GENDER}&code=female&unknown=1", 400),
    (f"system={GENDER}&code=female&code=male", 400),
])
def test_lookup_errors_are_operation_outcomes(client, query, status):
    r = client.get(f"/fhir/CodeSystem/$lookup?{query}")
    assert r.status_code == status
    assert r.json()["resourceType"] == "OperationOutcome"


# -- $subsumes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,outcome", [
    ("I00-I99", "I10", "subsumes"), ("I21", "I20-I25", "subsumed-by"), ("I10", "I10", "equivalent"),
    ("I10", "I21", "not-subsumed"), ("E11", "I10", "not-subsumed")])
def test_subsumes_follows_the_stored_hierarchy(national, a, b, outcome):
    r = national.get(f"/fhir/CodeSystem/$subsumes?system={ICD}&codeA={a}&codeB={b}")
    assert _params(r.json()) == {"outcome": outcome}


def test_subsumes_in_the_package_and_its_errors(client):
    r = client.get(f"/fhir/CodeSystem/$subsumes?system={ACT}&codeA=_ActEncounterCode&codeB=AMB")
    assert _params(r.json()) == {"outcome": "subsumes"}
    assert client.get(f"/fhir/CodeSystem/$subsumes?system={ACT}&codeA=AMB&codeB=zzz").status_code == 404
    assert client.post("/fhir/CodeSystem/$subsumes", json={"resourceType": "Parameters", "parameter": [
        {"name": "codingA", "valueCoding": {"system": ACT, "code": "AMB"}},
        {"name": "codingB", "valueCoding": {"system": GENDER, "code": "male"}}]}).status_code == 400


# -- $expand -------------------------------------------------------------------------------------------------------

def test_expand_a_packaged_value_set(client):
    vs = client.get(f"/fhir/ValueSet/$expand?url={GENDER_VS}").json()
    assert vs["resourceType"] == "ValueSet" and vs["url"] == GENDER_VS
    assert vs["expansion"]["total"] == 4
    assert {(c["code"], c["display"]) for c in vs["expansion"]["contains"]} == {
        ("male", "Male"), ("female", "Female"), ("other", "Other"), ("unknown", "Unknown")}
    assert vs["expansion"]["identifier"].startswith("urn:uuid:")


def test_expand_a_packaged_value_set_from_its_compose(client):
    """v3-ActEncounterCode is an is-a filter over v3-ActCode: expanded on request, not at generation time."""
    url = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
    vs = client.get(f"/fhir/ValueSet/$expand?url={url}").json()
    assert {"AMB", "EMER", "IMP"} <= set(_codes(vs))
    assert _codes(client.get(f"/fhir/ValueSet/$expand?url={url}&filter=emerg").json()) == ["EMER"]


def test_expand_a_stored_value_set_with_filter_exclude_and_paging(national):
    vs = national.get(f"/fhir/ValueSet/$expand?url={ICD_VS}").json()
    assert sorted(_codes(vs)) == ["I10", "I11", "I21", "I25"]
    assert {c["code"] for c in vs["expansion"]["contains"] if c.get("inactive")} == {"I25"}
    active = national.get("/fhir/ValueSet/circulatory/$expand?activeOnly=true").json()
    assert sorted(_codes(active)) == ["I10", "I11", "I21"]
    heart = national.get(f"/fhir/ValueSet/$expand?url={ICD_VS}&filter=heart").json()
    assert sorted(_codes(heart)) == ["I11", "I25"]  # "heart" starts a word of each display
    pages = [national.get(f"/fhir/ValueSet/$expand?url={ICD_VS}&count=3&offset={o}").json()["expansion"]
             for o in (0, 3)]
    assert [p["total"] for p in pages] == [4, 4] and [p["offset"] for p in pages] == [0, 3]
    assert sorted(c["code"] for p in pages for c in p.get("contains", [])) == ["I10", "I11", "I21", "I25"]


def test_expand_an_inline_value_set_with_imports_and_filters(national):
    def expand(compose):
        return national.post("/fhir/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
            {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft", "compose": compose}}]})
    imported = expand({"include": [{"valueSet": [ICD_VS], "system": ICD,
                                    "filter": [{"property": "concept", "op": "descendent-of", "value": "I20-I25"}]}]})
    assert sorted(_codes(imported.json())) == ["I21", "I25"]
    regex = expand({"include": [{"system": ICD, "filter": [{"property": "concept", "op": "regex", "value": "I2.*"}]}]})
    assert sorted(_codes(regex.json())) == ["I20-I25", "I21", "I25"]
    parent = expand({"include": [{"system": ICD, "filter": [{"property": "parent", "op": "=", "value": "I10-I15"}]}]})
    assert sorted(_codes(parent.json())) == ["I10", "I11"]
    status = expand({"include": [{"system": ICD, "filter": [{"property": "status", "op": "=", "value": "retired"}]}]})
    assert _codes(status.json()) == ["I25"]
    listed = expand({"include": [{"system": "http://loinc.org", "concept": [{"code": "8480-6", "display": "SBP"}]}]})
    assert listed.json()["expansion"]["contains"] == [{"system": "http://loinc.org", "code": "8480-6",
                                                       "display": "SBP"}]


@pytest.mark.parametrize("compose,status", [
    ({"include": [{"system": "http://snomed.info/sct"}]}, 422),  # not held here: no silently empty answer
    ({"include": [{"system": ICD, "filter": [{"property": "concept", "op": "regex", "value": r"(a)\1"}]}]}, 422),
    ({"include": [{"system": ICD, "filter": [{"property": "concept", "op": "regex", "value": "[unclosed"}]}]}, 422),
    ({"include": [{"system": ICD, "filter": [{"property": "concept", "op": "sounds-like", "value": "x"}]}]}, 422),
    ({"include": [{"valueSet": ["https://example.org/ValueSet/absent"]}]}, 422),
    ({"include": [{}]}, 422),
])
def test_expand_refuses_what_it_cannot_do(national, compose, status):
    r = national.post("/fhir/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft", "compose": compose}}]})
    assert r.status_code == status, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_expand_pages_large_expansions_and_checks_its_inputs(client):
    big = {"resourceType": "CodeSystem", "id": "big", "url": "https://example.org/big", "status": "active",
           "content": "complete", "concept": [{"code": f"c{i:04}", "display": f"Code {i}"} for i in range(1200)]}
    assert client.put("/fhir/CodeSystem/big", json=big).status_code == 201
    vs = {"resourceType": "ValueSet", "id": "big", "url": "https://example.org/vs/big", "status": "active",
          "compose": {"include": [{"system": "https://example.org/big"}]}}
    assert client.put("/fhir/ValueSet/big", json=vs).status_code == 201
    whole = client.get("/fhir/ValueSet/big/$expand")
    assert whole.status_code == 422 and "count" in whole.text
    page = client.get("/fhir/ValueSet/big/$expand?count=10&offset=1195").json()["expansion"]
    assert page["total"] == 1200 and _codes({"expansion": page}) == [f"c{i}" for i in range(1195, 1200)]
    assert client.get("/fhir/ValueSet/big/$expand?count=-1").status_code == 400
    assert client.get("/fhir/ValueSet/big/$expand?activeOnly=maybe").status_code == 400
    assert client.get("/fhir/ValueSet/absent/$expand").status_code == 404
    assert client.get("/fhir/ValueSet/$expand").status_code == 400


# -- $validate-code ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("query,ok,display", [
    (f"system={GENDER}&code=female", True, "Female"),
    (f"system={GENDER}&code=female&display=female", True, "Female"),  # displays compare without case
    (f"system={GENDER}&code=female&display=Woman", False, "Female"),
    (f"system={GENDER}&code=fem", False, None),
    (f"system={ACT}&code=AMB", False, None),
])
def test_validate_code_against_a_value_set(client, query, ok, display):
    out = _params(client.get(f"/fhir/ValueSet/$validate-code?url={GENDER_VS}&{query}").json())
    assert out["result"] is ok and out.get("display") == display
    assert ("message" in out) is not ok


def test_validate_code_with_a_codeable_concept_and_a_stored_value_set(national):
    concept = {"coding": [{"system": "http://loinc.org", "code": "x"}, {"system": ICD, "code": "I21"}]}
    r = national.post("/fhir/ValueSet/circulatory/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]})
    assert _params(r.json()) == {"result": True, "display": "Acute myocardial infarction"}
    outside = national.get(f"/fhir/ValueSet/$validate-code?url={ICD_VS}&system={ICD}&code=E11")
    assert _params(outside.json())["result"] is False
    assert national.get(f"/fhir/ValueSet/$validate-code?url={ICD_VS}&code=E11").status_code == 400


def test_validate_code_against_a_code_system(national):
    assert _params(national.get(f"/fhir/CodeSystem/$validate-code?url={GENDER}&code=male").json())["result"] is True
    out = _params(national.get("/fhir/CodeSystem/icd10-az/$validate-code?code=I10&display=Essensial (birincili) "
                               "hipertenziya").json())
    assert out["result"] is True  # a designation is a valid display too
    out = _params(national.get(f"/fhir/CodeSystem/$validate-code?url={ICD}&code=I99").json())
    assert out["result"] is False and "I99" in out["message"]


# -- $translate ----------------------------------------------------------------------------------------------------

def test_translate_with_the_packaged_maps(client):
    out = _params(client.get(f"/fhir/ConceptMap/$translate?system={GENDER}&code=female"
                             "&targetsystem=http://terminology.hl7.org/CodeSystem/v2-0001").json())
    assert out["result"] is True
    assert out["match"] == [{"name": "equivalence", "valueCode": "equal"},
                            {"name": "concept", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/"
                                                                          "v2-0001", "code": "F"}},
                            {"name": "source", "valueUri": "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"}]


def test_translate_with_a_stored_map_both_ways(national):
    out = _params(national.get(f"/fhir/ConceptMap/$translate?url={MAP}&system={ICD}&code=I10").json())
    assert out["result"] is True
    assert out["match"][1] == {"name": "concept", "valueCoding": {
        "system": "https://health.gov.az/fhir/CodeSystem/local-dx", "code": "HT-1", "display": "Hipertoniya"}}
    back = _params(national.get("/fhir/ConceptMap/icd-local/$translate?code=HT-1&reverse=true"
                                "&system=https://health.gov.az/fhir/CodeSystem/local-dx").json())
    assert back["result"] is True and back["match"][1]["valueCoding"]["code"] == "I10"
    unmatched = _params(national.get(f"/fhir/ConceptMap/$translate?url={MAP}&system={ICD}&code=E11").json())
    assert unmatched["result"] is False and "E11" in unmatched["message"]
    assert national.get("/fhir/ConceptMap/$translate?url=https://example.org/none&code=x").status_code == 404


# -- around the operations -----------------------------------------------------------------------------------------

def test_search_in_a_stored_value_set_with_a_filter(national):
    """`:in` expands the stored ValueSet with the same expander, filters included."""
    assert national.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}).status_code == 201
    for oid, code in (("o-i21", "I21"), ("o-e11", "E11")):
        cond = {"resourceType": "Condition", "id": oid, "subject": {"reference": "Patient/x"},
                "code": {"coding": [{"system": ICD, "code": code}]}}
        assert national.put(f"/fhir/Condition/{oid}", json=cond).status_code == 201
    bundle = national.get(f"/fhir/Condition?code:in={ICD_VS}").json()
    assert [e["resource"]["id"] for e in bundle.get("entry", [])] == ["o-i21"]
    bundle = national.get(f"/fhir/Condition?code:not-in={ICD_VS}").json()
    assert [e["resource"]["id"] for e in bundle.get("entry", [])] == ["o-e11"]


def test_the_capability_statement_lists_the_terminology_operations(client):
    cs = client.get("/fhir/metadata").json()
    ops = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in cs["rest"][0]["resource"]}
    assert {"lookup", "validate-code", "subsumes"} <= ops["CodeSystem"]
    assert {"expand", "validate-code"} <= ops["ValueSet"]
    assert "translate" in ops["ConceptMap"]


def test_terminology_capabilities_list_packaged_and_stored_code_systems(national):
    tc = national.get("/fhir/metadata?mode=terminology").json()
    assert tc["resourceType"] == "TerminologyCapabilities"
    systems = {c["uri"]: c.get("version") for c in tc["codeSystem"]}
    assert systems[ICD] == [{"code": "2024"}] and systems[GENDER] == [{"code": "4.0.1"}]
    assert len(systems) > 1000
    assert {"name": "filter"} in tc["expansion"]["parameter"]
    assert national.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"


def test_a_changed_or_deleted_code_system_is_seen_at_once(national):
    """Parsed definitions are kept per resource version: an update is a new version, a delete leaves none."""
    url = f"/fhir/CodeSystem/$lookup?system={ICD}&code=E11"
    assert _params(national.get(url).json())["display"] == "Type 2 diabetes mellitus"
    cs = national.get("/fhir/CodeSystem/icd10-az").json()
    cs["concept"][1]["display"] = "Diabetes mellitus, type 2"
    assert national.put("/fhir/CodeSystem/icd10-az", json=cs).status_code == 200
    assert _params(national.get(url).json())["display"] == "Diabetes mellitus, type 2"
    assert national.delete("/fhir/CodeSystem/icd10-az").status_code in (200, 204)
    assert national.get(url).status_code == 404


def test_the_populations_national_terminology_is_served(client):
    """What the generator publishes (population/terminology.py) answers the terminology operations."""
    from healthtwin.population.terminology import national_terminology
    for rtype, resource in national_terminology():
        assert client.put(f"/fhir/{rtype}/{resource['id']}", json=resource).status_code == 201
    out = _params(client.get("/fhir/CodeSystem/$lookup?system=http://loinc.org&code=4548-4").json())
    assert out["display"] == "Hemoglobin A1c/Hemoglobin.total in Blood"
    calendar = "https://health.gov.az/fhir/ValueSet/immunization-calendar"
    ok = _params(client.get(f"/fhir/ValueSet/$validate-code?url={calendar}&system=http://hl7.org/fhir/sid/cvx"
                            "&code=19").json())
    assert ok == {"result": True, "display": "Bacillus Calmette-Guerin vaccine"}
    chronic = client.get("/fhir/ValueSet/chronic-conditions/$expand").json()["expansion"]
    assert {"I10", "E11.9", "D56.1"} <= {c["code"] for c in chronic["contains"]}
