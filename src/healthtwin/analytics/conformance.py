"""Run the official SQL on FHIR v2 test suite and write its JSON test report.

CLI: ``python -m healthtwin.analytics.conformance [--tests DIR] [--report out.json] [--engine python|duckdb]``
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .views import ViewDefinitionError, compile_view

Runner = Callable[[dict[str, Any], list[dict[str, Any]]], tuple[list[str], list[dict[str, Any]]]]


def default_tests_dir() -> Path:
    """$HEALTHTWIN_CORPORA/sql-on-fhir-v2/tests (default: ../shared/corpora next to the checkout)."""
    root = Path(__file__).resolve().parents[3]
    corpora = Path(os.environ.get("HEALTHTWIN_CORPORA", root.parent / "shared" / "corpora"))
    return corpora / "sql-on-fhir-v2" / "tests"


@dataclass
class Case:
    file: str
    title: str
    test: dict[str, Any]
    resources: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.title}"

    @property
    def experimental(self) -> bool:
        return "experimental" in self.test.get("tags", [])


def load_cases(tests_dir: Path | None = None) -> list[Case]:
    tests_dir = tests_dir or default_tests_dir()
    cases: list[Case] = []
    for path in sorted(tests_dir.glob("*.json")):
        suite = json.loads(path.read_text())
        for test in suite["tests"]:
            cases.append(Case(path.name, test["title"], test, suite.get("resources", [])))
    return cases


def python_runner(view: dict[str, Any], resources: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    compiled = compile_view(view)
    return compiled.column_names, compiled.run(resources)


def _norm(value: Any) -> Any:
    # Numbers compare by value (DuckDB returns 5.0 where JSON says 5); booleans stay booleans.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def row_multiset(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(_norm(r), sort_keys=True) for r in rows)


def check_case(case: Case, runner: Runner = python_runner) -> tuple[bool, str]:
    """(passed, message) for one suite case."""
    test = case.test
    try:
        columns, rows = runner(test["view"], case.resources)
    except ViewDefinitionError as exc:
        if test.get("expectError"):
            return True, f"raised as expected: {exc}"
        return False, f"unexpected error: {exc}"
    if test.get("expectError"):
        return False, f"expected an error, got {len(rows)} rows"
    if "expectColumns" in test and columns != test["expectColumns"]:
        return False, f"expected columns {test['expectColumns']}, got {columns}"
    if "expectCount" in test:
        ok = len(rows) == test["expectCount"]
        return ok, "" if ok else f"expected {test['expectCount']} rows, got {len(rows)}"
    want, got = row_multiset(test["expect"]), row_multiset(rows)
    if want == got:
        return True, ""
    missing, extra = list((want - got).elements())[:3], list((got - want).elements())[:3]
    return False, f"rows differ; missing {missing}, unexpected {extra}"


def run_suite(tests_dir: Path | None = None, runner: Runner = python_runner) -> dict[str, Any]:
    """Results in the suite's test-report format: {file: {"tests": [{name, result}]}}."""
    report: dict[str, Any] = {}
    for case in load_cases(tests_dir):
        passed, message = check_case(case, runner)
        result: dict[str, Any] = {"passed": passed}
        if not passed:
            result["error"] = message
        report.setdefault(case.file, {"tests": []})["tests"].append({"name": case.title, "result": result})
    return report


def write_test_report(path: str | Path, tests_dir: Path | None = None, runner: Runner = python_runner) -> dict[str, Any]:
    """Run every suite case and write the report JSON to ``path``; returns the report."""
    report = run_suite(tests_dir, runner)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the SQL on FHIR v2 conformance suite")
    parser.add_argument("--tests", type=Path, default=None, help="folder of suite *.json files")
    parser.add_argument("--report", type=Path, default=Path("sof-test-report.json"))
    parser.add_argument("--engine", choices=("python", "duckdb"), default="python")
    args = parser.parse_args(argv)
    runner: Runner = python_runner
    if args.engine == "duckdb":
        from .duckdb_views import duckdb_runner

        runner = duckdb_runner
    report = write_test_report(args.report, args.tests, runner)
    results = [t["result"]["passed"] for suite in report.values() for t in suite["tests"]]
    for name, suite in report.items():
        for t in suite["tests"]:
            if not t["result"]["passed"]:
                print(f"FAIL {name}:{t['name']}: {t['result'].get('error')}")
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    print(f"report written to {args.report}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
