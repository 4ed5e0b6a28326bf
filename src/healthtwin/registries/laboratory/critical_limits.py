"""Critical limits: the values of a test at which the laboratory telephones the orderer at once.

A result's own `referenceRange` entry typed "critical" (see interpretation.CRITICAL_TYPE) takes precedence;
without one, these adult limits apply. They are the rounded mean limits of the survey of US medical centres
by Kost (G. J. Kost, "Critical limits for urgent clinician notification at US medical centers", JAMA
1990;263(5):704-707), converted to SI units: a conservative default each laboratory replaces with its own
list. Tests with no generally agreed critical limit (HbA1c, cholesterol, CRP) have none here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CriticalLimit:
    loinc: str
    ucum: str  # the unit the limits are in; a result in another unit is not compared
    low: float | None
    high: float | None


LOINC = "http://loinc.org"

LIMITS: dict[str, CriticalLimit] = {limit.loinc: limit for limit in (
    CriticalLimit("2823-3", "mmol/L", 2.8, 6.2),      # potassium, serum or plasma
    CriticalLimit("6298-4", "mmol/L", 2.8, 6.2),      # potassium, blood
    CriticalLimit("2951-2", "mmol/L", 120.0, 158.0),  # sodium, serum or plasma
    CriticalLimit("2345-7", "mmol/L", 2.5, 25.0),     # glucose, serum or plasma
    CriticalLimit("14771-0", "mmol/L", 2.5, 25.0),    # fasting glucose, serum or plasma
    CriticalLimit("15074-8", "mmol/L", 2.5, 25.0),    # glucose, blood
    CriticalLimit("17861-6", "mg/dL", 6.6, 12.9),     # calcium, total
    CriticalLimit("14682-9", "umol/L", None, 650.0),  # creatinine, serum or plasma
    CriticalLimit("718-7", "g/L", 66.0, 199.0),       # haemoglobin, blood
    CriticalLimit("6690-2", "10*9/L", 2.0, 37.0),     # leukocytes, blood
    CriticalLimit("777-3", "10*9/L", 37.0, 910.0),    # platelets, blood
    CriticalLimit("6301-6", "{INR}", None, 5.0),      # INR
)}


def limit_for(coding: list[dict]) -> CriticalLimit | None:
    for c in coding:
        if isinstance(c, dict) and c.get("system") == LOINC and c.get("code") in LIMITS:
            return LIMITS[c["code"]]
    return None
