"""The state machines of a prescription (MedicationRequest.status) and of a dispense (MedicationDispense.status).

Pure tables: which status a resource may be created in and which change an update may make. A change outside
them is refused with a 409 OperationOutcome naming the allowed ones (prescriptions.py and dispensing.py enforce
them inside the write's transaction). Writing the same status again is always allowed (an edit of other fields).

Why these edges (R4 MedicationRequest.status / MedicationDispense.status definitions):
* a prescription is `cancelled` only before anything was dispensed, `stopped` after (prescriptions.py checks the
  balance); `completed` follows from its dispenses (the last fill handed over and none still in-progress:
  dispensing.py), or the prescriber says so; only the first is reopened by a withdrawn dispense;
* every status may become `entered-in-error` (a record made by mistake), and nothing leaves it;
* a dispense that was handed over (`completed`) can only be declared `entered-in-error`, which gives its
  quantity back to the prescription; `declined`, `cancelled` and `stopped` are final.
"""
from __future__ import annotations

from ...fhir.outcome import FHIRError

REQUEST_STATUSES = ("draft", "active", "on-hold", "cancelled", "completed", "stopped", "entered-in-error", "unknown")
REQUEST_INITIAL = frozenset({"draft", "active", "on-hold", "completed", "stopped", "cancelled", "unknown"})
REQUEST_NEXT: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "on-hold", "cancelled", "entered-in-error"}),
    "active": frozenset({"on-hold", "cancelled", "completed", "stopped", "entered-in-error"}),
    "on-hold": frozenset({"active", "cancelled", "stopped", "entered-in-error"}),
    "completed": frozenset({"active", "entered-in-error"}),  # active again: a completing dispense withdrawn
    "cancelled": frozenset({"entered-in-error"}),
    "stopped": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
    "unknown": frozenset({"active", "on-hold", "cancelled", "completed", "stopped", "entered-in-error"}),
}
# A prescription a pharmacy may dispense against.
DISPENSABLE = frozenset({"active"})

DISPENSE_STATUSES = ("preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error",
                     "stopped", "declined", "unknown")
DISPENSE_INITIAL = frozenset({"preparation", "in-progress", "on-hold", "completed", "declined", "cancelled"})
DISPENSE_NEXT: dict[str, frozenset[str]] = {
    "preparation": frozenset({"in-progress", "on-hold", "completed", "cancelled", "declined", "stopped",
                              "entered-in-error"}),
    "in-progress": frozenset({"on-hold", "completed", "stopped", "entered-in-error"}),
    "on-hold": frozenset({"preparation", "in-progress", "completed", "cancelled", "stopped", "entered-in-error"}),
    "completed": frozenset({"entered-in-error"}),
    "declined": frozenset({"entered-in-error"}),
    "cancelled": frozenset({"entered-in-error"}),
    "stopped": frozenset({"entered-in-error"}),
    "entered-in-error": frozenset(),
    "unknown": frozenset({"preparation", "in-progress", "on-hold", "completed", "cancelled", "declined", "stopped",
                          "entered-in-error"}),
}
# Dispenses that take medication out of the prescription: handed over, or being handed over (the quantity is held
# from the moment a pharmacy starts, so a second pharmacy cannot start on the same fill).
CONSUMING = frozenset({"in-progress", "completed"})


def _check(rtype: str, initial: frozenset[str], edges: dict[str, frozenset[str]], old: str | None,
           new: str | None) -> None:
    if new not in edges:
        raise FHIRError(422, f"{rtype}.status '{new}' is not one of {', '.join(edges)}", "value", f"{rtype}.status")
    if old is None:
        if new not in initial:
            raise FHIRError(409, f"A {rtype} cannot be created as '{new}' (allowed: {', '.join(sorted(initial))})",
                            "business-rule", f"{rtype}.status")
        return
    if new == old:
        return
    allowed = edges.get(old, frozenset())
    if new not in allowed:
        after = ", ".join(sorted(allowed)) if allowed else "none: it is final"
        raise FHIRError(409, f"A {rtype} cannot go from '{old}' to '{new}' (from '{old}': {after})",
                        "business-rule", f"{rtype}.status")


def check_request(old: str | None, new: str | None) -> None:
    """Refuses a MedicationRequest status change the state machine does not allow (old None: a create)."""
    _check("MedicationRequest", REQUEST_INITIAL, REQUEST_NEXT, old, new)


def check_dispense(old: str | None, new: str | None) -> None:
    """Refuses a MedicationDispense status change the state machine does not allow (old None: a create)."""
    _check("MedicationDispense", DISPENSE_INITIAL, DISPENSE_NEXT, old, new)
