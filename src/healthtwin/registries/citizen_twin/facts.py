"""What the twin's models read from the record, gathered once: each value with the reference of the record it
came from, so every figure can say where it came from."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..patient_record import PatientRecord, Read

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
SBP, DBP, BP_PANEL = "8480-6", "8462-4", "85354-9"
HBA1C, CREATININE, CHOLESTEROL, BMI, GLUCOSE, SMOKING = "4548-4", "14682-9", "14647-2", "39156-5", "14771-0", "72166-2"
# conditions by SNOMED CT or ICD-10 prefix
DIABETES = ({"44054006", "46635009", "73211009"}, ("E10", "E11", "E13", "E14"))
CKD = ({"709044004", "431855005"}, ("N18",))
HYPERTENSION = ({"38341003", "59621000"}, ("I10", "I11", "I12", "I13", "I15"))
CVD = ({"414545008", "22298006", "230690007", "53741008"}, ("I20", "I21", "I22", "I23", "I24", "I25", "I63",
                                                             "I64", "I65", "I66", "G45"))
USED = (BP_PANEL, SBP, DBP, HBA1C, CREATININE, CHOLESTEROL, BMI, GLUCOSE, SMOKING)
ANTIHYPERTENSIVE_ATC = ("C02", "C03", "C07", "C08", "C09")
ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
READS = (
    # only the codes the models and trends use: a decade of weights and heart rates is not read
    Read("Observation", (("status", "final,amended,corrected,preliminary"),
                         ("code", ",".join(f"{LOINC}|{c}" for c in USED))), "date"),
    Read("Condition"),
    Read("MedicationRequest", (("status", "active,on-hold"),)),
    Read("Immunization", (("status", "completed"),), "date"),
    Read("Procedure", (), "date"),
)


@dataclass(frozen=True)
class Point:
    """One measured value: when, what, and the record it is in."""
    when: str
    value: float
    unit: str
    source: str  # "Observation/{id}"


@dataclass
class Facts:
    today: dt.date
    birth: dt.date | None
    sex: str | None
    series: dict[str, list[Point]] = field(default_factory=dict)  # LOINC code -> points, oldest first
    smoker: tuple[bool, str] | None = None  # (current smoker?, source)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    immunizations: list[dict[str, Any]] = field(default_factory=list)
    procedures: list[dict[str, Any]] = field(default_factory=list)
    patient: dict[str, Any] = field(default_factory=dict)
    withheld: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)

    def age(self, on: dt.date | None = None) -> float | None:
        if self.birth is None:
            return None
        return ((on or self.today) - self.birth).days / 365.25

    def latest(self, code: str) -> Point | None:
        points = self.series.get(code) or []
        return points[-1] if points else None

    def condition(self, kind: tuple[set[str], tuple[str, ...]], active_only: bool = True) -> dict[str, Any] | None:
        snomed, icd = kind
        for c in self.conditions:
            status = _code_in(c.get("clinicalStatus"), None)
            if active_only and status is not None and status not in ACTIVE_CONDITION:
                continue
            for coding in (c.get("code") or {}).get("coding") or []:
                code = str(coding.get("code", ""))
                if (coding.get("system") == SNOMED and code in snomed) or (
                        coding.get("system") == ICD10 and code.startswith(icd)):
                    return c
        return None

    def on_medication(self, atc_prefixes: tuple[str, ...]) -> dict[str, Any] | None:
        for m in self.medications:
            for coding in (m.get("medicationCodeableConcept") or {}).get("coding") or []:
                if coding.get("system") == ATC and str(coding.get("code", "")).startswith(atc_prefixes):
                    return m
        return None


def _code_in(concept: Any, system: str | None) -> str | None:
    for c in (concept or {}).get("coding") or [] if isinstance(concept, dict) else []:
        if system is None or c.get("system") == system:
            return c.get("code")
    return None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _add(series: dict[str, list[Point]], code: str | None, when: str, q: Any, source: str) -> None:
    if code and isinstance(q, dict) and isinstance(q.get("value"), (int, float)):
        series.setdefault(code, []).append(Point(when, float(q["value"]), q.get("code") or q.get("unit") or "",
                                                 source))


def gather(record: PatientRecord, today: dt.date) -> Facts:
    got = record.read_all(READS)  # one statement on PostgreSQL, the Patient's row in it
    patient = record.patient()
    facts = Facts(today, _date(patient.get("birthDate")), patient.get("gender"), patient=patient)
    reads = {read.rtype: got[read] for read in READS}
    for rtype, rows in reads.items():
        if rows.withheld:
            facts.withheld.append(rtype)
        if rows.truncated:
            facts.truncated.append(rtype)
    for obs in reads["Observation"].resources:
        when = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or obs.get("issued")
        if not isinstance(when, str):
            continue
        source = f"Observation/{obs['id']}"
        code = _code_in(obs.get("code"), LOINC)
        if code == SMOKING:
            smoke = _code_in(obs.get("valueCodeableConcept"), SNOMED)
            # current every day / some days smoker, heavy / light (SNOMED, the LOINC answer list's codes)
            facts.smoker = (smoke in {"449868002", "428041000124106", "77176002", "428071000124103",
                                      "428061000124105"}, source)
            continue
        _add(facts.series, code, when, obs.get("valueQuantity"), source)
        for comp in obs.get("component") or []:
            _add(facts.series, _code_in(comp.get("code"), LOINC), when, comp.get("valueQuantity"), source)
    for points in facts.series.values():
        points.sort(key=lambda p: p.when)
    facts.conditions = reads["Condition"].resources
    facts.medications = reads["MedicationRequest"].resources
    facts.immunizations = reads["Immunization"].resources
    facts.procedures = reads["Procedure"].resources
    return facts
