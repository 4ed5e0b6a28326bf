"""The write rule on MedicationRequest: its state machine, its prescription number, and its balance.

On every create and update, inside the write's transaction (`check`, before it is stored):
* the status change must be one lifecycle.py allows; `cancelled` only while nothing was dispensed (after, the
  prescriber `stopped` it);
* the national prescription number is kept, checked for uniqueness or given (numbers.py);
* the balance extension is the server's: whatever the client sent is replaced by the stored one, and a change of
  `dispenseRequest` (repeats, quantity) is applied to the balance row, refused if it is less than was dispensed.
An update takes the prescription's lock first (references.lock_key), the one dispenses take, so a prescriber's
cancellation and a pharmacy's dispense are ordered: the dispense after a cancellation is refused, the
cancellation after a dispense is refused (stop it instead).
"""
from __future__ import annotations

import orjson

from ...api.write_rules import WriteEvent, WriteRule
from ...fhir.outcome import FHIRError
from . import balance as B
from .lifecycle import check_request
from .numbers import assign
from .references import lock_key


def check(event: WriteEvent) -> None:
    previous = orjson.loads(event.previous.content) if event.previous and event.previous.content else None
    tx = event.tx
    if event.interaction == "delete":
        return
    resource = event.resource
    assert resource is not None
    rid = event.previous.id if event.previous else resource.get("id")
    old_status, new_status = (previous or {}).get("status"), resource.get("status")
    check_request(old_status, new_status)
    if rid:
        tx.lock(lock_key(rid))
    assign(event.services, tx, resource, previous, rid)
    B.show(resource, B.shown(previous))
    if previous is None or not rid:
        return
    allow = B.allowance(resource)
    if allow != B.allowance(previous):
        B.reallow(tx, rid, allow)
        bal = B.current(tx, rid)
        if bal is not None:
            B.show(resource, B.extension(bal, allow))
    if new_status == "cancelled" and old_status != "cancelled":
        bal = B.load(event.services, tx, rid, B.allowance(previous))
        if bal.fills_used > 0:
            raise FHIRError(409, f"MedicationRequest/{rid} has been dispensed ({bal.fills_used} time(s)): stop it "
                                 "(status 'stopped') rather than cancel it", "business-rule",
                            "MedicationRequest.status")


def react(event: WriteEvent) -> None:
    if event.interaction == "delete" and event.previous is not None:
        B.drop(event.tx, event.previous.id)


RULE = WriteRule("prescribing: prescription lifecycle", ("MedicationRequest",), check=check, react=react)
