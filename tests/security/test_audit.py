"""The audit chain, attacked: edits, deletions, reordering and re-linking are found and located."""
from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from healthtwin.request import Caller, RequestContext
from healthtwin.security.audit import (GENESIS, AuditError, AuditLog, decode_event, entry_hash, harden_postgres,
                                      rest_events)


def ctx(subject="dr-bob", roles=("practitioner",), client_id="portal"):
    caller = Caller(subject=subject, kind="person", roles=frozenset(roles), organization="Organization/hus",
                    client_id=client_id)
    return RequestContext(caller=caller, base_url="http://x/fhir", client_address="10.0.0.7")


@pytest.fixture
def log(store):
    audit = AuditLog(store)
    audit.ensure_schema()
    for i in range(1, 9):
        audit.append(rest_events(ctx(), "read", 200, "Observation", f"o{i}", patients=[f"Patient/p{i % 3}"]))
    return audit


def execute(store, sql, params=()):
    with store.write_cursor() as cur:
        cur.execute(store.sql(sql), params)


def test_intact_chain_verifies(log):
    assert log.head()[0] == 8
    result = log.verify()
    assert result.ok and result.checked == 8 and result.first_bad_seq is None


def test_chain_links(log, store):
    rows = store.query("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq", [])
    assert rows[0][1] == GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))


def test_edited_event_is_found(log, store):
    body = bytes(store.query("SELECT event FROM audit_log WHERE seq = 3", [])[0][0])
    event = decode_event(body)
    event["agent"][0]["who"]["identifier"]["value"] = "someone-innocent"
    execute(store, "UPDATE audit_log SET event = ? WHERE seq = 3", (orjson.dumps(event, option=orjson.OPT_SORT_KEYS),))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3 and "altered" in result.reason


def test_whitespace_only_edit_is_found(log, store):
    body = bytes(store.query("SELECT event FROM audit_log WHERE seq = 5", [])[0][0])
    execute(store, "UPDATE audit_log SET event = ? WHERE seq = 5", (body.replace(b",", b", ", 1),))
    assert log.verify().first_bad_seq == 5


@pytest.mark.parametrize("column,value", [("patient", "Patient/other"), ("agent", "nobody"), ("recorded", 1.0)])
def test_edited_columns_are_found(log, store, column, value):
    execute(store, f"UPDATE audit_log SET {column} = ? WHERE seq = 4", (value,))
    assert log.verify().first_bad_seq == 4


def test_deleted_row_is_found(log, store):
    execute(store, "DELETE FROM audit_log WHERE seq = 4")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 4 and "missing" in result.reason


def test_deleted_first_row_is_found(log, store):
    execute(store, "DELETE FROM audit_log WHERE seq = 1")
    assert log.verify().first_bad_seq == 1


def test_deleted_and_renumbered_is_found(log, store):
    """Delete entry 4 and close the gap by renumbering: the links betray it."""
    execute(store, "DELETE FROM audit_log WHERE seq = 4")
    for seq in range(5, 9):
        execute(store, "UPDATE audit_log SET seq = ? WHERE seq = ?", (seq - 1, seq))
    result = log.verify()
    assert result.first_bad_seq == 4 and "link" in result.reason


def test_reordered_rows_are_found(log, store):
    # (through a spare seq inside the log's first PostgreSQL partition: seqs below 1 have no partition)
    execute(store, "UPDATE audit_log SET seq = 999999 WHERE seq = 2")
    execute(store, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    execute(store, "UPDATE audit_log SET seq = 3 WHERE seq = 999999")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 2


def test_changed_hash_is_found(log, store):
    execute(store, "UPDATE audit_log SET hash = ? WHERE seq = 6", ("f" * 64,))
    assert log.verify().first_bad_seq == 6


def test_changed_prev_hash_is_found(log, store):
    execute(store, "UPDATE audit_log SET prev_hash = ? WHERE seq = 7", ("0" * 64,))
    result = log.verify()
    assert result.first_bad_seq == 7 and "link" in result.reason


def test_rewritten_tail_needs_an_anchor(log, store):
    """Deleting the newest entries leaves a valid shorter chain; only an anchored head reveals it."""
    anchor = log.head()
    execute(store, "DELETE FROM audit_log WHERE seq >= 7")
    assert log.verify().ok  # the limitation, stated honestly
    result = log.verify(anchors=[anchor])
    assert not result.ok and result.first_bad_seq == 7


def test_recomputed_chain_caught_by_anchor(log, store):
    """An attacker who edits entry 2 and recomputes every later hash defeats the chain, not the anchor."""
    anchor = log.head()
    rows = store.query("SELECT seq, recorded, event, patient, agent FROM audit_log ORDER BY seq", [])
    prev = GENESIS
    for seq, recorded, event, patient, agent in rows:
        agent = "someone-else" if seq == 2 else agent
        digest = entry_hash(prev, seq, recorded, patient, agent, bytes(event))
        execute(store, "UPDATE audit_log SET agent = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (agent, prev, digest, seq))
        prev = digest
    assert log.verify().ok
    assert log.verify(anchors=[anchor]).first_bad_seq == 8


def test_concurrent_appends_make_one_linear_chain(store):
    audit = AuditLog(store)
    audit.ensure_schema()
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(n):
        for i in range(25):
            last = audit.append(rest_events(ctx(subject=f"u{n}"), "search-type", 200, "Observation",
                                            patients=[f"Patient/{n}-{i}"], query="code=1234"))
            with lock:
                seqs.append(last)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 201))  # each caller learned its own, distinct seq
    result = audit.verify()
    assert result.ok and result.checked == 200


def test_two_logs_on_one_database_share_the_chain(store):
    """Two server processes = two AuditLog objects; the database lock keeps the chain linear."""
    a, b = AuditLog(store), AuditLog(store)
    a.ensure_schema()

    def worker(audit):
        for _ in range(20):
            audit.append(rest_events(ctx(), "read", 200, "Patient", "p1"))

    threads = [threading.Thread(target=worker, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.verify().ok and a.head()[0] == 80


def test_failed_append_raises(store):
    audit = AuditLog(store)  # schema never created: the write must fail loudly, not be dropped
    with pytest.raises(AuditError):
        audit.append(rest_events(ctx(), "read", 200, "Patient", "p1"))
    with pytest.raises(ValueError):
        audit.append([{"resourceType": "Patient"}])


def test_access_log_and_balp_shape(log):
    events = log.access_log("Patient/p1")
    assert [e["id"] for e in events] == ["1", "4", "7"]
    e = events[0]
    assert e["type"]["code"] == "rest" and e["subtype"][0]["code"] == "read" and e["action"] == "R"
    assert e["outcome"] == "0" and e["agent"][0]["requestor"] is True
    assert e["agent"][0]["who"]["identifier"] == {"value": "dr-bob", "system": "Organization/hus"}
    assert e["agent"][0]["network"] == {"address": "10.0.0.7", "type": "2"}
    assert e["agent"][1]["who"]["identifier"]["value"] == "portal"
    assert e["entity"][0] == {"what": {"reference": "Patient/p1"},
                              "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                       "code": "1"},
                              "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}
    assert log.access_log("Patient/nobody") == []
    assert log.access_log("Patient/p1", since=4e9) == []


def test_one_event_per_patient_and_query_entity():
    events = rest_events(ctx(), "search-type", 500, "Observation", patients=["Patient/a", "Patient/b", "Patient/a"],
                         query="subject=Patient/a,Patient/b", purpose="TREAT")
    assert len(events) == 2 and {e["entity"][0]["what"]["reference"] for e in events} == {"Patient/a", "Patient/b"}
    assert events[0]["outcome"] == "8" and events[0]["action"] == "E"
    import base64
    assert base64.b64decode(events[0]["entity"][1]["query"]) == b"subject=Patient/a,Patient/b"
    assert events[0]["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"


def test_stored_events_decode_to_the_events_made(store):
    """REST events are stored as their compact records and read back as the same AuditEvents, whatever fields
    the request had; other events are stored as they are. The compact rows are a fraction of the JSON."""
    audit = AuditLog(store)
    audit.ensure_schema()
    bare = RequestContext(caller=Caller(subject="svc"), base_url="http://x/fhir")
    made = [*rest_events(ctx(), "read", 200, "Observation", "o1", patients=["Patient/p1"]),
            *rest_events(ctx(client_id="dr-bob", roles=()), "search-type", 403, "Observation", query="",
                         patients=["Patient/p1", "Patient/p2"], purpose="BTG", reason="unconscious"),
            *rest_events(bare, "read", 404, "Patient", "p9"),
            *rest_events(bare, "operation", 200, query="$export?_type=Patient", purpose=["ETREAT", "BTG"]),
            *rest_events(bare, "capabilities", 200),
            {"resourceType": "AuditEvent", "type": {"code": "login"}, "recorded": "2026-01-01T00:00:00Z"}]
    expected = [orjson.loads(orjson.dumps(dict(e))) for e in made]  # plain copies, before anything could change them
    audit.append(made)
    rows = store.query("SELECT event FROM audit_log ORDER BY seq", [])
    assert [decode_event(bytes(r[0])) for r in rows] == expected
    assert bytes(rows[0][0])[:1] == b"\x01" and bytes(rows[-1][0])[:1] == b"{"
    assert len(bytes(rows[0][0])) * 3 < len(orjson.dumps(expected[0]))
    assert audit.verify().ok


def test_edited_compact_record_is_found(log, store):
    body = bytes(store.query("SELECT event FROM audit_log WHERE seq = 6", [])[0][0])
    assert b'"dr-bob"' in body
    execute(store, "UPDATE audit_log SET event = ? WHERE seq = 6", (body.replace(b'"dr-bob"', b'"dr-eve"'),))
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6 and "altered" in result.reason


# -- PostgreSQL: the server's own role cannot rewrite history ------------------------------------------------
def server_roles(store) -> tuple[str, str]:
    """(a new login role for the server, a name for the audit owner role): the server's role owns and uses
    everything else in its schema, as in production."""
    suffix = uuid.uuid4().hex[:8]
    app_role, owner_role = f"ht_app_{suffix}", f"ht_audit_owner_{suffix}"
    with store.cursor() as cur:
        cur.execute("SELECT current_schema()")
        schema = cur.fetchone()[0]
        cur.execute(f'CREATE ROLE "{app_role}" LOGIN')
        cur.execute(f'GRANT ALL ON SCHEMA "{schema}" TO "{app_role}"')
        cur.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{app_role}"')
    return app_role, owner_role


def test_postgres_hardening(store):
    if store.dialect != "postgres":
        pytest.skip("PostgreSQL privilege test")
    import psycopg
    from psycopg import errors

    from healthtwin.store.postgres import PostgresStore

    audit = AuditLog(store)
    audit.ensure_schema()
    audit.append(rest_events(ctx(), "read", 200, "Patient", "p1"))
    app_role, owner_role = server_roles(store)
    try:
        harden_postgres(store, app_role, owner_role)
        app_store = PostgresStore(store.dsn + f"&user={app_role}", min_size=1, max_size=4)
        try:
            app_log = AuditLog(app_store)
            app_log.ensure_schema()  # must not need DDL rights once the table exists
            app_log.append(rest_events(ctx(), "read", 200, "Patient", "p2"))  # INSERT still works
            assert app_log.verify().ok and app_log.head()[0] == 2
            for stmt in ("UPDATE audit_log SET agent = 'x' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 1",
                         "TRUNCATE audit_log", "DROP TABLE audit_log", "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                         "DROP TRIGGER audit_log_no_change ON audit_log"):
                with pytest.raises((errors.InsufficientPrivilege, errors.RaiseException)):
                    with app_store.write_cursor() as cur:
                        cur.execute(stmt)
            # Granting itself UPDATE is a no-op for a non-owner (PostgreSQL only warns): UPDATE still fails.
            with app_store.write_cursor() as cur:
                cur.execute("GRANT UPDATE, DELETE ON audit_log TO CURRENT_USER")
            with pytest.raises(errors.InsufficientPrivilege):
                with app_store.write_cursor() as cur:
                    cur.execute("UPDATE audit_log SET agent = 'x' WHERE seq = 1")
            # Nor can it archive (the deletion needs the trigger off), or write a checkpoint of its own.
            from healthtwin.security.audit_archive import archive
            out = Path(tempfile.mkdtemp()) / "a.ndjson"
            with pytest.raises(psycopg.Error):
                archive(app_store, time.time() + 60, out)
            assert not out.exists() and app_log.head()[0] == 2 and app_log.verify().ok
            with pytest.raises(errors.InsufficientPrivilege):
                with app_store.write_cursor() as cur:
                    cur.execute("INSERT INTO audit_checkpoint VALUES (1, 'x', 0, 'forged')")
        finally:
            app_store.close()
        # An administrator can archive: the trigger is off for that transaction only.
        from healthtwin.security.audit_archive import archive, verify_archive
        out = Path(tempfile.mkdtemp()) / "a.ndjson"
        assert archive(store, time.time() + 60, out).archived == 1 and verify_archive(out, store)[0]
        assert audit.verify().ok
        # The trigger (on again after the archive) stops even the administrator's accidental edits.
        for stmt in ("UPDATE audit_log SET agent = 'x' WHERE seq = 2", "DELETE FROM audit_log"):
            with pytest.raises(psycopg.Error, match="append-only"):
                with store.write_cursor() as cur:
                    cur.execute(stmt)
        assert audit.verify().ok and audit.head()[0] == 2
    finally:
        with store.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{app_role}", "{owner_role}" CASCADE')
            cur.execute(f'DROP ROLE IF EXISTS "{app_role}"')
            cur.execute(f'DROP ROLE IF EXISTS "{owner_role}"')


def test_harden_refuses_sqlite_and_superusers(store):
    if store.dialect != "postgres":
        with pytest.raises(ValueError):
            harden_postgres(store, "app")
        return
    with store.cursor() as cur:
        cur.execute("SELECT current_user")
        me = cur.fetchone()[0]
    with pytest.raises(ValueError, match="superuser"):
        harden_postgres(store, me, f"ht_owner_{uuid.uuid4().hex[:8]}")
