"""Mandatory health insurance: one Coverage per resident, a Claim and an ExplanationOfBenefit per encounter.

Payor: the State Agency for Mandatory Health Insurance (İcbari Tibbi Sığorta üzrə Dövlət Agentliyi),
which pays TƏBİB-run public facilities for the services of the basic benefit package. Service codes and
prices are an illustrative tariff (AZN), not the official price list (see docs/population.md).
"""
from __future__ import annotations

from typing import Any

from .common import SYS_SERVICE, Person, dstr, dtstr
from .institutions import INSURER_ID, INSURER_REF

# code -> (display, unit price AZN)
TARIFF: dict[str, tuple[str, float]] = {
    "AMB-GP": ("Family physician consultation", 8.0),
    "AMB-SPEC": ("Specialist consultation", 12.0),
    "AMB-PED": ("Paediatric consultation", 8.0),
    "EMER": ("Emergency department visit", 35.0),
    "IMP-DAY": ("Inpatient bed-day", 85.0),
    "IMP-ICU": ("Intensive care bed-day", 240.0),
    "LAB-BASIC": ("Basic laboratory test", 4.0),
    "LAB-HBA1C": ("Glycated haemoglobin test", 12.0),
    "PROC-ECG": ("Electrocardiogram", 6.0),
    "PROC-SPIRO": ("Spirometry", 10.0),
    "PROC-MAMMO": ("Screening mammography", 25.0),
    "PROC-PCI": ("Percutaneous coronary intervention", 3200.0),
    "PROC-APPEND": ("Appendectomy", 650.0),
    "PROC-DIAL": ("Haemodialysis session", 120.0),
    "PROC-TRANSF": ("Blood transfusion", 90.0),
    "PROC-CHEMO": ("Chemotherapy session", 450.0),
    "BIRTH": ("Uncomplicated delivery and newborn care", 300.0),
}
_PS = {k: {"coding": [{"system": SYS_SERVICE, "code": k, "display": v[0]}], "text": v[0]} for k, v in TARIFF.items()}
_CLAIM_TYPE = {
    t: {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": t}]}
    for t in ("professional", "institutional")
}
_PRIORITY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]}
_ADJ = {c: {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": c}]}
        for c in ("submitted", "benefit")}
_PAY_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-paymenttype", "code": "complete"}]}
_COV_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PUBLICPOL",
                         "display": "public healthcare"}], "text": "İcbari tibbi sığorta"}
_SELF = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]}
START_OF_MANDATORY_INSURANCE = 737425  # 2020-01-01: nationwide roll-out of mandatory health insurance


def coverage(p: Person) -> str:
    """Emit the resident's Coverage; returns its id ('' for residents who died before the roll-out)."""
    if p.death is not None and p.death < START_OF_MANDATORY_INSURANCE:
        return ""  # never insured, and never claimed for (claims start with the roll-out)
    cid = f"cov-{p.idx}"
    start = max(p.birth, START_OF_MANDATORY_INSURANCE)
    res: dict[str, Any] = {
        "resourceType": "Coverage", "id": cid,
        "identifier": [{"system": "https://health.gov.az/fhir/sid/its-policy", "value": f"ITS-{p.fin}"}],
        "status": "active" if p.death is None else "cancelled", "type": _COV_TYPE,
        "subscriberId": p.fin, "beneficiary": p.ref, "relationship": _SELF,
        "period": {"start": dstr(start)}, "payor": [INSURER_REF],
    }
    if p.death is not None:
        res["period"]["end"] = dstr(p.death)
    p.emit("Coverage", res)
    return cid


def claim_and_eob(p: Person, enc_id: str, provider: dict[str, str], institutional: bool, day: int, end_day: int,
                  items: list[tuple[str, int]], diagnosis: str | None) -> None:
    """Claim for the encounter's services and its (fully paid) ExplanationOfBenefit.

    Encounters before the nationwide roll-out of mandatory insurance (2020) are not claimed.
    """
    if day < START_OF_MANDATORY_INSURANCE:
        return
    cref = {"reference": f"Coverage/{p.coverage_ref}"}
    enc_ref = [{"reference": f"Encounter/{enc_id}"}]
    created = dtstr(end_day, 1080)
    claim_items, eob_items, total = [], [], 0.0
    for seq, (code, qty) in enumerate(items, 1):
        price = TARIFF[code][1]
        net = round(price * qty, 2)
        total += net
        ci = {"sequence": seq, "productOrService": _PS[code], "servicedDate": dstr(day),
              "quantity": {"value": qty}, "unitPrice": {"value": price, "currency": "AZN"},
              "net": {"value": net, "currency": "AZN"}, "encounter": enc_ref}
        claim_items.append(ci)
        eob_items.append({"sequence": seq, "productOrService": _PS[code], "servicedDate": dstr(day),
                          "quantity": {"value": qty}, "net": {"value": net, "currency": "AZN"},
                          "encounter": enc_ref,
                          "adjudication": [{"category": _ADJ["submitted"], "amount": {"value": net, "currency": "AZN"}},
                                           {"category": _ADJ["benefit"], "amount": {"value": net, "currency": "AZN"}}]})
    total = round(total, 2)
    ctype = _CLAIM_TYPE["institutional" if institutional else "professional"]
    clm_id = p.new_id("clm")
    claim: dict[str, Any] = {
        "resourceType": "Claim", "id": clm_id, "status": "active", "type": ctype, "use": "claim",
        "patient": p.ref, "billablePeriod": {"start": dstr(day), "end": dstr(end_day)}, "created": created,
        "insurer": {"reference": f"Organization/{INSURER_ID}"}, "provider": provider, "priority": _PRIORITY,
        "insurance": [{"sequence": 1, "focal": True, "coverage": cref}],
        "item": claim_items, "total": {"value": total, "currency": "AZN"},
    }
    if diagnosis:
        claim["diagnosis"] = [{"sequence": 1, "diagnosisReference": {"reference": f"Condition/{diagnosis}"}}]
    p.emit("Claim", claim)
    p.emit("ExplanationOfBenefit", {
        "resourceType": "ExplanationOfBenefit", "id": p.new_id("eob"), "status": "active", "type": ctype,
        "use": "claim", "patient": p.ref, "billablePeriod": {"start": dstr(day), "end": dstr(end_day)},
        "created": dtstr(end_day + 14, 600), "insurer": {"reference": f"Organization/{INSURER_ID}"},
        "provider": provider, "claim": {"reference": f"Claim/{clm_id}"}, "outcome": "complete",
        "insurance": [{"focal": True, "coverage": cref}], "item": eob_items,
        "total": [{"category": _ADJ["submitted"], "amount": {"value": total, "currency": "AZN"}},
                  {"category": _ADJ["benefit"], "amount": {"value": total, "currency": "AZN"}}],
        "payment": {"type": _PAY_TYPE, "date": dstr(end_day + 30), "amount": {"value": total, "currency": "AZN"}},
    })
