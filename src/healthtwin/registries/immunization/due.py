"""Lists of children due and overdue, as `ImmunizationRecommendation?` searches over the live registry.

R4 gives ImmunizationRecommendation `vaccine-type`, `status`, `date`, `target-disease` and `information`, but no
search by a date criterion, and `status` (the forecast status written on the day of the forecast) goes stale
as days pass: a child "due" on Monday is overdue a month later with no write in between. The lists therefore
search the dates themselves, which do not change until the record does, through five SearchParameters this
module registers as the server registers a stored custom one (api/definitions.py; see `register`):

* `due-date` and `overdue-date` (date): the recommended date (LOINC 30980-7) and the past-due date (59778-1);
* `vaccine-type-due-date` and `vaccine-type-overdue-date` (composite, token$date): the vaccine group and its
  own date, matched within one recommendation (the uncorrelated pair would find a child overdue for one
  vaccine and due for another);
* `Patient.address-district` (string): the district, which R4's Patient parameters do not name.

The polyclinic and the district come by chaining through the patient (`patient.organization=`,
`patient.general-practitioner=`, `patient.address-district=`), so a child who moves appears in their new
polyclinic's list without the recommendation being rewritten. On day D a vaccine group G is

* overdue:  `vaccine-type-overdue-date=G$ltD` (past the past-due date);
* due:      `vaccine-type-due-date=G$leD` (the recommended date reached; includes the overdue).

The analytics indicator `immunization_status` (analytics/indicators) counts the same states from the same
dates; tests/registries/test_immunization_due.py checks that both agree."""
from __future__ import annotations

from datetime import date
from typing import Any

from .recommendations import GROUP_SYSTEM

BASE = "https://health.gov.az/fhir/SearchParameter/"
VACCINE_TYPE = "http://hl7.org/fhir/SearchParameter/ImmunizationRecommendation-vaccine-type"
RECOMMENDED, PAST_DUE = "30980-7", "59778-1"


def _criterion(loinc: str) -> str:
    return f"dateCriterion.where(code.coding.code = '{loinc}').value"


def _param(rid: str, code: str, base: str, kind: str, expression: str, description: str,
           components: list[dict[str, str]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "SearchParameter", "id": rid, "url": BASE + rid, "version": "1",
                           "name": rid.replace("-", "_"), "status": "active", "publisher": "Health Twin",
                           "description": description, "code": code, "base": [base], "type": kind,
                           "expression": expression, "xpathUsage": "normal"}
    if components:
        out["component"] = components
    return out


DEFINITIONS: list[dict[str, Any]] = [
    _param("ImmunizationRecommendation-due-date", "due-date", "ImmunizationRecommendation", "date",
           f"ImmunizationRecommendation.recommendation.{_criterion(RECOMMENDED)}",
           "The date a recommended dose is due (dateCriterion LOINC 30980-7)"),
    _param("ImmunizationRecommendation-overdue-date", "overdue-date", "ImmunizationRecommendation", "date",
           f"ImmunizationRecommendation.recommendation.{_criterion(PAST_DUE)}",
           "The date after which a recommended dose is overdue (dateCriterion LOINC 59778-1)"),
    _param("ImmunizationRecommendation-vaccine-type-due-date", "vaccine-type-due-date", "ImmunizationRecommendation",
           "composite", "ImmunizationRecommendation.recommendation",
           "A vaccine group and the date its next dose is due, in one recommendation",
           [{"definition": VACCINE_TYPE, "expression": "vaccineCode"},
            {"definition": BASE + "ImmunizationRecommendation-due-date", "expression": _criterion(RECOMMENDED)}]),
    _param("ImmunizationRecommendation-vaccine-type-overdue-date", "vaccine-type-overdue-date",
           "ImmunizationRecommendation", "composite", "ImmunizationRecommendation.recommendation",
           "A vaccine group and the date its next dose is overdue, in one recommendation",
           [{"definition": VACCINE_TYPE, "expression": "vaccineCode"},
            {"definition": BASE + "ImmunizationRecommendation-overdue-date", "expression": _criterion(PAST_DUE)}]),
    _param("Patient-address-district", "address-district", "Patient", "string", "Patient.address.district",
           "A district specified in an address (the residence the due lists group children by)"),
]


def register(registry: Any) -> None:
    """Adds the definitions to a search registry (as api/definitions.py applies a stored SearchParameter).

    They are the registry's code, like R4's own, not stored resources (which would appear in every store's
    history and searches, and could be deleted from under the lists): each process that writes
    ImmunizationRecommendations registers them, the server as it is built (plugin.py) and the refresh workers
    (refresh.py). A Patient bulk-loaded by a process without them (`healthtwin load`) is indexed for
    `address-district` by the next `healthtwin immunization refresh`, which reindexes each child it forecasts."""
    for definition in DEFINITIONS:
        if registry.by_url(definition["url"]) is None:
            registry.add(dict(definition))
    from .index_rows import register as one_walk  # (imports this module's constants)
    one_walk(registry)  # the recommendation's rows in one walk, used while its parameters are exactly these


def list_query(kind: str, on: date, group: str | None = None, organization: str | None = None,
               practitioner: str | None = None, district: str | None = None) -> list[tuple[str, str]]:
    """The search parameters of a due (`kind` "due") or overdue ("overdue") list on day `on`: by vaccine group,
    polyclinic (Organization/id), doctor (Practitioner/id) and district, each optional."""
    if kind not in ("due", "overdue"):
        raise ValueError(f"a list is 'due' or 'overdue', not {kind!r}")
    prefix = "le" if kind == "due" else "lt"
    code = f"{kind}-date"
    params = [(f"vaccine-type-{code}", f"{GROUP_SYSTEM}|{group}${prefix}{on.isoformat()}")] if group \
        else [(code, f"{prefix}{on.isoformat()}")]
    if organization:
        params.append(("patient.organization", organization))
    if practitioner:
        params.append(("patient.general-practitioner", practitioner))
    if district:
        params.append(("patient.address-district:exact", district))
    return params
