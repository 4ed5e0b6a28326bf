"""MedicationRequest (ATC-coded) and MedicationDispense per condition.

Chronic conditions are treated from diagnosis and renewed at follow-up visits (so the Observation model
can assume treatment from onset); acute episodes get a short course. A dispense follows most requests
(primary non-adherence ~10 %).
"""
from __future__ import annotations

import hashlib
from typing import Any

from .common import ATC, SYS_PRESCRIPTION, UCUM, Person, Resource, dtstr

# key -> [(ATC code, display, dose, dose unit (UCUM), times per day, days supplied)]
DRUGS: dict[str, list[tuple[str, str, float, str, int, int]]] = {
    "htn": [("C09AA02", "enalapril", 10, "mg", 1, 90), ("C08CA01", "amlodipine", 5, "mg", 1, 90)],
    "t2dm": [("A10BA02", "metformin", 1000, "mg", 2, 90)],
    "ihd": [("B01AC06", "acetylsalicylic acid", 75, "mg", 1, 90), ("C10AA05", "atorvastatin", 20, "mg", 1, 90),
            ("C07AB07", "bisoprolol", 5, "mg", 1, 90)],
    "copd": [("R03BB04", "tiotropium bromide", 18, "ug", 1, 90)],
    "asthma": [("R03AC02", "salbutamol", 100, "ug", 2, 90), ("R03BA05", "fluticasone", 250, "ug", 2, 90)],
    "ckd": [("C09AA02", "enalapril", 5, "mg", 1, 90)],
    "breast_ca": [("L02BA01", "tamoxifen", 20, "mg", 1, 90)],
    "lung_ca": [("N02AA01", "morphine", 10, "mg", 2, 30)],
    "stomach_ca": [("A02BC01", "omeprazole", 20, "mg", 1, 30)],
    "colon_ca": [("L01BC02", "fluorouracil", 500, "mg", 1, 5)],
    "thal_major": [("V03AC03", "deferasirox", 1000, "mg", 1, 30), ("B03BB01", "folic acid", 5, "mg", 1, 30)],
    "thal_trait": [("B03BB01", "folic acid", 1, "mg", 1, 30)],
    "ili": [("N02BE01", "paracetamol", 500, "mg", 3, 5)],
    "pharyngitis": [("J01CA04", "amoxicillin", 500, "mg", 3, 7)],
    "otitis": [("J01CR02", "amoxicillin and beta-lactamase inhibitor", 625, "mg", 2, 7)],
    "pneumonia": [("J01DD04", "ceftriaxone", 1000, "mg", 1, 7)],
    "gastro": [("A07CA", "oral rehydration salt formulations", 1, "{sachet}", 3, 3)],
    "uti": [("J01XE01", "nitrofurantoin", 100, "mg", 2, 5)],
    "sprain": [("M01AE01", "ibuprofen", 400, "mg", 3, 5)],
    "appendicitis": [("J01DD04", "ceftriaxone", 1000, "mg", 1, 3)],
    "measles": [("A11CA01", "retinol (vit A)", 200000, "[iU]", 1, 2)],
}
# Prebuilt CodeableConcepts and dosage fragments (shared, never mutated).
_CC: dict[str, dict[str, Any]] = {}
_DOSE: dict[tuple[str, str], list[dict[str, Any]]] = {}
for _key, _items in DRUGS.items():
    for _code, _name, _dose, _unit, _tpd, _days in _items:
        _CC[_code] = {"coding": [{"system": ATC, "code": _code, "display": _name}], "text": _name}
        _DOSE[(_key, _code)] = [{
            "sequence": 1, "text": f"{_dose:g} {_unit.strip('{}[]')} {_tpd}x/day",
            "timing": {"repeat": {"frequency": _tpd, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": _dose, "unit": _unit.strip("{}[]"), "system": UCUM, "code": _unit}}],
        }]

CHRONIC_KEYS = frozenset({"htn", "t2dm", "ihd", "copd", "asthma", "ckd", "breast_ca", "lung_ca", "stomach_ca",
                          "colon_ca", "thal_major", "thal_trait"})


def prescription_number(p: Person, rid: str) -> str:
    """The national prescription number the patient presents at the pharmacy: 12 digits, not derivable from
    the resource id without the person's FIN (so a pharmacy cannot enumerate prescriptions), deterministic
    (no random draw, so the rest of the population is unchanged)."""
    digest = hashlib.blake2b(f"{p.fin}/{rid}".encode(), digest_size=8).digest()
    return f"{int.from_bytes(digest, 'big') % 10**12:012d}"


def prescribe(p: Person, key: str, enc: dict[str, str], day: int, minute: int, requester: dict[str, str],
              pharmacy: dict[str, str], reason: str | None = None) -> int:
    """Request (and usually dispense) every drug for a condition; returns the number of resources."""
    n = 0
    chronic = key in CHRONIC_KEYS
    for code, _name, _dose, _unit, tpd, days in DRUGS[key]:
        rid = p.new_id("mrq")
        qty = tpd * days
        req: Resource = {
            "resourceType": "MedicationRequest", "id": rid,
            "identifier": [{"use": "official", "system": SYS_PRESCRIPTION, "value": prescription_number(p, rid)}],
            "status": ("stopped" if p.death is not None else "active") if chronic and day + days >= p.win_end
            else "completed", "intent": "order",
            "medicationCodeableConcept": _CC[code], "subject": p.ref, "encounter": enc,
            "authoredOn": dtstr(day, minute), "requester": requester,
            "dosageInstruction": _DOSE[(key, code)],
            "dispenseRequest": {"quantity": {"value": qty, "unit": "dose"},
                                "expectedSupplyDuration": {"value": days, "unit": "days", "system": UCUM, "code": "d"}},
        }
        if reason:
            req["reasonReference"] = [{"reference": f"Condition/{reason}"}]
        p.emit("MedicationRequest", req)
        n += 1
        if p.rng.random() < 0.9:
            hand = day + (0 if p.rng.random() < 0.7 else 1)
            if p.death is not None and hand > p.death:
                continue
            p.emit("MedicationDispense", {
                "resourceType": "MedicationDispense", "id": p.new_id("mds"), "status": "completed",
                "medicationCodeableConcept": _CC[code], "subject": p.ref,
                "performer": [{"actor": pharmacy}],
                "authorizingPrescription": [{"reference": f"MedicationRequest/{rid}"}],
                "quantity": {"value": qty, "unit": "dose"},
                "daysSupply": {"value": days, "unit": "days", "system": UCUM, "code": "d"},
                "whenHandedOver": dtstr(hand, minute + 60 + p.rng.randrange(300)),
                "dosageInstruction": _DOSE[(key, code)],
            })
            n += 1
    return n


