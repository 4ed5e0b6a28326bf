"""Archiving the oldest part of the audit chain to a file, leaving a checkpoint the rest of the chain hangs from.

A national audit log grows by every access of every citizen's record, so it cannot stay in the database for
ever. `archive` moves the entries recorded before a date into an NDJSON file and records, in the same
transaction that deletes them, a checkpoint (the last archived seq and its hash) in `audit_checkpoint`:

* `AuditLog.verify` then starts from the newest checkpoint instead of the genesis hash, so the entries left
  in the database are still checked link by link, and the first of them must link to the checkpoint;
* `verify_archive(file)` checks an archive on its own (every link and hash, from its first entry's
  `prev_hash`) and, given the store, that its last hash is the checkpoint the database holds;
* the newest entry is never archived, so the next append always finds the head of the chain in the table.

The file is written and synced before anything is deleted: an archive that fails half-way leaves the
database as it was. Entries archived are no longer served by `$access-log`; the retention period (how far back
a citizen can look online) is the operator's choice of `--before`.

On PostgreSQL hardened by `harden_postgres`, only an administrator can archive: the deletion needs the
append-only trigger switched off for its transaction, which only the table's owner or a superuser can do; the
server's own role cannot.
"""
from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .audit import GENESIS, AuditLog, entry_hash, table_exists
from .audit_partitions import drop_archived, is_partitioned

KIND = "healthtwin-audit-archive"
_PAGE = 5000


@dataclass
class ArchiveResult:
    archived: int  # entries moved to the file
    first: int | None
    last: int | None
    path: Path | None


def ensure_checkpoints(store: Any) -> None:
    """The checkpoint table (harden_postgres makes it first on a hardened store, owned by the audit owner)."""
    if table_exists(store, "audit_checkpoint"):
        return
    real = "DOUBLE PRECISION" if store.dialect == "postgres" else "REAL"
    with store.write_cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS audit_checkpoint (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, "
                    f"archived {real} NOT NULL, file TEXT NOT NULL)")


def latest_checkpoint(store: Any) -> tuple[int, str] | None:
    """(seq, hash) of the newest checkpoint, or None if nothing was ever archived."""
    if not table_exists(store, "audit_checkpoint"):
        return None
    rows = store.query("SELECT seq, hash FROM audit_checkpoint ORDER BY seq DESC LIMIT 1", [])
    return (rows[0][0], rows[0][1]) if rows else None


def archive(store: Any, before: float, out: Path) -> ArchiveResult:
    """Moves the entries recorded before `before` (epoch seconds) into the NDJSON file `out`, keeping at
    least the newest entry; refuses if the chain up to there does not verify."""
    log = AuditLog(store)
    log.ensure_schema()
    ensure_checkpoints(store)
    head_seq = log.head()[0]
    rows = store.query("SELECT max(seq) FROM audit_log WHERE recorded < ? AND seq < ?", [before, head_seq])
    cut = rows[0][0] if rows and rows[0][0] is not None else None
    if cut is None:
        return ArchiveResult(0, None, None, None)
    result = log.verify()  # from the last checkpoint to the head: nothing broken is archived as if sound
    if not result.ok and (result.first_bad_seq or 0) <= cut:
        raise ValueError(f"the audit chain is broken at entry {result.first_bad_seq} ({result.reason}); "
                         "nothing was archived")
    start = latest_checkpoint(store)
    prev = start[1] if start else GENESIS
    first = (start[0] + 1) if start else 1
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    count, last_hash = 0, prev
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps({"kind": KIND, "version": 1, "first": first, "last": cut, "prev_hash": prev}) + b"\n")
        seq = first
        while seq <= cut:
            page = store.query("SELECT seq, recorded, event, patient, agent, prev_hash, hash FROM audit_log "
                               "WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?", [seq, cut, _PAGE])
            if not page:
                break
            for s, recorded, event, patient, agent, prev_hash, digest in page:
                fh.write(orjson.dumps({"seq": s, "recorded": recorded,
                                       "event": base64.b64encode(bytes(event)).decode("ascii"),
                                       "patient": patient, "agent": agent, "prev_hash": prev_hash,
                                       "hash": digest}) + b"\n")
                count, last_hash = count + 1, digest
            seq = page[-1][0] + 1
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    try:
        with store.write_cursor() as cur:
            store.lock(cur, "audit-log")  # appends wait: the checkpoint and the deletion are one step
            cur.execute(store.sql("INSERT INTO audit_checkpoint (seq, hash, archived, file) VALUES (?, ?, ?, ?)"),
                        (cut, last_hash, time.time(), out.name))
            hardened = store.dialect == "postgres" and _has_trigger(cur)
            if store.dialect == "postgres" and is_partitioned(store):
                drop_archived(cur, cut)  # whole partitions written to the file: dropped, not deleted row by row
            if hardened:  # owner or superuser only: the server's role gets "must be owner"
                cur.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
            cur.execute(store.sql("DELETE FROM audit_log WHERE seq <= ?"), (cut,))
            if hardened:
                cur.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change")
    except Exception:
        out.unlink(missing_ok=True)  # nothing was archived: no file claims otherwise
        raise
    return ArchiveResult(count, first, cut, out)


def _has_trigger(cur: Any) -> bool:
    cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'audit_log_no_change' AND "
                "tgrelid = to_regclass('audit_log')")
    return cur.fetchone() is not None


def verify_archive(path: Path, store: Any | None = None) -> tuple[bool, str]:
    """(ok, what was found): every link and hash of the file, and with `store`, that its last entry is a
    checkpoint the database holds with the same hash. A line that is not an entry (bad JSON, a missing
    field, a value of another type) is reported where it is, never raised."""
    state = {"expected": None}
    try:
        return _verify_archive(path, store, state)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        where = f"at entry {state['expected']}" if state["expected"] is not None else "in its header"
        return False, f"{path} cannot be read {where} (altered): {type(exc).__name__}: {exc}"


def _verify_archive(path: Path, store: Any | None, state: dict) -> tuple[bool, str]:
    with open(path, "rb") as fh:
        header = orjson.loads(fh.readline() or b"{}")
        if header.get("kind") != KIND:
            return False, f"{path} is not a Health Twin audit archive"
        prev, expected, count = header["prev_hash"], header["first"], 0
        for line in fh:
            state["expected"] = expected
            row = orjson.loads(line)
            if row["seq"] != expected:
                return False, f"entry {expected} is missing from the archive (next is {row['seq']})"
            if row["prev_hash"] != prev:
                return False, f"broken link at entry {row['seq']}"
            body = base64.b64decode(row["event"])
            if entry_hash(prev, row["seq"], row["recorded"], row["patient"], row["agent"], body) != row["hash"]:
                return False, f"entry {row['seq']} does not match its hash (altered)"
            prev, expected, count = row["hash"], expected + 1, count + 1
    if expected - 1 != header["last"]:
        return False, f"the archive ends at entry {expected - 1}, its header says {header['last']}"
    if store is not None:
        rows = store.query("SELECT hash FROM audit_checkpoint WHERE seq = ?", [header["last"]])
        if not rows:
            return False, f"the database holds no checkpoint at entry {header['last']}"
        if rows[0][0] != prev:
            return False, f"the checkpoint at entry {header['last']} has another hash than the archive"
    return True, f"{count} entries ({header['first']}-{header['last']}) intact"
