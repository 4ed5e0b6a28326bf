"""The IPS sections the summary fills: their LOINC codes, what each reads from the record, and its table.

Problems, allergies and medications are required by the IPS Composition profile: with nothing to show, the
section says why in `emptyReason` (list-empty-reason: `unavailable` when the record holds none the caller
may see, `withheld` when the caller's role may not read that kind of record at all)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..patient_record import Read, Rows
from . import display as d

LOINC = "http://loinc.org"
PROCEDURE_LIMIT = 50
IMMUNIZATION_LIMIT = 100


@dataclass(frozen=True)
class Section:
    key: str
    loinc: str
    display: str
    title: str
    required: bool
    reads: tuple[Read, ...]  # what the section reads from the record (all sections' are read together)
    found: Callable[[dict[Read, Rows]], list[Rows]]  # its rows, of what was read
    headers: tuple[str, ...]
    row: Callable[[dict[str, Any]], list[str]]

    def code(self) -> dict[str, Any]:
        return {"coding": [{"system": LOINC, "code": self.loinc, "display": self.display}]}


def _searches(*reads: Read) -> Callable[[dict[Read, Rows]], list[Rows]]:
    return lambda got: [got[r] for r in reads]


def _allergies(got: dict[Read, Rows]) -> list[Rows]:
    rows = got[ALLERGIES]
    rows.resources = [a for a in rows.resources if a.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
                      != "entered-in-error"]
    return [rows]


PROBLEMS = Read("Condition", (("clinical-status", "active,recurrence,relapse"),), "-onset-date")
ALLERGIES = Read("AllergyIntolerance")
MEDICATIONS = (Read("MedicationRequest", (("status", "active,on-hold"),), "-authoredon"),
               Read("MedicationStatement", (("status", "active,intended"),), "-effective"))
IMMUNIZATIONS = Read("Immunization", (("status", "completed"),), "-date", IMMUNIZATION_LIMIT)
RESULTS, VITAL_SIGNS = (Read("Observation", (("category", category), ("status", "final,amended,corrected")), "-date",
                             latest=True) for category in ("laboratory", "vital-signs"))
PROCEDURES = Read("Procedure", (("status", "completed,in-progress"),), "-date", PROCEDURE_LIMIT)


def _medication_row(m: dict[str, Any]) -> list[str]:
    dosage = "; ".join(x.get("text", "") for x in m.get("dosageInstruction") or m.get("dosage") or []
                       if isinstance(x, dict))
    return [d.concept(m.get("medicationCodeableConcept")) or (m.get("medicationReference") or {}).get("display", ""),
            d.when(m, "authoredOn", "effectiveDateTime", "effectivePeriod"), m.get("status", ""), dosage]


def _interpretation(o: dict[str, Any]) -> str:
    return ", ".join(d.concept(i) for i in o.get("interpretation") or [])


SECTIONS: tuple[Section, ...] = (
    Section("problems", "11450-4", "Problem list - Reported", "Active problems", True, (PROBLEMS,),
            _searches(PROBLEMS), ("Problem", "Since", "Status"),
            lambda c: [d.concept(c.get("code")), d.when(c, "onsetDateTime", "onsetPeriod", "recordedDate"),
                       d.concept(c.get("clinicalStatus"))]),
    Section("allergies", "48765-2", "Allergies and adverse reactions Document", "Allergies and intolerances", True,
            (ALLERGIES,), _allergies, ("Substance", "Criticality", "Status"),
            lambda a: [d.concept(a.get("code")), a.get("criticality", ""), d.concept(a.get("clinicalStatus"))]),
    Section("medications", "10160-0", "History of Medication use Narrative", "Medication summary", True,
            MEDICATIONS, _searches(*MEDICATIONS), ("Medication", "Since", "Status", "Dosage"), _medication_row),
    Section("immunizations", "11369-6", "History of Immunization Narrative", "Immunizations", False,
            (IMMUNIZATIONS,), _searches(IMMUNIZATIONS), ("Vaccine", "Date", "Dose"),
            lambda i: [d.concept(i.get("vaccineCode")), d.when(i, "occurrenceDateTime"),
                       str(((i.get("protocolApplied") or [{}])[0]).get("doseNumberPositiveInt", ""))]),
    Section("results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative", "Results (latest of each test)",
            False, (RESULTS,), _searches(RESULTS), ("Test", "Result", "Interpretation", "Date"),
            lambda o: [d.concept(o.get("code")), d.observation_value(o), _interpretation(o),
                       d.when(o, "effectiveDateTime", "effectivePeriod", "issued")]),
    Section("vital-signs", "8716-3", "Vital signs", "Vital signs (latest of each)", False, (VITAL_SIGNS,),
            _searches(VITAL_SIGNS), ("Measurement", "Value", "Date"),
            lambda o: [d.concept(o.get("code")), d.observation_value(o),
                       d.when(o, "effectiveDateTime", "effectivePeriod")]),
    Section("procedures", "47519-4", "History of Procedures Document", "History of procedures", False, (PROCEDURES,),
            _searches(PROCEDURES), ("Procedure", "Date", "Status"),
            lambda p: [d.concept(p.get("code")), d.when(p, "performedDateTime", "performedPeriod"), p.get("status", "")]),
)
