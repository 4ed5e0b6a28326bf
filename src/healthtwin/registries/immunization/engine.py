"""The CDSi engine: a patient and a schedule in, each antigen's dose evaluations and each vaccine group's
forecast out (Logic Specification chapters 4-9)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from . import dates, rules
from .evaluate import evaluate
from .forecast import contraindicated, forecast, immune
from .patient import (AGED_OUT, COMPLETE, CONTRAINDICATED, IMMUNE, NOT_COMPLETE, NOT_RECOMMENDED, Dose,
                      Patient)
from .rules import Schedule
from .select import best_series, relevant
from .series_state import DoseResult, PatientSeries
from .targets import read_once


@dataclass(slots=True)
class AntigenResult:
    antigen: str
    status: str
    best: list[PatientSeries] = field(default_factory=list)

    def evaluations(self) -> list[DoseResult]:
        """Each dose's evaluation: with several best series (one per series group), the one that counts it
        valid, else the first series' verdict."""
        merged: dict[str, DoseResult] = {}
        for series in self.best:
            for result in series.results:
                known = merged.get(result.dose.id)
                if known is None or (known.status != "Valid" and result.status == "Valid"):
                    merged[result.dose.id] = result
        return sorted(merged.values(), key=lambda r: (r.dose.given, r.dose.id))


@dataclass(slots=True)
class GroupForecast:
    group: str
    status: str
    antigens: list[AntigenResult]
    dose_number: int | None = None
    earliest: date | None = None
    recommended: date | None = None
    past_due: date | None = None
    latest: date | None = None


def antigen_doses(schedule: Schedule, patient: Patient) -> dict[str, list[Dose]]:
    """Each antigen's doses: a dose counts for an antigen its CVX maps to at the patient's age that day."""
    out: dict[str, list[Dose]] = {}
    birth, add = patient.birth, dates.add
    for dose in patient.doses:
        for assoc in schedule.cvx_antigens.get(dose.cvx, ()):
            if assoc.begin_age and dose.given < add(birth, assoc.begin_age):
                continue
            if assoc.end_age and dose.given >= add(birth, assoc.end_age):
                continue
            out.setdefault(assoc.antigen, []).append(dose)
    return out


class _AntigenPlan:
    """An antigen's series as the engine walks them: those that apply to everyone (no required sex, not a
    risk series) need no test per patient."""
    __slots__ = ("series", "plain", "risk_only", "immunity")

    def __init__(self, data: dict[str, Any]) -> None:
        self.series = data.get("series", [])
        self.plain = [not s.get("requiredGender") and s.get("seriesType") != "Risk" for s in self.series]
        self.risk_only = all(s.get("seriesType") == "Risk" for s in self.series)
        immunity = data.get("immunity") or {}  # without either, forecast.immune is False for everyone
        self.immunity = bool(immunity.get("clinicalHistory") or (immunity.get("dateOfBirth") or {}).get(
            "immunityBirthDate"))


_PLANS: dict[int, tuple[dict[str, Any], _AntigenPlan]] = {}


def _plan(data: dict[str, Any]) -> _AntigenPlan:
    return read_once(_PLANS, data, _AntigenPlan)


def assess_antigen(schedule: Schedule, patient: Patient, antigen: str, doses: list[Dose]) -> AntigenResult:
    data = schedule.antigens[antigen]
    plan = _plan(data)
    series = [PatientSeries(antigen, s) for s, plain in zip(plan.series, plan.plain)
              if plain or relevant(s, patient)]
    if not series and plan.risk_only:
        # A risk-only antigen (dengue) with no series yet: one whose indication the patient will reach
        series = [PatientSeries(antigen, s) for s in plan.series if relevant(s, patient, True)]
    group_complete: dict[str, bool] = {}

    def completed(group: str) -> bool:
        return group_complete.get(group, False)

    for ps in sorted(series, key=lambda s: s.group) if len(series) > 1 else series:
        evaluate(schedule, patient, ps, doses, completed)
        forecast(schedule, patient, ps, doses, completed)
        if ps.status == COMPLETE:
            group_complete[ps.group] = True
    best = best_series(series, patient)
    # Contraindications and immunity come from the patient's observations: none, neither.
    if patient.codes and contraindicated(data, patient):
        return AntigenResult(antigen, CONTRAINDICATED, best)
    if plan.immunity and immune(data, patient):
        return AntigenResult(antigen, IMMUNE, best)
    return AntigenResult(antigen, _combine([s.status for s in best]) if best else NOT_RECOMMENDED, best)


def _combine(statuses: list[str]) -> str:
    if NOT_COMPLETE in statuses:
        return NOT_COMPLETE
    for status in (CONTRAINDICATED, COMPLETE, IMMUNE, AGED_OUT):
        if status in statuses:
            return status
    return statuses[0] if statuses else NOT_RECOMMENDED


def assess(patient: Patient, schedule: Schedule | None = None) -> list[GroupForecast]:
    schedule = schedule or rules.load()
    patient.index_doses()
    by_antigen = antigen_doses(schedule, patient)
    results: dict[str, AntigenResult] = {}
    out: list[GroupForecast] = []
    for group in schedule.groups.values():
        antigens = []
        for antigen in group.antigens:
            if antigen not in schedule.antigens:
                continue
            if antigen not in results:
                results[antigen] = assess_antigen(schedule, patient, antigen, by_antigen.get(antigen, []))
            antigens.append(results[antigen])
        if antigens:
            out.append(_group(group, antigens))
    return out


def _dose_number(antigen: AntigenResult) -> int | None:
    """The antigen's forecast dose number: its open series' own count, or, beside another best series
    (a standard series complete, a risk series begun afresh), every distinct valid dose plus one."""
    open_series = [s for s in antigen.best if s.status == NOT_COMPLETE]
    if not open_series:
        return None
    if len(antigen.best) > 1:
        return len({r.dose.id for s in antigen.best for r in s.valid_results()}) + 1
    return open_series[0].dose_number()


def _group(group: rules.VaccineGroup, antigens: list[AntigenResult]) -> GroupForecast:
    status = _combine([a.status for a in antigens])
    result = GroupForecast(group.name, status, antigens)
    if status != NOT_COMPLETE:
        return result
    # Each antigen's earliest date is its soonest open series' (a risk series beside the standard one);
    # the group then combines the antigens'. One pass over the open series of the antigens not complete.
    earliest: list[date] = []
    recommended: list[date] = []
    past_due: list[date] = []
    latest: list[date] = []
    numbers: list[int] = []
    for a in antigens:
        if a.status != NOT_COMPLETE:
            continue
        soonest = None
        for s in a.best:
            if s.status != NOT_COMPLETE:
                continue
            if s.earliest and (soonest is None or s.earliest < soonest):
                soonest = s.earliest
            if s.recommended:
                recommended.append(s.recommended)
            if s.past_due:
                past_due.append(s.past_due)
            if s.latest:
                latest.append(s.latest)
        if soonest is not None:
            earliest.append(soonest)
        # The dose number forecast counts the valid doses so far, not the target dose's place (skips don't
        # count).
        number = _dose_number(a)
        if number is not None:
            numbers.append(number)
    if earliest:
        if group.administer_full:  # every antigen must be due: the latest of their earliest dates
            result.earliest = max(earliest)
        else:  # the first antigen due decides, but not before the group's last dose
            result.earliest = min(earliest)
            given = [r.dose.given for a in antigens for s in a.best for r in s.results]
            if given and max(given) > result.earliest:
                result.earliest = max(given)
    if recommended:
        result.recommended = max(min(recommended), result.earliest) if result.earliest else min(recommended)
    if past_due:
        result.past_due = max(min(past_due), result.earliest) if result.earliest else min(past_due)
    result.latest = min(latest) if latest else None
    if numbers:
        result.dose_number = min(numbers) if group.administer_full else max(numbers)
    return result
