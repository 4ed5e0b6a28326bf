"""Patient/{id}/$summary (IPS 2.0.0 OperationDefinition `summary`): the patient's International Patient
Summary, a document Bundle built from the record the caller may see (patient_record.py)."""
from __future__ import annotations

from ...api.operations.registry import define
from ...api.responses import fhir
from ...fhir.outcome import FHIRError
from ..patient_record import PatientRecord
from .document import build

DEFINITION = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"


def summary_bundle(services, ctx, pid: str) -> dict:
    services.policy.authorize(ctx, "$summary", "Patient")
    return build(PatientRecord(services, ctx, pid), ctx.base_url)


@define("summary", types=["Patient"], instance=True, definition=DEFINITION)
async def summary(router, request, ctx, rtype, rid, params, body):
    for name, _ in params:
        if name not in ("_format", "_pretty"):
            raise FHIRError(400, f"$summary takes no parameter '{name}' (the patient is the one in the path)",
                            location=name)
    return fhir(200, await router.run(summary_bundle, router.services, ctx, rid), ctx)


OPERATIONS = [summary]
