"""Selecting the best patient series (Logic Specification chapter 8).

Series are relevant by sex and, for risk series, by an indication the patient has at the assessment age.
Within each series group: a complete series wins, then the series in process (with valid doses) scored on
valid doses, closeness to completion and earliest finish, then, with no valid doses, the default series or
the one whose age to start fits. A series group whose equivalent group is complete is not forecast.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from . import dates
from .patient import COMPLETE, Patient
from .series_state import PatientSeries

GENDER = {"female": "Female", "f": "Female", "male": "Male", "m": "Male"}


def relevant(series: dict[str, Any], patient: Patient, early: bool = False) -> bool:
    """Whether a series applies: the patient's sex, and for a risk series an indication the patient has
    at the assessment age (early: or will have, at its begin age, for an antigen that has only risk
    series, whose first dose is then forecast at that age)."""
    required = series.get("requiredGender") or []
    if required and patient.gender not in required:
        return False
    if series.get("seriesType") != "Risk":
        return True
    for ind in series.get("indication", []):
        code = (ind.get("observationCode") or {}).get("code")
        if code not in patient.codes:
            continue
        begin = dates.add_opt(patient.birth, ind.get("beginAge")) or dates.MIN_DATE
        end = dates.add_opt(patient.birth, ind.get("endAge")) or dates.MAX_DATE
        if (early or begin <= patient.assessment) and patient.assessment < end:
            return True
    return False


def _age_to_start_fits(ps: PatientSeries, patient: Patient) -> bool:
    begin = dates.add_opt(patient.birth, ps.select.get("minAgeToStart")) or dates.MIN_DATE
    end = dates.add_opt(patient.birth, ps.select.get("maxAgeToStart")) or dates.MAX_DATE
    return begin <= patient.assessment < end


def _first_valid(ps: PatientSeries) -> date | None:
    valid = ps.valid_results()
    return valid[0].dose.given if valid else None


def _started_in_time(ps: PatientSeries, patient: Patient, bound: str) -> bool:
    """Whether a standard series' first valid dose fell within its age to start (bound: the min or max)."""
    first = _first_valid(ps)
    if first is None or ps.kind != "Standard":
        return True
    limit = dates.add_opt(patient.birth, ps.select.get(bound))
    if limit is None:
        return True
    if bound == "minAgeToStart":  # with ACIP's 4-day grace, as for any minimum age
        return first >= limit - timedelta(days=4)
    return first < limit


def _scorable(series: list[PatientSeries], patient: Patient) -> list[PatientSeries]:
    """Series whose first valid dose came before their maximum age to start; among them, those that also
    began after their minimum age to start, if any did."""
    series = [s for s in series if _started_in_time(s, patient, "maxAgeToStart")]
    return [s for s in series if _started_in_time(s, patient, "minAgeToStart")] or series


def _remaining(ps: PatientSeries) -> int:
    return max(len(ps.doses) - ps.target, 0)


def _max_age(ps: PatientSeries, patient: Patient) -> date:
    ages = [dates.add(patient.birth, row["maxAge"]) for d in ps.doses for row in d.get("age", []) if row.get("maxAge")]
    return max(ages) if ages else dates.MAX_DATE


def _score_in_process(series: list[PatientSeries], patient: Patient) -> dict[int, int]:
    """Points for each series in process (the Logic Specification's scoring): a product series with every
    dose valid (+2 / -2), completable before its maximum age (+3 / -3), most valid doses (+2 / -2), closest
    to completion (+2 / -2), earliest to finish (+1 / -1); a tie for the best earns nothing."""
    def all_valid_product(s: PatientSeries) -> bool:
        counted = [r for r in s.results if r.status in ("Valid", "Not Valid")]
        return s.select.get("productPath") == "Yes" and bool(counted) and all(r.status == "Valid" for r in counted)

    finish = {id(s): s.earliest for s in series}
    completable = {id(s) for s in series if finish[id(s)] is not None and finish[id(s)] < _max_age(s, patient)}
    valid = {id(s): len(s.valid_results()) for s in series}
    remaining = {id(s): len(s.doses) - s.target - 1 for s in series}
    products = [s for s in series if all_valid_product(s)]
    most, fewest = max(valid.values()), min(remaining.values())
    ends = [finish[i] for i in completable if finish[i] is not None]
    soonest = min(ends) if ends else None
    scores = {}
    for s in series:
        key, score = id(s), 0
        if s in products:
            score += 2 if len(products) == 1 else 0
        else:
            score -= 2
        if key in completable:
            score += 3 if len(completable) == 1 else 0
            if finish[key] == soonest:
                score += 1 if sum(1 for i in completable if finish[i] == soonest) == 1 else 0
            else:
                score -= 1
        else:
            score -= 3
        if valid[key] == most:
            score += 2 if list(valid.values()).count(most) == 1 else 0
        else:
            score -= 2
        if remaining[key] == fewest:
            score += 2 if list(remaining.values()).count(fewest) == 1 else 0
        else:
            score -= 2
        scores[key] = score
    return scores


def best_in_group(candidates: list[PatientSeries], patient: Patient) -> PatientSeries | None:
    risk = [s for s in candidates if s.kind == "Risk"]
    if risk:
        top = min(s.priority for s in risk)
        candidates = [s for s in candidates if s.kind != "Risk" or s.priority == top]
    candidates = [s for s in candidates if s.kind != "Evaluation Only" or s.complete]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    complete = _scorable([s for s in candidates if s.status == COMPLETE], patient)
    if complete:
        return min(complete, key=lambda s: (-len(s.valid_results()), s.satisfied[-1][1].given
                                            if s.satisfied else dates.MAX_DATE, s.preference))
    in_process = _scorable([s for s in candidates if _first_valid(s) is not None and s.status != COMPLETE],
                           patient)
    if in_process:
        if len(in_process) == 1:
            return in_process[0]
        scores = _score_in_process(in_process, patient)
        return min(in_process, key=lambda s: (-scores[id(s)], s.preference))
    defaults = [s for s in candidates if s.select.get("defaultSeries") == "Yes"]
    if defaults:
        return defaults[0]
    fitting = [s for s in candidates if _age_to_start_fits(s, patient)]
    return min(fitting, key=lambda s: s.preference) if fitting else None


def best_series(all_series: list[PatientSeries], patient: Patient) -> list[PatientSeries]:
    if len(all_series) == 1:  # one series (the Azerbaijani calendar's antigens): its own group's best, if any
        only = all_series[0]
        return [only] if only.kind != "Evaluation Only" or only.complete else []
    groups: dict[str, list[PatientSeries]] = {}
    for s in all_series:
        groups.setdefault(s.group, []).append(s)
    best = {g: b for g, members in groups.items() if (b := best_in_group(members, patient)) is not None}
    # A group nobody has started, whose age to start the patient has not reached (the 50+ pneumococcal
    # group for a child), is not forecast beside a group that applies.
    started = {g for g, s in best.items() if s.valid_results() or _age_to_start_fits(s, patient)}
    if started:
        best = {g: s for g, s in best.items() if g in started}
    # Equivalent series groups: a group is not forecast when a group it names as equivalent is complete,
    # nor, for a standard group not complete, beside an equivalent risk series the patient is on.
    out = []
    for group, s in sorted(best.items()):
        equivalent = [best[e.strip()] for e in (s.series.get("equivalentSeriesGroups") or "").split(";")
                      if e.strip() and e.strip() != group and e.strip() in best]
        if s.status != COMPLETE and any(e.status == COMPLETE for e in equivalent):
            continue
        if s.status != COMPLETE and s.kind == "Standard" and any(e.kind == "Risk" for e in equivalent):
            continue
        out.append(s)
    return out


def _rank(ps: PatientSeries) -> tuple[int, int, int]:
    return (ps.status == COMPLETE, len(ps.valid_results()), ps.kind == "Risk")
