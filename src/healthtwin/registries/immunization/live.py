"""The live registry: one current ImmunizationRecommendation per patient and schedule, kept by the system.

A write rule (api/write_rules.py) on Immunization (create, update, delete), Patient (a child created, a
birth date, sex or death recorded, a patient deleted) and the clinical facts the forecast reads (a Condition,
AllergyIntolerance, Observation or Procedure coded as one of the schedule's observations) re-forecasts the patient inside the write's store
transaction and stores the result under a fixed id (recommendations.recommendation_id), updated in place, so
`ImmunizationRecommendation?patient=…` reflects the record the moment the write commits. The forecast runs
once per patient per transaction, as the transaction's last step (a transaction Bundle of twenty doses for one
child forecasts the child once, over all twenty). The patient's rows are read through the transaction (its
own uncommitted writes included) as the system: what the registry derives is not limited by who wrote.

Bulk loads do not run write rules: refresh.py recomputes every child with `healthtwin immunization refresh`."""
from __future__ import annotations

from datetime import date
from typing import Any, Callable, Iterable, Sequence

import orjson

from ...api.write_rules import WriteEvent, WriteRule
from ...store import Transaction
from ...store.search import run_search
from . import live_schedule, rules
from .fhir_io import InputError, _codes
from .recommendations import (CLINICAL_TYPES, clinical_queries, forecast, is_child, is_living, recommendation_id,
                              registry_recommendation)

SCHEDULES: tuple[str, ...] = (live_schedule.key(),)  # the schedule the registry keeps current (live_schedule.py)
READ_LIMIT = 100_000  # rows of one type read for one batch of patients
_STATE = "immunization-forecast"
_PATIENT_FIELDS = ("birthDate", "gender", "deceasedBoolean", "deceasedDateTime", "active")


def _patient_id(resource: dict[str, Any] | None) -> str | None:
    ref = ((resource or {}).get("patient") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/") and ref.count("/") == 1:
        return ref[8:]
    return None


def _content(stored) -> dict[str, Any] | None:
    return orjson.loads(stored.content) if stored is not None and stored.content else None


def read_cases(services: Any, pids: Sequence[str], execute: Callable | None,
               schedule: rules.Schedule) -> dict[str, tuple[dict, list[dict], list[dict]]]:
    """Each patient's (Patient, Immunizations, clinical facts), read as the system in a few searches for all of
    them (`execute`: a transaction's, to see its writes; None: the store's)."""
    def search(rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        query = services.parser.parse([rtype], params)
        query.count = READ_LIMIT
        page = run_search(services.store, services.registry, query, execute)
        if page.has_more:
            raise InputError(f"more than {READ_LIMIT:,} {rtype} rows for {len(pids)} patients")
        return [orjson.loads(r.content) for r in page.matches if r.content]

    refs = ",".join(f"Patient/{pid}" for pid in pids)
    cases = {p["id"]: (p, [], []) for p in search("Patient", [("_id", ",".join(pids))])}
    for imm in search("Immunization", [("patient", refs)]):
        case = cases.get(_patient_id(imm) or "")
        if case is not None:
            case[1].append(imm)
    seen: set[tuple[str, str]] = set()
    for rtype, criteria in clinical_queries(schedule):
        param = "subject" if rtype == "Observation" else "patient"
        for res in search(rtype, [(param, refs)] + criteria):
            ref = ((res.get("subject") or res.get("patient") or {}).get("reference") or "")
            case = cases.get(ref[8:] if ref.startswith("Patient/") else "")
            if case is not None and (rtype, str(res.get("id"))) not in seen:
                seen.add((rtype, str(res.get("id"))))  # an Observation may match by code and by value
                case[2].append(res)
    return cases


def recommendations_for(case: tuple[dict, list[dict], list[dict]], on: date,
                        schedules: Iterable[str] = SCHEDULES) -> list[dict[str, Any]]:
    """The current recommendations of one patient (none for a patient who died, or without a birth date)."""
    patient, imms, clinical = case
    if not is_living(patient):
        return []
    out = []
    for key in schedules:
        try:
            out.append(registry_recommendation(patient["id"], forecast(patient, imms, clinical, rules.load(key), on)))
        except InputError:
            return []  # a record the engine cannot assess (no birth date) gets no recommendation
    return out


# Left out of the comparison: the version's stamp, and the assessment date. A forecast that says the same on a
# later day is the same forecast, so its recommendation keeps the day it was first made (`date`: when it was
# created) and is not written again. Written daily instead, every child's recommendation became a new version
# every day: 130,000 versions (6 KB each) a day of history for one birth cohort, and a notification per child
# per day once subscriptions deliver, while the forecasts of 0.6% of them had changed (2026-12-06, the bench
# cohort from one day to the next). What moves with the day alone (a dose falling overdue, `_status_coding`;
# a series aged out) is in the content, so it is written when it happens.
_NOT_COMPARED = ("meta", "date")


def _same(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if old is None:
        return False
    return {k: v for k, v in old.items() if k not in _NOT_COMPARED} \
        == {k: v for k, v in new.items() if k not in _NOT_COMPARED} \
        and (old.get("meta") or {}).get("tag") == new["meta"]["tag"]


def retired(schedules: Iterable[str]) -> tuple[str, ...]:
    """The schedules the registry does not keep: their recommendations (left by a switch of
    HEALTHTWIN_IMMUNIZATION_SCHEDULE) are stale, and go at the child's next forecast, so no due list, count or
    twin reads a calendar the ministry no longer follows."""
    kept = set(schedules)
    return tuple(k for k in sorted(rules.SCHEDULES) if k not in kept)


def store_current(tx: Transaction, pid: str, current: list[dict[str, Any]],
                  schedules: Iterable[str] = SCHEDULES) -> int:
    """Writes the patient's recommendations in place (unchanged ones are left alone) and deletes those of a
    schedule with none, and those of a retired schedule; the number of versions written."""
    written = 0
    schedules = tuple(schedules)
    for key in retired(schedules):
        existing = tx.current("ImmunizationRecommendation", recommendation_id(pid, key))
        if existing and not existing[1].deleted:
            tx.delete("ImmunizationRecommendation", existing[1].id, existing)
            written += 1
    by_id = {r["id"]: r for r in current}
    for key in schedules:
        rid = recommendation_id(pid, key)
        existing = tx.current("ImmunizationRecommendation", rid)
        old = _content(existing[1]) if existing and not existing[1].deleted else None
        new = by_id.get(rid)
        if new is None:
            if old is not None:
                tx.delete("ImmunizationRecommendation", rid, existing)
                written += 1
        elif not _same(old, new):
            tx.update("ImmunizationRecommendation", rid, new, None, existing)
            written += 1
    return written


def refresh_in(tx: Transaction, services: Any, pids: Sequence[str], on: date,
               schedules: Iterable[str] = SCHEDULES, reindex_patients: bool = False) -> int:
    """Re-forecasts `pids` inside `tx` (each patient's guard taken first, so two writers of one child's doses
    forecast one after the other, the second over both doses). `reindex_patients`: also index each Patient
    anew, so one bulk-loaded by a process without the due lists' parameters (due.py) is found by district."""
    for pid in sorted(set(pids)):
        tx.lock(f"{_STATE}:{pid}")
    if reindex_patients:
        for pid in unindexed_patients(tx, pids):
            found = tx.current("Patient", pid)
            if found is not None and not found[1].deleted and found[1].content:
                tx.reindex(found[0], "Patient", orjson.loads(found[1].content))
    cases = read_cases(services, list(pids), tx.execute, rules.load(SCHEDULES[0]))
    written = 0
    for pid in sorted(set(pids)):  # index rows wait for the commit, keyed by row (Transaction._pending): no flush
        case = cases.get(pid)
        written += store_current(tx, pid, recommendations_for(case, on, schedules) if case else [], schedules)
    return written


def unindexed_patients(tx: Transaction, pids: Sequence[str]) -> list[str]:
    """Those of `pids` whose Patient has no `address-district` index row: loaded by a process that did not have
    the due lists' parameters (or with no district, which a reindex leaves as it is)."""
    code = tx.store.pid("Patient", "address-district", tx.cur)
    marks = ",".join("?" for _ in pids)
    rows = tx.execute(f"SELECT r.id FROM resources r WHERE r.type = 'Patient' AND r.deleted = 0 AND r.id IN ({marks}) "
                      f"AND NOT EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid AND s.pid = ?)",
                      [*pids, code])
    return sorted(row[0] for row in rows)


def _today(event: WriteEvent) -> date:
    """The transaction's assessment date: the services' clock (services.today, UTC), read once per
    transaction, so every patient it re-forecasts is assessed on one day even across midnight."""
    tx = event.tx
    on = tx.state.get(_STATE + ":on")
    if on is None:
        on = tx.state[_STATE + ":on"] = event.services.today()
    return on


def _pending(event: WriteEvent) -> set[str]:
    tx = event.tx
    pending = tx.state.get(_STATE)
    if pending is None:
        pending = tx.state[_STATE] = set()
        on = _today(event)
        tx.commit_checks.append(lambda: pending and refresh_in(tx, event.services, sorted(pending), on))
    return pending


def react_immunization(event: WriteEvent) -> None:
    old = _content(event.previous)
    for pid in {_patient_id(event.resource), _patient_id(old)} - {None}:
        _pending(event).add(pid)  # type: ignore[arg-type]


def react_patient(event: WriteEvent) -> None:
    pid = (event.stored.id if event.stored is not None else None) or (event.previous.id if event.previous else None)
    if pid is None:
        return
    if event.interaction == "delete":  # at once, so the delete's own integrity check finds no referrer left
        store_current(event.tx, pid, [])
        return
    old, new = _content(event.previous), event.resource or {}
    if old is None and not is_child(new, _today(event)):
        return  # an adult's recommendation starts with their first recorded dose
    if old is not None and all(old.get(k) == new.get(k) for k in _PATIENT_FIELDS):
        return  # an address or a telephone number changes no forecast
    _pending(event).add(pid)


def _subject_id(resource: dict[str, Any] | None) -> str | None:
    ref = ((resource or {}).get("subject") or (resource or {}).get("patient") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/") and ref.count("/") == 1:
        return ref[8:]
    return None


def _forecast_reads(resource: dict[str, Any] | None) -> bool:
    """Whether the engine reads this clinical fact: a code (or an Observation's value) one of the registry's
    schedules has among its observations (an immunocompromising condition, evidence of immunity...), in any
    clinical status, since a condition resolved changes the forecast as one recorded does."""
    if not resource:
        return False
    keys = _codes(resource.get("code")) + _codes(resource.get("valueCodeableConcept"))
    return any(key in rules.load(schedule).coded for schedule in SCHEDULES for key in keys)


def react_clinical(event: WriteEvent) -> None:
    """A Condition, AllergyIntolerance, Observation or Procedure the forecast reads, recorded, changed or
    deleted: its patient re-forecast, as for a dose (a vital sign or a cold forecasts nothing)."""
    old = _content(event.previous)
    if not (_forecast_reads(event.resource) or _forecast_reads(old)):
        return
    for pid in {_subject_id(event.resource), _subject_id(old)} - {None}:
        _pending(event).add(pid)  # type: ignore[arg-type]


RULES = [WriteRule("immunization-forecast", ("Immunization",), react=react_immunization),
         WriteRule("immunization-forecast-patient", ("Patient",), react=react_patient),
         WriteRule("immunization-forecast-clinical", CLINICAL_TYPES, react=react_clinical)]
