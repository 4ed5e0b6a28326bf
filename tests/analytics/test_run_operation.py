"""$viewdefinition-run over the HTTP API (SQLite and PostgreSQL)."""
from __future__ import annotations

import base64
import csv
import io

import duckdb
import orjson
import pytest

FHIR = {"content-type": "application/fhir+json"}
VIEW = {"resourceType": "ViewDefinition", "name": "obs", "resource": "Observation", "status": "active",
        "select": [{"column": [{"name": "id", "path": "getResourceKey()", "type": "id"},
                               {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "string"},
                               {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                               {"name": "flag", "path": "interpretation.coding.code.first()", "type": "code"}]}]}


def params(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parts)}


@pytest.fixture
def data(client):
    for i in range(3):
        assert client.put(f"/fhir/Patient/p{i}", json={"resourceType": "Patient", "id": f"p{i}", "gender": "female"},
                          headers=FHIR).status_code in (200, 201)
        for j in range(2):
            obs = {"resourceType": "Observation", "id": f"o{i}{j}", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                   "subject": {"reference": f"Patient/p{i}"},
                   "valueQuantity": {"value": 100 + 10 * i + j, "unit": "g/L"},
                   "interpretation": [{"coding": [{"code": "L" if j else "N"}]}]}
            assert client.put(f"/fhir/Observation/o{i}{j}", json=obs, headers=FHIR).status_code in (200, 201)
    return client


def run(client, *parts: dict, path: str = "/fhir/$viewdefinition-run", **kw):
    return client.post(path, content=orjson.dumps(params(*parts)), headers={**FHIR, **kw.pop("headers", {})}, **kw)


def test_formats(data) -> None:
    view = {"name": "viewResource", "resource": VIEW}
    r = run(data, view, {"name": "_format", "valueCode": "json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    rows = r.json()
    assert len(rows) == 6 and {"id": "o11", "patient": "p1", "value": 111, "flag": "L"} in rows
    r = run(data, view)  # no _format and no Accept: ndjson, as the specification says
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert sorted(orjson.loads(line)["id"] for line in r.content.splitlines()) == sorted(x["id"] for x in rows)
    r = run(data, view, {"name": "_format", "valueCode": "text/csv"})
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["id", "patient", "value", "flag"] and len(table) == 7
    r = run(data, view, {"name": "_format", "valueCode": "csv"}, {"name": "header", "valueBoolean": False})
    assert len(list(csv.reader(io.StringIO(r.text)))) == 6
    r = run(data, view, headers={"accept": "application/vnd.apache.parquet"})
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM read_parquet(?)", [_tmp_file(r.content)])
    assert con.execute("SELECT count(*), sum(value) FROM t").fetchone() == (6, sum(100 + 10 * i + j for i in range(3)
                                                                                   for j in range(2)))
    assert [c[1] for c in con.execute("DESCRIBE t").fetchall()] == ["VARCHAR", "VARCHAR", "DOUBLE", "VARCHAR"]


def _tmp_file(content: bytes) -> str:
    import tempfile
    f = tempfile.NamedTemporaryFile(suffix=".parquet", delete=False)
    f.write(content)
    f.close()
    return f.name


def test_limit_patient_group_and_inline(data) -> None:
    view = {"name": "viewResource", "resource": VIEW}
    json_ = {"name": "_format", "valueCode": "json"}
    assert len(run(data, view, json_, {"name": "_limit", "valueInteger": 4}).json()) == 4
    rows = run(data, view, json_, {"name": "patient", "valueReference": {"reference": "Patient/p2"}}).json()
    assert sorted(r["id"] for r in rows) == ["o20", "o21"]
    group = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/p0"}}, {"entity": {"reference": "Patient/p1"},
                                                                   "inactive": True}]}
    assert data.put("/fhir/Group/g1", json=group, headers=FHIR).status_code in (200, 201)
    rows = run(data, view, json_, {"name": "group", "valueReference": {"reference": "Group/g1"}}).json()
    assert sorted(r["id"] for r in rows) == ["o00", "o01"]
    inline = {"resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "t"},
              "subject": {"reference": "Patient/zz"}, "valueQuantity": {"value": 5}}
    rows = run(data, view, json_, {"name": "resource", "resource": inline},
               {"name": "resource", "valueString": orjson.dumps(dict(inline, id="y")).decode()}).json()
    assert [r["id"] for r in rows] == ["x", "y"]  # inline resources replace the store's
    rows = run(data, {"name": "viewResource", "valueString": orjson.dumps(VIEW).decode()}, json_,
               {"name": "resource", "resource": inline}, {"name": "patient", "valueString": "nobody"}).json()
    assert rows == []


def test_stored_view_in_a_library(data, tmp_path) -> None:
    lib = {"resourceType": "Library", "id": "obs-view", "url": "https://health.gov.az/fhir/Library/obs-view",
           "version": "1", "status": "active",
           "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                "code": "logic-library"}]},
           "content": [{"contentType": "application/json", "data": base64.b64encode(orjson.dumps(VIEW)).decode()}]}
    assert data.put("/fhir/Library/obs-view", json=lib, headers=FHIR).status_code in (200, 201)
    json_ = {"name": "_format", "valueCode": "json"}
    for ref in ({"valueReference": {"reference": "Library/obs-view"}},
                {"valueCanonical": "https://health.gov.az/fhir/Library/obs-view|1"}):
        assert len(run(data, {"name": "viewReference", **ref}, json_).json()) == 6
    r = run(data, json_, path="/fhir/Library/obs-view/$viewdefinition-run")
    assert r.status_code == 200 and len(r.json()) == 6
    r = data.get("/fhir/Library/obs-view/$run", headers={"accept": "text/csv"})  # the earlier name, and GET
    assert r.status_code == 200 and r.text.startswith("id,patient,value,flag")
    # _format in the query string, as clients send it on GET
    r = data.get("/fhir/Library/obs-view/$viewdefinition-run?_format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 6
    r = data.get("/fhir/Library/obs-view/$viewdefinition-run?_format=ndjson")
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 6
    r = data.get("/fhir/Library/obs-view/$viewdefinition-run?_format=parquet")
    assert r.status_code == 200
    (tmp_path / "rows.parquet").write_bytes(r.content)
    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [str(tmp_path / "rows.parquet")]).fetchone()[0] == 6
    r = data.get("/fhir/Library/obs-view/$viewdefinition-run?_format=xlsx")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert data.get("/fhir/Patient?_format=csv").status_code == 406  # elsewhere only JSON
    r = run(data, {"name": "viewReference", "valueReference": {"reference": "Library/missing"}})
    assert r.status_code == 404


def test_errors_are_operation_outcomes(data) -> None:
    bad = dict(VIEW, select=[{"column": [{"name": "id", "path": "getResourceKey()"},
                                         {"name": "v", "path": "value.ofType(Quantity).where("}]}])
    r = run(data, {"name": "viewResource", "resource": bad})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["ViewDefinition.select[0].column[1].path"] and "FHIRPath" in issue["diagnostics"]
    r = run(data, {"name": "viewResource", "resource": dict(VIEW, select=[{"column": [{"name": "1x", "path": "id"}]}])})
    assert r.status_code == 400 and "select[0].column[0]" in r.json()["issue"][0]["expression"][0]
    many = dict(VIEW, select=[{"column": [{"name": "codes", "path": "code.coding.code | id"}]}])
    r = run(data, {"name": "viewResource", "resource": many})
    assert r.status_code == 422 and r.json()["issue"][0]["expression"] == ["ViewDefinition.select[0].column[0].path"]
    assert run(data).status_code == 400  # no view
    assert run(data, {"name": "viewResource", "resource": VIEW}, {"name": "colour", "valueString": "x"}).status_code == 400
    assert run(data, {"name": "viewResource", "resource": VIEW}, {"name": "_format", "valueCode": "xlsx"}).status_code == 400
    assert run(data, {"name": "viewResource", "resource": VIEW}, {"name": "_limit", "valueInteger": 0}).status_code == 400
    r = data.post("/fhir/$viewdefinition-run", content=b'{"resourceType": "Patient"}', headers=FHIR)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    ops = {o["name"] for o in data.get("/fhir/metadata").json()["rest"][0]["operation"]}
    assert "viewdefinition-run" in ops
