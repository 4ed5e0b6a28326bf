"""Due and overdue lists per polyclinic, district and vaccine group (`ImmunizationRecommendation?` searches over
the SearchParameters of due.py) agree with a count made here from the stored recommendations and the generated
patients, and with the analytics indicator `immunization_status` built from the same store."""
from __future__ import annotations

import collections
import datetime as dt
import time

import pytest

from healthtwin.analytics.indicators import compute, indicator_views, load_indicators
from healthtwin.analytics.materialize import Materializer, StoreSource
from healthtwin.analytics.refresh import refresh_all as analytics_refresh
from healthtwin.registries.immunization.due import list_query
from healthtwin.registries.immunization.recommendations import GROUP_SYSTEM
from healthtwin.registries.immunization.refresh import refresh_all

from .imm_world import TODAY, imm_population, imm_world  # noqa: F401  (fixtures)



def _state(entry: dict, on: dt.date) -> str:
    """The state of one vaccine group, from its dates, written out independently of the indicator's SQL."""
    dates = {c["code"]["coding"][0]["code"]: dt.date.fromisoformat(c["value"]) for c in entry.get("dateCriterion", [])}
    if "59778-1" in dates and dates["59778-1"] < on:
        return "overdue"
    if "30980-7" in dates and dates["30980-7"] <= on:
        return "due"
    status = entry["forecastStatus"]["text"]
    return "upcoming" if status == "Not Complete" else status.lower().replace(" ", "_")


@pytest.fixture(scope="module")
def registry(imm_world, tmp_path_factory):
    """The world after the batch refresh: (world, every stored recommendation, the patients by id)."""
    deadline = time.monotonic() + 60
    while imm_world.services.jobs.pending():  # the SearchParameters' reindex, queued at start
        assert time.monotonic() < deadline, "the reindex of the due lists' parameters did not finish"
        time.sleep(0.2)
    refresh_all(imm_world.database, imm_world.data_dir, TODAY, workers=2)
    got = imm_world.client.get("/fhir/ImmunizationRecommendation?_count=1000", headers=imm_world.headers["admin"])
    recs = [e["resource"] for e in got.json()["entry"]]
    assert len(recs) > 20 and "next" not in {link["relation"] for link in got.json()["link"]}
    return imm_world, recs, {p["id"]: p for p in imm_world.patients}


def _count(world, params: list[tuple[str, str]]) -> int:
    got = world.client.get("/fhir/ImmunizationRecommendation", params=params + [("_summary", "count")],
                           headers=world.headers["admin"])
    assert got.status_code == 200, got.text
    return got.json()["total"]


def _expected(recs, patients, key) -> collections.Counter:
    """(key of the patient, vaccine group, state) -> children."""
    out: collections.Counter = collections.Counter()
    for rec in recs:
        patient = patients[rec["patient"]["reference"][8:]]
        for entry in rec["recommendation"]:
            out[(key(patient), entry["vaccineCode"][0]["text"], _state(entry, TODAY))] += 1
    return out


def _home(p: dict) -> dict:
    return next((a for a in p.get("address", []) if a.get("use") == "home"), {})


def test_the_lists_match_the_recommendations_per_polyclinic_and_district(registry):
    world, recs, patients = registry
    groups = sorted({e["vaccineCode"][0]["text"] for r in recs for e in r["recommendation"]})
    assert {"MMR", "DTP", "HepB"} <= set(groups)
    national = _expected(recs, patients, lambda p: "all")
    assert national and any(k[2] == "overdue" for k in national) and any(k[2] == "complete" for k in national)
    for group in groups:
        overdue = national[("all", group, "overdue")]
        assert _count(world, list_query("overdue", TODAY, group)) == overdue, group
        assert _count(world, list_query("due", TODAY, group)) == overdue + national[("all", group, "due")], group
    by_org = _expected(recs, patients, lambda p: p["managingOrganization"]["reference"])
    orgs = collections.Counter(patients[r["patient"]["reference"][8:]]["managingOrganization"]["reference"]
                               for r in recs)
    by_district = _expected(recs, patients, lambda p: _home(p).get("district"))
    districts = collections.Counter(_home(patients[r["patient"]["reference"][8:]]).get("district") for r in recs)
    for org, _ in orgs.most_common(3):
        for group in groups:
            got = _count(world, list_query("overdue", TODAY, group, organization=org))
            assert got == by_org[(org, group, "overdue")], (org, group)
    for district, _ in districts.most_common(4):
        for group in groups:
            got = _count(world, list_query("due", TODAY, group, district=district))
            assert got == by_district[(district, group, "overdue")] + by_district[(district, group, "due")], \
                (district, group)
    some = next(k for k, v in by_org.items() if k[2] == "overdue" and v)
    gp = next(p["generalPractitioner"][0]["reference"] for p in patients.values()
              if p.get("managingOrganization", {}).get("reference") == some[0])
    assert _count(world, list_query("overdue", TODAY, some[1], practitioner=gp)) <= by_org[some]


def test_the_overdue_list_is_correlated_within_one_vaccine_group(registry):
    """A child overdue for one group and not for another is on the first group's list only."""
    world, recs, _ = registry
    for rec in recs:
        states = {e["vaccineCode"][0]["text"]: _state(e, TODAY) for e in rec["recommendation"]}
        late = [g for g, s in states.items() if s == "overdue"]
        fine = [g for g, s in states.items() if s in ("complete", "upcoming")]
        if late and fine:
            pid = rec["patient"]["reference"]
            for group, on_list in ((late[0], 1), (fine[0], 0)):
                params = list_query("overdue", TODAY, group) + [("patient", pid)]
                assert _count(world, params) == on_list, (pid, group)
            return
    pytest.fail("no child is overdue for one group and up to date for another")


def test_the_indicator_agrees_with_the_lists(registry, tmp_path):
    world, recs, patients = registry
    mat = Materializer(StoreSource(world.store), tmp_path / "analytics", indicator_views(), parquet=False)
    try:
        report = analytics_refresh(mat)
        assert not report.failed, report
        ind = load_indicators()["immunization_status"]
        res = compute(mat.con, ind, {"by": "district,vaccine_group,state"}, threshold=1)
        got = {(f["district"], f["vaccine_group"], f["state"]): f["numerator"] for f in res["figures"]
               if f["numerator"]}
    finally:
        mat.close()
    expected = _expected(recs, patients, lambda p: _home(p).get("district", "unknown"))
    assert got == dict(expected)
    # and the lists give the indicator's overdue figures, district by district, for MMR
    for (district, group, state), n in got.items():
        if group == "MMR" and state == "overdue":
            assert _count(world, list_query("overdue", TODAY, "MMR", district=district)) == n, district


def test_a_bad_list_query_is_a_clear_error(registry):
    world, _, _ = registry
    got = world.client.get("/fhir/ImmunizationRecommendation", params=[("vaccine-type-overdue-date", "MMR")],
                           headers=world.headers["admin"])
    assert got.status_code == 400 and got.json()["resourceType"] == "OperationOutcome"
    got = world.client.get("/fhir/ImmunizationRecommendation", params=[("due-date", "soon")],
                           headers=world.headers["admin"])
    assert got.status_code == 400
    with pytest.raises(ValueError):
        list_query("late", TODAY)
    assert list_query("overdue", TODAY, "MMR")[0] == ("vaccine-type-overdue-date",
                                                      f"{GROUP_SYSTEM}|MMR$lt{TODAY.isoformat()}")
