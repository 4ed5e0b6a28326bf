"""The registry's FHIR operations, in the shape of the HL7 Immunization Decision Support Forecast IG:

* `Patient/{id}/$immds-forecast` (inputs `assessmentDate`, default today (UTC, `services.today`), and `schedule`: aze (default), cdc,
  who): the patient's ImmunizationRecommendation and ImmunizationEvaluations, computed from the record;
  `$immds-forecast` and `Immunization/$immds-forecast` take the patient as `$evaluate` does (the IG's own
  form: a posted Patient and Immunizations; or a reference, as the citizen portal asks);
* `Immunization/$evaluate` (type level; inputs `patient` (a Patient resource, or a reference to a stored one),
  `immunization` (0..*), `assessmentDate`, `schedule`): the ImmunizationEvaluation of each dose: of the posted
  Immunizations alone for a posted Patient, or of the stored record with the posted ones added (a dose about to
  be given, checked before it is).

The record is read as the caller's own searches (registries/patient_record.py: authorized, restricted to
what the caller may see, released through api/guard.release), so an answer never rests on a row the caller
could not have read. Nothing is stored: the registry's stored recommendation is kept by live.py."""
from __future__ import annotations

from datetime import date
from typing import Any

from ...api.operations.parameters import inputs
from ...api.operations.registry import define
from ...api.responses import fhir
from ...fhir.outcome import FHIRError
from ..patient_record import PatientRecord
from .fhir_io import InputError, _date
from .recommendations import clinical_queries, forecast, result_parameters, schedule_of

FORECAST_DEFINITION = "http://hl7.org/fhir/us/immds/OperationDefinition/immds-forecast"
EVALUATE_DEFINITION = "https://health.gov.az/fhir/OperationDefinition/Immunization-evaluate"
_FORMAT = ("_format", "_pretty")


def _assessment(value: Any, services: Any) -> date:
    if value is None:
        return services.today()  # the services' clock (UTC), as the live registry assesses
    try:
        return _date(value, "assessmentDate")
    except InputError as exc:
        raise FHIRError(400, f"{exc} (give a date, YYYY-MM-DD)", location="assessmentDate") from None


def _schedule(value: Any):
    try:
        return schedule_of(value if isinstance(value, str) else None)
    except InputError as exc:
        raise FHIRError(400, str(exc), location="schedule") from None


def read_record(record: PatientRecord, schedule) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """The patient, their Immunizations and the clinical facts the schedule knows codes for, as the caller."""
    patient = record.patient()
    imms = record.search("Immunization", [])
    if imms.withheld:
        raise FHIRError(403, "A forecast needs the patient's Immunizations, which your access does not include",
                        "forbidden")
    clinical: dict[tuple[str, str], dict] = {}
    for rtype, criteria in clinical_queries(schedule):
        for res in record.search(rtype, criteria).resources:
            clinical[(rtype, str(res.get("id")))] = res  # an Observation may match by code and by value
    return patient, imms.resources, list(clinical.values())


def forecast_parameters(services, ctx, pid: str, params: list[tuple[str, Any, dict]]) -> dict[str, Any]:
    services.policy.authorize(ctx, "$immds-forecast", "Patient")
    given = {}
    for name, value, _ in params:
        if name in _FORMAT:
            continue
        if name not in ("assessmentDate", "schedule"):
            raise FHIRError(400, f"$immds-forecast takes assessmentDate and schedule, not '{name}' (the patient "
                                 f"is the one in the path)", location=name)
        given[name] = value
    assessment, schedule = _assessment(given.get("assessmentDate"), services), _schedule(given.get("schedule"))
    patient, imms, clinical = read_record(PatientRecord(services, ctx, pid), schedule)
    try:
        result = forecast(patient, imms, clinical, schedule, assessment)
    except InputError as exc:
        raise FHIRError(422, f"Patient/{pid} cannot be forecast: {exc}", "processing") from None
    return result_parameters(pid, result)


def _patient_input(value: Any, operation: str) -> tuple[dict[str, Any] | None, str | None]:
    """A posted Patient resource, or the id of a stored one (a Reference, or 'Patient/x' as a string)."""
    if isinstance(value, dict) and value.get("resourceType") == "Patient":
        return value, None
    ref = value.get("reference") if isinstance(value, dict) else value
    if isinstance(ref, str) and ref.startswith("Patient/") and ref.count("/") == 1 and len(ref) > 8:
        return None, ref[8:]
    raise FHIRError(400, f"${operation}: 'patient' is a Patient resource or a reference Patient/{{id}}",
                    location="patient")


def assess_parameters(services, ctx, params: list[tuple[str, Any, dict]], operation: str,
                      with_recommendation: bool) -> dict[str, Any]:
    """`patient` (a resource, or a reference to a stored one) with any posted `immunization`s: the system and
    type level forms of $immds-forecast (the IG's own shape), and $evaluate."""
    services.policy.authorize(ctx, f"${operation}", "Immunization" if operation == "evaluate" else "Patient")
    patient_value, posted, given = None, [], {}
    for name, value, _ in params:
        if name in _FORMAT:
            continue
        if name == "patient":
            patient_value = value
        elif name == "immunization":
            if not isinstance(value, dict) or value.get("resourceType") != "Immunization":
                raise FHIRError(400, f"${operation}: each 'immunization' is an Immunization resource",
                                location="immunization")
            posted.append(value)
        elif name in ("assessmentDate", "schedule"):
            given[name] = value
        else:
            raise FHIRError(400, f"${operation} takes patient, immunization, assessmentDate and schedule, not "
                                 f"'{name}'", location=name)
    if patient_value is None:
        raise FHIRError(400, f"${operation} needs the patient (a Patient resource or a reference)",
                        location="patient")
    assessment, schedule = _assessment(given.get("assessmentDate"), services), _schedule(given.get("schedule"))
    patient, pid = _patient_input(patient_value, operation)
    clinical: list[dict] = []
    imms = posted
    if pid is not None:
        patient, stored, clinical = read_record(PatientRecord(services, ctx, pid), schedule)
        replaced = {i.get("id") for i in posted if i.get("id")}
        imms = [i for i in stored if i.get("id") not in replaced] + posted
    else:
        pid = str(patient.get("id") or "posted")
    try:
        result = forecast(patient, imms, clinical, schedule, assessment)
    except InputError as exc:
        raise FHIRError(422, f"${operation} cannot assess the input: {exc}", "processing") from None
    return result_parameters(pid, result, with_recommendation=with_recommendation)


@define("immds-forecast", types=["Immunization"], system=True, type_level=True, definition=FORECAST_DEFINITION)
async def immds_forecast_posted(router, request, ctx, rtype, rid, params, body):
    given = inputs(list(params), body, "immds-forecast")
    return fhir(200, await router.run(assess_parameters, router.services, ctx, given, "immds-forecast", True), ctx)


@define("immds-forecast", types=["Patient"], instance=True, definition=FORECAST_DEFINITION)
async def immds_forecast(router, request, ctx, rtype, rid, params, body):
    given = inputs(list(params), body, "immds-forecast")
    return fhir(200, await router.run(forecast_parameters, router.services, ctx, rid, given), ctx)


@define("evaluate", types=["Immunization"], type_level=True, definition=EVALUATE_DEFINITION, methods=("POST",))
async def evaluate(router, request, ctx, rtype, rid, params, body):
    given = inputs(list(params), body, "evaluate")
    return fhir(200, await router.run(assess_parameters, router.services, ctx, given, "evaluate", False), ctx)


OPERATIONS = [immds_forecast, immds_forecast_posted, evaluate]
