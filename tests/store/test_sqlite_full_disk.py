"""SQLite on a full disk: writes refuse with 507 and store nothing, reads go on, the WAL is emptied rather than
kept or grown, and the server writes again by itself once space is freed (no restart).

The disk is a small tmpfs mounted for the test (root only); where mounting is impossible the test is skipped
and says why."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from starlette.testclient import TestClient

from healthtwin.composition import AppSettings, build_app
from healthtwin.request import OpenPolicy
from healthtwin.store import sqlite as sqlite_store
from tests.conftest import make_store

PATIENT = {"resourceType": "Patient", "name": [{"family": "Quliyev", "given": ["A" * 400]}]}


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which only root may mount")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 16384)
                f.flush()
        except OSError:
            pass


def test_full_disk_refuses_writes_with_507_and_recovers_by_itself(small_disk, tmp_path, monkeypatch):
    store = make_store("sqlite", small_disk)  # the database (and with it the audit log) on the small disk
    wal = small_disk / "test.sqlite-wal"
    try:
        with TestClient(build_app(store, AppSettings(data_dir=tmp_path / "data", rate=None),
                                  policy=OpenPolicy())) as client:
            pid = client.post("/fhir/Patient", json=PATIENT).json()["id"]
            _fill(small_disk / "filler")
            statuses = []
            for _ in range(400):  # until a write meets the full disk (what is left in the WAL goes first)
                r = client.post("/fhir/Patient", json=PATIENT)
                statuses.append(r.status_code)
                if r.status_code != 201:
                    break
            assert set(statuses) <= {201, 507} and statuses[-1] == 507, statuses
            assert r.headers.get("retry-after") and "disk is full" in r.json()["issue"][0]["diagnostics"]
            stored = store.count_resources()["Patient"]
            r = client.get(f"/fhir/Patient/{pid}")  # the read itself works; its audit event may not fit
            assert r.status_code in (200, 507), r.text
            if r.status_code == 507:
                assert "disk is full" in r.json()["issue"][0]["diagnostics"]
            assert store.read("Patient", pid) is not None
            assert store.count_resources()["Patient"] == stored  # a refused write stored nothing

            os.remove(small_disk / "filler")  # space freed: no restart, writes come back
            deadline = time.monotonic() + 10
            while client.post("/fhir/Patient", json=PATIENT).status_code != 201:
                assert time.monotonic() < deadline, "writes did not resume after space was freed"
                time.sleep(0.2)
            assert client.get(f"/fhir/Patient/{pid}").status_code == 200
            for _ in range(10):  # at a pace the checkpoints keep up with on a 4 MB disk
                assert client.post("/fhir/Patient", json=PATIENT).status_code == 201
                time.sleep(0.1)
            # Short of space (less free than the WAL cap), the WAL is emptied every round instead of keeping
            # the space it grew into.
            deadline = time.monotonic() + 5
            while wal.exists() and wal.stat().st_size > 0:
                assert time.monotonic() < deadline, f"the WAL kept {wal.stat().st_size} bytes"
                time.sleep(0.2)
    finally:
        store.close()


def test_the_wal_file_is_cut_back_to_its_cap(tmp_path):
    """journal_size_limit is the WAL cap: a WAL that once grew is cut back to it when it starts over."""
    store = make_store("sqlite", tmp_path)
    try:
        limit = store.query("PRAGMA journal_size_limit", [])[0][0]
        assert limit == sqlite_store.WAL_LIMIT_PAGES * 4096
    finally:
        store.close()
