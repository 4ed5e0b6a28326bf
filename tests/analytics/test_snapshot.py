"""Several server processes share one analytics database: the owner publishes snapshots, the others answer
from them; `healthtwin serve --workers 2` keeps both workers up."""
from __future__ import annotations

import datetime as dt

import time
import urllib.request
from pathlib import Path

from starlette.routing import Mount
from starlette.testclient import TestClient

from healthtwin.analytics.snapshot import SnapshotReader, publish
from healthtwin.analytics.web import Analytics


def test_follower_answers_from_the_owners_snapshot(store, tmp_path) -> None:
    from healthtwin.composition import create_app
    from healthtwin.api.services import Services
    from healthtwin.loading import load
    from healthtwin.population.generator import generate
    generate(tmp_path / "pop", 60, 4, end_date=dt.date(2024, 12, 31))
    services = Services.build(store)
    load(services, [str(tmp_path / "pop")], workers=1)
    folder = tmp_path / "analytics"
    owner = Analytics(services, folder, owner=True)
    follower = Analytics(services, folder, owner=False)
    assert follower.materializer is None
    apps = {}
    for name, analytics in (("owner", owner), ("follower", follower)):
        apps[name] = create_app(store, services=services)
        apps[name].router.routes.append(Mount("/analytics", app=analytics.app))
    params = {"by": "region,sex", "period": "2023"}
    with TestClient(apps["owner"]) as o, TestClient(apps["follower"]) as f:
        r = f.get("/analytics/indicators/population", params=params)
        assert r.status_code == 400 and "not been computed" in r.text  # nothing published yet
        assert o.post("/analytics/refresh").status_code == 200  # refreshes, then publishes
        want = o.get("/analytics/indicators/population", params=params).json()
        assert want["figures"]
        assert f.get("/analytics/indicators/population", params=params).json() == want
        assert f.get("/analytics/status").json()["served_from"] == "snapshot"
        r = f.post("/analytics/refresh")
        assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
        # A change, refreshed by the owner, reaches the follower with the next snapshot.
        with store.transaction() as tx:
            tx.create("Patient", {"resourceType": "Patient", "gender": "female", "birthDate": "1990-01-01",
                                  "address": [{"use": "home", "state": "Naxçıvan", "district": "Ordubad"}]}, "new-1")
        assert o.post("/analytics/refresh").status_code == 200
        after = f.get("/analytics/indicators/population", params=params).json()
        assert after == o.get("/analytics/indicators/population", params=params).json() and after != want
    owner.stop()
    follower.stop()


def test_superseded_snapshots_are_removed_after_the_grace_period(tmp_path, monkeypatch) -> None:
    import duckdb

    from healthtwin.analytics import snapshot
    con = duckdb.connect(str(tmp_path / "a.duckdb"))
    con.execute("CREATE TABLE ind_x_num AS SELECT 1 AS numerator")
    con.execute("CREATE TABLE base_person AS SELECT 'secret' AS id")  # per-person tables are not published
    first = publish(con, tmp_path)
    reader = SnapshotReader(tmp_path)
    assert reader.connection().execute("SELECT numerator FROM ind_x_num").fetchall() == [(1,)]
    assert not reader.connection().execute("SELECT * FROM duckdb_tables() WHERE table_name = 'base_person'").fetchall()
    con.execute("UPDATE ind_x_num SET numerator = 2")
    monkeypatch.setattr(snapshot, "RETAIN", 0.0)
    second = publish(con, tmp_path)
    assert not first.exists() and second.exists()
    assert reader.connection().execute("SELECT numerator FROM ind_x_num").fetchall() == [(2,)]
    reader.close()


def _workers(parent: int) -> list[int]:
    """Live (not zombie) child processes of `parent`, other than multiprocessing's resource tracker."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"resource_tracker" not in cmd:
            out.append(int(stat.parent.name))
    return out


def test_two_workers_stay_up(tmp_path) -> None:
    from ..conftest import serving
    with serving(tmp_path, "--data-dir", str(tmp_path / "data"), "--workers", "2", "--insecure-open",
                 "--rate-limit", "off") as (proc, port):
        time.sleep(3)  # long enough for a worker that cannot start to have died and been replaced
        first = sorted(_workers(proc.pid))
        served = set()
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/analytics/status", timeout=5) as r:
                assert r.status == 200
                served.add(r.read().decode().split('"served_from":"')[1].split('"')[0])
        time.sleep(1)
        assert len(first) == 2 and sorted(_workers(proc.pid)) == first, "a worker died or was replaced"
        assert served <= {"database", "snapshot"} and served
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in text and "Could not set lock" not in text, text[-3000:]
