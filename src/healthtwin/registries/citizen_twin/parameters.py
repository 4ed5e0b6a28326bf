"""The twin's JSON shape as a FHIR Parameters resource: each key a part, lists repeated parts of one name,
`{"reference": ...}` a valueReference, dates valueDate/valueDateTime, numbers valueDecimal/valueInteger."""
from __future__ import annotations

import re
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    text = str(value)
    if _DATE.match(text):
        return {"valueDate": text}
    if _DATETIME.match(text):
        return {"valueDateTime": text}
    return {"valueString": text}


def _parts(name: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, list):
        return [p for item in value for p in _parts(name, item)]
    if isinstance(value, dict):
        if set(value) == {"reference"}:
            return [{"name": name, "valueReference": value}]
        parts = [p for key, item in value.items() for p in _parts(key, item)]
        return [{"name": name, "part": parts}] if parts else []
    return [{"name": name, **_value(value)}]


def to_parameters(shape: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters",
            "parameter": [p for key, value in shape.items() for p in _parts(key, value)]}
