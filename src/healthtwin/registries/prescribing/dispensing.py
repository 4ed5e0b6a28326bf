"""Dispensed once only: the write rule on MedicationDispense.

A dispense that enters `in-progress` or `completed` (created so, or updated into it) takes medication out of its
prescription; one that leaves them (`entered-in-error`, `stopped`) gives it back. Inside the write's transaction,
before the dispense is stored (`check`):
1. the prescription's transaction lock is taken (`pg_advisory_xact_lock` on PostgreSQL; SQLite's single writer),
   so a second pharmacy dispensing the same prescription waits for the first to commit and then sees its fill;
2. the prescription must be `active`, inside its `dispenseRequest.validityPeriod` (or the default validity from
   its `authoredOn`: validity.py), and the dispense must fit in
   one fill (`dispenseRequest.quantity`, same unit) and in what remains;
3. the balance row (balance.py) is updated; its CHECK constraints refuse an overdraw even if 1 and 2 were skipped.
After it is stored (`react`), the MedicationRequest is rewritten in the same transaction with its balance
extension and the status that follows: `completed` when nothing remains, this dispense was handed over and no
other dispense is still in-progress (the last of them to be handed over completes it); back to `active` when a
withdrawn dispense leaves something to dispense again and the prescription was completed by its fills (nothing
remained before the withdrawal). A prescription the prescriber completed while fills remained stays completed.

Refusals: 409 (conflict) when the prescription's state refuses the dispense (nothing left, expired, not active:
what the losing pharmacy of a race receives), 422 when the dispense itself is malformed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ...api.write_rules import WriteEvent, WriteRule
from ...fhir.outcome import FHIRError
from ...store.search import run_search
from . import balance as B
from .lifecycle import CONSUMING, DISPENSABLE, check_dispense
from .references import lock_key, prescription_ids
from .validity import DEFAULT_DAYS, window

STATE = "prescribing:dispense"  # tx.state key: what check hands react, per event


@dataclass
class _Pending:
    rid: str
    after: B.Balance
    allow: B.Allowance
    completing: bool
    was_exhausted: bool  # nothing remained before this write: a `completed` prescription was completed by its fills


def _content(stored: Any) -> dict[str, Any] | None:
    return orjson.loads(stored.content) if stored is not None and stored.content else None


def _fmt(x: float) -> str:
    return f"{x:g}"


def _refuse_taking(rid: str, req: dict[str, Any], allow: B.Allowance, now: float, dispense: dict[str, Any],
                   taking: float, default_days: int | None) -> None:
    status = req.get("status")
    if status not in DISPENSABLE:
        raise FHIRError(409, f"MedicationRequest/{rid} is '{status}': only an active prescription is dispensed",
                        "business-rule", "MedicationDispense.authorizingPrescription")
    valid = window(req, default_days)
    if valid.end is not None and now >= valid.end:
        why = (f"{default_days} days after authoredOn {req.get('authoredOn')}, the default validity: the prescription "
               "states no dispenseRequest.validityPeriod") if valid.by_default else "dispenseRequest.validityPeriod"
        raise FHIRError(409, f"MedicationRequest/{rid} expired on {valid.end_text} ({why})", "business-rule",
                        "MedicationDispense.authorizingPrescription")
    if valid.start is not None and now < valid.start:
        raise FHIRError(409, f"MedicationRequest/{rid} is valid from {valid.start_text} only "
                             "(dispenseRequest.validityPeriod)", "business-rule",
                        "MedicationDispense.authorizingPrescription")
    unit = B.quantity_unit(dispense.get("quantity"))
    if allow.unit and unit and unit != allow.unit:
        raise FHIRError(422, f"The dispense is in '{unit}', the prescription in '{allow.unit}'", "value",
                        "MedicationDispense.quantity")
    if allow.per_fill is not None and taking > allow.per_fill + B.EPSILON:
        raise FHIRError(422, f"A dispense hands over at most one fill ({_fmt(allow.per_fill)} {allow.unit or ''}); "
                             f"this one is {_fmt(taking)}", "business-rule", "MedicationDispense.quantity")


def _nothing_left(rid: str, bal: B.Balance, allow: B.Allowance, fills: int, taking: float) -> None:
    if bal.quantity_allowed is not None:
        left = bal.quantity_allowed - bal.quantity_used
        if taking > left + B.EPSILON:
            raise FHIRError(409, f"MedicationRequest/{rid} has {_fmt(max(left, 0))} {allow.unit or ''} left to "
                                 f"dispense ({_fmt(bal.quantity_used)} of {_fmt(bal.quantity_allowed)} dispensed); "
                                 f"this dispense asks {_fmt(taking)}", "conflict",
                            "MedicationDispense.quantity")
    elif bal.fills_used + fills > bal.fills_allowed:
        raise FHIRError(409, f"MedicationRequest/{rid} has been dispensed {bal.fills_used} of {bal.fills_allowed} "
                             "time(s): no repeats left", "conflict", "MedicationDispense.authorizingPrescription")


def check(event: WriteEvent, default_days: int | None = DEFAULT_DAYS) -> None:
    old = _content(event.previous)
    new = event.resource
    if event.interaction == "delete":
        if old is not None and old.get("status") in CONSUMING:
            raise FHIRError(409, f"MedicationDispense/{event.previous.id} was '{old['status']}': it stays on the "
                                 "record; set its status to entered-in-error to withdraw it", "business-rule")
        return
    assert new is not None
    check_dispense(old.get("status") if old else None, new.get("status"))
    was, now_ = bool(old and old.get("status") in CONSUMING), new.get("status") in CONSUMING
    if not was and not now_:
        return
    new_ids, old_ids = prescription_ids(new), prescription_ids(old)
    if now_ and len(new_ids) != 1:
        raise FHIRError(422, "A dispense that is in progress or completed names exactly one prescription "
                             "(authorizingPrescription: MedicationRequest)", "required",
                        "MedicationDispense.authorizingPrescription")
    if was and now_ and old_ids[:1] != new_ids:
        raise FHIRError(422, "A dispense under way cannot move to another prescription", "business-rule",
                        "MedicationDispense.authorizingPrescription")
    rid = (new_ids or old_ids)[0]
    tx = event.tx
    tx.lock(lock_key(rid))
    current = tx.current("MedicationRequest", rid)
    if current is None or current[1].deleted:
        raise FHIRError(422, f"MedicationRequest/{rid} is not known", "not-found",
                        "MedicationDispense.authorizingPrescription")
    req = orjson.loads(current[1].content)
    allow = B.allowance(req)
    taken_before = B.dispensed_quantity(old, allow) if was and old else 0.0
    taking_now = B.dispensed_quantity(new, allow) if now_ else 0.0
    fills, quantity = int(now_) - int(was), taking_now - taken_before
    bal = B.load(event.services, tx, rid, allow)
    if fills > 0 or quantity > B.EPSILON:
        _nothing_left(rid, bal, allow, fills, quantity)  # first: what the losing pharmacy of a race is told
        _refuse_taking(rid, req, allow, tx.now, new, taking_now, default_days)
    after = B.apply(tx, rid, fills, quantity)
    tx.state.setdefault(STATE, {})[id(event)] = _Pending(rid, after, allow, new.get("status") == "completed",
                                                         bal.exhausted)


def _under_way(event: WriteEvent, rid: str) -> bool:
    """Whether another dispense against `rid` is still in-progress (held, not yet handed over): the prescription
    is completed when the last of them is handed over, not before."""
    s = event.services
    query = s.parser.parse(["MedicationDispense"], [("prescription", f"MedicationRequest/{rid}"),
                                                    ("status", "in-progress")], strict=True)
    query.count, query.total = 2, "none"
    own = event.resource.get("id") if event.resource else None
    return any(m.id != own for m in run_search(s.store, s.registry, query, event.tx.execute).matches)


def react(event: WriteEvent) -> None:
    pending: _Pending | None = event.tx.state.get(STATE, {}).pop(id(event), None)
    if pending is None:
        return
    tx = event.tx
    current = tx.current("MedicationRequest", pending.rid)
    if current is None or current[1].deleted:
        return
    req = orjson.loads(current[1].content)
    before = orjson.dumps(req)
    B.show(req, B.extension(pending.after, pending.allow))
    if pending.after.exhausted and pending.completing and req.get("status") == "active":
        if not _under_way(event, pending.rid):
            req["status"] = "completed"
    elif not pending.after.exhausted and pending.was_exhausted and req.get("status") == "completed":
        req["status"] = "active"  # a completing dispense was withdrawn: the rest can be dispensed again
    if orjson.dumps(req) != before:
        tx.update("MedicationRequest", pending.rid, req, existing=current)


def rule(default_days: int | None = DEFAULT_DAYS) -> WriteRule:
    """The write rule, with the default validity in days of a prescription that states none (validity.py)."""
    return WriteRule("prescribing: dispense once", ("MedicationDispense",),
                     check=lambda event: check(event, default_days), react=react)


RULE = rule()
