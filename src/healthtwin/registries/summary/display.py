"""Short human texts of FHIR values, for the narratives of the summary and the twin."""
from __future__ import annotations

from typing import Any


def concept(cc: Any) -> str:
    if not isinstance(cc, dict):
        return ""
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or []:
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    return f"{q.get('comparator', '')}{q['value']} {q.get('unit') or q.get('code') or ''}".strip()


def when(resource: dict[str, Any], *keys: str) -> str:
    for key in keys:
        v = resource.get(key)
        if isinstance(v, str):
            return v[:10]
        if isinstance(v, dict) and isinstance(v.get("start"), str):
            return v["start"][:10]
    return ""


def observation_value(obs: dict[str, Any]) -> str:
    if "valueQuantity" in obs:
        return quantity(obs["valueQuantity"])
    if "valueCodeableConcept" in obs:
        return concept(obs["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in obs:
            return str(obs[key])
    parts = [f"{concept(c.get('code'))} {quantity(c.get('valueQuantity'))}".strip()
             for c in obs.get("component") or [] if isinstance(c, dict)]
    return "; ".join(p for p in parts if p)


def name(patient: dict[str, Any]) -> str:
    for n in patient.get("name") or []:
        if isinstance(n, dict):
            if n.get("text"):
                return str(n["text"])
            return " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
    return ""
