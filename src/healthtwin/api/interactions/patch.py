"""patch: JSON Patch (application/json-patch+json) and FHIRPath Patch (a Parameters resource)."""
from __future__ import annotations

from typing import Any

import orjson

from ...fhir.outcome import FHIRError
from ...fhir.patch import PatchError, apply_fhirpath_patch, apply_json_patch
from ...store import Transaction
from ...request import RequestContext
from .write import WriteResult, current_to_change, update


def apply_patch(resource: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    try:
        if "json-patch" in content_type:
            if not isinstance(patch, list):
                raise FHIRError(400, "A JSON Patch document must be a JSON array of operations")
            return apply_json_patch(resource, patch)
        if isinstance(patch, dict) and patch.get("resourceType") == "Parameters":
            return apply_fhirpath_patch(resource, patch)
    except PatchError as exc:
        raise FHIRError(exc.status, f"Patch failed: {exc.message}", location=exc.location) from None
    raise FHIRError(415, "PATCH takes application/json-patch+json or a FHIRPath Patch Parameters resource as "
                         "application/fhir+json")


def patch(services, ctx: RequestContext, tx: Transaction, rtype: str, rid: str, body: Any, content_type: str,
          if_match: int | None = None, location: str | None = None) -> WriteResult:
    services.policy.authorize(ctx, "patch", rtype)
    current = current_to_change(services, ctx, tx, rtype, rid)
    if if_match is not None and if_match != current.version:
        raise FHIRError(412, f"{rtype}/{rid} is at version {current.version}, not {if_match} (If-Match)")
    resource = apply_patch(orjson.loads(current.content), body, content_type)
    if resource.get("resourceType") != rtype or resource.get("id") != rid:
        raise FHIRError(422, "A patch may not change the resource's type or id")
    return update(services, ctx, tx, rtype, rid, resource, if_match, location)
