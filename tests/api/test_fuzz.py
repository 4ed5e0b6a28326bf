"""Property-based fuzzing of the parsing surface: whatever JSON or Bundle arrives, the server answers with
an OperationOutcome and a 4xx (never a 5xx or a traceback), and a refused request stores nothing."""
from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "r4-examples.ndjson.gz"
with gzip.open(EXAMPLES, "rb") as _fp:
    SEEDS = [orjson.loads(line) for line in _fp][:200]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=20)
ALLOWED = {200, 201, 400, 404, 405, 406, 409, 412, 413, 415, 422}


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory):
    from starlette.testclient import TestClient

    from healthtwin.composition import create_app
    from healthtwin.request import OpenPolicy
    from healthtwin.store.sqlite import SQLiteStore
    folder = tmp_path_factory.mktemp("fuzz")
    # Parsing is fuzzed past authorization; tests/security fuzzes tokens and the policy.
    with TestClient(create_app(SQLiteStore(folder / "fuzz.sqlite"), data_dir=folder,
                               policy=OpenPolicy(), rate=None)) as client:
        yield client


def _mutate(resource: dict, path: list, value) -> dict:
    """Replaces the element at `path` (indices into keys/items, taken modulo) with `value`."""
    out = orjson.loads(orjson.dumps(resource))
    node = out
    for step in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
            if not isinstance(node[key], (dict, list)):
                node[key] = value
                return out
            node = node[key]
        elif isinstance(node, list) and node:
            idx = step % len(node)
            if not isinstance(node[idx], (dict, list)):
                node[idx] = value
                return out
            node = node[idx]
        else:
            break
    if isinstance(node, dict):
        node["fuzzed"] = value
    return out


def _check(response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_arbitrary_json_bodies(fuzz_client, body):
    before = fuzz_client.get("/fhir/?_type=Patient,Observation&_summary=count").json()["total"]
    for url in ("/fhir/Patient", "/fhir", "/fhir/Observation/x1"):
        method = fuzz_client.put if url.endswith("x1") else fuzz_client.post
        _check(method(url, content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"}))
    after = fuzz_client.get("/fhir/?_type=Patient,Observation&_summary=count").json()["total"]
    assert after == before  # random JSON is never a valid Patient/Observation/Bundle


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(SEEDS), path=st.lists(st.integers(0, 50), max_size=6), value=json_values)
def test_mutated_resources(fuzz_client, seed, path, value):
    resource = _mutate(seed, path, value)
    rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"), str) else "Patient"
    rtype = rtype if rtype.isalpha() else "Patient"
    _check(fuzz_client.post(f"/fhir/{rtype}", content=orjson.dumps(resource),
                            headers={"Content-Type": "application/fhir+json"}))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4), btype=st.sampled_from(["transaction", "batch"]),
       mutation=st.tuples(st.integers(0, 3), st.lists(st.integers(0, 50), max_size=5), json_values),
       method=st.sampled_from(["POST", "PUT", "DELETE", "PATCH", "GET", "BOGUS"]))
def test_mutated_bundles(fuzz_client, seeds, btype, mutation, method):
    entries = [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}", "resource": r,
                "request": {"method": method if n == 0 else "POST", "url": r["resourceType"] +
                            (f"/{r.get('id', 'x')}" if method in ("PUT", "DELETE", "PATCH") and n == 0 else "")}}
               for n, r in enumerate(seeds)]
    bundle = {"resourceType": "Bundle", "type": btype, "entry": entries}
    n, path, value = mutation
    bundle = _mutate(bundle, [2, n] + path, value) if path else bundle
    before = fuzz_client.get("/fhir/_history?_count=0").json()["total"]
    r = fuzz_client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": "application/fhir+json"})
    _check(r)
    if btype == "transaction" and r.status_code >= 400:
        assert fuzz_client.get("/fhir/_history?_count=0").json()["total"] == before  # nothing stored half-way


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["name", "birthdate", "_id", "identifier", "general-practitioner", "_sort", "_count",
                             "_include", "_has:Observation:subject:code", "name:exact", "birthdate:missing",
                             "organization.name", "_summary", "_elements", "_total", "gender:in", "_lastUpdated"]),
       value=st.text(max_size=30))
def test_arbitrary_search_values(fuzz_client, name, value):
    r = fuzz_client.get("/fhir/Patient", params={name: value})
    _check(r)
