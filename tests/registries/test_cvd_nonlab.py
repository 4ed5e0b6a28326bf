"""The twin's cardiovascular risk without a cholesterol result: the WHO 2019 non-laboratory model (body mass
index instead of total cholesterol and diabetes) is chosen, with its inputs and where they came from; with a
cholesterol the laboratory chart is used as before. The region's recalibration of the non-laboratory model is
the laboratory model's (an approximation the answer states) until its own chart is fitted."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.registries.citizen_twin import cardiovascular as cv
from healthtwin.registries.citizen_twin.facts import BMI, CHOLESTEROL, DIABETES, SBP, Facts, Point
from healthtwin.registries.citizen_twin.risks import cardiovascular_risk

TODAY = dt.date(2026, 12, 2)


def _facts(**series: float) -> Facts:
    codes = {"sbp": (SBP, "mm[Hg]"), "chol": (CHOLESTEROL, "mmol/L"), "bmi": (BMI, "kg/m2")}
    f = Facts(TODAY, dt.date(1964, 6, 1), "male", smoker=(False, "Observation/smoke"))
    for name, value in series.items():
        code, unit = codes[name]
        f.series[code] = [Point("2026-05-01", value, unit, f"Observation/{name}")]
    return f


def test_with_a_cholesterol_the_laboratory_chart_is_used():
    r = cardiovascular_risk(_facts(sbp=150, chol=5.5, bmi=31))
    assert r["model"].endswith("laboratory-based") and "non" not in r["model"]
    assert {i["name"] for i in r["input"]} >= {"total cholesterol", "diabetes"}
    assert "body mass index" not in {i["name"] for i in r["input"]}
    # a man of 62.5, non-smoker, 150 mmHg, 5.5 mmol/L: the Central Asia chart's cell is 17 % (test_cvd_chart.py)
    assert round(cv.ten_year_risk("male", 62.5, 5.5, 150, False, False) * 100) == 17


def test_without_a_cholesterol_the_non_laboratory_chart_is_used_with_its_inputs_shown():
    r = cardiovascular_risk(_facts(sbp=150, bmi=31))
    assert r["model"].endswith("non-laboratory-based") and "Model 2" in r["source"]
    inputs = {i["name"]: i for i in r["input"]}
    assert set(inputs) == {"age", "sex", "systolic blood pressure", "body mass index", "current smoker"}
    assert inputs["body mass index"] == {"name": "body mass index", "value": 31.0, "unit": "kg/m2",
                                         "date": "2026-05-01", "source": {"reference": "Observation/bmi"}}
    age = (TODAY - dt.date(1964, 6, 1)).days / 365.25
    assert r["value"] == round(100 * cv.ten_year_risk_nonlab("male", age, 31, 150, False), 1)
    assert r["band"] == cv.band(r["value"] / 100) and "approximate" in r["recalibration"]


def test_the_non_laboratory_model_rises_with_each_risk_factor_and_combines_chd_and_stroke():
    base = dict(sex="female", age=55.0, bmi=26.0, sbp=135.0, smoker=False)
    r = cv.ten_year_risk_nonlab(**base)
    for change in ({"age": 65.0}, {"bmi": 33.0}, {"sbp": 160.0}, {"smoker": True}):
        assert cv.ten_year_risk_nonlab(**{**base, **change}) > r, change
    chd = cv.NONLAB[("female", "chd")].risk(55, 26, 135, False)
    stroke = cv.NONLAB[("female", "stroke")].risk(55, 26, 135, False)
    assert cv.ten_year_risk_nonlab(**base, region="none") == pytest.approx(1 - (1 - chd) * (1 - stroke))
    # at the centring values (60 years, BMI 25, 120 mmHg, non-smoker) the risk is 1 - the baseline survival
    assert cv.NONLAB[("male", "chd")].risk(60, 25, 120, False) == pytest.approx(1 - 0.9544258)


def test_the_recalibration_used_is_said():
    assert cv.nonlab_calibration() == "laboratory" and cv.nonlab_calibration("none") == "none"
    assert cv.nonlab_recalibration() == cv.RECALIBRATION


def test_without_either_there_is_no_figure_and_diabetes_is_noted():
    r = cardiovascular_risk(_facts(sbp=150))
    assert "value" not in r and "body mass index" in r["notComputed"] and "cholesterol" in r["notComputed"]
    f = _facts(sbp=150, bmi=28)
    f.conditions.append({"resourceType": "Condition", "id": "dm", "clinicalStatus": {"coding": [{"code": "active"}]},
                         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}})
    assert f.condition(DIABETES) is not None
    r = cardiovascular_risk(f)
    assert "value" in r and "laboratory-based chart" in r["note"]
    assert "diabetes" not in {i["name"] for i in r["input"]}  # not an input of the non-laboratory model


def test_the_fit_recovers_a_regions_non_laboratory_recalibration_from_its_chart_cells():
    """The day the region's non-laboratory chart is transcribed, scripts/fit_who_cvd_region.py --nonlab fits the
    model's own (a, b): shown here on a chart printed (whole percent) from known parameters."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "fit_who_cvd_region", Path(__file__).resolve().parents[2] / "scripts" / "fit_who_cvd_region.py")
    fitter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fitter)
    known = {("male", "chd"): (1.2, 1.1), ("male", "stroke"): (-0.3, 0.8),
             ("female", "chd"): (0.9, 1.05), ("female", "stroke"): (-0.2, 0.75)}
    table = {("x",) + k: v for k, v in known.items()}
    lines = []
    for sex in ("male", "female"):
        for smoker in (0, 1):
            for bmi, bmi_value in cv.CHART_BMI.items():
                for age, age_value in cv.CHART_AGE.items():
                    row = []
                    for sbp in cv.CHART_SBP:
                        parts = [cv._recalibrate(cv.NONLAB[(sex, end)].risk(age_value, bmi_value, sbp, bool(smoker)),
                                                 sex, end, "x", table) for end in ("chd", "stroke")]
                        row.append(str(round(100 * (1 - (1 - parts[0]) * (1 - parts[1])))))
                    lines.append(f"{sex} {smoker} {bmi} {age} " + " ".join(row))
    cells = cv.nonlab_chart_cells("\n".join(lines))
    assert len(cells) == 2 * 2 * 5 * 7 * 5
    for sex in ("male", "female"):
        (a_chd, b_chd, a_str, b_str), residual = fitter.fit(cells, sex, nonlab=True)
        assert max(abs(residual)) <= 0.6  # the printed cells' rounding
        a_chd_known, b_chd_known = known[(sex, "chd")]
        assert abs(a_chd - a_chd_known) < 0.15 and abs(b_chd - b_chd_known) < 0.1
