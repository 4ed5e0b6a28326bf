"""The national terminology the population is coded in, as CodeSystem and ValueSet resources, so that the
terminology service (docs/terminology.md) knows the codes the registries hold: `$lookup` of a LOINC code in
a lab result, `$validate-code` of a vaccine against the immunization calendar, `Condition?code:in=` the
chronic conditions.

The external systems (ICD-10, SNOMED CT, LOINC, ATC, CVX) are published as `content: fragment`: only the codes
this population uses, with their displays from the generator's own tables. The insurer's tariff is national
and complete. Written once, by shard 0, with the institutions."""
from __future__ import annotations

from typing import Any, Iterator

from .allergies import CLASSES as ALLERGY_CLASSES
from .common import ATC, CVX, ICD10, LOINC, SNOMED, SYS_SERVICE
from .conditions import ACUTE, CAUSE_DISPLAY, CHRONIC, INFANT_CAUSES, OTHER_CAUSES, YOUNG_CAUSES
from .encounters import BIRTH_REASON, CRUNCH_REASONS, ENCOUNTER_TYPES, MEASLES, PROCS
from .institutions import SPECIALTIES
from .insurance import TARIFF
from .medications import DRUGS
from .observations import BP_PANEL, CAUSE_OF_DEATH, ORDER_CATEGORY, TESTS
from .vaccination import SCHEDULE

BASE = "https://health.gov.az/fhir"
_NAMES = {ICD10: ("ICD10", "ICD-10 (the codes of the national registries)"),
          SNOMED: ("SNOMEDCT", "SNOMED CT (the concepts of the national registries)"),
          LOINC: ("LOINC", "LOINC (the tests of the national laboratories)"),
          ATC: ("ATC", "WHO ATC (the medicines of the national formulary)"),
          CVX: ("CVX", "CVX (the vaccines of the national immunization calendar)")}


def _codes() -> dict[str, dict[str, str]]:
    """{system: {code: display}} from the generator's tables, in a fixed order."""
    out: dict[str, dict[str, str]] = {s: {} for s in (ICD10, SNOMED, LOINC, ATC, CVX, SYS_SERVICE)}
    for c in CHRONIC:
        out[ICD10][c.icd10] = c.icd_display
        if c.snomed:
            out[SNOMED][c.snomed] = c.snomed_display
    for a in ACUTE:
        out[ICD10][a.icd10] = a.icd_display
        out[SNOMED][a.snomed] = a.display
    for code, display in (*OTHER_CAUSES, *YOUNG_CAUSES, *INFANT_CAUSES, *CAUSE_DISPLAY.items(),
                          *CRUNCH_REASONS.values(), BIRTH_REASON):
        out[ICD10][code] = display
    snomed, display, icd, icd_display = MEASLES
    out[SNOMED][snomed], out[ICD10][icd] = display, icd_display
    for code, display, _ in PROCS.values():
        out[SNOMED][code] = display
    for _key, code, display, _role in SPECIALTIES:
        out[SNOMED][code] = display
    for codings in ENCOUNTER_TYPES.values():
        for coding in (c for concept in codings for c in concept["coding"]):
            out[SNOMED][coding["code"]] = coding["display"]
    for coding in ORDER_CATEGORY[0]["coding"]:
        out[SNOMED][coding["code"]] = coding["display"]
    for test in TESTS.values():
        out[LOINC][test.loinc] = test.display
    for concept in (BP_PANEL, CAUSE_OF_DEATH):
        for coding in concept["coding"]:
            out[LOINC][coding["code"]] = coding["display"]
    for drugs in DRUGS.values():
        for atc, name, *_ in drugs:
            out[ATC][atc] = name
    for dose in SCHEDULE:
        out[CVX][dose.cvx] = dose.cvx_display
        out[ATC][dose.atc] = dose.atc_display
    for _key, atc_class, name, _share, reactions in ALLERGY_CLASSES:
        out[ATC][atc_class] = name
        for snomed, display, _ in reactions:
            out[SNOMED].setdefault(snomed, display)  # a code already used keeps its display
    for code, (display, _price) in TARIFF.items():
        out[SYS_SERVICE][code] = display
    return {system: dict(sorted(codes.items())) for system, codes in out.items()}


def _codesystem(rid: str, url: str, name: str, title: str, content: str, codes: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "id": rid, "url": url, "name": name, "title": title, "status": "active",
            "publisher": "Ministry of Health of the Republic of Azerbaijan (synthetic)", "content": content,
            "caseSensitive": True, "count": len(codes),
            "concept": [{"code": code, "display": display} for code, display in codes.items()]}


def _valueset(rid: str, name: str, title: str, system: str, codes: list[str]) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": rid, "url": f"{BASE}/ValueSet/{rid}", "name": name, "title": title,
            "status": "active", "compose": {"include": [{"system": system,
                                                         "concept": [{"code": c} for c in codes]}]}}


def national_terminology() -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource type, resource) for the code systems and value sets, deterministic."""
    codes = _codes()
    for system, (name, title) in _NAMES.items():
        yield "CodeSystem", _codesystem(f"az-{name.lower()}", system, f"AZ{name}", title, "fragment", codes[system])
    yield "CodeSystem", _codesystem("its-service", SYS_SERVICE, "ITSService",
                                    "Services of the mandatory health insurance tariff", "complete",
                                    codes[SYS_SERVICE])
    vaccines = sorted({d.cvx for d in SCHEDULE if d.enabled})
    yield "ValueSet", _valueset("immunization-calendar", "ImmunizationCalendar",
                                "Vaccines of the national immunization calendar", CVX, vaccines)
    chronic = sorted({c.icd10 for c in CHRONIC})
    yield "ValueSet", _valueset("chronic-conditions", "ChronicConditions",
                                "Chronic conditions of the national registries", ICD10, chronic)
