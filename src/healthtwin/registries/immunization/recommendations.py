"""A patient's record (Patient, Immunizations, Conditions and other clinical facts) forecast by the engine, and
the registry's ImmunizationRecommendation built from the result.

The engine (engine.py, fhir_io.py) knows nothing of the store; this module turns the rows a reader found into
the engine's Patient, and the engine's forecast into the one current ImmunizationRecommendation the registry
keeps per patient and schedule: a fixed id (so it is updated in place), an identifier and a tag naming the
schedule, and each vaccine group also as a coding (`GROUP_SYSTEM`), so `vaccine-type` and the due-list
parameters (due.py) can search it as a token."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from . import rules
from .live_schedule import key as live_key
from .engine import GroupForecast, assess
from .fhir_io import InputError, _date, dose_from_immunization, evaluations, observation_from, recommendation
from .fhir_io import GENDERS
from .patient import Dose, Observation, Patient

GROUP_SYSTEM = "https://health.gov.az/fhir/CodeSystem/cdsi-vaccine-group"
SCHEDULE_SYSTEM = "https://health.gov.az/fhir/CodeSystem/immunization-schedule"
IDENTIFIER_SYSTEM = "https://health.gov.az/fhir/sid/immunization-forecast"
CHILD_YEARS = 18  # the batch refresh forecasts the patients younger than this (the calendar is childhood's)
CLINICAL_TYPES = ("Condition", "AllergyIntolerance", "Observation", "Procedure")
CODE_CHUNK = 100  # coded values asked for per search
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass
class Forecast:
    patient: Patient
    groups: list[GroupForecast]
    schedule: rules.Schedule


def schedule_of(key: str | None) -> rules.Schedule:
    """The schedule named `key` (aze, cdc, who; None: the one the registry keeps, live_schedule.py); InputError
    if unknown."""
    try:
        return rules.load(key or live_key())
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None


def engine_patient(patient: dict[str, Any], immunizations: Iterable[dict[str, Any]],
                   clinical: Iterable[dict[str, Any]], schedule: rules.Schedule, assessment: date) -> Patient:
    """The engine's view of a record: completed, CVX-coded doses and the schedule's coded observations."""
    birth = _date(patient.get("birthDate"), f"Patient/{patient.get('id')}.birthDate")
    doses: list[Dose] = []
    for resource in immunizations:
        dose = dose_from_immunization(resource)
        if dose is not None and dose.given <= assessment:  # a dose recorded for a later date has not happened
            doses.append(dose)
    observations: list[Observation] = []
    for resource in clinical:
        observations.extend(observation_from(resource, schedule))
    return Patient(birth, GENDERS.get(patient.get("gender", ""), "Unknown"), assessment, doses, observations)


def forecast(patient: dict[str, Any], immunizations: Iterable[dict[str, Any]], clinical: Iterable[dict[str, Any]],
             schedule: rules.Schedule, assessment: date) -> Forecast:
    case = engine_patient(patient, immunizations, clinical, schedule, assessment)
    return Forecast(case, assess(case, schedule), schedule)


def clinical_queries(schedule: rules.Schedule) -> list[tuple[str, list[tuple[str, str]]]]:
    """The searches (type, criteria besides the patient) that find a patient's clinical facts the schedule has
    a code for: only those can change a forecast, so a child's colds and vital signs are not read."""
    codes = sorted(f"{system}|{code}" for system, code in schedule.coded)
    chunks = [",".join(codes[i:i + CODE_CHUNK]) for i in range(0, len(codes), CODE_CHUNK)]
    out = [(rtype, [("code", chunk)]) for rtype in CLINICAL_TYPES for chunk in chunks]
    return out + [("Observation", [("value-concept", chunk)]) for chunk in chunks]


def recommendation_id(pid: str, schedule_key: str) -> str:
    """The fixed id of the patient's current recommendation under a schedule (a digest if too long for an id)."""
    rid = f"imr-{schedule_key}-{pid}"
    return rid if _ID.fullmatch(rid) else f"imr-{schedule_key}-{hashlib.sha256(pid.encode()).hexdigest()[:40]}"


def registry_recommendation(pid: str, result: Forecast) -> dict[str, Any]:
    """The engine's ImmunizationRecommendation (the IG's shape) as the registry stores it."""
    key = result.schedule.key
    resource = recommendation(f"Patient/{pid}", result.patient, result.groups, recommendation_id(pid, key))
    resource["identifier"] = [{"system": IDENTIFIER_SYSTEM, "value": f"{key}/{pid}"}]
    resource["meta"] = {"tag": [{"system": SCHEDULE_SYSTEM, "code": key, "display": result.schedule.name}]}
    for entry in resource["recommendation"]:
        for concept in entry.get("vaccineCode") or []:
            name = concept.get("text")
            if name and name != "none":
                concept["coding"] = [{"system": GROUP_SYSTEM, "code": name, "display": name}]
    return resource


def result_parameters(pid: str, result: Forecast, with_recommendation: bool = True,
                      with_evaluations: bool = True) -> dict[str, Any]:
    """The operation's answer: the IG's `evaluation` and `recommendation` outputs."""
    ref = f"Patient/{pid}"
    params: list[dict[str, Any]] = []
    if with_evaluations:
        params += [{"name": "evaluation", "resource": e} for e in evaluations(ref, result.patient, result.groups)]
    if with_recommendation:
        params.append({"name": "recommendation", "resource": registry_recommendation(pid, result)})
    return {"resourceType": "Parameters", "parameter": params}


def is_child(patient: dict[str, Any], on: date) -> bool:
    try:
        birth = _date(patient.get("birthDate"), "birthDate")
    except InputError:
        return False
    return birth <= on and (on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))) < CHILD_YEARS


def is_living(patient: dict[str, Any]) -> bool:
    return patient.get("active", True) is not False and not patient.get("deceasedBoolean") \
        and not patient.get("deceasedDateTime")
