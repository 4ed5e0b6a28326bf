"""Forecasting a patient series (Logic Specification chapter 7): its status and the next dose's dates.

Earliest date: the latest of the minimum age date, each minimum interval date and any live-virus conflict
end date (and a seasonal start). Recommended: the earliest recommended age date (or, without one, the
latest earliest recommended interval date), never before the earliest date. Past due: a day before the
latest recommended age date (or, without one, interval date), never before the earliest. Latest: a day
before the maximum age.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Callable

from . import dates
from .dates import add, parse_date
from .evaluate import intervals_in_force
from .patient import AGED_OUT, COMPLETE, NOT_COMPLETE, Dose, Patient
from .rules import Schedule
from .series_state import PatientSeries
from .skip import skipped
from .targets import Target

DAY = timedelta(days=1)


def immune(antigen: dict[str, Any], patient: Patient) -> bool:
    immunity = antigen.get("immunity") or {}
    if any(h.get("guidelineCode") in patient.codes for h in immunity.get("clinicalHistory", [])):
        return True
    born = immunity.get("dateOfBirth") or {}
    before = dates.rule_date(born.get("immunityBirthDate"))
    if before and patient.birth < before:
        return not any(e.get("exclusionCode") in patient.codes for e in born.get("exclusion", []))
    return False


def contraindicated(antigen: dict[str, Any], patient: Patient) -> bool:
    for row in (antigen.get("contraindications") or {}).get("vaccineGroup", {}).get("contraindication", []):
        if row.get("observationCode") not in patient.codes:
            continue
        begin = dates.add_opt(patient.birth, row.get("beginAge")) or dates.MIN_DATE
        end = dates.add_opt(patient.birth, row.get("endAge")) or dates.MAX_DATE
        if begin <= patient.assessment < end:
            return True
    return False


def _conflict_end(schedule: Schedule, patient: Patient, target: Target) -> date | None:
    """The latest end of a live-virus conflict between a dose given and the vaccine the target dose prefers."""
    latest: date | None = None
    conflicts = target.conflicts(schedule.conflicts)
    if not conflicts or not patient.doses:
        return None
    for c in conflicts:
        for prev in patient.by_cvx.get(c.previous_cvx, ()):
            end = add(prev.given, c.end)
            if latest is None or end > latest:
                latest = end
    return latest


def _dates(schedule: Schedule, patient: Patient, ps: PatientSeries, target: Target
           ) -> tuple[date, date | None, date | None, date | None, date]:
    """The target dose's earliest, recommended and past-due dates, its maximum age date, and the earliest
    date its intervals from the doses given allow (the assessment date at the soonest)."""
    when, birth = patient.assessment, patient.birth
    age = target.age_dates(birth, when)
    earliest = age.minimum or birth
    recommended = age.earliest_rec
    past_due = age.latest_rec - DAY if age.latest_rec else None
    interval_rec: date | None = None
    interval_due: date | None = None
    next_possible = when
    for iv, ref in intervals_in_force(target, ps, patient, when, inclusive=True):
        if iv.min_int:
            minimum = add(ref, iv.min_int)
            if minimum > earliest:
                earliest = minimum
            if minimum > next_possible:
                next_possible = minimum
        # The age's recommended and past-due dates come first; an interval's only when the age has none.
        if iv.earliest_rec and not age.earliest_rec:
            rec = add(ref, iv.earliest_rec)
            if interval_rec is None or rec > interval_rec:
                interval_rec = rec
        if iv.latest_rec and not age.latest_rec:
            late = add(ref, iv.latest_rec)
            if interval_due is None or late - DAY > interval_due:
                interval_due = late - DAY
    recommended = recommended or interval_rec
    past_due = past_due or interval_due
    live = target.live if target.live is not None else target.conflicts(schedule.conflicts)
    conflict = _conflict_end(schedule, patient, target) if live else None
    if conflict and conflict > earliest:
        earliest = conflict
    for row in target.season.at(when):
        start = parse_date(row.get("startDate"))
        if start and start > earliest:
            earliest = start
    return earliest, recommended, past_due, age.maximum, next_possible


def forecast(schedule: Schedule, patient: Patient, ps: PatientSeries, doses: list[Dose],
             completed: Callable[[str], bool]) -> None:
    """The series' status and its next target dose's dates. A target dose is skipped if its conditional
    skip (forecast context) holds on the date the next dose could first be given after the doses so far
    (the assessment date at the soonest): "not required for those 7 years or older at the earliest
    forecasted date for next dose"."""
    plans = ps.targets
    while ps.target < len(plans):
        target = plans[ps.target]
        earliest, recommended, past_due, maximum, next_possible = _dates(schedule, patient, ps, target)
        if not target.skips:
            break
        prev = ps.previous
        if not skipped(target.raw, "Forecast", ps, patient, doses, next_possible,
                       prev.given if prev else None, completed):
            break
        ps.target += 1
    if ps.target >= len(plans):
        ps.complete = True
        ps.status = COMPLETE
        return
    ps.forecast_dose = ps.target
    if maximum and (patient.assessment >= maximum or earliest >= maximum):
        ps.status = AGED_OUT
        return
    ps.status = NOT_COMPLETE
    ps.earliest = earliest
    ps.recommended = max(recommended, earliest) if recommended else earliest
    ps.past_due = max(past_due, earliest) if past_due else None
    ps.latest = maximum - DAY if maximum else None
