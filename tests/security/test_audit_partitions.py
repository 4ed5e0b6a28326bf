"""PostgreSQL: the audit log partitioned by sequence number. Partitions appear as the chain reaches them (also
for a hardened server's role, which may run no DDL), archiving drops the partitions it wrote to its file, and
the server's role can touch none of them."""
from __future__ import annotations

import time

import pytest

from healthtwin.security import audit_partitions
from healthtwin.security.audit import AuditLog, harden_postgres, rest_events
from healthtwin.security.audit_archive import archive, verify_archive
from tests.conftest import make_store

from .test_audit import ctx, server_roles


@pytest.fixture
def pg(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_partitions, "PARTITION_ROWS", 5)
    store = make_store("postgres", tmp_path)
    log = AuditLog(store)
    log.ensure_schema()
    yield store, log
    store.close()


def append(log: AuditLog, n: int, batch: int = 1) -> None:
    for start in range(0, n, batch):
        log.append([e for i in range(start, min(n, start + batch))
                    for e in rest_events(ctx(), "read", 200, "Observation", f"o{i}", ["Patient/p1"])])


def parts(store) -> list[tuple[str, int, int]]:
    with store.cursor() as cur:
        return audit_partitions.partitions(cur)


def test_partitions_appear_as_the_chain_reaches_them(pg):
    store, log = pg
    assert audit_partitions.is_partitioned(store) and parts(store) == [("audit_log_p0", 1, 5)]
    append(log, 3)
    append(log, 9, batch=9)  # one batch across two boundaries
    assert parts(store) == [("audit_log_p0", 1, 5), ("audit_log_p1", 6, 10), ("audit_log_p2", 11, 15)]
    counts = dict(store.query("SELECT tableoid::regclass::text, count(*) FROM audit_log GROUP BY 1", []))
    assert counts == {"audit_log_p0": 5, "audit_log_p1": 5, "audit_log_p2": 2}
    assert log.verify().ok and log.head()[0] == 12


def test_archiving_drops_the_partitions_it_wrote(pg, tmp_path):
    store, log = pg
    append(log, 12, batch=4)
    result = archive(store, time.time() + 60, tmp_path / "a.ndjson")  # everything but the newest entry
    assert (result.archived, result.last) == (11, 11) and verify_archive(tmp_path / "a.ndjson", store)[0]
    assert parts(store) == [("audit_log_p2", 11, 15)]
    assert [r[0] for r in store.query("SELECT seq FROM audit_log ORDER BY seq", [])] == [12]
    append(log, 4)  # the chain goes on from the checkpoint, into a new partition
    assert log.verify().ok and parts(store)[-1] == ("audit_log_p3", 16, 20)


def test_a_hardened_servers_role_extends_but_cannot_touch_partitions(pg, tmp_path):
    from psycopg import errors

    from healthtwin.store.postgres import PostgresStore
    store, log = pg
    append(log, 4)
    app_role, owner_role = server_roles(store)
    harden_postgres(store, app_role, owner_role)
    app_store = PostgresStore(store.dsn + f"&user={app_role}", min_size=1, max_size=2)
    try:
        app_log = AuditLog(app_store)
        app_log.ensure_schema()
        append(app_log, 4)  # crosses into a partition the app's role may not create itself
        assert app_log.verify().ok and parts(store)[-1] == ("audit_log_p1", 6, 10)
        owners = dict(store.query("SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_inherits i JOIN pg_class c "
                                  "ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('audit_log')", []))
        assert set(owners.values()) == {owner_role}
        for stmt in ("DROP TABLE audit_log_p0", "TRUNCATE audit_log_p0", "DELETE FROM audit_log_p0",
                     "UPDATE audit_log_p1 SET agent = 'x'", "ALTER TABLE audit_log DETACH PARTITION audit_log_p0",
                     "CREATE OR REPLACE FUNCTION audit_log_extend(a BIGINT, b BIGINT, c BIGINT) RETURNS BIGINT "
                     "LANGUAGE sql AS 'SELECT 0::bigint'"):
            with pytest.raises((errors.InsufficientPrivilege, errors.RaiseException)):
                with app_store.write_cursor() as cur:
                    cur.execute(stmt)
        assert app_log.verify().ok and app_log.head()[0] == 8
    finally:
        app_store.close()
    result = archive(store, time.time() + 60, tmp_path / "a.ndjson")  # an administrator's job
    assert result.last == 7 and parts(store) == [("audit_log_p1", 6, 10)] and log.verify().ok


@pytest.fixture
def legacy(tmp_path, monkeypatch):
    """A PostgreSQL audit log as stores made before partitioning have it: a plain table, 12 entries."""
    from healthtwin.security.audit import _INDEXES, _columns
    monkeypatch.setattr(audit_partitions, "PARTITION_ROWS", 5)
    store = make_store("postgres", tmp_path)
    with store.write_cursor() as cur:
        cur.execute(f"CREATE TABLE audit_log ({_columns(True)})")
        for name, cols in _INDEXES.items():
            cur.execute(f"CREATE INDEX {name} ON audit_log ({cols})")
    log = AuditLog(store)
    log.ensure_schema()
    append(log, 6, batch=5)
    time.sleep(0.05)
    append(log, 6, batch=5)
    assert not audit_partitions.is_partitioned(store)
    yield store, log
    store.close()


def _between_the_first_six_and_the_rest(store) -> float:
    (t6, t7), = store.query("SELECT max(recorded) FILTER (WHERE seq <= 6), min(recorded) FILTER (WHERE seq > 6) "
                            "FROM audit_log", [])
    assert t6 < t7
    return (t6 + t7) / 2


def test_a_log_made_before_partitioning_is_converted_without_copying(legacy, tmp_path):
    store, log = legacy
    head = log.head()
    oid = store.query("SELECT to_regclass('audit_log')::oid", [])[0][0]
    assert log.partition() == (12, 15)
    assert audit_partitions.is_partitioned(store)
    assert parts(store) == [("audit_log_legacy", 1, 12), ("audit_log_p2", 13, 15)]
    assert store.query("SELECT to_regclass('audit_log_legacy')::oid", [])[0][0] == oid  # the same table, attached
    assert log.head() == head and log.verify().ok
    indexes = {r[0] for r in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_log'", [])}
    assert {"audit_log_patient", "audit_log_agent", "audit_log_recorded"} <= indexes
    fresh = AuditLog(store)  # a process started after the conversion
    append(fresh, 6)  # into the rest of the legacy range, then a new partition
    assert parts(store)[-2:] == [("audit_log_p2", 13, 15), ("audit_log_p3", 16, 20)] and fresh.verify().ok
    assert fresh.partition() is None  # converting again changes nothing
    result = archive(store, time.time() + 60, tmp_path / "a.ndjson")
    assert result.last == 17 and [p[0] for p in parts(store)] == ["audit_log_p3"]  # the legacy table dropped
    assert fresh.verify().ok and verify_archive(tmp_path / "a.ndjson", store)[0]


def test_a_hardened_legacy_log_is_converted_then_hardened_again(legacy, tmp_path):
    from psycopg import errors

    from healthtwin.store.postgres import PostgresStore
    store, log = legacy
    app_role, owner_role = server_roles(store)
    harden_postgres(store, app_role, owner_role)
    assert log.partition() == (12, 15)
    harden_postgres(store, app_role, owner_role)
    app_store = PostgresStore(store.dsn + f"&user={app_role}", min_size=1, max_size=2)
    try:
        app_log = AuditLog(app_store)
        append(app_log, 5)
        assert app_log.verify().ok and app_log.head()[0] == 17
        for stmt in ("DELETE FROM audit_log_legacy", "TRUNCATE audit_log_legacy", "DROP TABLE audit_log_legacy",
                     "UPDATE audit_log SET agent = 'x'"):
            with pytest.raises((errors.InsufficientPrivilege, errors.RaiseException)):
                with app_store.write_cursor() as cur:
                    cur.execute(stmt)
    finally:
        app_store.close()
    triggers = {r[0] for r in store.query("SELECT tgname FROM pg_trigger WHERE tgrelid = "
                                          "'audit_log_legacy'::regclass AND NOT tgisinternal", [])}
    assert triggers == {"audit_log_no_change"}  # the parent's, inherited; the renamed ones are gone
    result = archive(store, _between_the_first_six_and_the_rest(store), tmp_path / "a.ndjson")
    assert result.last == 6 and log.verify().ok  # rows deleted inside the legacy partition, an admin's job
    assert store.query("SELECT min(seq) FROM audit_log_legacy", [])[0][0] == 7


def test_the_partition_command(tmp_path):
    import subprocess
    import sys
    store = make_store("sqlite", tmp_path)
    store.close()
    r = subprocess.run([sys.executable, "-m", "healthtwin.cli", "audit", "partition", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "PostgreSQL" in r.stderr


@pytest.mark.parametrize("entries,expected", [(0, []), (5, [("audit_log_legacy", 1, 5), ("audit_log_p1", 6, 10)])])
def test_converting_an_empty_log_or_one_ending_on_a_boundary(tmp_path, monkeypatch, entries, expected):
    from healthtwin.security.audit import _columns
    monkeypatch.setattr(audit_partitions, "PARTITION_ROWS", 5)
    store = make_store("postgres", tmp_path)
    try:
        with store.write_cursor() as cur:
            cur.execute(f"CREATE TABLE audit_log ({_columns(True)})")
        log = AuditLog(store)
        log.ensure_schema()
        append(log, entries)
        log.partition()
        assert parts(store) == (expected or [("audit_log_p0", 1, 5)])
        append(AuditLog(store), 3)
        assert log.verify().ok and log.head()[0] == entries + 3
    finally:
        store.close()
