"""Reading FHIR elements for a page: a CodeableConcept's words, a Quantity, a reference's name, a date.

The words come from the data (a display or text the record holds); the page's own words come from the
catalogues. Nothing here does I/O."""
from __future__ import annotations

from typing import Any


def concept(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for coding in cc.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
    codes = [str(c.get("code")) for c in cc.get("coding") or [] if c.get("code")]
    return ", ".join(codes)


def code(cc: Any, system: str | None = None) -> str | None:
    for coding in (cc or {}).get("coding") or []:
        if system is None or coding.get("system") == system:
            return coding.get("code")
    return None


def key(cc: Any) -> str:
    coding = ((cc or {}).get("coding") or [{}])[0]
    return f"{coding.get('system', '')}|{coding.get('code', '')}"


def name(patient: dict[str, Any]) -> str:
    for n in patient.get("name") or []:
        if n.get("text"):
            return str(n["text"])
        parts = list(n.get("given") or []) + ([n["family"]] if n.get("family") else [])
        if parts:
            return " ".join(parts)
    return str(patient.get("id") or "")


def identifier(resource: dict[str, Any], system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == system:
            return ident.get("value")
    return None


def ref(reference: Any) -> str:
    if not isinstance(reference, dict):
        return ""
    return str(reference.get("display") or reference.get("reference") or "")


def ref_id(reference: Any, rtype: str) -> str | None:
    value = (reference or {}).get("reference") or "" if isinstance(reference, dict) else ""
    return value.split("/", 1)[1] if value.startswith(rtype + "/") else None


def when(resource: dict[str, Any], *fields: str) -> str:
    for f in fields:
        value = resource.get(f)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            found = value.get("start") or value.get("end")
            if found:
                return str(found)
    return ""


def quantity(resource: dict[str, Any]) -> tuple[float | None, str]:
    q = resource.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), (int, float)):
        return float(q["value"]), str(q.get("unit") or q.get("code") or "")
    return None, ""


def reference_range(resource: dict[str, Any]) -> tuple[float | None, float | None]:
    for rr in resource.get("referenceRange") or []:
        low = (rr.get("low") or {}).get("value")
        high = (rr.get("high") or {}).get("value")
        if low is not None or high is not None:
            return low, high
    return None, None


def flag(value: float | None, low: float | None, high: float | None) -> str | None:
    """'low', 'high' or None (within range, or no range to compare with)."""
    if value is None:
        return None
    if low is not None and value < low:
        return "low"
    if high is not None and value > high:
        return "high"
    return None
