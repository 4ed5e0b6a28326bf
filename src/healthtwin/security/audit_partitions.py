"""PostgreSQL: the audit log as a table partitioned by sequence number, so archiving drops partitions.

At national volume the log gains tens of millions of entries a day. Archiving them with `DELETE` rewrites
and bloats the table and its indexes; with the log partitioned by ranges of PARTITION_ROWS sequence numbers,
`audit archive` drops every partition it has wholly written to the file (instant, no bloat) and deletes rows
only in the one partition its cut falls into. Partitioning by `seq` (not by date) keeps `seq` the primary key:
no two entries can share one, whatever the partitions.

Partitions are created as the chain reaches them, by `audit_log_extend(first, last, size)`, called by
`AuditLog.append_in` under the chain's advisory lock when a batch goes beyond the partitions this process
knows of. On a hardened store (`harden_postgres`) the function runs as the audit owner (SECURITY DEFINER, with
a fixed search_path), so the server's role, which may run no DDL on the log, still gets its next partition,
and every partition belongs to the owner: the server's role can neither drop nor truncate one.

SQLite stores keep a plain table (archiving deletes rows). A PostgreSQL log made before partitioning stays a
plain table until `healthtwin audit partition` converts it (`convert`): the old table becomes the partition of
the seqs it holds, as it stands, and the chain goes on into new partitions. No entry is copied or rewritten.
"""
from __future__ import annotations

import re
from typing import Any

PARTITION_ROWS = 10_000_000
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

EXTEND_FUNCTION = """CREATE OR REPLACE FUNCTION audit_log_extend(first_seq BIGINT, last_seq BIGINT, size BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $f$
DECLARE k BIGINT;
BEGIN
  FOR k IN ((first_seq - 1) / size)..((last_seq - 1) / size) LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF audit_log FOR VALUES FROM (%s) TO (%s)',
                   'audit_log_p' || k, k * size + 1, (k + 1) * size + 1);
  END LOOP;
  RETURN ((last_seq - 1) / size + 1) * size;
END $f$"""


def create_table(cur: Any, columns: str) -> None:
    """A new, partitioned audit log with its first partition and the function that adds the next ones."""
    cur.execute(f"CREATE TABLE IF NOT EXISTS audit_log ({columns}) PARTITION BY RANGE (seq)")
    cur.execute(EXTEND_FUNCTION)
    cur.execute("SELECT audit_log_extend(1, 1, %s)", (PARTITION_ROWS,))


def is_partitioned(store: Any) -> bool:
    rows = store.query("SELECT relkind FROM pg_class WHERE oid = to_regclass('audit_log')", [])
    return bool(rows) and rows[0][0] == "p"


def extend(cur: Any, first: int, last: int) -> int:
    """Makes sure partitions hold seqs first..last; returns the highest seq the partitions now hold."""
    cur.execute("SELECT audit_log_extend(%s, %s, %s)", (first, last, PARTITION_ROWS))
    return cur.fetchone()[0]


def partitions(cur: Any) -> list[tuple[str, int, int]]:
    """(name, first seq, last seq) of each partition, lowest first."""
    cur.execute("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('audit_log')")
    out = []
    for name, bound in cur.fetchall():
        m = _BOUND.search(bound or "")
        if m:
            out.append((name, int(m.group(1)), int(m.group(2)) - 1))
    return sorted(out, key=lambda p: p[1])


def drop_archived(cur: Any, cut: int) -> list[str]:
    """Drops the partitions whose entries are all at or below `cut` (archived): the owner's or a superuser's
    right only. Returns their names."""
    from psycopg import sql
    dropped = [name for name, _, last in partitions(cur) if last <= cut]
    for name in dropped:
        cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return dropped


def harden(cur: Any, schema: Any, owner: Any, app: Any) -> None:
    """For harden_postgres: every partition to the owner, out of the server role's reach; the extend function
    run as the owner, with a fixed search_path, callable by the server's role."""
    from psycopg import sql
    for name, _, _ in partitions(cur):
        part = sql.Identifier(name)
        cur.execute(sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(schema, part, owner))
        cur.execute(sql.SQL("REVOKE ALL ON {}.{} FROM PUBLIC").format(schema, part))
        cur.execute(sql.SQL("REVOKE ALL ON {}.{} FROM {}").format(schema, part, app))
    fn = sql.SQL("{}.audit_log_extend(BIGINT, BIGINT, BIGINT)").format(schema)
    cur.execute(sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(fn, owner))
    cur.execute(sql.SQL("ALTER FUNCTION {} SECURITY DEFINER SET search_path = {}, pg_temp").format(fn, schema))
    cur.execute(sql.SQL("REVOKE ALL ON FUNCTION {} FROM PUBLIC").format(fn))
    cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(fn, app))


def convert(store: Any, columns: str, indexes: dict[str, str]) -> tuple[int, int] | None:
    """Partitions a log made before partitioning; returns (its highest seq, the seq its partitions now reach),
    or None when it is partitioned already. Under the chain's lock, in one transaction:

    * the plain table is renamed `audit_log_legacy` (its primary key and indexes with it) and attached to a
      new partitioned `audit_log` as the partition of seqs 1..highest (PostgreSQL checks the rows against that
      bound by one read of the table: nothing is copied);
    * if the highest seq falls inside a PARTITION_ROWS range, the rest of that range gets a partition under
      the name `audit_log_extend` would give it, so the function then carries on as for a new log;
    * the indexes are declared on the partitioned table, which adopts the legacy table's matching ones.

    Servers keep their view of the log until they restart: stop them first (an append in between is refused,
    not lost: the request is withheld as unaudited)."""
    from psycopg import sql
    with store.write_cursor() as cur:
        store.lock(cur, "audit-log")
        cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('audit_log')")
        row = cur.fetchone()
        if row is None or row[0] == "p":
            return None
        cur.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
        highest = cur.fetchone()[0]
        cur.execute("ALTER TABLE audit_log RENAME TO audit_log_legacy")
        cur.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'audit_log_legacy'::regclass AND contype = 'p'")
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("ALTER TABLE audit_log_legacy RENAME CONSTRAINT {} TO audit_log_legacy_pkey")
                        .format(sql.Identifier(name)))
        # A hardened log keeps its append-only triggers, renamed: `audit harden`, run again, gives the new table
        # its own, which partitions inherit under the original names.
        cur.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log_legacy'::regclass AND NOT tgisinternal")
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL("ALTER TRIGGER {} ON audit_log_legacy RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(f"{name}_legacy")))
        for name in indexes:
            cur.execute(sql.SQL("ALTER INDEX IF EXISTS {} RENAME TO {}").format(
                sql.Identifier(name), sql.Identifier(f"{name}_legacy")))
        cur.execute(f"CREATE TABLE audit_log ({columns}) PARTITION BY RANGE (seq)")
        cur.execute(EXTEND_FUNCTION)
        if highest == 0:  # an empty log: nothing to keep, a new log's first partition
            cur.execute("DROP TABLE audit_log_legacy")
        else:
            cur.execute(f"ALTER TABLE audit_log ATTACH PARTITION audit_log_legacy FOR VALUES FROM (1) "
                        f"TO ({int(highest) + 1})")
        boundary = -(-highest // PARTITION_ROWS) * PARTITION_ROWS
        if boundary > highest:  # the rest of the range the legacy table ends in
            cur.execute(sql.SQL("CREATE TABLE {} PARTITION OF audit_log FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(f"audit_log_p{(highest - 1) // PARTITION_ROWS}"), sql.Literal(highest + 1),
                sql.Literal(boundary + 1)))
            reach = boundary
        else:
            cur.execute("SELECT audit_log_extend(%s, %s, %s)", (highest + 1, highest + 1, PARTITION_ROWS))
            reach = cur.fetchone()[0]
        for name, cols in indexes.items():
            cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON audit_log ({cols})")
        return highest, reach
