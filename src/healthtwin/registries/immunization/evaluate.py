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

from . import dates
from .patient import EXTRANEOUS, NOT_VALID, SUBSTANDARD, VALID, Dose, Patient
from .rules import Schedule, cvx_set
from .series_state import DoseResult, PatientSeries
from .skip import in_force, skipped

TOO_YOUNG = "Age: Too Young"
TOO_OLD = "Age: Too Old"
TOO_SOON = "Interval: too Soon"
LIVE_VIRUS = "Live Virus Conflict"
NOT_ALLOWED = "Not a preferable or allowable vaccine"
INADVERTENT = "Inadvertent Vaccine"
ALREADY_COMPLETE = "Series Already Complete"


def applicable(rows: list[dict[str, Any]], when: date) -> list[dict[str, Any]]:
    return [row for row in rows if in_force(row, when)]


def age_row(target: dict[str, Any], when: date) -> dict[str, Any]:
    rows = applicable(target.get("age", []), when)
    return rows[0] if rows else {}


def _reference(interval: dict[str, Any], ps: PatientSeries, patient: Patient, when: date,
               inclusive: bool = False) -> date | None:
    """The date an interval counts from: the previous dose, a target dose, the latest dose of some vaccine
    types, or an observation."""
    if interval.get("fromPrevious") == "Y":
        prev = previous_dose(ps)
        return prev.given if prev else None
    if interval.get("fromTargetDose"):
        return ps.target_date(int(interval["fromTargetDose"]) - 1)
    if interval.get("fromMostRecent"):
        cvxs = cvx_set(interval["fromMostRecent"])
        found = [d.given for d in patient.doses if d.cvx in cvxs and (d.given < when or inclusive and d.given == when)]
        return max(found) if found else None
    relevant = interval.get("fromRelevantObs")
    if relevant:  # e.g. "120": the date antiviral therapy began
        code = relevant.get("code") if isinstance(relevant, dict) else str(relevant)
        seen = [o.start for o in patient.observations if o.code == code and o.start]
        return max(seen) if seen else None
    return None


def previous_dose(ps: PatientSeries) -> Dose | None:
    """The most recent dose evaluated in the series as Valid or Not Valid, other than an inadvertent one."""
    for result in reversed(ps.results):
        if result.status in (VALID, NOT_VALID) and result.reason != INADVERTENT:
            return result.dose
    return None


def _no_grace(ps: PatientSeries) -> bool:
    """Whether the grace period (absolute minimum vs minimum) is withheld: in 4.x it always applies."""
    return False


def intervals_in_force(target: dict[str, Any], ps: PatientSeries, patient: Patient,
                       when: date, inclusive: bool = False) -> list[tuple[dict[str, Any], date]]:
    """The target dose's intervals in force on a date, each with the date it counts from (inclusive: a
    dose given on that date counts, as when forecasting on the assessment date)."""
    found = [(iv, ref) for iv in applicable(target.get("interval", []), when)
             if (ref := _reference(iv, ps, patient, when, inclusive)) is not None]
    override = [(iv, ref) for iv, ref in found if (iv.get("intervalPriority") or "").lower() == "override"]
    return override or found


def _interval_ok(target: dict[str, Any], ps: PatientSeries, patient: Patient, dose: Dose) -> bool:
    no_grace = _no_grace(ps)
    preferable = True
    for iv, ref in intervals_in_force(target, ps, patient, dose.given):
        absolute = dates.add(ref, iv.get("absMinInt") or "0 days")
        minimum = dates.add(ref, iv.get("minInt") or iv.get("absMinInt") or "0 days")
        if dose.given < absolute or (no_grace and dose.given < minimum):
            preferable = False
            break
    if preferable:
        return True
    allowable = applicable(target.get("allowableInterval", []), dose.given)
    if not allowable:
        return False
    for iv in allowable:
        ref = _reference(iv, ps, patient, dose.given)
        if ref is not None and dose.given < dates.add(ref, iv.get("absMinInt") or "0 days"):
            return False
    return True


def _live_virus_conflict(schedule: Schedule, patient: Patient, ps: PatientSeries, dose: Dose) -> bool:
    conflicts = schedule.conflicts.get(dose.cvx)
    if not conflicts:
        return False
    status = {r.dose.id: r.status for r in ps.results}
    for prev in patient.doses:
        if prev.given >= dose.given or prev.id == dose.id:
            continue
        for c in conflicts:
            if c.previous_cvx != prev.cvx:
                continue
            begin = dates.add(prev.given, c.begin)
            valid = status.get(prev.id, VALID) == VALID
            end = dates.add(prev.given, (c.min_end or c.end) if valid else c.end)
            if begin <= dose.given < end:
                return True
    return False


def _vaccine_ok(rows: list[dict[str, Any]], patient: Patient, dose: Dose, with_product: bool) -> bool:
    for row in rows:
        if row["cvx"] != dose.cvx:
            continue
        begin = dates.add_opt(patient.birth, row.get("beginAge")) or dates.MIN_DATE
        end = dates.add_opt(patient.birth, row.get("endAge")) or dates.MAX_DATE
        if not begin <= dose.given < end:
            continue
        if with_product and row.get("mvx") and dose.mvx and row["mvx"].upper() != dose.mvx.upper():
            continue
        return True
    return False


def check(schedule: Schedule, patient: Patient, ps: PatientSeries, target: dict[str, Any],
          dose: Dose) -> list[str]:
    """Every reason a dose does not satisfy the target dose (none if it does): a dose can be both too young
    and too soon, and the record says so."""
    reasons = []
    age = age_row(target, dose.given)
    absolute = dates.add_opt(patient.birth, age.get("absMinAge")) or patient.birth
    minimum = dates.add_opt(patient.birth, age.get("minAge")) or absolute
    maximum = dates.add_opt(patient.birth, age.get("maxAge"))
    if dose.given < absolute or (dose.given < minimum and _no_grace(ps)):
        reasons.append(TOO_YOUNG)
    if maximum and dose.given >= maximum:
        reasons.append(TOO_OLD)
    if not _interval_ok(target, ps, patient, dose):
        reasons.append(TOO_SOON)
    if _live_virus_conflict(schedule, patient, ps, dose):
        reasons.append(LIVE_VIRUS)
    if not (_vaccine_ok(target.get("preferableVaccine", []), patient, dose, True)
            or _vaccine_ok(target.get("allowableVaccine", []), patient, dose, False)):
        reasons.append(NOT_ALLOWED)
    return reasons


def evaluate(schedule: Schedule, patient: Patient, ps: PatientSeries, doses: list[Dose],
             completed: Callable[[str], bool]) -> None:
    targets = ps.doses
    for dose in doses:
        if dose.substandard:
            ps.results.append(DoseResult(dose, SUBSTANDARD, "Sub-standard dose"))
            continue
        while ps.target < len(targets):
            prev = previous_dose(ps)
            if not skipped(targets[ps.target], "Evaluation", ps, patient, doses, dose.given,
                           prev.given if prev else None, completed):
                break
            ps.target += 1
        if ps.target >= len(targets):
            ps.results.append(DoseResult(dose, EXTRANEOUS, ALREADY_COMPLETE))
            continue
        target = targets[ps.target]
        if any(v["cvx"] == dose.cvx for v in target.get("inadvertentVaccine", [])):
            ps.results.append(DoseResult(dose, NOT_VALID, INADVERTENT))
            continue
        reasons = check(schedule, patient, ps, target, dose)
        if reasons:
            # A dose past the target dose's maximum age is not needed: Extraneous, not Not Valid.
            status = EXTRANEOUS if reasons == [TOO_OLD] else NOT_VALID
            ps.results.append(DoseResult(dose, status, reasons[0], None, reasons))
            continue
        ps.results.append(DoseResult(dose, VALID, None, ps.target))
        ps.satisfied.append((ps.target, dose))
        if target.get("recurringDose") != "Yes":
            ps.target += 1
