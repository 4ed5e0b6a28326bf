"""The laboratory registry through the real application and the SMART policy (both databases): an order opens
the laboratory's Task, the Task moves only along its state machine, results are interpreted from their
reference ranges, and a critical result leaves a Flag and an unread Communication for the orderer that commit
with it (and roll back with it)."""
from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from healthtwin.registries.laboratory import task_states
from healthtwin.registries.laboratory.interpretation import classify, interpret, is_critical
from healthtwin.security.keys import KeySet
from healthtwin.security.tokens import TokenService

BASE = "http://testserver"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LAB_CATEGORY = [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}]


def _q(v: float, unit: str) -> dict[str, Any]:
    return {"value": v, "unit": unit, "system": UCUM, "code": unit}


def _potassium(value: float, ranges: bool = True, order: str = "sr1") -> dict[str, Any]:
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                     "observation-category", "code": "laboratory"}]}],
                           "code": {"coding": [{"system": LOINC, "code": "2823-3"}], "text": "Potassium"},
                           "subject": {"reference": "Patient/p1"}, "valueQuantity": _q(value, "mmol/L"),
                           "performer": [{"reference": "Organization/org-lab"}],
                           "basedOn": [{"reference": f"ServiceRequest/{order}"}]}
    if ranges:
        obs["referenceRange"] = [{"low": _q(3.5, "mmol/L"), "high": _q(5.1, "mmol/L")}]
    return obs


# -- interpretation, without a server ---------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [(4.2, "N"), (5.5, "H"), (3.1, "L"), (6.9, "HH"), (2.1, "LL")])
def test_a_value_is_judged_against_its_range_and_the_critical_limits(value, expected):
    assert classify(_potassium(value)) == expected


def test_a_critical_range_on_the_result_overrides_the_default_limits_and_other_units_are_not_compared():
    obs = _potassium(5.8)
    obs["referenceRange"].append({"type": {"text": "critical"}, "low": _q(3.0, "mmol/L"), "high": _q(5.6, "mmol/L")})
    assert classify(obs) == "HH"
    other_unit = _potassium(20.0, ranges=False)
    other_unit["valueQuantity"] = _q(20.0, "mg/dL")
    other_unit["referenceRange"] = [{"low": _q(3.5, "mmol/L"), "high": _q(5.1, "mmol/L")}]
    assert classify(other_unit) is None  # neither the range nor the critical limit (mmol/L) applies
    assert classify(_potassium(7.5, ranges=False)) == "HH"  # no range of its own: the default limit still holds


def test_a_panel_is_abnormal_or_critical_from_its_components_and_a_sender_interpretation_is_kept():
    panel = {"resourceType": "Observation", "status": "final", "code": {"text": "electrolytes"},
             "component": [{"code": _potassium(1)["code"], "valueQuantity": _q(6.5, "mmol/L"),
                            "referenceRange": [{"low": _q(3.5, "mmol/L"), "high": _q(5.1, "mmol/L")}]},
                           {"code": {"coding": [{"system": LOINC, "code": "2951-2"}]},
                            "valueQuantity": _q(140, "mmol/L"),
                            "referenceRange": [{"low": _q(135, "mmol/L"), "high": _q(145, "mmol/L")}]}]}
    interpret(panel)
    assert [c["interpretation"][0]["coding"][0]["code"] for c in panel["component"]] == ["HH", "N"]
    assert panel["interpretation"][0]["coding"][0]["code"] == "AA" and is_critical(panel)
    mild = _potassium(5.5)
    mild["component"] = []
    interpret(mild)
    assert mild["interpretation"][0]["coding"][0]["code"] == "H" and not is_critical(mild)
    own = _potassium(6.9)
    own["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                          "v3-ObservationInterpretation", "code": "H"}]}]
    interpret(own)
    assert own["interpretation"][0]["coding"][0]["code"] == "H"


def test_task_moves():
    assert task_states.allowed(None, "requested") and not task_states.allowed(None, "completed")
    assert task_states.allowed("requested", "accepted") and task_states.allowed("accepted", "in-progress")
    assert task_states.allowed("in-progress", "completed") and not task_states.allowed("accepted", "completed")
    assert not task_states.allowed("completed", "in-progress") and task_states.allowed("completed",
                                                                                           "entered-in-error")


# -- the workflow through the application -----------------------------------------------------------------------
TOKENS = {
    "admin": dict(subject="root", kind="person", scopes=["user/*.cruds"], roles=["administrator"]),
    "doctor": dict(subject="dr-a", kind="person", scopes=["user/*.cruds"], roles=["clinician"],
                   organization="Organization/org-a", fhir_user="Practitioner/doc-a"),
    "lab": dict(subject="lab-client", kind="system", client_id="lab-client", roles=["laboratory"],
                scopes=["system/*.rs", "system/Observation.cu", "system/Task.cu", "system/DiagnosticReport.cu"],
                organization="Organization/org-lab"),
    "lab2": dict(subject="lab2-client", kind="system", client_id="lab2-client", roles=["laboratory"],
                 scopes=["system/*.rs", "system/Task.cu"], organization="Organization/org-lab2"),
}


@pytest.fixture
def world(store, tmp_path):
    from healthtwin.composition import AppSettings, build_app
    tokens = TokenService(KeySet.generate(), BASE, BASE + "/fhir")
    app = build_app(store, AppSettings(data_dir=tmp_path / "data", public_url=BASE, rate=None), tokens=tokens)
    headers = {k: {"authorization": f"Bearer {tokens.mint(**v)[0]}"} for k, v in TOKENS.items()}
    base = [{"resourceType": "Organization", "id": o, "name": o} for o in ("org-a", "org-lab", "org-lab2")] + [
        {"resourceType": "Practitioner", "id": "doc-a", "name": [{"family": "Doc"}]},
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
        {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "subject": {"reference": "Patient/p1"},
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "serviceProvider": {"reference": "Organization/org-a"}}]
    with TestClient(app, base_url=BASE) as client:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in base]}
        assert client.post("/fhir", json=bundle, headers=headers["admin"]).status_code == 200
        yield client, headers


def _order(client, headers) -> str:
    order = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "category": LAB_CATEGORY,
             "code": {"coding": [{"system": LOINC, "code": "2823-3"}], "text": "Potassium"},
             "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
             "requester": {"reference": "Practitioner/doc-a"}, "performer": [{"reference": "Organization/org-lab"}]}
    got = client.post("/fhir/ServiceRequest", json=order, headers=headers["doctor"])
    assert got.status_code == 201, got.text
    return got.json()["id"]


def _entries(bundle: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype]


def test_an_order_is_worked_through_its_task_to_a_report_and_a_critical_result_reaches_the_orderer(world):
    client, h = world
    sr = _order(client, h)
    # the order opened the laboratory's Task: its worklist, with the orders included
    worklist = client.get("/fhir/Task", params={"owner": "Organization/org-lab", "status": ",".join(task_states.OPEN),
                                                "_include": "Task:based-on"}, headers=h["lab"]).json()
    (task,) = _entries(worklist, "Task")
    assert task["status"] == "requested" and task["basedOn"] == [{"reference": f"ServiceRequest/{sr}"}]
    assert task["lastModified"] == task["authoredOn"] == task["meta"]["lastUpdated"]  # the write's one time
    assert [o["id"] for o in _entries(worklist, "ServiceRequest")] == [sr]
    # another laboratory sees nothing of it
    assert _entries(client.get("/fhir/Task", headers=h["lab2"]).json(), "Task") == []

    def move(status: str, **extra: Any):
        nonlocal task
        got = client.put(f"/fhir/Task/{task['id']}", json={**task, "status": status, **extra}, headers=h["lab"])
        if got.status_code in (200, 201):
            task = got.json()
        return got

    jump = move("completed")
    assert jump.status_code == 409, jump.text  # requested cannot jump to completed
    assert move("accepted").status_code == 200
    assert move("completed").status_code == 409
    assert move("in-progress").status_code == 200 and task["executionPeriod"]["start"]

    created = client.post("/fhir/Observation", json=_potassium(6.9, order=sr), headers=h["lab"])
    assert created.status_code == 201, created.text
    obs = created.json()
    assert obs["interpretation"][0]["coding"][0]["code"] == "HH"
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Potassium"},
              "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
              "subject": {"reference": "Patient/p1"}, "basedOn": [{"reference": f"ServiceRequest/{sr}"}],
              "performer": [{"reference": "Organization/org-lab"}], "result": [{"reference": f"Observation/{obs['id']}"}]}
    rep = client.post("/fhir/DiagnosticReport", json=report, headers=h["lab"])
    assert rep.status_code == 201, rep.text
    assert move("completed").status_code == 422  # no report in output
    output = [{"type": {"text": "report"}, "valueReference": {"reference": f"DiagnosticReport/{rep.json()['id']}"}}]
    assert move("completed", output=output).status_code == 200 and task["executionPeriod"]["end"]
    assert client.get(f"/fhir/ServiceRequest/{sr}", headers=h["doctor"]).json()["status"] == "completed"
    assert move("in-progress").status_code == 409  # completed is final

    # the orderer's worklist of results and unread critical alerts
    results = client.get("/fhir/ServiceRequest", params=[
        ("requester", "Practitioner/doc-a"), ("status", "completed"), ("_revinclude", "DiagnosticReport:based-on"),
        ("_revinclude", "Observation:based-on")], headers=h["doctor"]).json()
    assert [r["id"] for r in _entries(results, "DiagnosticReport")] == [rep.json()["id"]]
    assert [o["id"] for o in _entries(results, "Observation")] == [obs["id"]]
    unread = {"recipient": "Practitioner/doc-a", "status": "in-progress", "category": "alert"}
    (message,) = _entries(client.get("/fhir/Communication", params=unread, headers=h["doctor"]).json(), "Communication")
    assert {"reference": f"Observation/{obs['id']}"} in message["about"]
    assert "Potassium 6.9" in message["payload"][0]["contentString"]
    (flag,) = _entries(client.get("/fhir/Flag", params={"patient": "Patient/p1"}, headers=h["doctor"]).json(), "Flag")
    assert flag["status"] == "active" and "Critical" in flag["code"]["text"]
    ack = client.put(f"/fhir/Communication/{message['id']}",
                     json={**message, "status": "completed", "received": "2026-01-01T10:00:00Z"}, headers=h["doctor"])
    assert ack.status_code == 200, ack.text
    assert _entries(client.get("/fhir/Communication", params=unread, headers=h["doctor"]).json(), "Communication") == []


def test_a_normal_result_raises_nothing_and_a_critical_one_rolls_back_with_its_transaction(world):
    client, h = world
    sr = _order(client, h)
    assert client.post("/fhir/Observation", json=_potassium(4.4, order=sr), headers=h["lab"]).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _potassium(7.2, order=sr), "request": {"method": "POST", "url": "Observation"}},
        {"resource": {**_potassium(4.0, order=sr), "status": "not-a-status"}, "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", json=bundle, headers=h["lab"]).status_code in (400, 422)
    assert client.get("/fhir/Flag", headers=h["admin"]).json().get("total", 0) == 0
    assert client.get("/fhir/Communication", headers=h["admin"]).json().get("total", 0) == 0
    # a critical value corrected to another critical value alerts once
    first = client.post("/fhir/Observation", json=_potassium(7.2, order=sr), headers=h["lab"]).json()
    again = client.put(f"/fhir/Observation/{first['id']}", json={**first, "status": "corrected",
                                                                  "valueQuantity": _q(7.0, "mmol/L")}, headers=h["lab"])
    assert again.status_code == 200
    assert client.get("/fhir/Communication", headers=h["admin"]).json()["total"] == 1


def test_the_batch_job_raises_the_alerts_a_bulk_load_skipped_once(store, tmp_path):
    """`healthtwin laboratory alerts`: a critical result loaded in bulk (no write rules) gets its Flag and
    Communication; a second run raises nothing more (the Communication's identifier is the result's id)."""
    import orjson as _orjson

    from healthtwin.api.services import Services
    from healthtwin.loading import Loader
    from healthtwin.registries.laboratory.batch import raise_missing
    services = Services.build(store)
    crit, fine = {**_potassium(7.4), "id": "crit"}, {**_potassium(4.1), "id": "fine"}
    for obs in (crit, fine):
        obs.pop("basedOn")  # a result with no order: the Flag still, a Communication without recipient
    lines = [_orjson.dumps(r) for r in ({"resourceType": "Organization", "id": "org-lab", "name": "lab"},
                                        {"resourceType": "Patient", "id": "p1"}, crit, fine)]
    Loader(services).load_lines(lines, "bulk.ndjson")
    assert raise_missing(services) == (2, 1)
    assert raise_missing(services) == (2, 0)
    counts = dict(store.query("SELECT type, COUNT(*) FROM resources WHERE type IN ('Flag', 'Communication') "
                              "GROUP BY type", []))
    assert counts == {"Flag": 1, "Communication": 1}
    (content,) = [r for r in store.fetch_rows([x[0] for x in store.query(
        "SELECT rid FROM resources WHERE type = 'Communication'", [])])]
    assert {"reference": "Observation/crit"} in _orjson.loads(content.content)["about"]
