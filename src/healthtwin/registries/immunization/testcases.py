"""The CDC CDSi test cases (CSV sheets of the healthy and underlying-condition workbooks) run against the
engine: one report entry per case, every expected evaluation and forecast field compared."""
from __future__ import annotations

import csv
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dates, rules
from .engine import GroupForecast, assess
from .patient import Dose, Observation, Patient
from .rules import norm_cvx

HEALTHY = "cdsi-healthy-childhood-and-adult-test-cases-v4.45__FITS_Exported_TestCases.csv"
CONDITIONS = "CDSi-underlying-conditions-test-cases-v4.6__Underlying_Condition_Test_Cases.csv"

# The workbooks' short vaccine group names -> ScheduleSupportingData.xml's names.
GROUP_NAMES = {"dtap": "DTaP/Tdap/Td", "pol": "Polio", "ipol": "Polio", "hib": "Hib", "pcv": "Pneumococcal",
               "mcv": "Meningococcal", "menb": "Meningococcal B", "var": "Varicella", "rota": "Rotavirus",
               "zoster": "Zoster", "flu": "Influenza"}
GENDERS = {"F": "Female", "M": "Male"}


@dataclass
class Case:
    id: str
    kind: str  # "healthy" or "conditions"
    patient: Patient
    group: str
    expected: dict[str, str]
    dose_ids: list[str] = field(default_factory=list)


def _group_name(raw: str) -> str:
    raw = raw.strip()
    return GROUP_NAMES.get(raw.lower(), raw)


def read_cases(folder: Path) -> list[Case]:
    cases: list[Case] = []
    for name, kind in ((HEALTHY, "healthy"), (CONDITIONS, "conditions")):
        path = folder / name
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                cases.append(_case(row, kind))
    return cases


def _case(row: dict[str, str], kind: str) -> Case:
    row = dict(row, CDC_Test_ID=row["CDC_Test_ID"].strip())  # one id carries a trailing space
    birth = dates.parse_date(row["DOB"])
    assessment = dates.parse_date(row["Assessment_Date"])
    if birth is None or assessment is None:
        raise ValueError(f"test case {row['CDC_Test_ID']}: no date of birth or assessment date")
    doses, expected, ids = [], {}, []
    for i in range(1, 8):
        given = dates.parse_date(row.get(f"Date_Administered_{i}"))
        if not given:
            continue
        dose_id = f"{row['CDC_Test_ID']}_dose{i}"
        ids.append(dose_id)
        doses.append(Dose(dose_id, given, norm_cvx(row[f"CVX_{i}"]), row.get(f"MVX_{i}") or None))
        expected[f"dose{i}.status"] = row.get(f"Evaluation_Status_{i}", "")
        if row.get(f"Evaluation_Reason_{i}"):
            expected[f"dose{i}.reason"] = row[f"Evaluation_Reason_{i}"]
    observations = []
    for i in range(1, 4):
        code = (row.get(f"Observation_Code_{i}") or "").strip()
        if code:
            observations.append(Observation(code.zfill(3), dates.parse_date(row.get(f"Observation_Date_{i}"))))
    expected["status"] = row["Series_Status"]
    number = (row.get("Forecast_#") or "").strip()
    expected["forecast_dose"] = "" if number == "-" else number
    for key, column in (("earliest", "Earliest_Date"), ("recommended", "Recommended_Date"),
                        ("past_due", "Past_Due_Date")):
        expected[key] = (row.get(column) or "").strip()
    gender = GENDERS.get((row.get("gender") or row.get("Gender") or "").strip().upper(), "Unknown")
    patient = Patient(birth, gender, assessment, doses, observations)
    return Case(row["CDC_Test_ID"], kind, patient, _group_name(row["Vaccine_Group"]), expected, ids)


def _dose_status(forecasts: list[GroupForecast], dose_id: str) -> tuple[str, str]:
    """A dose's status for the case: valid if valid for any antigen of the group (a Tdap booster is valid
    for tetanus even once pertussis is complete)."""
    found = []
    for antigen in (a for f in forecasts for a in f.antigens):
        for result in antigen.evaluations():
            if result.dose.id == dose_id:
                found.append((result.status, "; ".join(result.reasons)))
    if not found:
        return "", ""
    for status, reason in found:
        if status == "Valid":
            return status, reason
    return found[0]


def actual_fields(case: Case, forecasts: list[GroupForecast]) -> dict[str, str]:
    match = [f for f in forecasts if f.group.lower() == case.group.lower()]
    if not match:
        return {"status": "(no such vaccine group)"}
    forecast = match[0]
    out: dict[str, str] = {}
    for i, dose_id in enumerate(case.dose_ids, start=1):
        own = _dose_status([forecast], dose_id)
        status, reason = own if own[0] else _dose_status(forecasts, dose_id)
        out[f"dose{i}.status"] = status
        out[f"dose{i}.reason"] = reason
    out["status"] = forecast.status
    out["forecast_dose"] = str(forecast.dose_number) if forecast.dose_number and forecast.earliest else ""
    for key in ("earliest", "recommended", "past_due"):
        value = getattr(forecast, key)
        out[key] = value.isoformat() if value else ""
    return out


def compare(case: Case, actual: dict[str, str]) -> list[dict[str, str]]:
    mismatches = []
    for key, want in case.expected.items():
        got = actual.get(key, "")
        if key.endswith(".status") and not want:
            continue
        if key == "status":
            same = want.strip().lower() == got.strip().lower()
        elif key.endswith(".reason"):  # the expected reason among those the engine gives
            same = want.strip().lower() in [r.strip().lower() for r in got.split(";")]
        else:
            same = want.strip() == got.strip()
        if not same:
            mismatches.append({"field": key, "expected": want, "actual": got})
    return mismatches


def read_adjudication(path: Path | None = None) -> dict[tuple[str, str], str]:
    """(case id, field) -> the rule of the 4.64 supporting data that makes the expectation stale."""
    if path is None:
        text = resources.files(__package__).joinpath("adjudication.csv").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {(row["case_id"].strip(), row["field"].strip()): row["rule"].strip() for row in rows}


def run(folder: Path, schedule_key: str = "cdc",
        adjudicated: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """One entry per case: passed on every field, each mismatch with expected and actual; a mismatch the
    adjudication file explains is kept in the entry, marked with its rule, and does not fail the case."""
    schedule = rules.load(schedule_key)
    adjudicated = adjudicated or {}
    report = []
    for case in read_cases(folder):
        forecasts = assess(case.patient, schedule)
        mismatches = compare(case, actual_fields(case, forecasts))
        for m in mismatches:
            rule = adjudicated.get((case.id, m["field"]))
            if rule:
                m["adjudicated"] = rule
        failing = [m for m in mismatches if "adjudicated" not in m]
        report.append({"id": case.id, "kind": case.kind, "vaccineGroup": case.group,
                       "passed": not failing, "passedAsPublished": not mismatches,
                       "mismatches": mismatches})
    return report


def summary(report: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": []}
    for kind in ("healthy", "conditions"):
        cases = [r for r in report if r["kind"] == kind]
        if not cases:
            continue
        passed = sum(r["passed"] for r in cases)
        raw = sum(r["passedAsPublished"] for r in cases)
        out[kind] = {"cases": len(cases), "passed": passed, "passedAsPublished": raw,
                     "rate": passed / len(cases)}
        out["lines"].append(f"{kind}: {passed}/{len(cases)} passed ({100 * passed / len(cases):.2f}%), "
                            f"{raw}/{len(cases)} as published (before adjudication)")
    return out
