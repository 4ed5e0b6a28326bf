"""An operation's inputs, read the same way from a query string (GET) and a Parameters body (POST)."""
from __future__ import annotations

from typing import Any

from ...fhir.outcome import FHIRError


def part_value(part: dict[str, Any]) -> Any:
    """The value[x] of a Parameters part (None when it has none)."""
    for key, value in part.items():
        if key.startswith("value"):
            return value
    return None


def inputs(params: list[tuple[str, str]], body: Any, operation: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, value, part) for each input: the query's pairs (part {}), then the body's parts (a `resource`
    part's value is its resource)."""
    out: list[tuple[str, Any, dict[str, Any]]] = [(k, v, {}) for k, v in params]
    if body is None:
        return out
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FHIRError(400, f"${operation} takes a Parameters resource as its body")
    for i, part in enumerate(body.get("parameter") or []):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise FHIRError(400, "each parameter needs a name", location=f"Parameters.parameter[{i}]")
        value = part.get("resource") if part.get("resource") is not None else part_value(part)
        out.append((part["name"], value, part))
    return out
