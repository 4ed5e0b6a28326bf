"""Coverage by antigen and dose number at the WHO/UNICEF ages (WUENIC): the registry's figure, defined so
that the analytics indicator `vaccination_coverage_at_age` (analytics/indicators) counts exactly the same.

A child of birth cohort Y (born in year Y, alive at their first birthday or not yet one: the analytics
`base_child`) counts for dose k of an antigen when at least k completed Immunizations whose CVX code the
schedule's supporting data maps to that antigen were given by the age limit:
    BCG, HepB3, DTP1, DTP3, Pol3, PCV3 by 12 months; MCV1 by 24 months; MCV2 by 7 years
(WUENIC counts DTP, polio, HepB and PCV in surviving infants, MCV1 by the second birthday where the
calendar gives it at 12 months, MCV2 by the age of the national calendar's dose, 6 years in Azerbaijan).
Ages are counted in calendar months from the birth month, because the analytics store keeps birth months,
not dates (security/pseudonym.py): "by 12 months" is a dose given before the first day of the 13th month
after the birth month, i.e. by the end of the month in which the child turns one. That is the finest
limit both sides can apply alike; it counts a dose given up to a month past the exact age.
Doses are recognised by the engine's own CVX-to-antigen table (rules.Schedule.cvx_antigens), not by the
series name a clinic typed in protocolApplied: a pentavalent dose counts for diphtheria whatever its label.
The indicator's SQL carries the same tables (`indicator_tables`; the CVX table of each schedule in the
`immunization_schedule` setting of analytics/indicators/_base.json, `indicator_setting`, the configured one filled
in), and tests/registries/test_immunization_coverage.py fails if the two drift apart or their figures differ on a
generated population."""
from __future__ import annotations

import calendar
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from . import live_schedule, rules

# (name, antigen, dose number k, age limit in months)
WUENIC: tuple[tuple[str, str, int, int], ...] = (
    ("BCG", "Tuberculosis", 1, 12), ("HepB3", "HepB", 3, 12), ("DTP1", "Diphtheria", 1, 12),
    ("DTP3", "Diphtheria", 3, 12), ("Pol3", "Polio", 3, 12), ("PCV3", "Pneumococcal", 3, 12),
    ("MCV1", "Measles", 1, 24), ("MCV2", "Measles", 2, 84))


@dataclass(frozen=True)
class Cell:
    cohort: int
    dose: str


def antigen_cvx(schedule: rules.Schedule) -> dict[str, list[str]]:
    """The CVX codes (without leading zeros, as the rule files keep them) of each antigen WUENIC names."""
    wanted = {antigen for _, antigen, _, _ in WUENIC}
    out: dict[str, list[str]] = {a: [] for a in sorted(wanted)}
    for cvx, associations in schedule.cvx_antigens.items():
        for assoc in associations:
            if assoc.antigen in wanted:
                out[assoc.antigen].append(cvx)
    return {a: sorted(set(codes), key=lambda c: (len(c), c)) for a, codes in out.items()}


def indicator_tables(schedule: rules.Schedule) -> tuple[str, str]:
    """The two VALUES tables of the indicator's SQL: the doses (dose, antigen, k, months) and the antigens'
    CVX codes (antigen, cvx), as the indicator file must carry them."""
    doses = ", ".join(f"('{n}', '{a}', {k}, {m})" for n, a, k, m in WUENIC)
    codes = ", ".join(f"('{a}', '{c}')" for a, cs in antigen_cvx(schedule).items() for c in cs)
    return f"(VALUES {doses}) AS w(dose, antigen, k, months)", f"(VALUES {codes}) AS a(antigen, cvx)"


def indicator_setting() -> dict[str, Any]:
    """The `immunization_schedule` setting of analytics/indicators/_base.json: the live schedule's variable and
    default, and per schedule the CVX table (`{{immunization_cvx}}`) the indicators use with it; analytics
    fills in the configured schedule's (analytics/indicators.py `settings`), so `immunization_status` counts
    that schedule's recommendations and `vaccination_coverage_at_age` its vaccines, as the registry does."""
    return {"env": live_schedule.ENV, "default": rules.DEFAULT_SCHEDULE,
            "values": {key: {"immunization_cvx": indicator_tables(rules.load(key))[1]} for key in sorted(rules.SCHEDULES)}}


def add_months(day: date, months: int) -> date:
    """`day` plus whole months, the day clamped to the month's end (as DuckDB's date + INTERVAL n MONTH)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10])
    except ValueError:
        return None


def in_cohort(patient: dict[str, Any]) -> bool:
    """Alive at the first birthday, or not yet one (the analytics base_child: a death date, if any, on or after
    the first birthday)."""
    birth = _date(patient.get("birthDate"))
    if birth is None:
        return False
    death = _date(patient.get("deceasedDateTime")) if patient.get("deceasedDateTime") else None
    return death is None or death >= add_months(birth.replace(day=1), 12)  # the birth month, as analytics has it


def child_cells(patient: dict[str, Any], immunizations: Iterable[dict[str, Any]],
                codes: dict[str, list[str]]) -> list[str]:
    """The WUENIC doses one child has (by the age limits), from their completed Immunizations."""
    birth = _date(patient.get("birthDate"))
    if birth is None:
        return []
    antigen_of: dict[str, list[str]] = {}
    for antigen, cvxs in codes.items():
        for cvx in cvxs:
            antigen_of.setdefault(cvx, []).append(antigen)
    given: list[tuple[str, date]] = []
    for imm in immunizations:
        if imm.get("status") != "completed":
            continue
        day = _date(imm.get("occurrenceDateTime")) if imm.get("occurrenceDateTime") else None
        if day is None:
            continue
        for coding in (imm.get("vaccineCode") or {}).get("coding") or []:
            if coding.get("system") == "http://hl7.org/fhir/sid/cvx" and coding.get("code"):
                for antigen in antigen_of.get(str(coding["code"]).lstrip("0") or "0", []):
                    given.append((antigen, day))
                break  # the first CVX coding, as the analytics view's `.first()`
    month = birth.replace(day=1)
    out = []
    for name, antigen, k, months in WUENIC:
        limit = add_months(month, months + 1)
        if sum(1 for a, day in given if a == antigen and day < limit) >= k:
            out.append(name)
    return out


def coverage(cases: Iterable[tuple[dict, list[dict]]], schedule: rules.Schedule,
             cohorts: Iterable[int] | None = None) -> dict[Cell, tuple[int, int]]:
    """(numerator, denominator) per cohort and WUENIC dose over (Patient, Immunizations) records."""
    wanted = set(cohorts) if cohorts is not None else None
    codes = antigen_cvx(schedule)
    children: Counter = Counter()
    counted: Counter = Counter()
    for patient, imms in cases:
        birth = _date(patient.get("birthDate"))
        if birth is None or not in_cohort(patient) or (wanted is not None and birth.year not in wanted):
            continue
        children[birth.year] += 1
        for name in child_cells(patient, imms, codes):
            counted[Cell(birth.year, name)] += 1
    return {Cell(y, name): (counted[Cell(y, name)], n) for y, n in children.items() for name, _, _, _ in WUENIC}


def store_coverage(services: Any, cohorts: Iterable[int], schedule: rules.Schedule | None = None,
                   chunk: int = 1000) -> dict[Cell, tuple[int, int]]:
    """The registry's figure over a store: the patients born in `cohorts` (by the birthdate index), read in
    chunks with the batch refresh's queries (cohort.CohortReader)."""
    from ...fhir.dates import parse_range
    from .cohort import CohortReader
    schedule = schedule or rules.load(live_schedule.key())
    store = services.store
    years = sorted(set(cohorts))
    pid = store.pid("Patient", "birthdate")
    if pid is None or not years:
        return {}
    lo = parse_range(f"{years[0]}")[0]
    hi = parse_range(f"{years[-1]}")[1]
    rows = store.query("SELECT DISTINCT r.id FROM resources r JOIN idx_date d ON d.rid = r.rid WHERE "
                       "r.type = 'Patient' AND r.deleted = 0 AND d.pid = ? AND d.lo >= ? AND d.hi <= ? ORDER BY r.id",
                       [pid, lo, hi])
    ids = [row[0] for row in rows]
    reader = CohortReader(store, schedule)

    def cases():
        for start in range(0, len(ids), chunk):
            found, _ = reader.cases(store.query, ids[start:start + chunk])
            for patient, imms, _ in found.values():
                yield patient, imms
    return coverage(cases(), schedule, years)
