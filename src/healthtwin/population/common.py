"""Shared helpers for the population generator: code systems, fast date strings, the per-person context.

Dates are handled as proleptic ordinals (``datetime.date.toordinal``) because integer arithmetic and a
pre-built string table are far cheaper than ``date`` objects and ``isoformat`` on the hot path.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import Any

Resource = dict[str, Any]

# Code systems and identifier systems (documented in docs/population.md).
SYS_FIN = "https://health.gov.az/fhir/sid/fin"
SYS_TAX = "https://health.gov.az/fhir/sid/voen"  # organisation tax id (VÖEN)
SYS_PRESCRIPTION = "https://health.gov.az/fhir/sid/prescription"  # the national e-prescription number
SYS_SERVICE = "https://health.gov.az/fhir/CodeSystem/its-service"  # tariff codes of the mandatory insurance
EXT = "https://health.gov.az/fhir/StructureDefinition/"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
CVX = "http://hl7.org/fhir/sid/cvx"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
COND_CLIN = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CAT = "http://terminology.hl7.org/CodeSystem/condition-category"
TZ = "+04:00"  # Asia/Baku has had no daylight saving time since 2016

_FIRST = dt.date(1900, 1, 1).toordinal()
_LAST = dt.date(2101, 1, 1).toordinal()
_DATES: list[str] = [dt.date.fromordinal(o).isoformat() for o in range(_FIRST, _LAST)]
_HM: list[str] = [f"T{m // 60:02d}:{m % 60:02d}:00{TZ}" for m in range(1440)]


def dstr(day: int) -> str:
    """FHIR date for an ordinal day."""
    return _DATES[day - _FIRST]


def dtstr(day: int, minute: int = 600) -> str:
    """FHIR dateTime (Baku offset) for an ordinal day and a minute of that day."""
    return _DATES[day - _FIRST] + _HM[minute % 1440]


def ordinal(d: dt.date) -> int:
    return d.toordinal()


def year_of(day: int) -> int:
    return int(_DATES[day - _FIRST][:4])


def month_of(day: int) -> int:
    return int(_DATES[day - _FIRST][5:7])


def cc(system: str, code: str, display: str, text: str | None = None) -> Resource:
    """A CodeableConcept with one coding."""
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: exact and cheap for the small rates used here (lam < ~10)."""
    if lam <= 0.0:
        return 0
    import math

    limit = math.exp(-lam)
    k = 0
    prod = rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


class Person:
    """Everything known about one simulated resident while their record is generated.

    The output list is flushed after each person, so memory stays flat whatever the population size.
    """

    __slots__ = (
        "idx", "pid", "ref", "rng", "sex", "birth", "death", "age_end", "district", "fin", "family",
        "given", "out", "n", "conds", "state", "win_start", "win_end", "coverage_ref", "pracs",
        "mcv_doses", "first_enc", "events",
    )

    def __init__(self, idx: int, rng: random.Random) -> None:
        self.idx = idx
        self.pid = f"pat-{idx}"
        self.ref = {"reference": f"Patient/pat-{idx}"}
        self.rng = rng
        self.out: list[tuple[str, Resource]] = []
        self.n = 0
        self.conds: dict[str, Any] = {}
        self.state: dict[str, float] = {}
        self.death: int | None = None
        self.mcv_doses: list[int] = []
        self.first_enc = True

    def new_id(self, prefix: str) -> str:
        """Deterministic id: depends only on the patient index and the order of generation."""
        self.n += 1
        return f"{prefix}-{self.idx}-{self.n}"

    def emit(self, rtype: str, res: Resource) -> None:
        self.out.append((rtype, res))

    def age_at(self, day: int) -> float:
        return (day - self.birth) / 365.25

    def alive_on(self, day: int) -> bool:
        return self.birth <= day and (self.death is None or day <= self.death)
