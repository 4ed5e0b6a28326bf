"""Reading the prescriptions a dispense names: `authorizingPrescription` references to MedicationRequests."""
from __future__ import annotations

from typing import Any


def prescription_ids(dispense: dict[str, Any] | None) -> list[str]:
    """The MedicationRequest ids `dispense` is authorised by (relative or absolute references)."""
    out: list[str] = []
    for item in (dispense or {}).get("authorizingPrescription") or []:
        ref = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(ref, str):
            continue
        parts = ref.split("/")
        if len(parts) >= 2 and parts[-2] == "MedicationRequest" and parts[-1]:
            out.append(parts[-1])
        elif len(parts) >= 4 and parts[-4] == "MedicationRequest" and parts[-2] == "_history":
            out.append(parts[-3])
    return out


def lock_key(rid: str) -> str:
    """The transaction lock every write that changes what MedicationRequest/rid allows takes first."""
    return f"prescription:{rid}"
