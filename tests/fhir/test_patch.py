"""FHIR PATCH tests: every case of the HL7 fhir-test-cases r4/patch corpus, plus JSON Patch
edge cases from RFC 6902 and FHIRPath Patch behaviours the corpus does not cover."""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from healthtwin.fhir.patch import PatchError, apply_fhirpath_patch, apply_json_patch
from healthtwin.fhir.xml_json import element_to_json, xml_to_json
from tests.conftest import corpora_dir, corpus


def _corpus_file(name: str) -> Path | None:
    """Collect-time lookup (parametrization needs the cases before the test can skip)."""
    path = corpora_dir() / "fhir-patch-tests" / "r4" / "patch" / name
    return path if path.exists() else None


def _xml_cases(name: str) -> list[Any]:
    path = _corpus_file(name)
    if path is None:
        return [pytest.param(None, id="corpus-absent")]
    root = ET.parse(path).getroot()
    return [pytest.param(case, id=case.get("name")) for case in root.findall("case")]


def _json_cases() -> list[Any]:
    path = _corpus_file("json-patch-tests.json")
    if path is None:
        return [pytest.param(None, id="corpus-absent")]
    cases = json.loads(path.read_text("utf-8"))
    return [pytest.param(c, id=c.get("comment", str(i))) for i, c in enumerate(cases)]


def _first_child(elem: ET.Element | None) -> ET.Element:
    assert elem is not None
    return next(c for c in elem if isinstance(c.tag, str))


def _normalize(value: Any) -> Any:
    """Compare narrative XHTML by its canonical XML form, not by quoting/escaping details."""
    if isinstance(value, dict):
        return {k: (_canonical_div(v) if k == "div" and isinstance(v, str) else _normalize(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _canonical_div(text: str) -> str:
    return ET.canonicalize(text)


# --------------------------------------------------------------------------- corpus: FHIRPath Patch


@pytest.mark.parametrize("case", _xml_cases("fhir-patch-tests.xml"))
def test_fhirpath_patch_corpus(case: ET.Element | None) -> None:
    corpus("fhir-patch-tests", "r4", "patch", "fhir-patch-tests.xml")
    assert case is not None
    resource = element_to_json(_first_child(case.find("input")))
    params = element_to_json(_first_child(case.find("diff")))
    before = copy.deepcopy(resource)
    error = case.find("error")
    if error is not None:
        with pytest.raises(PatchError) as info:
            apply_fhirpath_patch(resource, params)
        assert info.value.status in (400, 422)
        expected_msg = error.get("msg") or error.get("message")
        if expected_msg:
            assert info.value.message == expected_msg
    else:
        result = apply_fhirpath_patch(resource, params)
        expected = element_to_json(_first_child(case.find("output")))
        assert _normalize(result) == _normalize(expected)
    assert resource == before, "the input resource must not be modified"


# --------------------------------------------------------------------------- corpus: JSON Patch


@pytest.mark.parametrize("case", _json_cases())
def test_json_patch_corpus(case: dict[str, Any] | None) -> None:
    corpus("fhir-patch-tests", "r4", "patch", "json-patch-tests.json")
    assert case is not None
    doc = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(PatchError):
            apply_json_patch(doc, case["patch"])
    else:
        assert apply_json_patch(doc, case["patch"]) == case["expected"]
    assert doc == case["doc"], "the input document must not be modified"


# --------------------------------------------------------------------------- corpus: XML Patch


@pytest.mark.parametrize("case", _xml_cases("xml-patch-tests.xml"))
def test_xml_patch_corpus(case: ET.Element | None) -> None:
    corpus("fhir-patch-tests", "r4", "patch", "xml-patch-tests.xml")
    pytest.skip("XML Patch (RFC 5261) is not supported: the Health Twin server only accepts JSON "
                "resources, so PATCH accepts application/json-patch+json and FHIRPath Patch only")


# --------------------------------------------------------------------------- JSON Patch edge cases


def test_json_patch_test_op_failure_is_422() -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert info.value.status == 422 and info.value.location == "patch[0]"


def test_json_patch_test_is_type_strict() -> None:
    doc = {"a": 1, "b": True, "c": 1.0}
    apply_json_patch(doc, [{"op": "test", "path": "/a", "value": 1.0}])  # numbers compare by value
    for path, value in (("/a", True), ("/b", 1), ("/a", "1")):
        with pytest.raises(PatchError):
            apply_json_patch(doc, [{"op": "test", "path": path, "value": value}])


def test_json_patch_move_into_own_child_is_rejected() -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch({"a": {"b": {}}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}])
    assert info.value.status == 422
    # Moving to itself is a no-op, and "/ab" is not a child of "/a".
    doc = {"a": 1, "ab": {}}
    assert apply_json_patch(doc, [{"op": "move", "from": "/a", "path": "/a"}]) == doc
    assert apply_json_patch(doc, [{"op": "move", "from": "/a", "path": "/ab/x"}]) == {"ab": {"x": 1}}


def test_json_patch_dash_appends() -> None:
    doc = {"foo": ["bar"]}
    result = apply_json_patch(doc, [{"op": "add", "path": "/foo/-", "value": "x"},
                                    {"op": "copy", "from": "/foo/0", "path": "/foo/-"}])
    assert result == {"foo": ["bar", "x", "bar"]}
    assert doc == {"foo": ["bar"]}
    with pytest.raises(PatchError):  # "-" only makes sense for add
        apply_json_patch(doc, [{"op": "remove", "path": "/foo/-"}])


def test_json_patch_pointer_escaping() -> None:
    doc = {"a/b": 1, "m~n": 2, "~1": 3}
    result = apply_json_patch(doc, [
        {"op": "test", "path": "/a~1b", "value": 1},
        {"op": "test", "path": "/m~0n", "value": 2},
        {"op": "test", "path": "/~01", "value": 3},  # ~01 is "~1", not "/"
        {"op": "replace", "path": "/m~0n", "value": 20},
        {"op": "add", "path": "/x~1y~0", "value": 4},
    ])
    assert result == {"a/b": 1, "m~n": 20, "~1": 3, "x/y~": 4}


@pytest.mark.parametrize("op", [
    {"op": "replace", "path": "/missing", "value": 1},
    {"op": "remove", "path": "/missing"},
    {"op": "add", "path": "/list/5", "value": 1},
    {"op": "add", "path": "/list/01", "value": 1},
    {"op": "copy", "from": "/missing", "path": "/x"},
    {"op": "replace", "path": "/resourceType", "value": "Observation"},
    {"op": "remove", "path": ""},
])
def test_json_patch_not_applicable_is_422(op: dict[str, Any]) -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch({"resourceType": "Patient", "list": [1]}, [op])
    assert info.value.status == 422


@pytest.mark.parametrize("patch", [
    {"op": "add", "path": "/a", "value": 1},  # not an array
    [{"path": "/a", "value": 1}],
    [{"op": "frobnicate", "path": "/a"}],
    [{"op": "add", "path": "/a"}],
    [{"op": "add", "path": "a", "value": 1}],
    [{"op": "move", "path": "/a"}],
])
def test_json_patch_malformed_is_400(patch: Any) -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch({"a": 0}, patch)
    assert info.value.status == 400


def test_json_patch_failure_leaves_input_untouched() -> None:
    doc = {"a": [1, 2]}
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "remove", "path": "/a/0"}, {"op": "test", "path": "/a/0", "value": 9}])
    assert doc == {"a": [1, 2]}


# --------------------------------------------------------------------------- FHIRPath Patch cases


def _op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name in ("index", "source", "destination"):
            part.append({"name": name, "valueInteger": value})
        elif name == "name":
            part.append({"name": "name", "valueString": value})
        else:  # value_<type>: a value[x]
            part.append({"name": "value", name.replace("value_", "value"): value} if name.startswith("value_")
                        else {"name": "value", **value})
    return {"name": "operation", "part": part}


def _patch(resource: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters", "parameter": list(ops)})


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [{"system": "a", "value": "1"}, {"system": "b", "value": "2"}],
    "name": [{"family": "F", "given": ["A", "B", "C"], "_given": [None, {"id": "b"}, None]}],
    "birthDate": "1970-01-01",
    "_birthDate": {"extension": [{"url": "http://x/birthTime", "valueDateTime": "1970-01-01T10:00:00Z"}]},
    "deceasedBoolean": False,
}


def test_where_and_primitive_extension_kept_on_replace() -> None:
    result = _patch(PATIENT, _op("replace", "Patient.identifier.where(system = 'b').value", value_String="3"),
                    _op("replace", "Patient.birthDate", value_Date="1971-02-02"))
    assert result["identifier"][1] == {"system": "b", "value": "3"}
    assert result["birthDate"] == "1971-02-02" and result["_birthDate"] == PATIENT["_birthDate"]


def test_primitive_delete_and_list_alignment() -> None:
    result = _patch(PATIENT, _op("delete", "Patient.birthDate"), _op("delete", "Patient.name[0].given[0]"))
    assert "birthDate" not in result and "_birthDate" not in result
    assert result["name"][0]["given"] == ["B", "C"] and result["name"][0]["_given"] == [{"id": "b"}, None]
    moved = _patch(PATIENT, _op("move", "Patient.name[0].given", source=1, destination=2))
    assert moved["name"][0]["given"] == ["A", "C", "B"] and moved["name"][0]["_given"] == [None, None, {"id": "b"}]
    inserted = _patch(PATIENT, _op("insert", "Patient.name[0].given", index=0, value_String="Z"))
    assert inserted["name"][0]["given"][0] == "Z" and inserted["name"][0]["_given"][2] == {"id": "b"}


def test_add_extension_to_primitive() -> None:
    ext = {"part": [{"name": "url", "valueUri": "http://x/e"}, {"name": "valueString", "valueString": "v"}]}
    result = _patch(PATIENT, _op("add", "Patient.name[0].family", name="extension", value=ext))
    assert result["name"][0]["_family"] == {"extension": [{"url": "http://x/e", "valueString": "v"}]}
    assert _patch(result, _op("delete", "Patient.name[0].family.extension('http://x/e')"))["name"] == PATIENT["name"]


def test_choice_types() -> None:
    result = _patch(PATIENT, _op("replace", "Patient.deceased", value_DateTime="2020-01-01"))
    assert "deceasedBoolean" not in result and result["deceasedDateTime"] == "2020-01-01"
    added = _patch({"resourceType": "Patient"}, _op("add", "Patient", name="deceased", value_Boolean=True))
    assert added == {"resourceType": "Patient", "deceasedBoolean": True}
    obs = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1, "unit": "mg"}}
    changed = _patch(obs, _op("replace", "Observation.value.ofType(Quantity).value", value_Decimal=2))
    assert changed["valueQuantity"] == {"value": 2, "unit": "mg"}
    assert "valueQuantity" not in _patch(obs, _op("delete", "value"))  # no leading type name


def test_where_criteria_are_typed() -> None:
    obs = {"resourceType": "Observation", "status": "final", "component": [
        {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "b"}, "valueQuantity": {"value": 5}}]}
    result = _patch(obs, _op("delete", "Observation.component.where(value.ofType(Quantity).value > 2)"))
    assert result["component"] == obs["component"][:1]
    result = _patch(obs, _op("replace", "Observation.component.where(code.text = %resource.component[0].code.text).code.text",
                             value_String="z"))
    assert result["component"][0]["code"] == {"text": "z"}


def test_contained_resources_are_typed_by_resource_type() -> None:
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "Old"}]}
    result = _patch(patient, _op("replace", "Patient.contained.ofType(Organization).name", value_String="New"),
                    _op("add", "Patient.contained[0]", name="alias", value_String="A"))
    assert result["contained"][0] == {"resourceType": "Organization", "id": "o", "name": "New", "alias": ["A"]}


def test_no_op_and_empty_parent_cleanup() -> None:
    assert _patch(PATIENT, _op("delete", "Patient.telecom")) == PATIENT  # delete of nothing is fine
    result = _patch({"resourceType": "Patient", "maritalStatus": {"text": "x"}}, _op("delete", "Patient.maritalStatus.text"))
    assert result == {"resourceType": "Patient"}
    result = _patch(PATIENT, _op("delete", "Patient.identifier[0].system"), _op("delete", "Patient.identifier[0].value"),
                    _op("delete", "Patient.name[0].given[1].id"))
    assert result["identifier"] == [{"system": "b", "value": "2"}]  # the emptied identifier goes
    assert result["name"][0]["given"] == ["A", "B", "C"] and "_given" not in result["name"][0]


@pytest.mark.parametrize("op", [
    _op("replace", "Patient.identifier.value", value_String="x"),  # two matches
    _op("replace", "Patient.telecom", value_String="x"),  # no match
    _op("add", "Patient", name="birthDate", value_Date="2000-01-01"),  # single element already set
    _op("insert", "Patient.identifier", index=3, value={"valueIdentifier": {"value": "x"}}),
    _op("insert", "Patient.birthDate", index=0, value_Date="2000-01-01"),  # not repeating
    _op("move", "Patient.identifier", source=0, destination=2),
    _op("replace", "Patient.birthDate", value={"valueCodeableConcept": {"text": "x"}}),  # wrong type
    _op("add", "Patient.birthDate", name="foo", value_String="x"),
    _op("delete", "Patient.name.given"),  # three matches
])
def test_fhirpath_patch_not_applicable_is_422(op: dict[str, Any]) -> None:
    with pytest.raises(PatchError) as info:
        _patch(PATIENT, op)
    assert info.value.status == 422 and info.value.location == "Parameters.parameter[0]"


@pytest.mark.parametrize("params", [
    {"resourceType": "Bundle"},
    {"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]},
    {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}]},
    {"resourceType": "Parameters", "parameter": [_op("frobnicate", "Patient")]},
    {"resourceType": "Parameters", "parameter": [_op("replace", "Patient.birthDate")]},  # no value
    {"resourceType": "Parameters", "parameter": [_op("delete", "Patient.name.select(given)")]},
    {"resourceType": "Parameters", "parameter": [_op("delete", "Patient.name.where(use = 'x'")]},
])
def test_fhirpath_patch_malformed_is_400(params: dict[str, Any]) -> None:
    with pytest.raises(PatchError) as info:
        apply_fhirpath_patch(PATIENT, params)
    assert info.value.status == 400


def test_xml_json_converter_shapes() -> None:
    res = xml_to_json(
        '<Patient xmlns="http://hl7.org/fhir"><name><given value="A"/><given value="B"><extension url="u">'
        '<valueInteger value="3"/></extension></given></name><active value="true"/>'
        '<multipleBirthInteger value="2"/></Patient>')
    assert res == {"resourceType": "Patient", "active": True, "multipleBirthInteger": 2,
                   "name": [{"given": ["A", "B"], "_given": [None, {"extension": [{"url": "u", "valueInteger": 3}]}]}]}
