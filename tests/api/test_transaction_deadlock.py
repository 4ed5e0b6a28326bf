"""A transaction or batch Bundle that PostgreSQL cancels in a real deadlock runs again and is stored once.

Another connection holds one row and then asks for the row the Bundle's transaction already holds: a ring
that PostgreSQL breaks by cancelling the Bundle's transaction (that side's deadlock check runs first; the
other connection waits 20 s before it would look). Without the second run the client gets a 503.
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
from starlette.testclient import TestClient

from healthtwin.api.interactions import conditional
from healthtwin.composition import AppSettings, build_app
from healthtwin.request import OpenPolicy
from healthtwin.store.postgres import advisory_key
from tests.conftest import make_store


@pytest.fixture
def pg_app(tmp_path):
    store = make_store("postgres", tmp_path)
    with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "data", rate=None), policy=OpenPolicy())) as c:
        yield c, store.dsn
    store.close()


def _put(pid: str, family: str) -> dict:
    return {"resource": {"resourceType": "Patient", "id": pid, "name": [{"family": family}]},
            "request": {"method": "PUT", "url": f"Patient/{pid}"}}


def _deadlocks(conn) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


ROW = "SELECT 1 FROM resources WHERE type = %s AND id = %s FOR UPDATE"
ADVISORY = "SELECT pg_advisory_xact_lock(%s)"


def _ring_with(dsn: str, hold: tuple, then: tuple, ready: threading.Event, report: dict) -> None:
    """Takes the lock `hold`, waits until another backend waits on a lock (the Bundle, on `hold`, after it
    took `then`), then asks for `then` and commits as soon as it has it."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET deadlock_timeout = '20s'")
        conn.execute(*hold)
        ready.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()[0]
            if waiting:
                break
            time.sleep(0.02)
        else:
            report["error"] = "the Bundle's transaction never waited for the held lock"
        started = time.monotonic()
        conn.execute(*then)
        report["waited"] = time.monotonic() - started
        conn.commit()


def _race(client, dsn: str, bundle: dict, hold: tuple, then: tuple) -> tuple[object, dict, int]:
    with psycopg.connect(dsn, autocommit=True) as watch:
        before = _deadlocks(watch)
        ready, report = threading.Event(), {}
        ring = threading.Thread(target=_ring_with, args=(dsn, hold, then, ready, report))
        ring.start()
        assert ready.wait(10)
        answer = client.post("/fhir", json=bundle)
        ring.join(30)
        deadline, seen = time.monotonic() + 10, 0
        while time.monotonic() < deadline and not seen:  # a backend's statistics reach the view within ~1 s
            seen = _deadlocks(watch) - before
            time.sleep(0.2)
    assert "error" not in report, report
    assert seen >= 1  # the ring was real, and PostgreSQL broke it
    assert report["waited"] > 0.5  # the other side waited until the cancelled run let its lock go
    return answer, report, seen


def _stored_once(client, rtype: str, rid: str) -> dict:
    stored = client.get(f"/fhir/{rtype}/{rid}").json()
    assert stored["meta"]["versionId"] == "2"  # the cancelled run left no version behind
    assert client.get(f"/fhir/{rtype}/{rid}/_history").json()["total"] == 2
    return stored


def test_a_transaction_bundle_cancelled_in_a_deadlock_runs_again_and_is_stored_once(pg_app):
    client, dsn = pg_app
    for pid in ("dl-a", "dl-b"):
        assert client.put(f"/fhir/Patient/{pid}", json=_put(pid, "Before")["resource"]).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [_put("dl-a", "After"), _put("dl-b", "After")]}
    # The Bundle takes dl-a, then waits on dl-b, which the other connection holds before it asks for dl-a
    answer, _, _ = _race(client, dsn, bundle, (ROW, ("Patient", "dl-b")), (ROW, ("Patient", "dl-a")))
    assert answer.status_code == 200, answer.text
    assert [e["response"]["status"] for e in answer.json()["entry"]] == ["200 OK", "200 OK"]
    for pid in ("dl-a", "dl-b"):
        assert _stored_once(client, "Patient", pid)["name"][0]["family"] == "After"


def test_a_batch_entry_cancelled_in_a_deadlock_runs_again_from_its_conditional_reference(pg_app):
    client, dsn = pg_app
    fin = "urn:fin|DL0001"
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:fin", "value": "DL0001"}]}
    pid = client.post("/fhir/Patient", json=patient).json()["id"]
    obs = {"resourceType": "Observation", "id": "dl-obs", "status": "final", "code": {"text": "pulse"}}
    assert client.put("/fhir/Observation/dl-obs", json=obs).status_code == 201
    entry = {"resource": {**obs, "subject": {"reference": f"Patient?identifier={fin}"}},
             "request": {"method": "PUT", "url": "Observation/dl-obs"}}
    # The entry's transaction takes the guard of its conditional reference, then waits on the Observation's
    # row, which the other connection holds before it asks for that guard
    digest = advisory_key(conditional.reference_key(f"Patient?identifier={fin}"))
    answer, _, _ = _race(client, dsn, {"resourceType": "Bundle", "type": "batch", "entry": [entry]},
                         (ROW, ("Observation", "dl-obs")), (ADVISORY, (digest,)))
    assert answer.status_code == 200, answer.text
    assert [e["response"]["status"] for e in answer.json()["entry"]] == ["200 OK"], answer.text
    assert _stored_once(client, "Observation", "dl-obs")["subject"]["reference"] == f"Patient/{pid}"
