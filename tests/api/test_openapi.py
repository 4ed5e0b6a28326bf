"""The OpenAPI description: a valid OpenAPI 3.0 document (openapi-spec-validator), with a schema for every resource
type, typed search parameters, every registered operation and the /analytics routes, each with a summary."""
from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

from healthtwin.api.operations.registry import all_operations
from healthtwin.fhir.model import resource_types

validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator is not installed")


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    from healthtwin.composition import AppSettings, build_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    folder = tmp_path_factory.mktemp("openapi")
    app = build_app(SQLiteStore(str(folder / "o.sqlite")),
                    AppSettings(rate=None, audit=False, analytics_dir=folder), policy=OpenPolicy())
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def full(http):
    response = http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield path, method, op


def test_the_whole_document_is_valid_openapi(full):
    validator.validate(full)


def test_a_narrowed_document_is_valid_and_small(http, full):
    narrowed = http.get("/openapi.json?types=Patient,Observation").json()
    validator.validate(narrowed)
    schemas = narrowed["components"]["schemas"]
    assert {"Patient", "Observation", "HumanName", "Patient.contact", "OperationOutcome", "Bundle"} <= set(schemas)
    assert "Claim" not in schemas and "/fhir/Claim" not in narrowed["paths"]
    assert len(orjson.dumps(narrowed)) < len(orjson.dumps(full)) / 5
    # Every type's schema once, referred to: the whole document stays a few megabytes.
    assert len(orjson.dumps(full)) < 6_000_000


def test_every_resource_type_has_its_schema_from_the_structure_definitions(full):
    schemas = full["components"]["schemas"]
    assert set(resource_types()) <= set(schemas)
    patient = schemas["Patient"]
    assert patient["properties"]["resourceType"] == {"type": "string", "enum": ["Patient"]}
    assert patient["properties"]["name"] == {"type": "array", "items": {"$ref": "#/components/schemas/HumanName"}}
    assert patient["properties"]["birthDate"] == {"$ref": "#/components/schemas/date"}
    assert "pattern" in schemas["date"]
    assert "deceasedBoolean" in patient["properties"] and "deceasedDateTime" in patient["properties"]
    assert "status" in schemas["Observation"]["required"] and "code" in schemas["Observation"]["required"]
    body = full["paths"]["/fhir/Patient"]["post"]["requestBody"]["content"]["application/fhir+json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Patient"}
    read = full["paths"]["/fhir/Patient/{id}"]["get"]["responses"]["200"]["content"]["application/fhir+json"]
    assert read["schema"] == {"$ref": "#/components/schemas/Patient"}


def _resolve(doc, item):
    ref = item.get("$ref")
    return doc["components"]["parameters"][ref.rsplit("/", 1)[1]] if ref else item


def test_search_parameters_are_typed(full):
    params = {p["name"]: p for p in (_resolve(full, p) for p in full["paths"]["/fhir/Observation"]["get"]["parameters"])}
    assert params["date"]["description"].startswith("date:")
    assert "pattern" in params["date"]["schema"]
    assert params["value-quantity"]["description"].startswith("quantity:")
    assert params["code"]["description"].startswith("token:")
    assert params["subject"]["description"].startswith("reference:")
    assert params["_count"]["schema"]["type"] == "integer"
    assert params["_summary"]["schema"]["enum"] == ["true", "false", "text", "data", "count"]


def test_every_registered_operation_is_described_with_a_summary(full):
    paths = full["paths"]
    for op in all_operations():
        if op.system:
            assert f"/fhir/${op.name}" in paths, op.name
        for rtype in op.types or ["Patient"]:
            if op.type_level:
                assert f"/fhir/{rtype}/${op.name}" in paths, (op.name, rtype)
            if op.instance:
                assert f"/fhir/{rtype}/{{id}}/${op.name}" in paths, (op.name, rtype)
    for name in ("/fhir/Patient/{id}/$everything", "/fhir/$export", "/fhir/$import", "/fhir/Patient/{id}/$access-log",
                 "/fhir/ValueSet/$expand", "/fhir/CodeSystem/$lookup", "/fhir/$viewdefinition-run",
                 "/fhir/Observation/$lastn", "/fhir/Patient/$validate", "/fhir/Patient/{id}/$meta"):
        assert name in paths, name
    everything = {p["name"] for p in paths["/fhir/Patient/{id}/$everything"]["get"]["parameters"]}
    assert {"start", "end", "_since", "_type"} <= everything
    for path, method, op in _operations(full):
        assert op.get("summary"), (path, method)


def test_the_analytics_routes_are_described(full):
    paths = full["paths"]
    assert {"/analytics/indicators", "/analytics/indicators/{name}", "/analytics/status",
            "/analytics/refresh"} <= set(paths)
    indicator = paths["/analytics/indicators/{name}"]["get"]
    assert indicator["summary"].startswith("One indicator's figures")
    assert {"name", "region", "period", "by", "format"} <= {p["name"] for p in indicator["parameters"]}
    assert "post" in paths["/analytics/refresh"]


def test_the_cds_hooks_routes_are_described(full):
    paths = full["paths"]
    assert {"/cds-services", "/cds-services/{service}", "/cds-services/{service}/feedback"} <= set(paths)
    discovery = paths["/cds-services"]["get"]
    assert discovery["summary"].startswith("CDS Hooks discovery") and discovery["tags"] == ["cds-services"]
    assert discovery["security"] == [] and hook_security(paths) == [{"bearer": []}]
    hook = paths["/cds-services/{service}"]["post"]
    assert hook["summary"].startswith("Call a CDS service")
    assert [p["name"] for p in hook["parameters"]] == ["service"]
    assert "draftOrders" in hook["requestBody"]["description"]
    assert "application/json" in paths["/cds-services/{service}/feedback"]["post"]["requestBody"]["content"]
    assert "/app/clinic" not in paths  # the web pages are not an API


def hook_security(paths):
    return paths["/cds-services/{service}"]["post"]["security"]
