"""An Observation's interpretation from its reference ranges: N, L/H outside the normal range, LL/HH beyond a
critical limit (HL7 v3 ObservationInterpretation); a panel whose components are abnormal is A, or AA if one
is critical.

The normal range is the result's first `referenceRange` with a low or high and no type, or typed "normal";
the critical limits are its `referenceRange` typed "critical" (the text "critical" or the code `critical`,
this registry's convention: the HL7 reference-range-meaning codes have no critical meaning) or else the
default of critical_limits.py. A range whose unit differs from the value's is not compared. An
interpretation the sender wrote is kept: the laboratory's own judgement stands."""
from __future__ import annotations

from typing import Any

from .critical_limits import limit_for

SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DISPLAY = {"N": "Normal", "L": "Low", "H": "High", "LL": "Critical low", "HH": "Critical high",
           "A": "Abnormal", "AA": "Critical abnormal"}
CRITICAL = frozenset({"LL", "HH", "AA"})
ABNORMAL = frozenset({"L", "H", "A"}) | CRITICAL
CRITICAL_TYPE = "critical"


def concept(code: str) -> dict[str, Any]:
    return {"coding": [{"system": SYSTEM, "code": code, "display": DISPLAY[code]}], "text": DISPLAY[code]}


def codes(element: dict[str, Any]) -> set[str]:
    """The interpretation codes an Observation (or component) carries."""
    return {c.get("code") for cc in element.get("interpretation") or [] if isinstance(cc, dict)
            for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("system") == SYSTEM}


def _is_critical_range(rr: dict[str, Any]) -> bool:
    t = rr.get("type") or {}
    return (t.get("text") or "").lower() == CRITICAL_TYPE or any(
        isinstance(c, dict) and c.get("code") == CRITICAL_TYPE for c in t.get("coding") or [])


def _is_normal_range(rr: dict[str, Any]) -> bool:
    t = rr.get("type")
    return t is None or any(isinstance(c, dict) and c.get("code") == "normal" for c in t.get("coding") or [])


def _bound(rr: dict[str, Any], key: str, unit: str | None) -> float | None:
    q = rr.get(key)
    if not isinstance(q, dict) or not isinstance(q.get("value"), (int, float)):
        return None
    if q.get("code") is not None and unit is not None and q["code"] != unit:
        return None  # another unit: not comparable without conversion
    return float(q["value"])


def classify(element: dict[str, Any]) -> str | None:
    """N, L, H, LL or HH for a quantity-valued Observation or component; None when nothing can be judged."""
    value = element.get("valueQuantity")
    if not isinstance(value, dict) or not isinstance(value.get("value"), (int, float)) or value.get("comparator"):
        return None
    v, unit = float(value["value"]), value.get("code")
    ranges = [rr for rr in element.get("referenceRange") or [] if isinstance(rr, dict)]
    crit_lo = crit_hi = None
    critical = next((rr for rr in ranges if _is_critical_range(rr)), None)
    if critical is not None:
        crit_lo, crit_hi = _bound(critical, "low", unit), _bound(critical, "high", unit)
    else:
        limit = limit_for((element.get("code") or {}).get("coding") or [])
        if limit is not None and unit == limit.ucum:
            crit_lo, crit_hi = limit.low, limit.high
    if crit_lo is not None and v < crit_lo:
        return "LL"
    if crit_hi is not None and v > crit_hi:
        return "HH"
    normal = next((rr for rr in ranges if _is_normal_range(rr)
                   and (_bound(rr, "low", unit) is not None or _bound(rr, "high", unit) is not None)), None)
    if normal is None:
        return None
    lo, hi = _bound(normal, "low", unit), _bound(normal, "high", unit)
    if lo is not None and v < lo:
        return "L"
    if hi is not None and v > hi:
        return "H"
    return "N"


def interpret(observation: dict[str, Any]) -> None:
    """Sets `interpretation` where the sender left it out: on the Observation's value, on each component, and
    on a panel (no value of its own) from its components."""
    if not observation.get("interpretation"):
        own = classify(observation)
        if own is not None:
            observation["interpretation"] = [concept(own)]
    components = [c for c in observation.get("component") or [] if isinstance(c, dict)]
    for comp in components:
        if not comp.get("interpretation"):
            found = classify(comp)
            if found is not None:
                comp["interpretation"] = [concept(found)]
    if components and not observation.get("interpretation") and "valueQuantity" not in observation:
        seen = set().union(*(codes(c) for c in components))
        if seen & CRITICAL:
            observation["interpretation"] = [concept("AA")]
        elif seen & ABNORMAL:
            observation["interpretation"] = [concept("A")]


def is_critical(observation: dict[str, Any]) -> bool:
    return bool(codes(observation) & CRITICAL) or any(
        codes(c) & CRITICAL for c in observation.get("component") or [] if isinstance(c, dict))


def critical_parts(observation: dict[str, Any]) -> list[str]:
    """What is critical, as text for the alert: "Potassium 6.8 mmol/L (HH)"."""
    out = []
    for el in [observation] + [c for c in observation.get("component") or [] if isinstance(c, dict)]:
        found = codes(el) & CRITICAL
        if not found or "valueQuantity" not in el:
            continue
        code = el.get("code") or {}
        name = code.get("text") or next((c.get("display") for c in code.get("coding") or [] if c.get("display")),
                                        "result")
        q = el["valueQuantity"]
        out.append(f"{name} {q.get('value')} {q.get('unit') or q.get('code') or ''}".rstrip()
                   + f" ({'/'.join(sorted(found))})")
    return out
