"""The citizen's twin: the JSON shape that $twin answers (as Parameters, parameters.py).

    patient       {"reference": "Patient/{id}"}, age, sex
    asOf          the date the figures are computed for
    risk[]        name, model, source, value, unit, band, input[] (name, value, unit, date, source), notComputed
    kidney        eGFR series (each with its creatinine's Observation), latest, stage, slopePerYear, rapidDecline
    dueCare       vaccines (the forecaster's groups not complete), items[] (screenings and follow-up tests with
                  status due / overdue / up to date, the rule's source and the last record that satisfied it)
    trend[]       systolic and diastolic pressure, HbA1c, eGFR: points (date, value, source) and the latest
    withheld[]    record types the caller's role may not read (their figures are missing, not zero)
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..patient_record import PatientRecord
from .due_care import care_items, vaccines
from .facts import gather
from .kidney_trend import kidney_function
from .risks import cardiovascular_risk, diabetes_risk
from .trends import trends


def build(record: PatientRecord, today: dt.date | None = None) -> dict[str, Any]:
    f = gather(record, today or record.services.today())  # the services' clock, UTC
    kidney = kidney_function(f)
    age = f.age()
    shape: dict[str, Any] = {
        "patient": {"reference": f"Patient/{record.pid}"},
        "asOf": f.today.isoformat(),
        "age": round(age, 1) if age is not None else None,
        "sex": f.sex,
        "risk": [cardiovascular_risk(f), diabetes_risk(f)],
        "kidney": kidney,
        "dueCare": {"vaccines": vaccines(f), "items": care_items(f)},
        "trend": trends(f, kidney),
    }
    if f.withheld:
        shape["withheld"] = f.withheld
    if f.truncated:
        shape["truncated"] = f.truncated
    return shape
