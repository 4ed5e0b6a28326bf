"""The checks an order meets at prescribing (cds_hooks.py turns each finding into a card): pure functions over
FHIR resources, no I/O.

* Duplicate therapy: a draft order in the same ATC class (the 4th level, chemical subgroup: the first five
  characters, `C09AA` for the plain ACE inhibitors) as another draft or one of the patient's active
  prescriptions. A level-4 class is where WHO's ATC puts substances that do the same thing.
* Allergy or intolerance: an AllergyIntolerance that is not resolved, refuted or entered in error whose code (or a
  reaction's substance) is the order's ATC code or an ATC class containing it (`J01C`, penicillins, covers
  `J01CA04` amoxicillin), or names the same substance (text, lower case).
* Dose limit: the order's dose (`dosageInstruction.doseAndRate.doseQuantity`) and its daily total (times the
  timing's frequency per period) against dose_limits.json (adult maxima with their sources).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

ATC = "http://www.whocc.no/atc"
CLASS_LENGTH = 5  # ATC level 4
_PER_DAY = {"s": 86400, "min": 1440, "h": 24, "d": 1, "wk": 1 / 7, "mo": 1 / 30, "a": 1 / 365}
_TO_MG = {"g": 1000.0, "mg": 1.0, "ug": 0.001, "mcg": 0.001, "µg": 0.001, "ng": 0.000001}


@dataclass(frozen=True)
class Finding:
    kind: str  # duplicate-therapy | allergy | dose-limit
    order: str  # the draft order's reference (MedicationRequest/id, or its position when it has no id)
    summary: str
    detail: str
    implicated: tuple[str, ...] = ()  # references of the other resources involved
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def atc_codes(concept: dict[str, Any] | None) -> list[str]:
    return [c["code"] for c in (concept or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") == ATC and isinstance(c.get("code"), str)]


def medication_of(request: dict[str, Any]) -> dict[str, Any]:
    concept = request.get("medicationCodeableConcept")
    return concept if isinstance(concept, dict) else {}


def _names(concept: dict[str, Any]) -> set[str]:
    out = {concept["text"].strip().lower()} if isinstance(concept.get("text"), str) else set()
    out |= {c["display"].strip().lower() for c in concept.get("coding") or []
            if isinstance(c, dict) and isinstance(c.get("display"), str)}
    return {n for n in out if n}


def _label(request: dict[str, Any]) -> str:
    concept = medication_of(request)
    names = sorted(_names(concept))
    codes = atc_codes(concept)
    return (names[0] if names else "the medication") + (f" ({codes[0]})" if codes else "")


def ref(resource: dict[str, Any], fallback: str) -> str:
    rid = resource.get("id")
    return f"{resource.get('resourceType', 'MedicationRequest')}/{rid}" if rid else fallback


def duplicate_therapy(drafts: list[tuple[str, dict[str, Any]]], active: list[dict[str, Any]]) -> list[Finding]:
    found: list[Finding] = []
    for i, (order, draft) in enumerate(drafts):
        classes = {c[:CLASS_LENGTH] for c in atc_codes(medication_of(draft)) if len(c) >= CLASS_LENGTH}
        if not classes:
            continue
        others = [(ref(a, ""), a, "an active prescription") for a in active if ref(a, "") != order]
        others += [(o, d, "another order being signed") for j, (o, d) in enumerate(drafts) if j != i]
        for other_ref, other, where in others:
            shared = classes & {c[:CLASS_LENGTH] for c in atc_codes(medication_of(other))}
            if not shared:
                continue
            cls = sorted(shared)[0]
            found.append(Finding(
                "duplicate-therapy", order, f"Duplicate therapy: {_label(draft)} and {_label(other)}"[:140],
                f"{_label(draft)} is in ATC class {cls}, as {_label(other)} ({where}, {other_ref or 'unsaved'}).",
                (other_ref,) if other_ref.startswith("MedicationRequest/") else (),
                "WHO ATC classification, 4th level (chemical subgroup)", {"class": cls}))
    return found


def _live(allergy: dict[str, Any]) -> bool:
    clinical = [c.get("code") for c in (allergy.get("clinicalStatus") or {}).get("coding") or [] if isinstance(c, dict)]
    verification = [c.get("code") for c in (allergy.get("verificationStatus") or {}).get("coding") or []
                    if isinstance(c, dict)]
    return not (set(clinical) & {"inactive", "resolved"}) and not (set(verification) & {"refuted", "entered-in-error"})


def _allergy_concepts(allergy: dict[str, Any]) -> Iterable[dict[str, Any]]:
    if isinstance(allergy.get("code"), dict):
        yield allergy["code"]
    for reaction in allergy.get("reaction") or []:
        if isinstance(reaction, dict) and isinstance(reaction.get("substance"), dict):
            yield reaction["substance"]


def allergies(drafts: list[tuple[str, dict[str, Any]]], documented: list[dict[str, Any]]) -> list[Finding]:
    found: list[Finding] = []
    for order, draft in drafts:
        concept = medication_of(draft)
        codes, names = atc_codes(concept), _names(concept)
        for allergy in documented:
            if not _live(allergy):
                continue
            for substance in _allergy_concepts(allergy):
                by_code = [a for a in atc_codes(substance) for c in codes if c.startswith(a)]
                by_name = names & _names(substance)
                if not by_code and not by_name:
                    continue
                what = "intolerance" if allergy.get("type") == "intolerance" else "allergy"
                what_to = sorted(_names(substance)) or by_code
                criticality = allergy.get("criticality")
                found.append(Finding(
                    "allergy", order, f"Documented {what} to {what_to[0]}: {_label(draft)}"[:140],
                    f"The patient has a documented {what} to {what_to[0]}"
                    + (f" (ATC {by_code[0]})" if by_code else "") + f", which covers {_label(draft)}"
                    + (f"; criticality {criticality}" if criticality else "") + ".",
                    (ref(allergy, "AllergyIntolerance"),), "the patient's AllergyIntolerance record",
                    {"critical": criticality == "high"}))
                break
    return found


@lru_cache(maxsize=1)
def dose_table() -> dict[str, dict[str, Any]]:
    return json.loads((Path(__file__).with_name("dose_limits.json")).read_text("utf-8"))["limits"]


def _in(value: float, unit: str | None, target: str) -> float | None:
    if unit is None:
        return None
    u = unit.strip("{}[]").lower()
    if u == target:
        return value
    if u in _TO_MG and target in _TO_MG:
        return value * _TO_MG[u] / _TO_MG[target]
    return None


def _per_day(timing: dict[str, Any] | None) -> float | None:
    rep = (timing or {}).get("repeat") or {}
    freq = rep.get("frequencyMax") or rep.get("frequency") or 1
    period, unit = rep.get("period") or 1, rep.get("periodUnit")
    numbers = isinstance(freq, (int, float)) and isinstance(period, (int, float))
    if unit not in _PER_DAY or not numbers or period <= 0:
        return None
    return freq / period * _PER_DAY[unit]


def dose_limits(drafts: list[tuple[str, dict[str, Any]]]) -> list[Finding]:
    found: list[Finding] = []
    table = dose_table()
    for order, draft in drafts:
        limit = next((table[c] for c in atc_codes(medication_of(draft)) if c in table), None)
        if limit is None:
            continue
        unit, daily, single_max = limit["unit"], 0.0, 0.0
        for dosage in draft.get("dosageInstruction") or []:
            for dr in (dosage or {}).get("doseAndRate") or []:
                q = (dr or {}).get("doseQuantity") or (((dr or {}).get("doseRange") or {}).get("high"))
                if not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)):
                    continue
                amount = _in(float(q["value"]), q.get("code") or q.get("unit"), unit)
                if amount is None:
                    continue
                single_max = max(single_max, amount)
                times = _per_day(dosage.get("timing"))
                daily += amount * (times if times is not None else 1)
        over = []
        if single_max > limit["max_single"]:
            over.append(f"a single dose of {single_max:g} {unit} (maximum {limit['max_single']:g} {unit})")
        if daily > limit["max_daily"]:
            over.append(f"{daily:g} {unit} a day (maximum {limit['max_daily']:g} {unit})")
        if over:
            found.append(Finding("dose-limit", order, f"High dose: {_label(draft)}, {' and '.join(over)}"[:140],
                                 f"{_label(draft)} is ordered at {' and '.join(over)}.", (), limit["source"],
                                 {"daily": daily, "single": single_max}))
    return found


def run(drafts: list[tuple[str, dict[str, Any]]], active: list[dict[str, Any]],
        documented: list[dict[str, Any]]) -> list[Finding]:
    return duplicate_therapy(drafts, active) + allergies(drafts, documented) + dose_limits(drafts)
