"""The national prescription number: the `identifier` (system PRESCRIPTION_SYSTEM) a patient presents at the
pharmacy, which finds the prescription by it (`MedicationRequest?identifier=system|number`; a pharmacy may not
browse prescriptions, security/shapes.py).

The generated population carries one on every MedicationRequest (population/medications.py: 12 digits from a
hash of the person's FIN and the resource id). A prescription written through the API without one is given a
random 12-digit number; a number is unique among MedicationRequests (checked under a transaction lock on the
number, so two prescriptions written at once cannot take the same one) and never changes once given.
"""
from __future__ import annotations

import secrets
from typing import Any

from ...fhir.outcome import FHIRError
from ...store import Transaction
from ...store.search import run_search

PRESCRIPTION_SYSTEM = "https://health.gov.az/fhir/sid/prescription"
DIGITS = 12


def numbers_of(resource: dict[str, Any] | None) -> list[str]:
    return [i["value"] for i in (resource or {}).get("identifier") or []
            if isinstance(i, dict) and i.get("system") == PRESCRIPTION_SYSTEM and isinstance(i.get("value"), str)]


def _taken(services: Any, tx: Transaction, number: str, rid: str | None) -> bool:
    tx.lock(f"prescription-number:{number}")
    query = services.parser.parse(["MedicationRequest"], [("identifier", f"{PRESCRIPTION_SYSTEM}|{number}")],
                                  strict=True)
    query.count, query.total = 2, "none"
    return any(s.id != rid for s in run_search(services.store, services.registry, query, tx.execute).matches)


def assign(services: Any, tx: Transaction, resource: dict[str, Any], previous: dict[str, Any] | None,
           rid: str | None) -> None:
    """Keeps, checks or gives the prescription's number, in place."""
    given, had = numbers_of(resource), numbers_of(previous)
    if len(given) > 1:
        raise FHIRError(422, "A prescription carries one national prescription number", "business-rule",
                        "MedicationRequest.identifier")
    if had and given and given != had[:1]:
        raise FHIRError(409, f"The prescription number {had[0]} cannot change", "business-rule",
                        "MedicationRequest.identifier")
    if had and not given:
        resource.setdefault("identifier", []).append({"use": "official", "system": PRESCRIPTION_SYSTEM,
                                                      "value": had[0]})
        return
    if given:
        if not had and _taken(services, tx, given[0], rid):
            raise FHIRError(409, f"The prescription number {given[0]} is already in use", "duplicate",
                            "MedicationRequest.identifier")
        return
    for _ in range(8):
        number = f"{secrets.randbelow(10 ** DIGITS):0{DIGITS}d}"
        if not _taken(services, tx, number, rid):
            resource.setdefault("identifier", []).append({"use": "official", "system": PRESCRIPTION_SYSTEM,
                                                          "value": number})
            return
    raise FHIRError(503, "No free prescription number was found; try again", "transient")
