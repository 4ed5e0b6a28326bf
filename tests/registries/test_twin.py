"""Patient/{id}/$twin: risks with their inputs and sources, kidney function from creatinine (checked against the
generator's own eGFR results), due care from the forecaster and the screening rules, trends, and the caller's
access rules."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.registries.citizen_twin import cardiovascular, diabetes, kidney
from healthtwin.registries.citizen_twin.parameters import to_parameters


def _shape(parts: list[dict]) -> dict:
    """Parameters back into the twin's JSON shape (repeated names become lists)."""
    out: dict = {}
    for p in parts:
        if "part" in p:
            value = _shape(p["part"])
        else:
            value = next(v for k, v in p.items() if k.startswith("value"))
        if p["name"] in out:
            if not isinstance(out[p["name"]], list) or not out.get("_list_" + p["name"]):
                out[p["name"]] = [out[p["name"]]]
                out["_list_" + p["name"]] = True
            out[p["name"]].append(value)
        else:
            out[p["name"]] = value
    return {k: v for k, v in out.items() if not k.startswith("_list_")}


def _list(value) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


# -- the models ------------------------------------------------------------------------------------------------
def test_cardiovascular_risk_rises_with_each_risk_factor_and_combines_chd_and_stroke():
    base = dict(sex="male", age=55, chol=5.0, sbp=130, diabetes=False, smoker=False)
    r = cardiovascular.ten_year_risk(**base)
    assert 0 < r < 1
    for change in (dict(age=65), dict(chol=7.0), dict(sbp=160), dict(diabetes=True), dict(smoker=True)):
        assert cardiovascular.ten_year_risk(**{**base, **change}) > r, change
    chd = cardiovascular.MODEL[("male", "chd")].risk(55, 5.0, 130, False, False)
    stroke = cardiovascular.MODEL[("male", "stroke")].risk(55, 5.0, 130, False, False)
    # without a region's recalibration the figure is the ERFC model's own, CHD and stroke combined
    assert cardiovascular.ten_year_risk(**base, region="none") == pytest.approx(1 - (1 - chd) * (1 - stroke))
    # at the centring values the risk is the baseline's
    assert cardiovascular.MODEL[("female", "chd")].risk(60, 6.0, 120, False, False) == pytest.approx(1 - 0.9894159)
    assert cardiovascular.band(0.04) == "<5%" and cardiovascular.band(0.25) == "20% to <30%"


def test_findrisc_points_and_ckd_epi_2021():
    assert [diabetes.age_points(a) for a in (30, 45, 55, 64.9, 70)] == [0, 2, 3, 3, 4]
    assert [diabetes.bmi_points(b) for b in (22, 27, 31)] == [0, 1, 3]
    assert diabetes.band(5)[0] == "low" and diabetes.band(13)[0] == "moderate" and diabetes.band(21)[0] == "very high"
    # creatinine at the sex's kappa: the equation reduces to 142 x 0.9938^age (x 1.012 for women)
    assert kidney.egfr(0.9 * 88.42, 50, False) == pytest.approx(142 * 0.9938 ** 50)
    assert kidney.egfr(0.7 * 88.42, 50, True) == pytest.approx(142 * 0.9938 ** 50 * 1.012)
    assert kidney.egfr(200, 60, False) < kidney.egfr(100, 60, False)
    assert kidney.stage(95) == "G1" and kidney.stage(50) == "G3a" and kidney.stage(10) == "G5"
    assert kidney.slope_per_year([(0, 60), (1, 55), (2, 50)]) == pytest.approx(-5)


def test_the_parameters_shape():
    p = to_parameters({"a": 1, "b": [{"reference": "Observation/x"}, {"reference": "Observation/y"}],
                       "c": {"d": "2024-01-02", "e": 2.5, "f": True}, "g": None})
    assert p["parameter"][0] == {"name": "a", "valueInteger": 1}
    assert [x["valueReference"]["reference"] for x in p["parameter"] if x["name"] == "b"] == ["Observation/x",
                                                                                            "Observation/y"]
    assert p["parameter"][-1]["part"] == [{"name": "d", "valueDate": "2024-01-02"}, {"name": "e", "valueDecimal": 2.5},
                                          {"name": "f", "valueBoolean": True}]


# -- through the application -------------------------------------------------------------------------------------
def _twin(client, headers, pid, **params):
    got = client.get(f"/fhir/Patient/{pid}/$twin", params={"asOf": "2024-12-31", **params}, headers=headers)
    assert got.status_code == 200, got.text[:300]
    assert got.json()["resourceType"] == "Parameters"
    return _shape(got.json()["parameter"])


def test_every_figure_names_its_records_and_its_model(loaded):
    client, h, pid = loaded
    twin = _twin(client, h["admin"], pid)
    assert twin["patient"] == {"reference": f"Patient/{pid}"}
    risks = {r["name"]: r for r in _list(twin["risk"])}
    assert set(risks) == {"10-year cardiovascular risk", "type 2 diabetes risk"}
    for risk in risks.values():
        assert risk["source"] and risk["model"]
        assert "value" in risk or "notComputed" in risk
        for item in _list(risk.get("input")):
            if "source" in item:
                ref = item["source"]["reference"]
                assert client.get(f"/fhir/{ref}", headers=h["admin"]).status_code == 200, ref
    cvd = risks["10-year cardiovascular risk"]
    assert "Central Asia" in cvd["recalibration"] or "central-asia" in cvd["recalibration"]
    trend = {t["name"]: t for t in _list(twin["trend"])}
    sbp = trend["systolic blood pressure"]
    assert _list(sbp["points"]) and sbp["latest"] == _list(sbp["points"])[-1]
    dates = [p["date"] for p in _list(sbp["points"])]
    assert dates == sorted(dates)
    items = _list(twin["dueCare"]["items"])
    assert items and all(i["status"] in ("due", "overdue", "up to date") and i["source"] for i in items)
    assert "registries/immunization" in twin["dueCare"]["vaccines"]["source"]


def test_egfr_is_computed_from_the_referenced_creatinine_and_agrees_with_the_generators(loaded, population_dir):
    """Each eGFR point names its creatinine Observation; recomputed from it (CKD-EPI 2021, age on that day) it is
    the same. The generator writes its own CKD-EPI eGFR beside each creatinine, from a separate draw of the
    creatinine (5 % noise), so the two agree on average, not point by point."""
    import orjson
    client, h, pid = loaded
    patient = client.get(f"/fhir/Patient/{pid}", headers=h["admin"]).json()
    birth = dt.date.fromisoformat(patient["birthDate"])
    twin = _twin(client, h["admin"], pid)
    series = _list(twin["kidney"].get("series"))
    assert series, "the rich patient has creatinine results"
    for point in series:
        obs = client.get(f"/fhir/{point['source']['reference']}", headers=h["admin"]).json()
        assert obs["code"]["coding"][0]["code"] == "14682-9"
        assert obs["valueQuantity"]["value"] == point["creatinine"]
        age = (dt.date.fromisoformat(point["date"]) - birth).days / 365.25
        assert point["value"] == pytest.approx(kidney.egfr(point["creatinine"], age, patient["gender"] == "female"),
                                               abs=0.06)
    reported = {}
    for line in (population_dir / "Observation.ndjson").read_bytes().splitlines():
        o = orjson.loads(line)
        if o["subject"]["reference"] == f"Patient/{pid}" and o["code"]["coding"][0]["code"] == "62238-1":
            reported[o["effectiveDateTime"][:10]] = o["valueQuantity"]["value"]
    ratios = [p["value"] / reported[p["date"]] for p in series if p["date"] in reported]
    assert ratios and 0.93 < sum(ratios) / len(ratios) < 1.07, ratios
    assert twin["kidney"]["stage"] in ("G1", "G2", "G3a", "G3b", "G4", "G5")


@pytest.mark.parametrize("role,status", [("citizen", 200), ("own_doctor", 200), ("other_citizen", 404),
                                         ("stranger_doctor", 404), ("analyst", 403)])
def test_the_twin_obeys_the_callers_access(loaded, role, status):
    client, h, pid = loaded
    got = client.get(f"/fhir/Patient/{pid}/$twin", headers=h[role])
    assert got.status_code == status, (role, got.text[:300])


def test_bad_parameters_are_clear_errors(loaded):
    client, h, pid = loaded
    for query in ("asOf=yesterday", "patient=x"):
        got = client.get(f"/fhir/Patient/{pid}/$twin?{query}", headers=h["admin"])
        assert got.status_code == 400 and got.json()["resourceType"] == "OperationOutcome", query
    assert client.get("/fhir/Patient/nobody/$twin", headers=h["admin"]).status_code == 404


def test_a_child_gets_vaccines_from_the_forecaster(loaded, population_dir):
    import orjson
    client, h, _ = loaded
    patients = [orjson.loads(x) for x in (population_dir / "Patient.ndjson").read_bytes().splitlines()]
    child = max(patients, key=lambda p: p["birthDate"])
    assert child["birthDate"] > "2006-12-31", "the test population has a child"
    doses = client.get("/fhir/Immunization", params={"patient": f"Patient/{child['id']}", "_count": "500"},
                       headers=h["admin"]).json().get("total")
    twin = _twin(client, h["admin"], child["id"])
    vaccines = twin["dueCare"]["vaccines"]
    assert "notComputed" not in vaccines and "aze" in vaccines["source"]
    assert len(_list(vaccines.get("doses"))) == doses
    for v in _list(vaccines.get("due")):
        assert v["status"] == "Not Complete" and v["vaccineGroup"]
        assert v["overdue"] == (v.get("pastDue", "9999") < "2024-12-31")
