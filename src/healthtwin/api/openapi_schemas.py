"""JSON Schemas of the R4 resources and data types, for the OpenAPI description (api/openapi.py), generated from
the StructureDefinitions the validator uses (fhir/definitions/structures.json.gz).

Every type is one schema under `#/components/schemas/<name>` and elements refer to their type by `$ref`, so the
document holds each definition once; a backbone element is its own schema (`Patient.contact`). A contained
resource (`Resource`) refers to a small generic schema rather than to every resource type. `schemas_for(names)`
gives the named types with everything they refer to, which is how `?types=` keeps a narrowed document small.
These schemas describe the JSON shape only: the server's validator (fhir/validation.py) remains the judge of
cardinality, bindings and invariants."""
from __future__ import annotations

import functools
import gzip
from importlib import resources as _resources
from typing import Any

import orjson

_JSON_TYPES = {"boolean": {"type": "boolean"}, "integer": {"type": "integer"}, "positiveInt": {"type": "integer"},
               "unsignedInt": {"type": "integer"}, "decimal": {"type": "number"}}
GENERIC_RESOURCE = {"type": "object", "required": ["resourceType"], "additionalProperties": True,
                    "description": "Any FHIR resource (its own schema is under its resourceType)",
                    "properties": {"resourceType": {"type": "string"}, "id": {"$ref": "#/components/schemas/id"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@functools.lru_cache(maxsize=1)
def all_schemas() -> dict[str, dict[str, Any]]:
    raw = orjson.loads(gzip.decompress(
        (_resources.files("healthtwin.fhir") / "definitions" / "structures.json.gz").read_bytes()))
    out: dict[str, dict[str, Any]] = {"Resource": GENERIC_RESOURCE}
    for name, pattern in raw["primitives"].items():
        schema = dict(_JSON_TYPES.get(name, {"type": "string"}))
        if schema["type"] == "string" and pattern:
            schema["pattern"] = f"^(?:{pattern})$"
        schema["description"] = f"FHIR {name}"
        out[name] = schema
    for name, t in raw["types"].items():
        if t["kind"] == "primitive-type":
            out.setdefault(name, {"type": "string", "description": f"FHIR {name}"})  # xhtml: no lexical rule
            continue
        props: dict[str, Any] = {}
        required: list[str] = []
        for ename, min_, max_, code, _binding, targets, choice, _inv in t["e"]:
            item = _ref(code if code in out or code in raw["types"] or code == "Resource" else "string")
            if targets:
                item = {"allOf": [item], "description": "Reference to " + " | ".join(targets)}
            props[ename] = {"type": "array", "items": item} if max_ != 1 else item
            if min_ and not choice:
                required.append(ename)
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": True}
        if t["kind"] == "resource":
            props["resourceType"] = {"type": "string", "enum": [name]}
            required.insert(0, "resourceType")
            schema["description"] = f"FHIR R4 {name} (http://hl7.org/fhir/R4/{name.lower()}.html)"
        elif t["kind"] == "complex-type":
            schema["description"] = f"FHIR R4 data type {name}"
        if required:
            schema["required"] = required
        out[name] = schema
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def schemas_for(names) -> dict[str, dict[str, Any]]:
    """The schemas of `names` and of every type they refer to, transitively."""
    every = all_schemas()
    wanted, todo = set(), [n for n in names if n in every]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        found: set[str] = set()
        _refs(every[name], found)
        todo.extend(found - wanted)
    return {n: every[n] for n in sorted(wanted)}
