"""Dose evaluation (Logic Specification chapter 6): each dose of an antigen against a patient series.

For each dose in date order, against the series' next target dose: sub-standard doses are set aside;
a target dose whose conditional skip is met (evaluation context) is skipped; then the inadvertent-vaccine,
age, interval (preferable, then allowable), live-virus, and vaccine-type checks; a dose that passes
satisfies the target dose, one that fails is Not Valid with the first failing check as its reason. Doses
after the series is complete are Extraneous.
"""
from __future__ import annotations

from datetime import date
from typing import Any, Callable

from . import targets
from .dates import MAX_DATE, MIN_DATE, add
from .patient import EXTRANEOUS, NOT_VALID, SUBSTANDARD, VALID, Dose, Patient
from .rules import Schedule
from .series_state import INADVERTENT, DoseResult, PatientSeries
from .skip import in_force, skipped
from .targets import MOST_RECENT, OBSERVATION, PREVIOUS, TARGET_DOSE, Interval, Target, Vaccine

TOO_YOUNG = "Age: Too Young"
TOO_OLD = "Age: Too Old"
TOO_SOON = "Interval: too Soon"
LIVE_VIRUS = "Live Virus Conflict"
NOT_ALLOWED = "Not a preferable or allowable vaccine"

ALREADY_COMPLETE = "Series Already Complete"


def applicable(rows: list[dict[str, Any]], when: date) -> list[dict[str, Any]]:
    return [row for row in rows if in_force(row, when)]


def age_row(target: dict[str, Any], when: date) -> dict[str, Any]:
    return targets.target(target).age_row(when)


def _reference(iv: Interval, ps: PatientSeries, patient: Patient, when: date,
               inclusive: bool = False) -> date | None:
    """The date an interval counts from: the previous dose, a target dose, the latest dose of some vaccine
    types, or an observation."""
    kind = iv.kind
    if kind == PREVIOUS:
        prev = ps.previous
        return prev.given if prev else None
    if kind == TARGET_DOSE:
        return ps.target_date(iv.arg)
    if kind == MOST_RECENT:
        cvxs = iv.arg
        found = [d.given for d in patient.doses if d.cvx in cvxs and (d.given < when or inclusive and d.given == when)]
        return max(found) if found else None
    if kind == OBSERVATION:  # e.g. "120": the date antiviral therapy began
        code = iv.arg
        seen = [o.start for o in patient.observations if o.code == code and o.start]
        return max(seen) if seen else None
    return None


def previous_dose(ps: PatientSeries) -> Dose | None:
    """The most recent dose evaluated in the series as Valid or Not Valid, other than an inadvertent one
    (kept as the results are added: `PatientSeries.add`)."""
    return ps.previous


# Whether the grace period (absolute minimum vs minimum) is withheld: in 4.x it always applies.
NO_GRACE = False


def intervals_in_force(target: Target, ps: PatientSeries, patient: Patient,
                       when: date, inclusive: bool = False) -> list[tuple[Interval, date]]:
    """The target dose's intervals in force on a date, each with the date it counts from (inclusive: a
    dose given on that date counts, as when forecasting on the assessment date)."""
    rows = target.intervals.at(when)
    if len(rows) == 1 and rows[0].kind == PREVIOUS:  # the usual: one interval, from the previous dose
        prev = ps.previous
        return [(rows[0], prev.given)] if prev else []
    found = [(iv, ref) for iv in rows if (ref := _reference(iv, ps, patient, when, inclusive)) is not None]
    if len(found) < 2:  # one interval: it is its own override, if it is one
        return found
    return [(iv, ref) for iv, ref in found if iv.override] or found


def _interval_ok(target: Target, ps: PatientSeries, patient: Patient, dose: Dose) -> bool:
    given = dose.given
    rows = target.intervals.at(given)
    if len(rows) == 1 and rows[0].kind == PREVIOUS and not NO_GRACE:  # the usual: one, from the previous dose
        prev = ps.previous
        if prev is None or given >= add(prev.given, rows[0].abs_min):
            return True
        preferable = False
    else:
        preferable = True
        for iv, ref in intervals_in_force(target, ps, patient, given):
            if given < add(ref, iv.abs_min) or (NO_GRACE and given < add(ref, iv.minimum)):
                preferable = False
                break
    if preferable:
        return True
    allowable = target.allowable_intervals.at(given)
    if not allowable:
        return False
    for iv in allowable:
        ref = _reference(iv, ps, patient, given)
        if ref is not None and given < add(ref, iv.abs_min):
            return False
    return True


def _live_virus_conflict(schedule: Schedule, patient: Patient, ps: PatientSeries, dose: Dose) -> bool:
    conflicts = schedule.conflicts.get(dose.cvx)
    if not conflicts:
        return False
    status: dict[str, str] | None = None
    for c in conflicts:
        for prev in patient.by_cvx.get(c.previous_cvx, ()):
            if prev.given >= dose.given or prev.id == dose.id:
                continue
            if status is None:
                status = {r.dose.id: r.status for r in ps.results}
            begin = add(prev.given, c.begin)
            valid = status.get(prev.id, VALID) == VALID
            end = add(prev.given, (c.min_end or c.end) if valid else c.end)
            if begin <= dose.given < end:
                return True
    return False


def _vaccine_ok(rows: dict[str, list[Vaccine]], patient: Patient, dose: Dose, with_product: bool) -> bool:
    for row in rows.get(dose.cvx, ()):
        begin = row.begin
        begin = patient.birth if begin == "0 days" else add(patient.birth, begin) if begin else MIN_DATE
        end = add(patient.birth, row.end) if row.end else MAX_DATE
        if not begin <= dose.given < end:
            continue
        if with_product and row.mvx and dose.mvx and row.mvx.upper() != dose.mvx.upper():
            continue
        return True
    return False


def check(schedule: Schedule, patient: Patient, ps: PatientSeries, target: Target, dose: Dose) -> list[str]:
    """Every reason a dose does not satisfy the target dose (none if it does): a dose can be both too young
    and too soon, and the record says so."""
    reasons = []
    given = dose.given
    ages = target.age_dates(patient.birth, given)
    minimum = ages.minimum or ages.absolute  # (read as before, though only NO_GRACE needs it)
    if given < ages.absolute or (NO_GRACE and given < minimum):
        reasons.append(TOO_YOUNG)
    if ages.maximum and given >= ages.maximum:
        reasons.append(TOO_OLD)
    # (no interval row: nothing to be too soon for; no conflict listed for the vaccine: none to check)
    if target.intervals.rows and not _interval_ok(target, ps, patient, dose):
        reasons.append(TOO_SOON)
    if dose.cvx in schedule.conflicts and _live_virus_conflict(schedule, patient, ps, dose):
        reasons.append(LIVE_VIRUS)
    if not (_vaccine_ok(target.preferable, patient, dose, True)
            or _vaccine_ok(target.allowable, patient, dose, False)):
        reasons.append(NOT_ALLOWED)
    return reasons


def evaluate(schedule: Schedule, patient: Patient, ps: PatientSeries, doses: list[Dose],
             completed: Callable[[str], bool]) -> None:
    plans = ps.targets
    count = len(plans)
    for dose in doses:
        if dose.substandard:
            ps.add(DoseResult(dose, SUBSTANDARD, "Sub-standard dose"))
            continue
        while ps.target < count:
            plan = plans[ps.target]
            if not plan.skips:
                break
            prev = ps.previous
            if not skipped(plan.raw, "Evaluation", ps, patient, doses, dose.given,
                           prev.given if prev else None, completed):
                break
            ps.target += 1
        if ps.target >= count:
            ps.add(DoseResult(dose, EXTRANEOUS, ALREADY_COMPLETE))
            continue
        plan = plans[ps.target]
        if dose.cvx in plan.inadvertent:
            ps.add(DoseResult(dose, NOT_VALID, INADVERTENT))
            continue
        reasons = check(schedule, patient, ps, plan, dose)
        if reasons:
            # A dose past the target dose's maximum age is not needed: Extraneous, not Not Valid.
            status = EXTRANEOUS if reasons == [TOO_OLD] else NOT_VALID
            ps.add(DoseResult(dose, status, reasons[0], None, reasons))
            continue
        ps.add(DoseResult(dose, VALID, None, ps.target))
        ps.satisfied.append((ps.target, dose))
        if not plan.recurring:
            ps.target += 1
