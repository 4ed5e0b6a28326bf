"""The live registry: each child's one current ImmunizationRecommendation, kept by the write rule on every
Immunization and Patient write (same transaction, updated in place) and rebuilt for every child by the batch
refresh after a bulk load."""
from __future__ import annotations

import datetime as dt

import pytest

from healthtwin.registries.immunization import rules
from healthtwin.registries.immunization.live import read_cases, recommendations_for
from healthtwin.registries.immunization.recommendations import is_child, is_living, recommendation_id
from healthtwin.registries.immunization.refresh import refresh_all

from .imm_world import TODAY, built_world, imm_population, imm_world  # noqa: F401  (fixtures)



@pytest.fixture
def bulk_loaded(imm_world, tmp_path_factory, imm_population):
    """A world of the module's kind of its own, as the bulk load left it: the module's shared one has been
    refreshed and written to by whichever tests ran before."""
    kind = "sqlite" if imm_world.database.startswith("sqlite") else "postgres"
    with built_world(kind, tmp_path_factory, imm_population) as world:
        yield world


@pytest.fixture
def refreshed(imm_world):
    """The world once the batch refresh has forecast every child (on a store already current it writes
    nothing), so a test that starts from a child's recommendation runs alone and in any order."""
    refresh_all(imm_world.database, imm_world.data_dir, TODAY, workers=1)
    return imm_world


def _recs(world, pid: str, who: str = "admin") -> list[dict]:
    got = world.client.get(f"/fhir/ImmunizationRecommendation?patient=Patient/{pid}", headers=world.headers[who])
    assert got.status_code == 200, got.text
    return [e["resource"] for e in got.json().get("entry", [])]


def _bare(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "meta"}


def _forecast(world, pid: str) -> dict:
    got = world.client.get(f"/fhir/Patient/{pid}/$immds-forecast?assessmentDate={TODAY}",
                           headers=world.headers["admin"])
    assert got.status_code == 200, got.text
    return next(p["resource"] for p in got.json()["parameter"] if p["name"] == "recommendation")


def _dose(pid: str, cvx: str, day: dt.date, iid: str | None = None) -> dict:
    dose = {"resourceType": "Immunization", "status": "completed", "patient": {"reference": f"Patient/{pid}"},
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]},
            "occurrenceDateTime": day.isoformat(), "primarySource": True}
    if iid:
        dose["id"] = iid
    return dose


# A vaccine of each group of the Azerbaijan calendar (the WHO file's preferable one).
GROUP_CVX = {"BCG": "19", "HepB": "08", "DTP": "01", "Hib": "17", "Polio": "10", "MMR": "03", "PCV": "133"}


def _due_cvx(rec: dict) -> str:
    """A vaccine the recommendation says is due by today, so that recording it changes the forecast."""
    for item in rec["recommendation"]:
        earliest = [d["value"] for d in item.get("dateCriterion", []) if d["code"]["coding"][0]["code"] == "30981-5"]
        if earliest and earliest[0] <= TODAY.isoformat():
            return GROUP_CVX[item["vaccineCode"][0]["text"]]
    pytest.fail("the test child has no vaccine due: choose another child")


def test_a_bulk_load_runs_no_rule_and_the_refresh_forecasts_every_child(bulk_loaded):
    world = bulk_loaded
    assert _recs(world, world.child["id"]) == []  # loaded in bulk: nothing derived yet
    totals = refresh_all(world.database, world.data_dir, TODAY, workers=2)
    children = [p for p in world.patients if is_child(p, TODAY)]
    assert totals.children == len(children) > 20
    living = [p for p in children if is_living(p)]
    cases = read_cases(world.services, [p["id"] for p in living], None, rules.load())
    for p in living:
        [want] = recommendations_for(cases[p["id"]], TODAY)
        got = _recs(world, p["id"])
        assert [_bare(r) for r in got] == [_bare(want)], p["id"]
    for p in children:
        if not is_living(p):
            assert _recs(world, p["id"]) == []
    again = refresh_all(world.database, world.data_dir, TODAY, workers=1)
    assert again.children == totals.children and again.written == 0  # nothing changed, nothing rewritten
    # each run left one record in the audit chain: the system as actor, what was refreshed, its counts
    from healthtwin.security.audit import AuditLog, stored_event
    runs = [stored_event(seq, body) for seq, body in world.store.query(
        "SELECT seq, event FROM audit_log WHERE agent = 'system' ORDER BY seq", [])]
    runs = [e for e in runs if e["source"]["observer"]["display"] == "healthtwin immunization refresh"]
    assert len(runs) == 2
    for event, run in zip(runs, (totals, again)):
        details = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
        assert details["children"] == str(run.children) and details["recommendations written"] == str(run.written)
        assert event["action"] == "U" and event["agent"][0]["who"]["identifier"]["value"] == "system"
    assert AuditLog(world.store).verify().ok


def test_recording_a_dose_keeps_exactly_one_current_recommendation(refreshed):
    world, pid = refreshed, refreshed.child["id"]
    [before] = _recs(world, pid)
    made = world.client.post("/fhir/Immunization", json=_dose(pid, _due_cvx(before), TODAY),
                             headers=world.headers["own_doctor"])
    assert made.status_code == 201, made.text
    [after] = _recs(world, pid, "own_doctor")  # the child's doctor sees it
    assert after["id"] == before["id"] == recommendation_id(pid, "aze")
    assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
    assert _bare(after) == _bare(_forecast(world, pid)) != _bare(before)
    gone = world.client.delete(f"/fhir/Immunization/{made.json()['id']}", headers=world.headers["admin"])
    assert gone.status_code in (200, 204), gone.text
    [restored] = _recs(world, pid)
    assert _bare(restored) == _bare(before) and int(restored["meta"]["versionId"]) == int(after["meta"]["versionId"]) + 1


def _second_child(world) -> str:
    """A young child with doses other than `world.child`: tests that record doses each take their own child,
    so that none finds its child's forecast moved by another's doses."""
    young = (p for p in world.patients if p["birthDate"] > "2019" and is_living(p) and p["id"] != world.child["id"])
    return max(young, key=lambda p: p["id"])["id"]


def test_a_transaction_of_doses_forecasts_once_and_a_refused_one_changes_nothing(refreshed):
    world, pid = refreshed, _second_child(refreshed)
    [before] = _recs(world, pid)
    entries = [{"resource": _dose(pid, cvx, TODAY - dt.timedelta(days=1)), "request": {"method": "POST", "url": "Immunization"}}
               for cvx in ("10", "20", "133")]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    got = world.client.post("/fhir", json=bundle, headers=world.headers["admin"])
    assert got.status_code == 200, got.text
    [after] = _recs(world, pid)
    assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1
    assert _bare(after) == _bare(_forecast(world, pid))
    broken = {"resourceType": "Bundle", "type": "transaction", "entry": entries[:1] + [
        {"resource": {"resourceType": "Immunization", "status": "nonsense"}, "request": {"method": "POST", "url": "Immunization"}}]}
    assert world.client.post("/fhir", json=broken, headers=world.headers["admin"]).status_code >= 400
    [still] = _recs(world, pid)
    assert still["meta"]["versionId"] == after["meta"]["versionId"]


def test_a_newborn_is_forecast_at_once_and_leaves_the_registry_at_death(imm_world):
    world = imm_world
    born = {"resourceType": "Patient", "birthDate": TODAY.isoformat(), "gender": "female", "active": True}
    made = world.client.post("/fhir/Patient", json=born, headers=world.headers["admin"])
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    [rec] = _recs(world, pid)
    groups = {r["vaccineCode"][0]["text"]: r["forecastStatus"]["text"] for r in rec["recommendation"]}
    assert groups["HepB"] == "Not Complete"
    patient = made.json()
    patient["telecom"] = [{"system": "phone", "value": "+994 50 000 00 00"}]
    assert world.client.put(f"/fhir/Patient/{pid}", json=patient, headers=world.headers["admin"]).status_code == 200
    [same] = _recs(world, pid)
    assert same["meta"]["versionId"] == rec["meta"]["versionId"]  # a telephone number changes no forecast
    patient["deceasedBoolean"] = True
    assert world.client.put(f"/fhir/Patient/{pid}", json=patient, headers=world.headers["admin"]).status_code == 200
    assert _recs(world, pid) == []
    adult = {"resourceType": "Patient", "birthDate": "1970-01-01", "gender": "male"}
    made = world.client.post("/fhir/Patient", json=adult, headers=world.headers["admin"])
    assert _recs(world, made.json()["id"]) == []  # an adult's starts with a recorded dose


def test_the_write_rule_and_the_operation_assess_on_the_services_clock(imm_world):
    """The live recommendation's date and the operation's default assessment date are the services' clock's
    (Services.today), not the wall clock's: moved a month on, a newborn recorded then is assessed then."""
    world = imm_world
    later = TODAY + dt.timedelta(days=31)
    world.services.today = lambda: later
    try:
        made = world.client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": later.isoformat(),
                                                        "gender": "male"}, headers=world.headers["admin"])
        assert made.status_code == 201, made.text
        pid = made.json()["id"]
        [rec] = _recs(world, pid)
        assert rec["date"][:10] == later.isoformat()
        got = world.client.get(f"/fhir/Patient/{pid}/$immds-forecast", headers=world.headers["admin"])
        assert got.status_code == 200, got.text
        default = next(p["resource"] for p in got.json()["parameter"] if p["name"] == "recommendation")
        assert default["date"][:10] == later.isoformat() and _bare(default) == _bare(rec)
    finally:
        world.services.today = lambda: TODAY


def test_the_refresh_command_refuses_bad_input(imm_world, capsys):
    from healthtwin.cli import main
    assert main(["immunization", "refresh", "--data-dir", str(imm_world.data_dir), "--database",
                 imm_world.database, "--date", "tomorrow"]) == 2
    assert "--date" in capsys.readouterr().err
    assert main(["immunization", "refresh", "--data-dir", str(imm_world.data_dir), "--database",
                 imm_world.database, "--date", TODAY.isoformat(), "--workers", "1"]) == 0
    assert "children re-forecast" in capsys.readouterr().out


def test_two_clinics_recording_doses_of_one_child_at_once_both_count(imm_world):
    """Two transactions each record a dose of the same child and forecast at the same moment: the child's lock
    makes the second forecast wait for the first commit and see both doses (PostgreSQL; SQLite serializes
    writers, so nothing interleaves there)."""
    import threading

    from healthtwin.api import write_rules
    from healthtwin.api.write_rules import WriteEvent
    world = imm_world
    if type(world.store).__name__ != "PostgresStore":
        pytest.skip("SQLite runs one writer at a time: nothing to interleave")
    taken = {world.child["id"], _second_child(world)}
    pid = next(p["id"] for p in world.patients if is_child(p, TODAY) and is_living(p) and p["id"] not in taken)
    before = _recs(world, pid)
    barrier = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def record(cvx: str) -> None:
        try:
            with world.store.transaction() as tx:
                resource = _dose(pid, cvx, TODAY)
                stored = tx.create("Immunization", resource)
                write_rules.react(world.services, WriteEvent(world.services, None, tx, "Immunization", "create",
                                                             resource, None, stored))
                barrier.wait()  # both doses written, neither forecast nor committed yet
        except BaseException as exc:  # noqa: BLE001  reported below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(cvx,)) for cvx in ("08", "10")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    [after] = _recs(world, pid)
    assert _bare(after) == _bare(_forecast(world, pid))  # the stored forecast counts both doses
    assert int(after["meta"]["versionId"]) == (int(before[0]["meta"]["versionId"]) if before else 0) + 2


def test_the_refresh_indexes_a_bulk_loaded_child_for_the_district_lists(imm_world):
    """A Patient stored without the due lists' `address-district` index rows (as `healthtwin load` stores one)
    is found by district after the refresh, which reindexes just those."""
    from healthtwin.registries.immunization.live import unindexed_patients
    world = imm_world
    child = next(p for p in world.patients if is_child(p, TODAY) and is_living(p) and p["address"][0].get("district"))
    code = world.store.pid("Patient", "address-district")
    with world.store.transaction() as tx:
        tx.execute("DELETE FROM idx_string WHERE pid = ? AND rid = (SELECT rid FROM resources WHERE type = 'Patient' "
                   "AND id = ?)", [code, child["id"]])
        assert unindexed_patients(tx, [child["id"]]) == [child["id"]]
    district = child["address"][0]["district"]

    def found() -> bool:
        got = world.client.get("/fhir/Patient", params={"address-district:exact": district, "_id": child["id"]},
                               headers=world.headers["admin"])
        return got.json()["total"] == 1
    assert not found()
    refresh_all(world.database, world.data_dir, TODAY, workers=1)
    assert found()
    with world.store.transaction() as tx:
        assert unindexed_patients(tx, [child["id"]]) == []


def _groups(rec: dict) -> dict[str, str]:
    return {r["vaccineCode"][0]["text"]: r["forecastStatus"]["text"] for r in rec["recommendation"]}


def test_evidence_of_immunity_or_a_condition_reforecasts_the_child(imm_world):
    """An Observation of immunity and a Condition the schedule codes are written like a dose: the child's
    recommendation follows in the same transaction; a vital sign forecasts nothing."""
    world = imm_world
    admin = world.headers["admin"]
    born = world.client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "2024-06-01",
                                                    "gender": "male"}, headers=admin)
    pid = born.json()["id"]
    [rec] = _recs(world, pid)
    assert _groups(rec)["HepB"] == "Not Complete"
    vital = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
             "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
             "valueQuantity": {"value": 9.1, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    assert world.client.post("/fhir/Observation", json=vital, headers=admin).status_code == 201
    [same] = _recs(world, pid)
    assert same["meta"]["versionId"] == rec["meta"]["versionId"]
    immunity = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "https://www.cdc.gov/vaccines/programs/iis/cdsi.html", "code": "1070",
                                     "display": "Serologic evidence of HepB immunity"}]},
                "effectiveDateTime": "2026-01-10"}
    made = world.client.post("/fhir/Observation", json=immunity, headers=admin)
    assert made.status_code == 201, made.text
    [now] = _recs(world, pid)
    assert now["meta"]["versionId"] != rec["meta"]["versionId"]
    assert _groups(now)["HepB"] == "Immune"
    assert _bare(now) == _bare(_forecast_at(world, pid, now["date"]))
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                 "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                "code": "active"}]},
                 "code": {"coding": [{"system": "https://www.cdc.gov/vaccines/programs/iis/cdsi.html", "code": "1022",
                                      "display": "Immunocompromised individual"}]}, "onsetDateTime": "2026-02-01"}
    made = world.client.post("/fhir/Condition", json=condition, headers=admin)
    assert made.status_code == 201, made.text
    [after] = _recs(world, pid)
    assert _bare(after) == _bare(_forecast_at(world, pid, after["date"]))  # the forecast over the condition
    gone = world.client.delete(f"/fhir/Observation/{_immunity_id(world, pid)}", headers=admin)
    assert gone.status_code in (200, 204)
    [last] = _recs(world, pid)
    assert _groups(last)["HepB"] == "Not Complete"  # the evidence deleted: HepB is due again


def _forecast_at(world, pid: str, day: str) -> dict:
    got = world.client.get(f"/fhir/Patient/{pid}/$immds-forecast?assessmentDate={day[:10]}",
                           headers=world.headers["admin"])
    assert got.status_code == 200, got.text
    return next(p["resource"] for p in got.json()["parameter"] if p["name"] == "recommendation")


def _immunity_id(world, pid: str) -> str:
    got = world.client.get(f"/fhir/Observation?subject=Patient/{pid}&code=https://www.cdc.gov/vaccines/programs/iis/cdsi.html|1070",
                           headers=world.headers["admin"])
    return got.json()["entry"][0]["resource"]["id"]
