"""Archiving the oldest audit entries to a file: the chain left in the database hangs from a checkpoint and
still verifies; the file verifies on its own and against the checkpoint; tampering with either is found
(SQLite and PostgreSQL)."""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from healthtwin.security.audit import AuditLog, rest_events
from healthtwin.security.audit_archive import archive, latest_checkpoint, verify_archive

from .test_audit import ctx, execute


def fill(audit, n, start=0):
    for i in range(start, start + n):
        audit.append(rest_events(ctx(), "read", 200, "Observation", f"o{i}", patients=[f"Patient/p{i % 3}"]))


@pytest.fixture
def log(store):
    audit = AuditLog(store)
    audit.ensure_schema()
    fill(audit, 20)
    time.sleep(0.01)
    audit.cut = time.time()  # entries 1-20 are before it, 21-30 after
    time.sleep(0.01)
    fill(audit, 10, 20)
    return audit


def test_archive_moves_old_entries_and_the_chain_still_verifies(log, store, tmp_path):
    path = tmp_path / "audit-2025.ndjson"
    result = archive(store, log.cut, path)
    assert (result.archived, result.first, result.last) == (20, 1, 20)
    assert store.query("SELECT min(seq), count(*) FROM audit_log", [])[0] == (21, 10)
    assert latest_checkpoint(store)[0] == 20
    check = log.verify()
    assert check.ok and check.checked == 10
    assert verify_archive(path, store) == (True, "20 entries (1-20) intact")
    fill(log, 5, 30)  # appends go on from the head
    assert log.verify().ok and log.head()[0] == 35
    # a second archive continues from the checkpoint
    second = archive(store, time.time() + 1, tmp_path / "audit-2026.ndjson")
    assert (second.first, second.last) == (21, 34)  # the newest entry always stays in the table
    assert log.verify().ok and verify_archive(tmp_path / "audit-2026.ndjson", store)[0]
    assert archive(store, time.time() + 1, tmp_path / "empty.ndjson").archived == 0


def test_tampering_with_the_archive_is_found(log, store, tmp_path):
    path = tmp_path / "a.ndjson"
    archive(store, log.cut, path)
    lines = path.read_bytes().splitlines()
    row = orjson.loads(lines[5])
    row["agent"] = "someone-else"
    altered = tmp_path / "altered.ndjson"
    altered.write_bytes(b"\n".join(lines[:5] + [orjson.dumps(row)] + lines[6:]) + b"\n")
    ok, why = verify_archive(altered, store)
    assert not ok and "entry 5 does not match its hash" in why
    removed = tmp_path / "removed.ndjson"
    removed.write_bytes(b"\n".join(lines[:5] + lines[6:]) + b"\n")
    ok, why = verify_archive(removed, store)
    assert not ok and "entry 5 is missing" in why
    other = tmp_path / "other.ndjson"
    other.write_bytes(b"\n".join(lines[:-1]) + b"\n")  # shortened: ends before the checkpoint
    assert not verify_archive(other, store)[0]


def test_the_first_entry_left_must_link_to_the_checkpoint(log, store, tmp_path):
    archive(store, log.cut, tmp_path / "a.ndjson")
    execute(store, "DELETE FROM audit_log WHERE seq = 21")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 21 and "missing" in result.reason


def test_a_broken_chain_is_not_archived(log, store, tmp_path):
    execute(store, "UPDATE audit_log SET agent = 'x' WHERE seq = 7")
    with pytest.raises(ValueError, match="broken at entry 7"):
        archive(store, log.cut, tmp_path / "a.ndjson")
    assert store.query("SELECT count(*) FROM audit_log", [])[0][0] == 30
    assert latest_checkpoint(store) is None


def test_archive_and_verify_from_the_command_line(tmp_path):
    from healthtwin.security.storage import open_store
    data = tmp_path / "data"
    store = open_store(None, data)
    audit = AuditLog(store)
    audit.ensure_schema()
    fill(audit, 12)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "healthtwin.cli", "audit", *args, "--data-dir", str(data)],
                              capture_output=True, text=True, timeout=120)

    out = tmp_path / "old.ndjson"
    done = cli("archive", "--before", "2999-01-01", "--out", str(out))
    assert done.returncode == 0 and "entries 1-11" in done.stdout, done.stderr
    assert cli("archive", "--before", "2999-01-01", "--out", str(out)).returncode == 2  # never overwritten
    assert cli("archive", "--before", "soon", "--out", str(tmp_path / "x")).returncode == 2
    checked = cli("verify", "--archive", str(out))
    assert checked.returncode == 0 and "11 entries (1-11) intact" in checked.stdout
    assert cli("verify").returncode == 0
    store.close()
