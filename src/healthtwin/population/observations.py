"""Vital signs and laboratory Observations (LOINC, UCUM) whose values follow conditions and treatment.

Each person carries a few latent values (height, BMI, blood-pressure offset, ...) drawn once, so that
repeated measurements are consistent; conditions shift them and treatment pulls them back over time
(e.g. HbA1c of a diabetic decays from the untreated level towards ~7 % after metformin starts).
The coded parts of every Observation are pre-built, shared dicts: building them per resource would cost
more than the rest of the resource.
"""
from __future__ import annotations

import math
from typing import Any

from .common import INTERP, LOINC, OBS_CAT, UCUM, Person, Resource, dtstr

_CAT = {k: [{"coding": [{"system": OBS_CAT, "code": k, "display": d}]}]
        for k, d in (("vital-signs", "Vital Signs"), ("laboratory", "Laboratory"))}
_INTERP = {k: [{"coding": [{"system": INTERP, "code": k, "display": d}]}]
           for k, d in (("H", "High"), ("L", "Low"), ("N", "Normal"))}


class Test:
    """One LOINC-coded quantity with its unit and (optionally sex-specific) reference range."""

    __slots__ = ("loinc", "display", "unit", "ucum", "cat", "low", "high", "digits", "code", "rr")

    def __init__(self, loinc: str, display: str, unit: str, ucum: str, cat: str,
                 low: tuple[float | None, float | None], high: tuple[float | None, float | None], digits: int) -> None:
        self.loinc, self.display, self.unit, self.ucum, self.cat = loinc, display, unit, ucum, cat
        self.low, self.high, self.digits = low, high, digits  # (male, female)
        self.code = {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display}
        self.rr = [self._rr(0), self._rr(1)]

    def _rr(self, i: int) -> list[dict[str, Any]] | None:
        lo, hi = self.low[i], self.high[i]
        if lo is None and hi is None:
            return None
        r: dict[str, Any] = {}
        if lo is not None:
            r["low"] = {"value": lo, "unit": self.unit, "system": UCUM, "code": self.ucum}
        if hi is not None:
            r["high"] = {"value": hi, "unit": self.unit, "system": UCUM, "code": self.ucum}
        return [r]

    def flag(self, v: float, i: int) -> str | None:
        lo, hi = self.low[i], self.high[i]
        if lo is None and hi is None:
            return None
        if lo is not None and v < lo:
            return "L"
        if hi is not None and v > hi:
            return "H"
        return "N"


def _t(loinc: str, display: str, unit: str, ucum: str, cat: str, low: Any, high: Any, digits: int = 1) -> Test:
    lo = low if isinstance(low, tuple) else (low, low)
    hi = high if isinstance(high, tuple) else (high, high)
    return Test(loinc, display, unit, ucum, cat, lo, hi, digits)


V, L = "vital-signs", "laboratory"
TESTS: dict[str, Test] = {
    "sbp": _t("8480-6", "Systolic blood pressure", "mmHg", "mm[Hg]", V, 90, 139, 0),
    "dbp": _t("8462-4", "Diastolic blood pressure", "mmHg", "mm[Hg]", V, 60, 89, 0),
    "hr": _t("8867-4", "Heart rate", "beats/minute", "/min", V, 60, 100, 0),
    "weight": _t("29463-7", "Body weight", "kg", "kg", V, None, None, 1),
    "height": _t("8302-2", "Body height", "cm", "cm", V, None, None, 1),
    "bmi": _t("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2", V, 18.5, 24.9, 1),
    "temp": _t("8310-5", "Body temperature", "Cel", "Cel", V, 36.0, 37.2, 1),
    "spo2": _t("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", V, 95, None, 0),
    "hba1c": _t("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", L, 4.0, 5.6, 1),
    "glucose": _t("14771-0", "Fasting glucose [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", L, 3.9, 5.5, 1),
    "creat": _t("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", "umol/L", L, (62, 44), (106, 80), 0),
    "egfr": _t("62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
               "Blood by Creatinine-based formula (CKD-EPI)", "mL/min/1.73m2", "mL/min/{1.73_m2}", L, 60, None, 0),
    "chol": _t("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", L, None, 5.2, 1),
    "hb": _t("718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", "g/L", L, (130, 120), (170, 150), 0),
    "mcv": _t("787-2", "MCV [Entitic volume] by Automated count", "fL", "fL", L, 80, 100, 0),
    "wbc": _t("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*9/L", "10*9/L", L, 4.0, 10.0, 1),
    "crp": _t("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", "mg/L", L, None, 5.0, 1),
}
BP_PANEL = {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel with all children optional"}],
            "text": "Blood pressure"}
CAUSE_OF_DEATH = {"coding": [{"system": LOINC, "code": "69453-9", "display": "Cause of death [US Standard Certificate of Death]"}],
                  "text": "Cause of death"}
PANELS = {  # lab panels ordered for a condition at a follow-up visit
    "t2dm": ("hba1c", "glucose", "creat", "egfr"), "ckd": ("creat", "egfr", "hb"), "ihd": ("chol",),
    "htn": ("creat", "egfr"), "thal_trait": ("hb", "mcv"), "thal_major": ("hb", "mcv"), "acute": ("wbc", "crp"),
    "checkup": ("glucose", "chol", "hb"),
}


def init_state(p: Person) -> None:
    """Draw the person's latent physiology once."""
    g = p.rng.gauss
    s = p.state
    male = p.sex == "male"
    s["h_adult"] = g(175.0 if male else 162.0, 6.5)
    s["bmi"] = max(17.0, g(27.5 if male else 28.0, 4.5))
    s["sbp"] = g(0.0, 8.0)
    s["hr"] = g(74.0, 8.0)
    s["chol"] = g(4.9, 0.8)
    s["creat"] = g(85.0 if male else 66.0, 9.0)
    s["a1c"] = g(5.3, 0.25)
    s["hb"] = g(148.0 if male else 133.0, 8.0)
    s["a1c_dm"] = g(8.8, 0.9)


def _since(p: Person, key: str, day: int) -> float:
    """Years since a condition's onset (negative or -1 if absent)."""
    onset = p.conds.get(key)
    return -1.0 if onset is None or onset > day else (day - onset) / 365.25


def value(p: Person, key: str, day: int) -> float:
    """Current value of a measurement, from latent state, conditions and treatment."""
    s, g, age = p.state, p.rng.gauss, p.age_at(day)
    if key == "sbp":
        base = 112.0 + max(0.0, age - 20.0) * 0.45 + s["sbp"] if age >= 18 else 95.0 + age * 1.2
        t = _since(p, "htn", day)
        if t >= 0:
            base += 24.0 - 14.0 * min(1.0, t * 4.0)  # treatment (started at diagnosis) takes ~3 months
        return base + g(0, 6.0)
    if key == "dbp":
        return 0.55 * value(p, "sbp", day) + 8.0 + g(0, 4.0)
    if key == "hr":
        return s["hr"] + (22.0 - age * 1.2 if age < 15 else 0.0) + g(0, 5.0)
    if key == "height":
        h = s["h_adult"]
        return h if age >= 18 else 50.0 + (h - 50.0) * (1.0 - math.exp(-age / 5.5)) / (1.0 - math.exp(-18 / 5.5))
    if key == "weight":
        h = value(p, "height", day) / 100.0
        bmi = s["bmi"] if age >= 18 else 15.5 + age * 0.2
        return bmi * h * h * (1.0 + g(0, 0.02))
    if key == "hba1c":
        t = _since(p, "t2dm", day)
        if t < 0:
            return s["a1c"] + max(0.0, age - 40) * 0.008 + g(0, 0.12)
        return 7.0 + (s["a1c_dm"] - 7.0) * math.exp(-t * 365.25 / 90.0) + g(0, 0.35)  # metformin from diagnosis
    if key == "glucose":
        return max(3.2, (28.7 * value(p, "hba1c", day) - 46.7) / 18.0 + g(0, 0.4))  # ADAG relation
    if key == "creat":
        c = s["creat"] * (1.0 + max(0.0, age - 50) * 0.004)
        t = _since(p, "ckd", day)
        if t >= 0:
            c *= 1.7 + 0.08 * t
        return c * (1.0 + g(0, 0.05))
    if key == "egfr":
        return _egfr(value(p, "creat", day), age, p.sex == "female")
    if key == "chol":
        t = _since(p, "ihd", day)
        return s["chol"] + max(0.0, age - 30) * 0.015 - (1.2 if t >= 0 else 0.0) + g(0, 0.3)  # statin
    if key == "hb":
        hb = s["hb"] if age >= 15 else 120.0 + age
        if "thal_major" in p.conds:
            hb = 90.0  # pre-transfusion level with regular transfusions
        elif "thal_trait" in p.conds:
            hb -= 18.0
        if _since(p, "ckd", day) >= 0:
            hb -= 12.0
        return hb + g(0, 5.0)
    if key == "mcv":
        return (64.0 if "thal_major" in p.conds or "thal_trait" in p.conds else 88.0) + g(0, 3.0)
    if key == "temp":
        return 36.6 + g(0, 0.2)
    if key == "spo2":
        return min(100.0, 97.5 + g(0, 1.0) - (4.0 if "copd" in p.conds else 0.0))
    if key == "wbc":
        return max(2.0, g(7.0, 1.8))
    if key == "crp":
        return max(0.2, g(2.0, 1.2))
    raise KeyError(key)


def _egfr(creat_umol: float, age: float, female: bool) -> float:
    """CKD-EPI 2021 (race-free) from serum creatinine in umol/L."""
    scr = creat_umol / 88.42
    k, a = (0.7, -0.241) if female else (0.9, -0.302)
    e = 142.0 * min(scr / k, 1.0) ** a * max(scr / k, 1.0) ** -1.2 * 0.9938 ** max(age, 18.0)
    return e * (1.012 if female else 1.0)


def _obs(p: Person, t: Test, v: float, enc: dict[str, str], when: str, performer: list[Any] | None) -> Resource:
    v = round(v, t.digits) if t.digits else int(round(v))
    res: Resource = {"resourceType": "Observation", "id": p.new_id("obs"), "status": "final",
                     "category": _CAT[t.cat], "code": t.code, "subject": p.ref, "encounter": enc,
                     "effectiveDateTime": when, "issued": when}
    if performer:
        res["performer"] = performer
    res["valueQuantity"] = {"value": v, "unit": t.unit, "system": UCUM, "code": t.ucum}
    i = 0 if p.sex == "male" else 1
    flag = t.flag(v, i)
    if flag:
        res["interpretation"] = _INTERP[flag]
        res["referenceRange"] = t.rr[i]
    return res


def vitals(p: Person, enc: dict[str, str], day: int, minute: int, performer: list[Any], fever: float = 0.0) -> None:
    """Blood pressure (panel with components), heart rate, weight/height/BMI; temperature when febrile."""
    when = dtstr(day, minute)
    age = p.age_at(day)
    if age >= 3:
        sbp, dbp = TESTS["sbp"], TESTS["dbp"]
        sv = int(round(value(p, "sbp", day)))
        dv = int(round(0.55 * sv + 8.0 + p.rng.gauss(0, 4.0)))
        comp = []
        for t, v in ((sbp, sv), (dbp, dv)):
            c: Resource = {"code": t.code, "valueQuantity": {"value": v, "unit": t.unit, "system": UCUM, "code": t.ucum}}
            c["interpretation"] = _INTERP[t.flag(v, 0) or "N"]
            c["referenceRange"] = t.rr[0]
            comp.append(c)
        p.emit("Observation", {"resourceType": "Observation", "id": p.new_id("obs"), "status": "final",
                               "category": _CAT[V], "code": BP_PANEL, "subject": p.ref, "encounter": enc,
                               "effectiveDateTime": when, "issued": when, "performer": performer, "component": comp})
    p.emit("Observation", _obs(p, TESTS["hr"], value(p, "hr", day), enc, when, performer))
    w = value(p, "weight", day)
    p.emit("Observation", _obs(p, TESTS["weight"], w, enc, when, performer))
    if age < 18 or p.first_enc:
        h = value(p, "height", day)
        p.emit("Observation", _obs(p, TESTS["height"], h, enc, when, performer))
        if age >= 18:
            p.emit("Observation", _obs(p, TESTS["bmi"], w / (h / 100.0) ** 2, enc, when, performer))
    if fever:
        p.emit("Observation", _obs(p, TESTS["temp"], 37.0 + fever + p.rng.gauss(0, 0.3), enc, when, performer))
    if "copd" in p.conds or "asthma" in p.conds:
        p.emit("Observation", _obs(p, TESTS["spo2"], value(p, "spo2", day), enc, when, performer))
    p.first_enc = False


def labs(p: Person, enc: dict[str, str], day: int, minute: int, keys: tuple[str, ...], performer: list[Any],
         orderer: str, acute: bool = False) -> None:
    """The order (a ServiceRequest from `orderer` addressed to the laboratory), the laboratory's Task that
    fulfilled it and its DiagnosticReport, and the results, each `basedOn` the order.

    The order's, Task's and report's ids derive from the encounter's (one order per encounter) and nothing
    here draws from the person's random stream beyond the values, so adding them kept every other id and
    draw of the population unchanged."""
    when = dtstr(day, minute + 90)
    suffix = enc["reference"].rsplit("/", 1)[1].removeprefix("enc-")
    order_id = "sr-" + suffix
    requester = {"reference": f"Practitioner/{orderer}"}
    code = {"coding": [c for k in keys for c in TESTS[k].code["coding"]],
            "text": ", ".join(TESTS[k].code["coding"][0]["display"] for k in keys)}
    p.emit("ServiceRequest", {
        "resourceType": "ServiceRequest", "id": order_id, "status": "completed", "intent": "order",
        "category": ORDER_CATEGORY, "code": code, "subject": p.ref, "encounter": enc,
        "authoredOn": dtstr(day, minute), "requester": requester, "performer": performer})
    based_on = [{"reference": f"ServiceRequest/{order_id}"}]
    results = []
    for k in keys:
        v = value(p, k, day)
        if acute and k == "wbc":
            v += p.rng.uniform(2.0, 8.0)
        elif acute and k == "crp":
            v += p.rng.uniform(5.0, 80.0)
        obs = _obs(p, TESTS[k], v, enc, when, performer)
        obs["basedOn"] = based_on
        p.emit("Observation", obs)
        results.append({"reference": f"Observation/{obs['id']}"})
    p.emit("DiagnosticReport", {
        "resourceType": "DiagnosticReport", "id": "dr-" + suffix, "basedOn": based_on, "status": "final",
        "category": REPORT_CATEGORY, "code": code, "subject": p.ref, "encounter": enc, "effectiveDateTime": when,
        "issued": when, "performer": performer, "result": results})
    p.emit("Task", {
        "resourceType": "Task", "id": "task-" + suffix, "basedOn": based_on, "status": "completed",
        "intent": "order", "focus": based_on[0], "for": p.ref, "encounter": enc, "authoredOn": dtstr(day, minute),
        "lastModified": when, "requester": requester, "owner": performer[0],
        "executionPeriod": {"start": dtstr(day, minute + 30), "end": when},
        "output": [{"type": TASK_OUTPUT, "valueReference": {"reference": "DiagnosticReport/dr-" + suffix}}]})


ORDER_CATEGORY = [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007",
                           "display": "Laboratory procedure"}], "text": "Laboratory procedure"}]
REPORT_CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                             "display": "Laboratory"}], "text": "Laboratory"}]
TASK_OUTPUT = {"text": "Diagnostic report"}
