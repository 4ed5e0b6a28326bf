"""Trends of the key indicators: every measurement with its record, and the latest."""
from __future__ import annotations

from typing import Any

from .facts import DBP, HBA1C, SBP, Facts

MAX_POINTS = 200  # the newest points of each trend that are returned (all are read)
INDICATORS = (("systolic blood pressure", SBP, "mm[Hg]"), ("diastolic blood pressure", DBP, "mm[Hg]"),
              ("HbA1c", HBA1C, "%"))


def trends(f: Facts, kidney: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, code, unit in INDICATORS:
        points = [{"date": p.when[:10], "value": p.value, "source": {"reference": p.source}}
                  for p in f.series.get(code, [])][-MAX_POINTS:]
        item: dict[str, Any] = {"name": name, "code": f"http://loinc.org|{code}", "unit": unit, "points": points}
        if points:
            item["latest"] = points[-1]
        out.append(item)
    egfr = {"name": "eGFR (CKD-EPI 2021, computed)", "code": "computed from http://loinc.org|14682-9",
            "unit": "mL/min/1.73m2", "points": [
                {"date": s["date"], "value": s["value"], "source": s["source"]} for s in kidney.get("series", [])
            ][-MAX_POINTS:]}
    if egfr["points"]:
        egfr["latest"] = egfr["points"][-1]
    out.append(egfr)
    return out
