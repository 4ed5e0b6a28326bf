"""FHIR in and out: a Parameters (assessment date, Patient, Immunizations, Conditions/Observations) to the
engine's Patient, and the engine's results to a Parameters of ImmunizationEvaluation and
ImmunizationRecommendation resources in the shape of the HL7 Immunization Decision Support Forecast IG."""
from __future__ import annotations

from datetime import date
from typing import Any

from ...api.services import utc_today
from . import dates
from .engine import GroupForecast
from .patient import (AGED_OUT, COMPLETE, CONTRAINDICATED, EXTRANEOUS, IMMUNE, NOT_COMPLETE, SUBSTANDARD,
                      VALID, Dose, Observation, Patient)
from .rules import Schedule, norm_cvx

CVX = "http://hl7.org/fhir/sid/cvx"
MVX = "http://hl7.org/fhir/sid/mvx"
LOINC = "http://loinc.org"
DOSE_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-evaluation-dose-status"
RECOMMENDATION_STATUS = "http://terminology.hl7.org/CodeSystem/immunization-recommendation-status"
CDSI_STATUS = "https://www.cdc.gov/vaccines/programs/iis/cdsi.html#series-status"
DATE_CRITERIA = (("earliest", "30981-5", "Earliest date to give"), ("recommended", "30980-7", "Date vaccine due"),
                 ("past_due", "59778-1", "Date when overdue for immunization"),
                 ("latest", "59777-3", "Latest date to give immunization"))
GENDERS = {"female": "Female", "male": "Male"}


class InputError(ValueError):
    """The Parameters cannot be assessed (no Patient, no birth date, a bad date): says what is wrong."""


def _date(value: Any, what: str) -> date:
    try:
        parsed = dates.parse_date(value if isinstance(value, str) else None)
    except ValueError as exc:
        raise InputError(f"{what}: {value!r} is not a date") from exc
    if parsed is None:
        raise InputError(f"{what} is missing")
    return parsed


def _codes(concept: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [(c.get("system", ""), c.get("code", "")) for c in (concept or {}).get("coding", []) if c.get("code")]


def dose_from_immunization(resource: dict[str, Any]) -> Dose | None:
    """A completed Immunization as a dose (None for one not done or not CVX-coded). One pass over the codings,
    and each occurrence string parsed once per process: a cohort refresh maps ~11 doses a child, and two
    passes with a parse each cost 110 µs a child on 2026-12-03's machine (68 µs now)."""
    if resource.get("status", "completed") != "completed":
        return None
    cvx = mvx = None
    for coding in (resource.get("vaccineCode") or {}).get("coding") or ():
        code = coding.get("code")
        if code:
            system = coding.get("system")
            if system == CVX:
                if cvx is None:
                    cvx = code
            elif system == MVX and mvx is None:
                mvx = code
    if cvx is None:
        return None
    if mvx is None:
        mvx = ((resource.get("manufacturer") or {}).get("identifier") or {}).get("value")
    when = resource.get("occurrenceDateTime") or resource.get("occurrenceString")
    given = _DAYS.get(when) if type(when) is str else None
    if given is None:
        given = _date(when, f"Immunization/{resource.get('id')} occurrence")
        if type(when) is str and len(_DAYS) < 100_000:
            _DAYS[when] = given
    expiry = resource.get("expirationDate")
    substandard = bool(resource.get("isSubpotent")) or (bool(expiry) and dates.parse_date(expiry) < given)
    return Dose(str(resource.get("id") or f"dose-{given}-{cvx}"), given, norm_cvx(cvx), mvx, substandard)


# Occurrence strings already parsed (a cohort's doses fall on a few thousand days): bounded, per process.
_DAYS: dict[str, date] = {}


def observation_from(resource: dict[str, Any], schedule: Schedule) -> list[Observation]:
    """A Condition, Observation or AllergyIntolerance as CDSi observations, through the coded values of
    ScheduleSupportingData (SNOMED, ICD-10, CVX...) or a CDSi code given directly."""
    if resource.get("resourceType") == "Condition":
        status = _codes(resource.get("clinicalStatus"))
        if status and status[0][1] not in ("active", "recurrence", "relapse"):
            return []
    concept = resource.get("code") or resource.get("valueCodeableConcept")
    found = {schedule.coded[key] for key in _codes(concept) if key in schedule.coded}
    if resource.get("resourceType") == "Observation" and resource.get("valueCodeableConcept"):
        found |= {schedule.coded[key] for key in _codes(resource["valueCodeableConcept"]) if key in schedule.coded}
    start = dates.parse_date(resource.get("onsetDateTime") or resource.get("effectiveDateTime")
                             or (resource.get("effectivePeriod") or {}).get("start"))
    end = dates.parse_date(resource.get("abatementDateTime") or (resource.get("effectivePeriod") or {}).get("end"))
    return [Observation(code, None if start is None else start, end) for code in sorted(found)]


def patient_from_parameters(params: dict[str, Any], schedule: Schedule, today: date | None = None) -> Patient:
    if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
        raise InputError("the input is not a FHIR Parameters resource")
    assessment: date | None = None
    patient_resource: dict[str, Any] | None = None
    doses: list[Dose] = []
    observations: list[Observation] = []
    for p in params.get("parameter", []):
        name = p.get("name", "")
        resource = p.get("resource")
        if resource is None:
            value = p.get("valueDate") or p.get("valueDateTime")
            if name == "assessmentDate" or value:
                assessment = _date(value, "assessmentDate")
            else:  # the cicada-ndjson shape names the parameter by the date itself
                try:
                    assessment = dates.parse_date(name)
                except ValueError:
                    pass
            continue
        kind = resource.get("resourceType")
        if kind == "Patient":
            patient_resource = resource
        elif kind == "Immunization":
            dose = dose_from_immunization(resource)
            if dose:
                doses.append(dose)
        elif kind in ("Condition", "Observation", "AllergyIntolerance", "Procedure"):
            observations.extend(observation_from(resource, schedule))
    if patient_resource is None:
        raise InputError("the Parameters has no Patient")
    birth = _date(patient_resource.get("birthDate"), "Patient.birthDate")
    gender = GENDERS.get(patient_resource.get("gender", ""), "Unknown")
    return Patient(birth, gender, assessment or today or utc_today(), doses, observations)


def _status_coding(forecast: GroupForecast, today: date) -> dict[str, Any]:
    code = {COMPLETE: "complete", IMMUNE: "immune", CONTRAINDICATED: "contraindicated"}.get(forecast.status)
    if forecast.status == NOT_COMPLETE:
        code = "overdue" if forecast.past_due and today > forecast.past_due else "due"
    coding = [{"system": CDSI_STATUS, "code": forecast.status.lower().replace(" ", "-"),
               "display": forecast.status}]
    if code:
        coding.insert(0, {"system": RECOMMENDATION_STATUS, "code": code})
    return {"coding": coding, "text": forecast.status}


def recommendation(patient_ref: str, patient: Patient, forecasts: list[GroupForecast],
                   rec_id: str) -> dict[str, Any]:
    entries = []
    for f in forecasts:
        entry: dict[str, Any] = {
            "vaccineCode": [{"text": f.group}],
            "targetDisease": {"text": ", ".join(a.antigen for a in f.antigens)},
            "forecastStatus": _status_coding(f, patient.assessment),
        }
        criteria = [{"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                     "value": getattr(f, key).isoformat()}
                    for key, code, display in DATE_CRITERIA if getattr(f, key)]
        if criteria:
            entry["dateCriterion"] = criteria
        if f.dose_number and f.status == NOT_COMPLETE:
            entry["doseNumberPositiveInt"] = f.dose_number
        if f.status == AGED_OUT:
            entry["forecastReason"] = [{"text": "Patient is unable to finish the series before the maximum age"}]
        entries.append(entry)
    return {"resourceType": "ImmunizationRecommendation", "id": rec_id,
            "patient": {"reference": patient_ref}, "date": patient.assessment.isoformat(),
            "recommendation": entries or [{"vaccineCode": [{"text": "none"}],
                                           "forecastStatus": {"text": "Not Recommended"}}]}


def evaluations(patient_ref: str, patient: Patient, forecasts: list[GroupForecast]) -> list[dict[str, Any]]:
    out = []
    seen: set[str] = set()
    for f in forecasts:
        for antigen in f.antigens:
            if antigen.antigen in seen:
                continue
            seen.add(antigen.antigen)
            series = antigen.best[0].series.get("seriesName") if antigen.best else None
            for result in antigen.evaluations():
                code = "valid" if result.status == VALID else "notvalid"
                resource: dict[str, Any] = {
                    "resourceType": "ImmunizationEvaluation",
                    "id": f"{result.dose.id}-{antigen.antigen}".replace(" ", "-")[:64],
                    "status": "completed", "patient": {"reference": patient_ref},
                    "date": patient.assessment.isoformat(),
                    "targetDisease": {"text": antigen.antigen},
                    "immunizationEvent": {"reference": f"Immunization/{result.dose.id}"},
                    "doseStatus": {"coding": [{"system": DOSE_STATUS, "code": code}], "text": result.status},
                }
                if result.reasons:
                    resource["doseStatusReason"] = [{"text": reason} for reason in result.reasons]
                if series:
                    resource["series"] = series
                if result.status == VALID and result.target is not None:
                    resource["doseNumberPositiveInt"] = result.target + 1
                if result.status in (EXTRANEOUS, SUBSTANDARD):
                    resource["description"] = f"{result.status}: the dose does not count towards the series"
                out.append(resource)
    return out


def result_parameters(patient_id: str, patient: Patient, forecasts: list[GroupForecast]) -> dict[str, Any]:
    ref = f"Patient/{patient_id}"
    params = [{"name": "evaluation", "resource": e} for e in evaluations(ref, patient, forecasts)]
    params.append({"name": "recommendation",
                   "resource": recommendation(ref, patient, forecasts, f"{patient_id}-forecast"[:64])})
    return {"resourceType": "Parameters", "parameter": params}
