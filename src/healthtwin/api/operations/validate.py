"""$validate at type and instance level (with `profile`): reports problems, never stores."""
from __future__ import annotations

import orjson

from ...fhir.outcome import FHIRError, OutcomeIssue, operation_outcome
from ..responses import fhir
from .registry import operation


def _resource_and_profile(body, params):
    profile = dict(params).get("profile")
    resource = body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for p in body.get("parameter", []):
            if p.get("name") == "resource":
                resource = p.get("resource")
            elif p.get("name") == "profile":
                profile = p.get("valueUri") or p.get("valueCanonical") or profile
    return resource, profile


@operation("validate", type_level=True, instance=True,
           definition="http://hl7.org/fhir/OperationDefinition/Resource-validate")
async def validate(router, request, ctx, rtype, rid, params, body):
    services = router.services
    resource, profile = _resource_and_profile(body, params)
    if resource is None and rid is not None:
        from .. import guard
        services.policy.authorize(ctx, "read", rtype)  # the stored resource is read: the read rules apply
        stored = guard.release_one(services, ctx, services.store.read(rtype, rid))
        if stored is None or stored.deleted:
            raise FHIRError(404, f"{rtype}/{rid} is not known")
        resource = orjson.loads(stored.content)
    if not isinstance(resource, dict):
        raise FHIRError(400, "$validate needs a resource (the body, or a Parameters 'resource' part)")
    if resource.get("resourceType") != rtype:
        raise FHIRError(400, f"$validate on {rtype} got a {resource.get('resourceType')}")
    if profile and services.validator.profiles.get(profile) is None:
        raise FHIRError(400, f"Profile '{profile}' is not loaded on this server")
    issues = services.validator.validate(resource, profile=profile)
    out = [OutcomeIssue(i.severity, i.code, i.message, i.location) for i in issues]
    if not out:
        out = [OutcomeIssue("information", "informational", "No issues found")]
    return fhir(200, operation_outcome(out), ctx)
