"""Prescriptions and dispenses for the prescribing tests."""
from __future__ import annotations

from typing import Any

RX = "https://health.gov.az/fhir/sid/prescription"
ATC = "http://www.whocc.no/atc"
BALANCE = "https://health.gov.az/fhir/StructureDefinition/dispense-balance"


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Aliyeva"}]}


def prescription(rid: str = "mr1", *, quantity: float | None = 60, repeats: int | None = None,
                 status: str = "active", validity: dict | None = None, code: str = "A10BA02",
                 patient: str = "p1", number: str | None = None, authored: str | None = None) -> dict[str, Any]:
    dr: dict[str, Any] = {}
    if quantity is not None:
        dr["quantity"] = {"value": quantity, "unit": "dose"}
    if repeats is not None:
        dr["numberOfRepeatsAllowed"] = repeats
    if validity is not None:
        dr["validityPeriod"] = validity
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
                           "medicationCodeableConcept": {"coding": [{"system": ATC, "code": code}]},
                           "subject": {"reference": f"Patient/{patient}"}}
    if dr:
        res["dispenseRequest"] = dr
    if number:
        res["identifier"] = [{"system": RX, "value": number}]
    if authored:
        res["authoredOn"] = authored
    return res


def dispense(rx: str = "mr1", *, quantity: float | None = 60, status: str = "completed", patient: str = "p1",
             pharmacy: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationDispense", "status": status,
                           "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "A10BA02"}]},
                           "subject": {"reference": f"Patient/{patient}"},
                           "authorizingPrescription": [{"reference": f"MedicationRequest/{rx}"}]}
    if quantity is not None:
        res["quantity"] = {"value": quantity, "unit": "dose"}
    if pharmacy:
        res["performer"] = [{"actor": {"reference": pharmacy}}]
    return res


def balance(req: dict[str, Any]) -> dict[str, Any]:
    """The balance extension's parts by name ({} if none)."""
    for e in (req.get("dispenseRequest") or {}).get("extension") or []:
        if e["url"] == BALANCE:
            return {p["url"]: p.get("valueUnsignedInt", p.get("valueQuantity", {}).get("value")) for p in e["extension"]}
    return {}
