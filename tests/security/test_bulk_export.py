"""$export (Bulk Data 2.0) through the real application: the job runs as its caller, so an export holds exactly
what that caller's searches would release; jobs belong to their caller; downloads are audited (SQLite and
PostgreSQL)."""
from __future__ import annotations

import time

import orjson
import pytest

from .world import TYPES, VISIBLE

ASYNC = {"prefer": "respond-async"}


def kick_off(c, headers, path="/fhir/$export", status=202, **params):
    r = c.get(path, params=params, headers={**headers, **ASYNC})
    assert r.status_code == status, r.text
    return r


def manifest(c, headers, location, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        r = c.get(location, headers=headers)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202 and "x-progress" in r.headers, r.text
        time.sleep(0.05)
    raise AssertionError("the export did not finish")


def exported(c, headers, path="/fhir/$export", **params) -> dict[str, list[dict]]:
    """{type: resources} of a finished export, files fetched with the same token."""
    done = manifest(c, headers, kick_off(c, headers, path, **params).headers["content-location"])
    assert done["requiresAccessToken"] is True and done["error"] == []
    out: dict[str, list[dict]] = {}
    for o in done["output"]:
        r = c.get(o["url"], headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in r.content.splitlines() if line]
        assert len(lines) == o["count"]
        out.setdefault(o["type"], []).extend(lines)
    return out


def ids(out: dict[str, list[dict]]) -> set[str]:
    return {r["id"] for rows in out.values() for r in rows}


def test_an_administrator_exports_everything(app):
    c, world, _ = app
    out = exported(c, world.headers["administrator"])
    assert ids(out) == set(TYPES)  # what the world wrote, and what the registries derived from it
    assert all(r["resourceType"] == t for t, rows in out.items() for r in rows)
    only = exported(c, world.headers["administrator"], _type="Observation,Coverage")
    assert set(only) == {"Observation", "Coverage"} and ids(only) == {i for i, t in TYPES.items()
                                                                     if t in ("Observation", "Coverage")}


def test_a_clinician_exports_what_their_searches_would_show(app):
    c, world, _ = app
    out = exported(c, world.headers["clinician"], "/fhir/Patient/$export")
    assert ids(out) == VISIBLE["clinician"]  # p1's record, without the labelled observations
    assert "o1psy" not in ids(out) and "p2" not in ids(out)


def test_a_group_export_holds_its_members_records_only(app):
    c, world, _ = app
    admin = world.headers["administrator"]
    group = {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
             "member": [{"entity": {"reference": "Patient/p2"}}]}
    assert c.put("/fhir/Group/g1", json=group, headers=admin).status_code in (200, 201)
    out = exported(c, admin, "/fhir/Group/g1/$export")
    assert ids(out) == {"p2", "e2", "sr2", "o2", "c2", "mr2", "g1"}  # the Group is in its members' compartment
    kick_off(c, admin, "/fhir/Group/nope/$export", status=404)


def test_type_filters_select_within_their_type(app):
    c, world, _ = app
    admin = world.headers["administrator"]
    out = exported(c, admin, _type="Observation,Coverage", _typeFilter="Observation?subject=Patient/p2")
    assert ids(out) == {"o2", "c1", "c2"}  # Coverage, unfiltered, whole
    both = exported(c, admin, _type="Observation",
                    _typeFilter="Observation?subject=Patient/p1,Observation?subject=Patient/p2&_id=o2")
    assert sorted(r["id"] for r in both["Observation"]) == ["o1", "o1psy", "o1v", "o2"]  # OR-ed, each once
    # a filter narrows the caller's own view, never widens it
    mine = exported(c, world.headers["clinician"], "/fhir/Patient/$export", _type="Observation",
                    _typeFilter="Observation?subject=Patient/p1,Observation?subject=Patient/p2")
    assert ids(mine) == {"o1"}


def test_since_limits_the_export_to_later_changes(app):
    c, world, _ = app
    assert exported(c, world.headers["administrator"], _since="2100-01-01T00:00:00Z") == {}


def test_roles_without_patient_level_access_export_the_directory_only(app):
    c, world, _ = app
    for role in ("analyst", "auditor"):
        out = exported(c, world.headers[role])
        assert set(out) == {"Organization", "Practitioner"}, role  # what every authenticated role may read
        kick_off(c, world.headers[role], _type="Observation", status=403)
        kick_off(c, world.headers[role], "/fhir/Patient/$export", _type="Patient", status=403)


def test_jobs_belong_to_their_caller(app):
    c, world, _ = app
    admin, citizen = world.headers["administrator"], world.headers["citizen"]
    location = kick_off(c, admin).headers["content-location"]
    done = manifest(c, admin, location)
    assert c.get(location, headers=citizen).status_code == 404
    assert c.get(done["output"][0]["url"], headers=citizen).status_code == 404
    assert c.delete(location, headers=citizen).status_code == 404
    assert c.delete(location, headers=admin).status_code == 202
    assert c.get(location, headers=admin).status_code == 404
    assert c.get(done["output"][0]["url"], headers=admin).status_code == 404


@pytest.mark.parametrize("params,headers", [
    ({}, {}),  # no Prefer: respond-async
    ({"_outputFormat": "text/csv"}, ASYNC),
    ({"_type": "Nonsense"}, ASYNC),
    ({"_typeFilter": "Observation?colour=blue"}, ASYNC),
    ({"_typeFilter": "Observation?_count=5"}, ASYNC),
    ({"_typeFilter": "nonsense"}, ASYNC),
    ({"_type": "Coverage", "_typeFilter": "Observation?subject=Patient/p1"}, ASYNC),  # a type not exported
    ({"patient": "Patient/p1"}, ASYNC),
    ({"_since": "yesterday"}, ASYNC),
    ({"colour": "blue"}, ASYNC),
])
def test_bad_kick_offs_are_a_clear_400(app, params, headers):
    c, world, _ = app
    r = c.get("/fhir/$export", params=params, headers={**world.headers["administrator"], **headers})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text


def test_a_download_is_in_each_exported_patients_access_log(app):
    c, world, _ = app
    exported(c, world.headers["clinician"], "/fhir/Patient/$export", _type="Observation")
    log = c.get("/fhir/Patient/p1/$access-log", headers=world.headers["citizen"]).json()
    downloads = [e["resource"] for e in log["entry"]
                 if "downloaded exported records including yours" in e["resource"]["text"]["div"]]
    assert len(downloads) == 1
    assert next(a for a in downloads[0]["agent"] if a["requestor"])["who"]["identifier"]["value"] == "dr-a"


DIRECTORY = {i for i, t in TYPES.items() if t in ("Organization", "Practitioner")}


@pytest.mark.parametrize("role", sorted(VISIBLE))
def test_every_roles_export_matches_what_it_may_see(app, role):
    """The authorization matrix, for $export: each role's system-level export holds exactly the patient-level
    resources it may see (world.VISIBLE), beside the directory every authenticated role reads."""
    c, world, _ = app
    out = exported(c, world.headers[role])
    assert ids(out) - DIRECTORY == VISIBLE[role]


def test_the_capability_statement_declares_bulk_data(app):
    c, _, _ = app
    cap = c.get("/fhir/metadata").json()
    assert cap["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    assert "export" in {o["name"] for o in cap["rest"][0]["operation"]}
    group = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Group")
    assert "export" in {o["name"] for o in group["operation"]}


def test_a_cancelled_job_stops_whichever_process_runs_it(app, tmp_path):
    """The job reads its own row between pages, so a DELETE answered by another server process stops it: here
    the row says cancelled before the job's first page, and the job writes nothing."""
    from healthtwin.request import RequestContext
    from healthtwin.api.operations import bulk_export
    c, world, store = app
    services = c.app.state.services
    caller = world.tokens.caller(world.headers["administrator"]["authorization"].split()[1])
    ctx = RequestContext(caller=caller, base_url="http://testserver/fhir")
    with store.transaction() as tx:
        tx.execute("INSERT INTO jobs (id, kind, status, done, detail, created, updated) "
                   "VALUES ('j1', 'export', 'cancelled', 0, ?, 0, 0)", (orjson.dumps({"owner": "x"}),))
    folder = tmp_path / "j1"
    folder.mkdir()
    bulk_export._run(services, ctx, "j1", {"types": ["Observation"], "since": None, "filters": {}}, "system", None,
                     folder)
    assert list(folder.iterdir()) == []
    assert store.query("SELECT status FROM jobs WHERE id = 'j1'", []) == [("cancelled",)]
