"""The twin's risk estimates, each with its inputs (value, date, record) and its model's source."""
from __future__ import annotations

from typing import Any

from . import cardiovascular, diabetes
from .facts import (ANTIHYPERTENSIVE_ATC, BMI, CHOLESTEROL, CVD, DIABETES, GLUCOSE, HBA1C, SBP, Facts, Point)


def _input(name: str, point: Point | None, value: Any = None, source: str | None = None) -> dict[str, Any]:
    if point is not None:
        return {"name": name, "value": point.value, "unit": point.unit, "date": point.when[:10],
                "source": {"reference": point.source}}
    out: dict[str, Any] = {"name": name, "value": value}
    if source:
        out["source"] = {"reference": source}
    return out


def _ref(resource: dict[str, Any] | None) -> str | None:
    return f"{resource['resourceType']}/{resource['id']}" if resource else None


LAB_RECALIBRATION = ("GBD region Central Asia, recovered from the region's published chart (reproduces its cells "
                     "within rounding; the authors' own parameters could not be obtained)")
NONLAB_RECALIBRATION = {
    "own": "GBD region Central Asia, recovered from the region's published non-laboratory chart",
    "laboratory": ("approximate: the laboratory model's Central Asia recalibration (recovered from its chart) applied "
                   "to the non-laboratory model; the region's non-laboratory chart could not be obtained"),
    "none": "none (uncalibrated ERFC model): the Central Asia recalibration is not available"}


def cardiovascular_risk(f: Facts) -> dict[str, Any]:
    """The laboratory-based chart when the record has a total cholesterol, else the non-laboratory chart when
    it has a body mass index (WHO: the non-laboratory chart is for settings without cholesterol)."""
    age, sex = f.age(), f.sex
    established = f.condition(CVD)
    sbp, chol, bmi = f.latest(SBP), f.latest(CHOLESTEROL), f.latest(BMI)
    dm = f.condition(DIABETES)
    lab = chol is not None or bmi is None
    out: dict[str, Any] = {"name": "10-year cardiovascular risk"}
    if lab:
        out |= {"model": "WHO 2019 CVD risk, laboratory-based", "source": cardiovascular.SOURCE,
                "region": cardiovascular.REGION,
                "recalibration": LAB_RECALIBRATION if cardiovascular.calibrated() else NONLAB_RECALIBRATION["none"]}
    else:
        out |= {"model": "WHO 2019 CVD risk, non-laboratory-based", "source": cardiovascular.NONLAB_SOURCE,
                "region": cardiovascular.REGION,
                "recalibration": NONLAB_RECALIBRATION[cardiovascular.nonlab_calibration()]}
    smoking = _input("current smoker", None, f.smoker[0] if f.smoker else "not recorded",
                     f.smoker[1] if f.smoker else None)
    inputs = [_input("age", None, round(age, 1) if age is not None else None), _input("sex", None, sex),
              _input("systolic blood pressure", sbp)]
    inputs += ([_input("total cholesterol", chol), _input("diabetes", None, dm is not None, _ref(dm))] if lab
               else [_input("body mass index", bmi)])
    out["input"] = inputs + [smoking]
    reason = None
    if established is not None:
        reason = "established cardiovascular disease: high risk without a score"
        out["input"].append(_input("cardiovascular disease", None, True, _ref(established)))
    elif age is None or not 40 <= age <= 80:
        reason = "the model is for ages 40 to 80"
    elif sex not in ("male", "female"):
        reason = "the model is sex-specific and the record's sex is not male or female"
    elif sbp is None or (chol is None and bmi is None):
        reason = ("needs a systolic blood pressure and a total cholesterol (laboratory-based chart) or a body mass "
                  "index (non-laboratory chart)")
    elif sbp.unit not in ("mm[Hg]", "mmHg", "") or (chol if lab else bmi).unit not in (
            ("mmol/L", "") if lab else ("kg/m2", "kg/m^2", "")):
        reason = "units other than mmol/L, kg/m2 and mm[Hg] are not converted"
    if reason:
        out["notComputed"] = reason
        return out

    def figure(smoker: bool) -> float:
        if lab:
            return cardiovascular.ten_year_risk(sex, age, chol.value, sbp.value, dm is not None, smoker)
        return cardiovascular.ten_year_risk_nonlab(sex, age, bmi.value, sbp.value, smoker)
    risk = figure(f.smoker[0] if f.smoker else False)
    out["value"] = round(100 * risk, 1)
    out["unit"] = "%"
    out["band"] = cardiovascular.band(risk)
    notes = []
    if f.smoker is None:
        notes.append(f"smoking status is not recorded: computed as a non-smoker; as a smoker it would be "
                     f"{round(100 * figure(True), 1)} %")
    if not lab and dm is not None:
        notes.append("the record has diabetes, which the non-laboratory chart does not take: WHO advises the "
                     "laboratory-based chart (a total cholesterol) for people with diabetes")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def diabetes_risk(f: Facts) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "type 2 diabetes risk", "model": "FINDRISC, partial (items in the record)",
                           "source": diabetes.SOURCE}
    known = f.condition(DIABETES)
    if known is not None:
        out["notComputed"] = "diabetes is already diagnosed"
        out["input"] = [_input("diabetes", None, True, _ref(known))]
        return out
    age = f.age()
    bmi = f.latest(BMI)
    treated = f.on_medication(ANTIHYPERTENSIVE_ATC)
    glucose = next((p for p in reversed(f.series.get(GLUCOSE, [])) if p.value >= diabetes.RAISED_GLUCOSE_MMOL), None)
    a1c = next((p for p in reversed(f.series.get(HBA1C, [])) if p.value >= diabetes.RAISED_HBA1C), None)
    if age is None:
        out["notComputed"] = "the record has no birth date"
        return out
    score = diabetes.age_points(age)
    inputs = [_input("age", None, round(age, 1)) | {"points": score}]
    unknown = dict(diabetes.UNKNOWN_ITEMS)
    if bmi is not None:
        points = diabetes.bmi_points(bmi.value)
        score += points
        inputs.append(_input("body mass index", bmi) | {"points": points})
    else:
        unknown["body mass index"] = 3
    points = 2 if treated is not None else 0
    score += points
    inputs.append(_input("antihypertensive medication", None, treated is not None, _ref(treated)) | {"points": points})
    raised = glucose or a1c
    points = 5 if raised is not None else 0
    score += points
    inputs.append(_input("raised blood glucose ever", raised, None if raised else False) | {"points": points})
    out["input"] = inputs
    out["value"] = score
    out["unit"] = "points (of 26)"
    most = score + sum(unknown.values())
    out["unknownItems"] = [{"name": k, "maxPoints": v} for k, v in unknown.items()]
    low, high = diabetes.band(score), diabetes.band(most)
    out["band"] = low[0] if low == high else f"{low[0]} to {high[0]}"
    out["tenYearRisk"] = low[1] if low == high else f"{low[1]} to {high[1]}"
    return out
