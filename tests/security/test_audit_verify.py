"""`healthtwin audit verify` on a tampered store: an entry whose column changed type (SQLite keeps whatever an
UPDATE writes) is reported BROKEN at its seq, never a traceback; verifying reads only, so it neither creates a
store nor generates keys."""
from __future__ import annotations

import sqlite3

import pytest

from healthtwin import cli
from healthtwin.security.audit import AuditLog
from healthtwin.security.storage import open_store

EVENT = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
         "agent": [{"who": {"identifier": {"value": "dr-a"}}}], "entity": [
             {"what": {"reference": "Patient/p1"}, "role": {"code": "1"}}]}


@pytest.fixture
def data(tmp_path):
    """A SQLite data folder with five audit entries, whose keys are then taken away (as on an auditor's copy)."""
    folder = tmp_path / "data"
    store = open_store(None, folder)
    log = AuditLog(store)
    log.ensure_schema()
    for _ in range(5):
        log.append([EVENT])
    store.close()
    for key in (folder / "keys").iterdir():
        key.unlink()
    return folder


def _tamper(folder, sql):
    con = sqlite3.connect(folder / "healthtwin.sqlite")
    con.execute(sql)
    con.commit()
    con.close()


def _verify(folder, capsys):
    code = cli.main(["audit", "verify", "--data-dir", str(folder)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out + out.err


def test_an_intact_chain_verifies_without_keys_and_makes_none(data, capsys):
    code, text = _verify(data, capsys)
    assert code == 0 and "audit chain OK: 5 entries" in text
    assert list((data / "keys").iterdir()) == []  # verification generated no key material


@pytest.mark.parametrize("sql,reason", [
    ("UPDATE audit_log SET event = CAST(event AS TEXT) WHERE seq = 3", "event is str"),
    ("UPDATE audit_log SET recorded = 'yesterday' WHERE seq = 3", "recorded is str"),
    ("UPDATE audit_log SET patient = X'00ff' WHERE seq = 3", "patient is bytes"),
    ("UPDATE audit_log SET hash = X'01' WHERE seq = 3", "hash is bytes"),
    ("UPDATE audit_log SET prev_hash = X'00' WHERE seq = 3", "prev_hash is bytes"),
])
def test_a_column_of_another_type_is_broken_at_its_entry(data, capsys, sql, reason):
    _tamper(data, sql)
    code, text = _verify(data, capsys)
    assert code == 1 and "audit chain BROKEN at entry 3" in text and reason in text
    assert list((data / "keys").iterdir()) == []


def test_a_missing_store_is_a_clear_error_and_nothing_is_created(tmp_path, capsys):
    folder = tmp_path / "nowhere"
    code, text = _verify(folder, capsys)
    assert code == 2 and "no store at" in text
    assert not folder.exists()


def test_a_bad_anchor_is_a_clear_error(data, capsys):
    assert cli.main(["audit", "verify", "--data-dir", str(data), "--anchor", "three:abc"]) == 2
    assert "--anchor takes SEQ:HASH" in capsys.readouterr().err


def test_a_tampered_archive_file_is_broken_where_it_is_damaged(tmp_path):
    from healthtwin.security.audit_archive import archive, verify_archive
    store = open_store(None, tmp_path / "data")
    log = AuditLog(store)
    log.ensure_schema()
    for _ in range(4):
        log.append([EVENT])
    out = tmp_path / "old.ndjson"
    archive(store, 4e9, out)
    assert verify_archive(out, store)[0]
    lines = out.read_bytes().splitlines()
    for damage in (b'{"seq": 2, "prev_hash": "x"', b'{"seq": 2}', b'[1, 2]'):
        out.write_bytes(b"\n".join(lines[:2] + [damage] + lines[3:]) + b"\n")
        ok, what = verify_archive(out, store)
        assert not ok and "at entry 2" in what
    out.write_bytes(b"not json\n")
    ok, what = verify_archive(out, store)
    assert not ok and "header" in what
    store.close()


def test_the_access_log_and_the_trail_search_show_an_altered_entry_instead_of_failing(data):
    from healthtwin.security.audit_search import parse_trail_query, search_trail
    from healthtwin.store import connect
    _tamper(data, "UPDATE audit_log SET event = CAST(event AS TEXT) WHERE seq = 3")
    store = connect(None, data)
    try:
        events = AuditLog(store).access_log("Patient/p1")
        assert [e["id"] for e in events] == ["1", "2", "3", "4", "5"]
        assert events[2]["outcome"] == "8" and "cannot be read" in events[2]["outcomeDesc"]
        found, _ = search_trail(store, parse_trail_query([("outcome", "8")]))
        assert [e["id"] for e in found] == ["3"]
    finally:
        store.close()
