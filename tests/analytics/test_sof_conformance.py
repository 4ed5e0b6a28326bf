"""Every case of the official SQL on FHIR v2 test suite, run through the Python engine."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthtwin.analytics.conformance import Case, check_case, load_cases, main, write_test_report
from tests.conftest import corpora_dir, corpus

_DIR = corpora_dir() / "sql-on-fhir-v2" / "tests"
# Collected at import so each case gets its own id; an absent corpus gives one skipping test.
CASES: list[Case] = load_cases(_DIR) if _DIR.is_dir() else []
# Experimental cases we cannot pass would be listed here with a reason; currently none.
XFAIL: dict[str, str] = {}


def _param(case: Case) -> object:
    marks = [pytest.mark.xfail(reason=XFAIL[case.id], strict=True)] if case.id in XFAIL else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES] or [pytest.param(None, id="suite-absent")])
def test_sof_case(case: Case | None) -> None:
    if case is None:
        corpus("sql-on-fhir-v2", "tests")  # skips with the reason
        return
    passed, message = check_case(case)
    assert passed, message


def test_suite_size() -> None:
    tests_dir = corpus("sql-on-fhir-v2", "tests")
    assert len(load_cases(tests_dir)) >= 130
    assert all(c.id not in XFAIL or c.experimental for c in CASES), "only experimental cases may be xfail"


def test_write_test_report(tmp_path: Path) -> None:
    tests_dir = corpus("sql-on-fhir-v2", "tests")
    out = tmp_path / "report.json"
    report = write_test_report(out, tests_dir)
    assert json.loads(out.read_text()) == report
    # Shape required by test_report/test-report.schema.json.
    assert set(report) == {p.name for p in tests_dir.glob("*.json")}
    for suite in report.values():
        assert set(suite) == {"tests"} and suite["tests"]
        for t in suite["tests"]:
            assert isinstance(t["name"], str) and isinstance(t["result"]["passed"], bool)
            assert set(t["result"]) <= {"passed", "error", "details"}
    failed = [f"{f}:{t['name']}" for f, s in report.items() for t in s["tests"] if not t["result"]["passed"]]
    assert failed == [], failed


def test_report_schema_validates(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((corpus("sql-on-fhir-v2", "test_report") / "test-report.schema.json").read_text())
    jsonschema.validate(write_test_report(tmp_path / "r.json", _DIR), schema)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests_dir = corpus("sql-on-fhir-v2", "tests")
    out = tmp_path / "cli.json"
    assert main(["--tests", str(tests_dir), "--report", str(out)]) == 0
    assert out.exists()
    assert "0 failed" in capsys.readouterr().out
