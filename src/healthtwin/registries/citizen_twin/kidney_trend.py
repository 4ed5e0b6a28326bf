"""The kidney-function part of the twin: eGFR from every creatinine, its category and yearly slope."""
from __future__ import annotations

import datetime as dt
from typing import Any

from . import kidney
from .facts import CREATININE, Facts


def kidney_function(f: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "kidney function (eGFR)", "model": "CKD-EPI 2021 creatinine",
                           "source": kidney.SOURCE, "unit": "mL/min/1.73m2"}
    creatinine = [p for p in f.series.get(CREATININE, []) if p.unit in ("umol/L", "")]
    if f.birth is None or f.sex not in ("male", "female") or not creatinine:
        out["notComputed"] = "needs a birth date, the sex, and a creatinine in umol/L"
        out["series"] = []
        return out
    series = []
    for p in creatinine:
        when = dt.date.fromisoformat(p.when[:10])
        age = f.age(when)
        if age is None or age < 18:
            continue
        value = kidney.egfr(p.value, age, f.sex == "female")
        series.append({"date": p.when[:10], "value": round(value, 1), "creatinine": p.value,
                       "source": {"reference": p.source}})
    out["series"] = series
    if not series:
        out["notComputed"] = "CKD-EPI is for adults: no creatinine measured from age 18"
        return out
    latest = series[-1]
    out["latest"] = latest
    out["stage"] = kidney.stage(latest["value"])
    out["stageSource"] = kidney.STAGES_SOURCE
    recent = [s for s in series if dt.date.fromisoformat(s["date"]) >= f.today - dt.timedelta(days=5 * 365)]
    slope = kidney.slope_per_year([((dt.date.fromisoformat(s["date"]) - f.today).days / 365.25, s["value"])
                                   for s in recent])
    if slope is not None:
        out["slopePerYear"] = round(slope, 2)
        out["slopeWindow"] = "the last 5 years"
        out["rapidDecline"] = slope < kidney.RAPID_DECLINE
    return out
