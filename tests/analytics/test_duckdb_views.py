"""The DuckDB compilation path gives the same rows as the Python engine."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from healthtwin.analytics import synthetic
from healthtwin.analytics.conformance import Case, check_case, load_cases, row_multiset
from healthtwin.analytics.duckdb_views import (
    NotCompilable, compile_view_sql, duckdb_runner, load_resources, ndjson_source, run_view_duckdb,
)
from healthtwin.analytics.views import ViewDefinitionError, ViewEvaluationError, compile_view, run_view
from tests.conftest import corpora_dir, corpus

_DIR = corpora_dir() / "sql-on-fhir-v2" / "tests"
CASES: list[Case] = load_cases(_DIR) if _DIR.is_dir() else []


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES] or [pytest.param(None, id="suite-absent")])
def test_duckdb_path_matches_suite(case: Case | None) -> None:
    if case is None:
        corpus("sql-on-fhir-v2", "tests")
        return
    passed, message = check_case(case, duckdb_runner)
    assert passed, message


def test_most_suite_views_compile_to_sql() -> None:
    corpus("sql-on-fhir-v2", "tests")
    compiled = fallback = 0
    for case in CASES:
        try:
            view = compile_view(case.test["view"])
        except ViewDefinitionError:
            continue
        con = duckdb.connect()
        load_resources(con, case.resources)
        try:
            compile_view_sql(view, con)
            compiled += 1
        except NotCompilable:
            fallback += 1
    assert compiled >= 100, (compiled, fallback)


@pytest.fixture(scope="module")
def obs_con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    load_resources(con, list(synthetic.observations(3000, seed=3)))
    return con


def test_observation_view_sql_equals_python(obs_con: duckdb.DuckDBPyConnection) -> None:
    result = run_view_duckdb(synthetic.OBSERVATION_VIEW, obs_con)
    assert result.compiled and result.sql and "unnest" in result.sql
    expected = run_view(synthetic.OBSERVATION_VIEW, synthetic.observations(3000, seed=3))
    assert len(expected) > 3000  # forEach fans out over the second codings
    assert row_multiset(result.rows or []) == row_multiset(expected)


def test_fallback_writes_table(obs_con: duckdb.DuckDBPyConnection) -> None:
    view = {"resource": "Observation", "select": [
        {"column": [{"name": "id", "path": "id", "type": "id"}]},
        {"repeat": ["code.coding"], "column": [{"name": "code", "path": "code", "type": "code"}]}]}
    result = run_view_duckdb(view, obs_con, into="repeat_out")
    assert not result.compiled and result.reason == "repeat"
    n = obs_con.execute("SELECT count(*) FROM repeat_out").fetchone()
    assert n is not None and n[0] == len(run_view(view, synthetic.observations(3000, seed=3)))


def test_where_and_ndjson_source(tmp_path: Path) -> None:
    path = synthetic.write_ndjson(tmp_path / "obs.ndjson", 500, seed=5)
    view = dict(synthetic.OBSERVATION_VIEW, where=[{"path": "value.ofType(Quantity).value > 100"}])
    con = duckdb.connect()
    result = run_view_duckdb(view, con, source=ndjson_source(str(path)), into="out")
    assert result.compiled
    got = con.execute("SELECT * FROM out").fetchall()
    expected = run_view(view, synthetic.observations(500, seed=5))
    assert 0 < len(got) == len(expected)
    assert all(r[2] > 100 for r in got)


def test_sql_raises_collection_error() -> None:
    con = duckdb.connect()
    load_resources(con, [{"resourceType": "Patient", "id": "p", "name": [{"family": "a"}, {"family": "b"}]}])
    view = {"resource": "Patient", "select": [{"column": [{"name": "f", "path": "name.family", "type": "string"}]}]}
    with pytest.raises(ViewEvaluationError) as err:
        run_view_duckdb(view, con)
    assert err.value.location == "select[0].column[0].path"


def test_choice_without_of_type_is_not_guessed_from_a_partial_sample(monkeypatch) -> None:
    """`value` without ofType() over more resources than the shape sample: a type the sample missed (here a
    valueString after 20 valueQuantity) must still be read, so the view is not compiled to valueQuantity."""
    from healthtwin.analytics import duckdb_views
    resources = [{"resourceType": "Observation", "id": f"q{i}", "status": "final", "code": {"text": "x"},
                  "valueQuantity": {"value": i}} for i in range(20)]
    resources.append({"resourceType": "Observation", "id": "s", "status": "final", "code": {"text": "x"},
                      "valueString": "positive"})
    view = {"resource": "Observation", "select": [{"column": [
        {"name": "id", "path": "id", "type": "id"}, {"name": "v", "path": "value.exists()", "type": "boolean"}]}]}
    con = duckdb.connect()
    load_resources(con, resources)
    real = duckdb_views.sample_structure
    monkeypatch.setattr(duckdb_views, "sample_structure", lambda c, s, r, sample=10: real(c, s, r, sample))
    result = run_view_duckdb(view, con)
    assert not result.compiled and "ofType" in (result.reason or "")
    assert row_multiset(result.rows or []) == row_multiset(run_view(view, resources))
    # Sampled whole (21 < 100), the sample shows every type it has: the fast path stays.
    monkeypatch.setattr(duckdb_views, "sample_structure", lambda c, s, r, sample=100: real(c, s, r, sample))
    assert run_view_duckdb(view, con).compiled is False  # two types seen: several-types rule
    only_quantity = [r for r in resources if r["id"] != "s"]
    load_resources(con, only_quantity)
    result = run_view_duckdb(view, con)
    assert result.compiled and row_multiset(result.rows or []) == row_multiset(run_view(view, only_quantity))
