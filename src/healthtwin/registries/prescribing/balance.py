"""What a prescription still allows: its balance row in the database, and its picture on the MedicationRequest.

The row (`rx_dispense_balance`, one per prescription that has been dispensed against) is the serialising row of
the dispense-once rule and carries the database's guarantee: CHECK constraints make it impossible to store more
fills or more quantity than the prescription allows, whatever the application does. Quantities are relative
updates (`quantity_used = quantity_used + ?`), so two writers that reached the row at once are serialised by the
row lock and the second is refused by the constraint (PostgreSQL re-evaluates the row under READ COMMITTED;
SQLite has one writer at a time).

What a prescription allows (`Allowance`), read from R4's `dispenseRequest`:
* `numberOfRepeatsAllowed` repeats after the original fill: 1 + repeats fills;
* `quantity` is one fill's quantity, so the whole prescription allows quantity × fills; a dispense may hand over
  less (a partial dispense) and the rest stays available; without a quantity, each dispense is one fill.

The MedicationRequest shows the balance in the extension `BALANCE_URL` on `dispenseRequest` (FHIR R4 has no
element for it): `fillsDispensed`, `quantityDispensed`, `quantityRemaining` and `fillsRemaining`. The server
writes it (a client's copy is replaced, prescriptions.py); the row is the truth, the extension its picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...fhir.outcome import FHIRError
from ...store import Transaction
from ...store.search import run_search

BALANCE_URL = "https://health.gov.az/fhir/StructureDefinition/dispense-balance"
EPSILON = 1e-6  # quantities are decimals stored as floats (the CHECKs of store/schema.py, migration 5, allow as much)


@dataclass(frozen=True)
class Allowance:
    fills: int  # 1 + numberOfRepeatsAllowed
    per_fill: float | None  # dispenseRequest.quantity.value
    unit: str | None  # its code, or its unit text

    @property
    def total(self) -> float | None:
        return None if self.per_fill is None else self.per_fill * self.fills


@dataclass(frozen=True)
class Balance:
    fills_allowed: int
    fills_used: int
    quantity_allowed: float | None
    quantity_used: float

    @property
    def exhausted(self) -> bool:
        if self.quantity_allowed is not None:
            return self.quantity_used >= self.quantity_allowed - EPSILON
        return self.fills_used >= self.fills_allowed


def quantity_unit(q: dict[str, Any] | None) -> str | None:
    if not isinstance(q, dict):
        return None
    return q.get("code") or q.get("unit")


def allowance(request: dict[str, Any]) -> Allowance:
    dr = request.get("dispenseRequest") or {}
    repeats = dr.get("numberOfRepeatsAllowed")
    repeats = repeats if isinstance(repeats, int) and repeats >= 0 else 0
    q = dr.get("quantity")
    value = q.get("value") if isinstance(q, dict) else None
    per_fill = float(value) if isinstance(value, (int, float)) and value > 0 else None
    return Allowance(1 + repeats, per_fill, quantity_unit(q))


def _row(tx: Transaction, rid: str) -> Balance | None:
    rows = tx.execute("SELECT fills_allowed, fills_used, quantity_allowed, quantity_used FROM rx_dispense_balance "
                      "WHERE prescription = ?" + tx.store.for_update(), (rid,))
    return Balance(int(rows[0][0]), int(rows[0][1]), rows[0][2], float(rows[0][3])) if rows else None


def dispensed_quantity(dispense: dict[str, Any], allow: Allowance) -> float:
    """What a dispense takes: its quantity, or one whole fill when it states none."""
    q = dispense.get("quantity")
    value = q.get("value") if isinstance(q, dict) else None
    if isinstance(value, (int, float)):
        return float(value)
    return allow.per_fill or 0.0


def _existing(services: Any, tx: Transaction, rid: str, allow: Allowance) -> tuple[int, float]:
    """Fills and quantity of the dispenses already stored against `rid` (loaded in bulk, so no row yet)."""
    import orjson

    from .lifecycle import CONSUMING
    query = services.parser.parse(["MedicationDispense"], [("prescription", f"MedicationRequest/{rid}")], strict=True)
    query.count, query.total = 1000, "none"
    fills, quantity = 0, 0.0
    for stored in run_search(services.store, services.registry, query, tx.execute).matches:
        res = orjson.loads(stored.content) if stored.content else {}
        if res.get("status") in CONSUMING:
            fills += 1
            quantity += dispensed_quantity(res, allow)
    return fills, quantity


def load(services: Any, tx: Transaction, rid: str, allow: Allowance) -> Balance:
    """The prescription's balance, its row locked until commit; created from its stored dispenses at first use."""
    found = _row(tx, rid)
    if found is not None:
        return found
    fills, quantity = _existing(services, tx, rid, allow)
    tx.execute("INSERT INTO rx_dispense_balance (prescription, fills_allowed, fills_used, quantity_allowed, "
               "quantity_used) VALUES (?, ?, ?, ?, ?) ON CONFLICT (prescription) DO NOTHING",
               (rid, allow.fills, min(fills, allow.fills) if allow.total is None else fills,
                allow.total, min(quantity, allow.total) if allow.total is not None else quantity))
    got = _row(tx, rid)
    assert got is not None
    return got


def _refused_by_database(exc: Exception) -> bool:
    import sqlite3
    return isinstance(exc, sqlite3.IntegrityError) or (getattr(exc, "sqlstate", None) or "").startswith("23")


def apply(tx: Transaction, rid: str, fills: int, quantity: float) -> Balance:
    """Adds a dispense's fills and quantity (negative: given back) to the row; the constraints refuse an overdraw."""
    try:
        tx.execute("UPDATE rx_dispense_balance SET fills_used = fills_used + ?, quantity_used = quantity_used + ? "
                   "WHERE prescription = ?", (fills, quantity, rid))
    except Exception as exc:
        if _refused_by_database(exc):
            raise FHIRError(409, f"MedicationRequest/{rid} has nothing left to dispense (refused by the database)",
                            "conflict") from exc
        raise
    got = _row(tx, rid)
    assert got is not None
    return got


def reallow(tx: Transaction, rid: str, allow: Allowance) -> None:
    """The prescriber changed what the prescription allows; refused if that is less than was dispensed."""
    found = _row(tx, rid)
    if found is None:
        return
    less = (allow.total is not None and found.quantity_used > allow.total + EPSILON) or (
        allow.total is None and found.fills_used > allow.fills)
    if less:
        raise FHIRError(409, f"MedicationRequest/{rid} has already been dispensed beyond what the change allows",
                        "business-rule", "MedicationRequest.dispenseRequest")
    tx.execute("UPDATE rx_dispense_balance SET fills_allowed = ?, quantity_allowed = ? WHERE prescription = ?",
               (allow.fills, allow.total, rid))


def current(tx: Transaction, rid: str) -> Balance | None:
    return _row(tx, rid)


def drop(tx: Transaction, rid: str) -> None:
    tx.execute("DELETE FROM rx_dispense_balance WHERE prescription = ?", (rid,))


def extension(balance: Balance, allow: Allowance) -> dict[str, Any]:
    """The balance as the MedicationRequest shows it."""
    parts: list[dict[str, Any]] = [{"url": "fillsDispensed", "valueUnsignedInt": balance.fills_used}]
    if balance.quantity_allowed is not None:
        unit = {"unit": allow.unit} if allow.unit else {}
        left = max(0.0, balance.quantity_allowed - balance.quantity_used)
        parts += [{"url": "quantityDispensed", "valueQuantity": {"value": _num(balance.quantity_used), **unit}},
                  {"url": "quantityRemaining", "valueQuantity": {"value": _num(left), **unit}},
                  {"url": "fillsRemaining", "valueUnsignedInt": math.ceil(left / allow.per_fill - EPSILON)
                   if allow.per_fill else 0}]
    else:
        parts.append({"url": "fillsRemaining", "valueUnsignedInt": max(0, balance.fills_allowed - balance.fills_used)})
    return {"url": BALANCE_URL, "extension": parts}


def _num(x: float) -> int | float:
    return int(x) if abs(x - round(x)) < EPSILON else round(x, 6)


def show(request: dict[str, Any], ext: dict[str, Any] | None) -> None:
    """Puts `ext` (None: removes it) on the request's dispenseRequest, in place."""
    dr = dict(request.get("dispenseRequest") or {})
    others = [e for e in dr.get("extension") or [] if not (isinstance(e, dict) and e.get("url") == BALANCE_URL)]
    if ext is not None:
        others.append(ext)
    if others:
        dr["extension"] = others
    else:
        dr.pop("extension", None)
    if dr:
        request["dispenseRequest"] = dr
    else:
        request.pop("dispenseRequest", None)


def shown(request: dict[str, Any] | None) -> dict[str, Any] | None:
    for e in ((request or {}).get("dispenseRequest") or {}).get("extension") or []:
        if isinstance(e, dict) and e.get("url") == BALANCE_URL:
            return e
    return None
