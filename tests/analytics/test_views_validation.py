"""ViewDefinition validation: clear errors that say what is wrong and where."""
from __future__ import annotations

from typing import Any

import pytest

from healthtwin.analytics.fhirpath_sof import evaluate
from healthtwin.analytics.views import ViewDefinitionError, ViewEvaluationError, compile_view, run_view


def _view(**kw: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    view.update(kw)
    return view


@pytest.mark.parametrize(
    ("view", "location", "fragment"),
    [
        ({}, "resource", "required"),
        (_view(select=[]), "select", "non-empty"),
        (_view(bogus=1), "", "bogus"),
        (_view(select=[{"column": [{"name": "id", "path": "id"}, {"name": "x", "path": "name.("}]}]),
         "select[0].column[1].path", "invalid FHIRPath"),
        (_view(select=[{"column": [{"name": "id"}]}]), "select[0].column[0]", "no 'path'"),
        (_view(select=[{"column": [{"path": "id"}]}]), "select[0].column[0].name", "name"),
        (_view(select=[{"column": [{"name": "a b", "path": "id"}]}]), "select[0].column[0].name", "name"),
        (_view(select=[{"column": [{"name": "id", "path": "id", "colour": 1}]}]), "select[0].column[0]", "colour"),
        (_view(select=[{"column": [{"name": "id", "path": "id", "collection": "yes"}]}]),
         "select[0].column[0].collection", "true or false"),
        (_view(select=[{"forEach": 1, "column": [{"name": "id", "path": "id"}]}]), "select[0].forEach", "string"),
        (_view(select=[{"forEach": "name", "forEachOrNull": "name", "column": [{"name": "a", "path": "id"}]}]),
         "select[0]", "only one"),
        (_view(select=[{"column": [{"name": "id", "path": "id"}]}, {"column": [{"name": "id", "path": "id"}]}]),
         "select[1].column[0]", "duplicate column"),
        (_view(select=[{"column": [{"name": "a", "path": "%nope"}]}]), "select[0].column[0].path", "%nope"),
        (_view(constant=[{"name": "c"}]), "constant[0]", "value[x]"),
        (_view(where=[{"path": "@@"}]), "where[0].path", "invalid"),
        (_view(select=[{"column": [{"name": "a", "path": "frobnicate()"}]}]), "select[0].column[0].path", "frobnicate"),
        (_view(select=[{"unionAll": [{"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "b", "path": "id"}]}]}]),
         "select[0].unionAll[1]", "same columns"),
    ],
)
def test_invalid_views(view: dict[str, Any], location: str, fragment: str) -> None:
    with pytest.raises(ViewDefinitionError) as err:
        compile_view(view)
    assert err.value.location == location
    assert fragment in str(err.value)


def test_runtime_errors_name_the_column() -> None:
    view = _view(select=[{"column": [{"name": "family", "path": "name.family"}]}])
    with pytest.raises(ViewEvaluationError) as err:
        run_view(view, [{"resourceType": "Patient", "name": [{"family": "a"}, {"family": "b"}]}])
    assert err.value.location == "select[0].column[0].path"
    assert "collection" in err.value.message


def test_where_must_be_boolean() -> None:
    with pytest.raises(ViewEvaluationError) as err:
        run_view(_view(where=[{"path": "name.family"}]), [{"resourceType": "Patient", "name": [{"family": "a"}]}])
    assert err.value.location == "where[0].path"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("name.given.count()", [3]),
        ("name.where(use = 'official').given.first().upper()", ["ANN"]),
        ("name.given.join('|')", ["Ann|Bo|Cy"]),
        ("(1 + 2) * 3 - 4 / 2", [7.0]),
        ("7 div 2 | 7 mod 2", [3, 1]),
        ("name.family.startsWith('Sm') and birthDate > @1990-01-01", [True]),
        ("birthDate.lowBoundary()", ["1994-03-01"]),
        ("iif(gender = 'female', 'F', 'M')", ["F"]),
        ("name.given.skip(1).take(1)", ["Bo"]),
        ("'a' & {} & 'b'", ["ab"]),
        ("{}.exists() or true", [True]),
        ("multipleBirth.ofType(integer) + 1", [3]),
        ("gender in ('male' | 'female')", [True]),
        ("name.given.where($this.length() = 3).single()", ["Ann"]),
        ("%resource.id", ["p1"]),
    ],
)
def test_fhirpath_subset(expr: str, expected: list[Any]) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1994-03",
               "multipleBirthInteger": 2,
               "name": [{"use": "official", "family": "Smith", "given": ["Ann", "Bo"]}, {"given": ["Cy"]}]}
    assert evaluate(expr, patient) == expected
