"""PostgreSQL going away under the server: every pool the store keeps drops its broken connections, a read is
retried once on a fresh one, and while the database cannot be reached requests answer a clear 503."""
from __future__ import annotations

import time

import psycopg
import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.request import OpenPolicy
from tests.conftest import make_store

PATIENT = {"resourceType": "Patient", "name": [{"family": "Quliyev"}]}


@pytest.fixture
def pg(tmp_path):
    store = make_store("postgres", tmp_path)
    yield store
    store.close()


def _database(store) -> str:
    return store.query("SELECT current_database()", [])[0][0]


def _admin(store) -> psycopg.Connection:
    """A connection to the test run's own database that is not the store's (the shared server is never
    restarted: terminating the store's backends is what a restart does to them)."""
    return psycopg.connect(store.dsn.split("?", 1)[0], autocommit=True)


def _terminate(admin: psycopg.Connection, database: str) -> int:
    """Ends every other backend connected to `database` (the test run's own database), as a restart would."""
    rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                         "pid <> pg_backend_pid()", (database,)).fetchall()
    time.sleep(0.2)  # the backends are gone once their FATAL message is sent
    return len(rows)


@pytest.fixture
def served(pg, tmp_path):
    with TestClient(build_app(pg, AppSettings(data_dir=tmp_path / "data", rate=None), policy=OpenPolicy())) as client:
        yield client


def test_reads_and_writes_after_the_backends_were_terminated(pg, served):
    ids = [served.post("/fhir/Patient", json=PATIENT).json()["id"] for _ in range(3)]
    for pid in ids:  # every pool holds several connections now (reads by id run on the event-loop pool)
        assert served.get(f"/fhir/Patient/{pid}").status_code == 200
    assert served.get("/fhir/Patient?family=Quliyev").json()["total"] == 3
    with _admin(pg) as admin:
        assert _terminate(admin, _database(pg)) > 0
        for pid in ids * 6:  # more reads than any pool has connections: each would meet a dead one
            r = served.get(f"/fhir/Patient/{pid}")
            assert r.status_code == 200, r.text
        _terminate(admin, _database(pg))
        for _ in range(6):
            r = served.get("/fhir/Patient?family=Quliyev")
            assert r.status_code == 200 and r.json()["total"] == 3, r.text
        _terminate(admin, _database(pg))
        r = served.post("/fhir/Patient", json=PATIENT)
        assert r.status_code == 201, r.text
        r = served.post("/fhir/Patient", json=PATIENT, headers={"If-None-Exist": "family=Nobody"})
        assert r.status_code == 201, r.text


def test_store_reads_survive_terminated_backends(pg):
    with pg.transaction() as tx:
        stored = tx.create("Patient", dict(PATIENT))
    with _admin(pg) as admin:
        _terminate(admin, _database(pg))
        for _ in range(20):
            assert pg.read("Patient", stored.id).id == stored.id
        _terminate(admin, _database(pg))
        assert pg.count_resources() == {"Patient": 1}


def test_an_unreachable_database_answers_503(pg, served):
    pid = served.post("/fhir/Patient", json=PATIENT).json()["id"]
    database = _database(pg)
    with psycopg.connect(pg.dsn.split("?", 1)[0].rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
        try:
            _terminate(admin, database)
            started = time.monotonic()
            for request in (lambda: served.get(f"/fhir/Patient/{pid}"),
                            lambda: served.get("/fhir/Patient?family=Quliyev"),
                            lambda: served.post("/fhir/Patient", json=PATIENT)):
                r = request()
                assert r.status_code == 503, r.text
                assert r.headers.get("retry-after")
                assert "database" in r.json()["issue"][0]["diagnostics"]
            assert time.monotonic() - started < 30  # said at once, not after every pool's timeout
        finally:
            admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    deadline = time.monotonic() + 10  # back by itself once the database answers again
    while served.get(f"/fhir/Patient/{pid}").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert served.post("/fhir/Patient", json=PATIENT).status_code == 201


def test_a_connection_lost_under_a_read_is_retried(pg, served, monkeypatch):
    """The poll at checkout cannot see a connection that dies under its statement: the read itself is tried
    once more, and the pool replaces its other dead connections meanwhile."""
    from healthtwin.store import postgres
    ids = [served.post("/fhir/Patient", json=PATIENT).json()["id"] for _ in range(3)]
    for pid in ids * 3:
        served.get(f"/fhir/Patient/{pid}")
        served.get("/fhir/Patient?family=Quliyev")
    monkeypatch.setattr(postgres, "_closed_by_server", lambda conn: conn.closed or conn.broken)
    with _admin(pg) as admin:
        _terminate(admin, _database(pg))
        assert pg.read("Patient", ids[0]).id == ids[0]
        _terminate(admin, _database(pg))
        assert served.get(f"/fhir/Patient/{ids[1]}").status_code == 200
        _terminate(admin, _database(pg))
        assert pg.query("SELECT COUNT(*) FROM resources", [])[0][0] == 3
