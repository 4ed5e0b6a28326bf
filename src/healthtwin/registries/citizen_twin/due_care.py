"""Due care: vaccines from the immunization forecaster, screenings by age and sex, and follow-up tests a
chronic condition calls for, each with its rule's source and the last record that satisfied it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

from .facts import CHOLESTEROL, CKD, CREATININE, DIABETES, GLUCOSE, HBA1C, SBP, Facts, Point

# The immunization registry holds about this many years of doses (docs/population.md: the generator loads 10
# years of history): a series that fell due before then, with no dose recorded, is reported as a gap in the
# records rather than as overdue (an adult's childhood doses were given before the registry existed).
REGISTRY_YEARS = 10
MAMMOGRAPHY = {"71651007", "24623002", "241055006"}
CERVICAL = {"171149006", "439958008", "165817004"}


@dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable[[Facts], bool]
    every_days: int
    last: Callable[[Facts], Point | dict[str, Any] | None]
    source: str
    kind: str  # "screening" or "follow-up"


def _age_between(lo: float, hi: float, sex: str | None = None) -> Callable[[Facts], bool]:
    return lambda f: f.age() is not None and lo <= f.age() < hi and (sex is None or f.sex == sex)


def _latest(*codes: str) -> Callable[[Facts], Point | None]:
    def find(f: Facts) -> Point | None:
        points = [p for code in codes for p in f.series.get(code, [])]
        return max(points, key=lambda p: p.when) if points else None
    return find


def _procedure(codes: set[str]) -> Callable[[Facts], dict[str, Any] | None]:
    def find(f: Facts) -> dict[str, Any] | None:
        done = [p for p in f.procedures if any(c.get("code") in codes for c in (p.get("code") or {}).get("coding") or [])]
        return max(done, key=_performed) if done else None
    return find


def _performed(p: dict[str, Any]) -> str:
    return str(p.get("performedDateTime") or (p.get("performedPeriod") or {}).get("start") or "")


RULES: tuple[Rule, ...] = (
    Rule("blood pressure measurement", _age_between(18, 200), 365, _latest(SBP),
         "WHO HEARTS technical package (2018): blood pressure measured at least yearly in adults", "screening"),
    Rule("diabetes screening (fasting glucose or HbA1c)", lambda f: _age_between(35, 200)(f) and
         f.condition(DIABETES) is None, 3 * 365, _latest(GLUCOSE, HBA1C),
         "ADA Standards of Care in Diabetes 2024, 2.6: screening from age 35, every 3 years", "screening"),
    Rule("cardiovascular risk assessment (total cholesterol)", _age_between(40, 80), 5 * 365, _latest(CHOLESTEROL),
         "WHO HEARTS, risk-based CVD management (2020): risk assessed from age 40", "screening"),
    Rule("breast cancer screening (mammography)", _age_between(50, 70, "female"), 2 * 365,
         _procedure(MAMMOGRAPHY), "WHO position paper on mammography screening (2014): ages 50-69, every 2 years",
         "screening"),
    Rule("cervical cancer screening", _age_between(30, 50, "female"), 5 * 365, _procedure(CERVICAL),
         "WHO guideline for screening and treatment of cervical pre-cancer lesions (2021): from age 30, every 5 "
         "to 10 years", "screening"),
    Rule("HbA1c in diabetes", lambda f: f.condition(DIABETES) is not None, 183, _latest(HBA1C),
         "ADA Standards of Care in Diabetes 2024, 6.1: HbA1c at least twice a year", "follow-up"),
    Rule("kidney function in diabetes (creatinine, eGFR)", lambda f: f.condition(DIABETES) is not None, 365,
         _latest(CREATININE), "ADA Standards of Care in Diabetes 2024, 11.1: eGFR at least yearly", "follow-up"),
    Rule("kidney function in chronic kidney disease (creatinine, eGFR)", lambda f: f.condition(CKD) is not None, 365,
         _latest(CREATININE), "KDIGO 2012 CKD guideline, 2.1.1: GFR at least yearly", "follow-up"),
)


def _when(last: Point | dict[str, Any]) -> tuple[str, str]:
    if isinstance(last, Point):
        return last.when[:10], last.source
    return _performed(last)[:10], f"Procedure/{last['id']}"


def care_items(f: Facts) -> list[dict[str, Any]]:
    out = []
    for rule in RULES:
        if not rule.applies(f):
            continue
        last = rule.last(f)
        item: dict[str, Any] = {"name": rule.name, "kind": rule.kind, "source": rule.source,
                                "interval": f"{rule.every_days} days"}
        if last is None:
            item["status"] = "due"
            item["due"] = f.today.isoformat()
            item["lastDone"] = "not recorded"
        else:
            when, ref = _when(last)
            due = dt.date.fromisoformat(when) + dt.timedelta(days=rule.every_days)
            item["lastDone"] = {"date": when, "source": {"reference": ref}}
            item["due"] = due.isoformat()
            item["status"] = "overdue" if due < f.today else "due" if due == f.today else "up to date"
        out.append(item)
    return out


def vaccines(f: Facts) -> dict[str, Any]:
    """The Azerbaijan schedule's forecast (registries/immunization: the CDSi engine over the national
    calendar's supporting data) for the record's immunizations and conditions."""
    from ..immunization import recommendations
    from ..immunization.fhir_io import InputError
    from ..immunization.patient import NOT_COMPLETE
    schedule = recommendations.schedule_of(None)
    out: dict[str, Any] = {"source": f"registries/immunization (CDSi logic, schedule '{schedule.key}': "
                                     f"{schedule.name})", "doses": [
                               {"reference": f"Immunization/{i['id']}"} for i in f.immunizations]}
    try:
        result = recommendations.forecast(f.patient, f.immunizations, f.conditions + f.procedures, schedule, f.today)
    except InputError as exc:
        out["notComputed"] = str(exc)
        out["due"] = []
        return out
    due, gaps = [], []
    records_start = f.today - dt.timedelta(days=round(REGISTRY_YEARS * 365.25))
    for g in result.groups:
        if g.status != NOT_COMPLETE:
            continue
        started = any(a.evaluations() for a in g.antigens)
        if not started and g.recommended is not None and g.recommended < records_start:
            gaps.append(g.group)
            continue
        item: dict[str, Any] = {"vaccineGroup": g.group, "status": g.status}
        for key in ("earliest", "recommended", "past_due", "latest"):
            value = getattr(g, key)
            if value is not None:
                item[key.replace("past_due", "pastDue")] = value.isoformat()
        if g.dose_number:
            item["doseNumber"] = g.dose_number
        item["overdue"] = bool(g.past_due and f.today > g.past_due)
        due.append(item)
    out["due"] = due
    if gaps:
        out["beforeRecords"] = {"vaccineGroups": gaps, "note": (
            f"fell due before {records_start.isoformat()}, when the registry's records start, with no dose "
            "recorded: doses given then are not in the record, so these are not reported as overdue")}
    return out
