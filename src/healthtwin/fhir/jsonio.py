"""Parsing request bodies into FHIR JSON with the limits a public server needs (size, depth, shape)."""
from __future__ import annotations

from typing import Any

import orjson

from .outcome import FHIRError

MAX_DEPTH = 64  # deeper than any real FHIR resource (Questionnaire items nest ~20); stops stack abuse


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    if not body or not body.strip():
        raise FHIRError(400, "The request body is empty; a FHIR JSON resource was expected", "structure")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FHIRError(400, f"The request body is not valid JSON: {exc}", "structure") from None
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    if type(value) is dict or type(value) is list:
        _descend(value, max_depth - 1, max_depth)


def _descend(node: dict | list, remaining: int, max_depth: int) -> None:
    # Recursive (about three times faster than an explicit stack); the recursion itself stops at max_depth,
    # so a hostile document cannot exhaust the Python stack here either.
    if remaining < 0:
        raise FHIRError(400, f"The JSON document nests deeper than {max_depth} levels", "too-costly")
    for v in (node.values() if type(node) is dict else node):
        if type(v) is dict or type(v) is list:
            _descend(v, remaining - 1, max_depth)


def parse_resource(body: bytes, expected_type: str | None = None) -> dict[str, Any]:
    """A FHIR resource from a body: a JSON object with a known resourceType (matching `expected_type`)."""
    from .model import is_resource_type

    value = parse_json(body)
    if not isinstance(value, dict):
        raise FHIRError(400, "The request body must be a JSON object holding a FHIR resource", "structure")
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FHIRError(400, "The resource has no resourceType", "structure", "resourceType")
    if not is_resource_type(rtype):
        raise FHIRError(400, f"Unknown resourceType '{rtype}'", "not-supported", "resourceType")
    if expected_type is not None and rtype != expected_type:
        raise FHIRError(400, f"resourceType '{rtype}' does not match the URL's type '{expected_type}'", "invalid",
                        "resourceType")
    return value


def dumps(value: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)
