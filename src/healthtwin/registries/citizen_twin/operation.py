"""Patient/{id}/$twin: the citizen's twin (twin.py) from the record the caller may see, as Parameters.
`asOf=YYYY-MM-DD` computes it for another day (ages, due dates); `_format` and `_pretty` as anywhere."""
from __future__ import annotations

import datetime as dt

from ...api.operations.registry import define
from ...api.responses import fhir
from ...fhir.outcome import FHIRError
from ..patient_record import PatientRecord
from .parameters import to_parameters
from .twin import build

# a Health Twin operation (no HL7 definition): its canonical in the project's namespace
DEFINITION = "https://health.gov.az/fhir/OperationDefinition/Patient-twin"


def twin_parameters(services, ctx, pid: str, as_of: dt.date | None) -> dict:
    services.policy.authorize(ctx, "$twin", "Patient")
    return to_parameters(build(PatientRecord(services, ctx, pid), as_of))


@define("twin", types=["Patient"], instance=True, definition=DEFINITION, methods=("GET",))
async def twin(router, request, ctx, rtype, rid, params, body):
    as_of = None
    for name, value in params:
        if name == "asOf":
            try:
                as_of = dt.date.fromisoformat(value)
            except ValueError:
                raise FHIRError(400, f"asOf must be a date (YYYY-MM-DD), not '{value}'", location="asOf") from None
        elif name not in ("_format", "_pretty"):
            raise FHIRError(400, f"$twin takes asOf only, not '{name}'", location=name)
    return fhir(200, await router.run(twin_parameters, router.services, ctx, rid, as_of), ctx)


OPERATIONS = [twin]
