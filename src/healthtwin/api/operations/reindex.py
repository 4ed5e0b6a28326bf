"""$reindex: POST queues a reindex (all types, or `type=`), GET reads the progress of reindex jobs."""
from __future__ import annotations

from ...fhir.model import is_resource_type
from ...fhir.outcome import FHIRError
from ..responses import fhir
from .registry import operation


def _parameters(jobs: list[dict]) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "job", "part": [
            {"name": "id", "valueString": j["id"]}, {"name": "status", "valueCode": j["status"]},
            {"name": "done", "valueInteger": int(j["done"])},
            {"name": "total", "valueInteger": int(j["total"] or 0)}]} for j in jobs]}


@operation("reindex", system=True, type_level=True,
           definition="http://healthtwin.gov.az/fhir/OperationDefinition/reindex")
async def reindex(router, request, ctx, rtype, rid, params, body):
    services = router.services
    services.policy.authorize(ctx, "reindex", rtype)
    if request.method == "GET":
        job = dict(params).get("job")
        return fhir(200, _parameters(await router.run(services.jobs.status, job)), ctx)
    types = [rtype] if rtype else []
    for name, value in params:
        if name == "type":
            types += [t for t in value.split(",") if t]
    for t in types:
        if not is_resource_type(t):
            raise FHIRError(400, f"$reindex: unknown resource type '{t}'")
    job_id = await router.run(services.jobs.request_reindex, None, types)
    return fhir(202, _parameters(await router.run(services.jobs.status, job_id)), ctx,
                {"content-location": f"{ctx.base_url}/$reindex?job={job_id}"})
