"""_summary and _elements: returning part of each resource, marked SUBSETTED as the spec requires."""
from __future__ import annotations

from typing import Any

from ..fhir.model import mandatory_elements, summary_elements

_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
              "display": "Resource encoded in summary mode"}
_ALWAYS = ("resourceType", "id", "meta")


def _key_base(key: str, names: frozenset[str] | set[str]) -> bool:
    # 'valueQuantity' is the element 'value'; '_birthDate' carries birthDate's extensions.
    key = key.lstrip("_")
    if key in names:
        return True
    for n in names:
        if key.startswith(n) and key[len(n):len(n) + 1].isupper():
            return True
    return False


def subset(resource: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    rtype = resource.get("resourceType", "")
    if summary in (None, "false") and not elements:
        return resource
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        keep = set(mandatory_elements(rtype)) | {"text"}
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _key_base(k, keep)}
    elif summary == "true":
        keep = summary_elements(rtype)
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _key_base(k, keep)}
    else:
        keep = {e.split(".")[0] for e in elements or ()} | set(mandatory_elements(rtype))
        out = {k: v for k, v in resource.items() if k in _ALWAYS or _key_base(k, keep)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = list(meta.get("tag", [])) + [_SUBSETTED]
    out["meta"] = meta
    return out
