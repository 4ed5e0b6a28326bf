"""Conditional skip (Logic Specification, "Evaluate Conditional Skip"): a target dose that need not be given.

Conditions are Age, Interval, Vaccine Count by Age / by Date / by Date and Age, and Completed Series; sets
combine their conditions by conditionLogic and a skip combines its sets by setLogic.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Callable

from . import dates
from .patient import Patient
from .rules import cvx_set
from .series_state import PatientSeries


def in_force(row: dict[str, Any], when: date) -> bool:
    start = dates.parse_date(row.get("effectiveDate"))
    stop = dates.parse_date(row.get("cessationDate"))
    return (start is None or when >= start) and (stop is None or when < stop)


def _count(cond: dict[str, Any], ps: PatientSeries, patient: Patient, antigen_doses: list[Any],
           ref: date, inclusive: bool) -> int:
    kind = cond["conditionType"].lower()
    cvxs = cvx_set(cond.get("vaccineTypes") or "")
    valid = (cond.get("doseType") or "Total").lower() == "valid"
    # Valid doses are those evaluated so far; a total counts every dose given before the date (the
    # assessment date itself included when forecasting).
    pool = [r.dose for r in ps.results if r.status == "Valid"] if valid else antigen_doses
    begin = dates.add_opt(patient.birth, cond.get("beginAge")) if "age" in kind else None
    end = dates.add_opt(patient.birth, cond.get("endAge")) if "age" in kind else None
    start = dates.parse_date(cond.get("startDate")) if "date" in kind else None
    stop = dates.parse_date(cond.get("endDate")) if "date" in kind else None
    n = 0
    for dose in pool:
        if not valid and (dose.given > ref or (dose.given == ref and not inclusive)):
            continue
        if cvxs and dose.cvx not in cvxs:
            continue
        if begin and dose.given < begin or end and dose.given >= end:
            continue
        if start and dose.given < start or stop and dose.given >= stop:
            continue
        n += 1
    return n


def condition_met(cond: dict[str, Any], ps: PatientSeries, patient: Patient, antigen_doses: list[Any],
                  ref: date, previous: date | None, completed: Callable[[str], bool],
                  inclusive: bool = False) -> bool:
    kind = cond["conditionType"].lower()
    if kind == "age":
        begin = dates.add_opt(patient.birth, cond.get("beginAge")) or dates.MIN_DATE
        end = dates.add_opt(patient.birth, cond.get("endAge")) or dates.MAX_DATE
        return begin <= ref < end
    if kind == "interval":
        return previous is not None and ref >= dates.add(previous, cond["interval"])
    if kind.startswith("vaccine count"):
        n = _count(cond, ps, patient, antigen_doses, ref, inclusive)
        wanted = int(cond.get("doseCount") or 0)
        logic = (cond.get("doseCountLogic") or "").lower()
        if logic == "greater than":
            return n > wanted
        if logic == "less than":
            return n < wanted
        return n == wanted
    if kind == "completed series":
        return any(completed(g.strip()) for g in (cond.get("seriesGroups") or "").split(";") if g.strip())
    return False


def skipped(target: dict[str, Any], context: str, ps: PatientSeries, patient: Patient,
            antigen_doses: list[Any], ref: date, previous: date | None,
            completed: Callable[[str], bool]) -> bool:
    for skip in target.get("conditionalSkip", []):
        if skip.get("context") not in (context, "Both"):
            continue
        results = []
        for cset in skip.get("set", []):
            if not in_force(cset, ref):
                continue
            met = [condition_met(c, ps, patient, antigen_doses, ref, previous, completed, context == "Forecast")
                   for c in cset.get("condition", [])]
            results.append(any(met) if (cset.get("conditionLogic") or "AND").upper() == "OR" else all(met))
        if not results:
            continue
        if (skip.get("setLogic") or "").upper() == "AND":
            if all(results):
                return True
        elif any(results):
            return True
    return False
