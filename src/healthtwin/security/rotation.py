"""Master-key rotation: a new key-encryption key, and every sealed blob re-wrapped under it.

Only the 40-byte wrapped data key of each blob changes (crypto.rewrap); ciphertexts stay as they are, so a
rotation over ten million people touches little data and never holds plaintext. The steps:

1. `healthtwin keys rotate`: the current master.key is kept as master.key.<n>, a new master.key is created,
   and every blob in `resources` and `history` is re-wrapped, in batches, each its own transaction.
2. Restart every server process: until then they seal new blobs under the old master, which the retired file
   still opens.
3. `healthtwin keys retire`: re-wraps whatever is still under a retired master, then deletes the retired
   key files. From then on the old master opens nothing, wherever a copy of it may have leaked.

A store written before encryption at rest existed is sealed once, when it is first opened with keys
(`ensure_sealed`, called by `open_store`): content encrypted, index rows blinded, and on SQLite the file
vacuumed so no clear copy survives in free pages.

A master key given by configuration (HEALTHTWIN_MASTER_KEY) rotates the same way: set the new key there and
the old one in HEALTHTWIN_MASTER_KEY_PREVIOUS, restart, and run `healthtwin keys retire`.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .at_rest import PARTIAL, PROTECTED_TYPES, AtRest
from .crypto import MAGIC, DecryptError
from .keys import _create_exclusive

_BATCH = 1000
log = logging.getLogger("healthtwin.security")


@dataclass
class RewrapReport:
    rewrapped: int = 0
    current: int = 0  # already under the new master
    clear: int = 0  # written before encryption was on; ensure_sealed seals them when such a store is opened


def rotate_master_file(data_dir: str | Path) -> Path:
    """Keeps master.key as master.key.<n> and creates a new one; returns the retired file's path."""
    folder = Path(data_dir) / "keys"
    current = folder / "master.key"
    n = 1 + max([int(p.suffix[1:]) for p in folder.glob("master.key.*") if p.suffix[1:].isdigit()], default=0)
    retired = folder / f"master.key.{n}"
    if not _create_exclusive(retired, current.read_bytes()):
        raise RuntimeError(f"{retired} exists already; refusing to overwrite a retired key")
    fresh = folder / ".master.key.next"
    fresh.unlink(missing_ok=True)
    if not _create_exclusive(fresh, secrets.token_bytes(32)):
        raise RuntimeError(f"cannot create {fresh}")
    fresh.replace(current)  # atomic: a reader sees the old key or the new one, never a partial file
    return retired


def rewrap_store(store: Any, at_rest: AtRest) -> RewrapReport:
    """Re-wraps every sealed blob of the store under `at_rest`'s current master: whole blobs of the protected
    types and the `__sealed` members of partially sealed resources of every other type."""
    report = RewrapReport()
    envelope = at_rest.envelope
    types = sorted(PROTECTED_TYPES)
    marks = ",".join("?" * len(types))
    # Protected types (clear ones counted), and partial seals of any type, recognised by their first bytes.
    which = (f"(type IN ({marks}) OR substr(content, 1, {len(PARTIAL)}) = ?)")
    for table, key_cols in (("resources", ("rid",)), ("history", ("type", "id", "version"))):
        cols = ", ".join(key_cols)
        after: tuple = (0,) if table == "resources" else ("", "", 0)
        while True:
            keyset = ("rid > ?" if table == "resources" else "(type, id, version) > (?, ?, ?)")
            rows = store.query(f"SELECT {cols}, type, content FROM {table} WHERE {which} AND {keyset} "
                               f"ORDER BY {cols} LIMIT {_BATCH}", [*types, PARTIAL, *after])
            if not rows:
                break
            updates = []
            for row in rows:
                blob = bytes(row[-1]) if row[-1] is not None else None
                if blob is None:
                    continue
                sealed = at_rest.envelope_of(blob)
                if sealed is None:
                    report.clear += 1
                elif not envelope.needs_rewrap(sealed):
                    report.current += 1
                else:
                    try:
                        updates.append((at_rest.with_envelope(blob, envelope.rewrap(sealed)), *row[:-2], blob))
                    except DecryptError:
                        raise RuntimeError(f"a blob in {table} is sealed under a master key this folder does "
                                           "not hold; nothing after it was re-wrapped") from None
            if updates:
                # `content = old`: a version written meanwhile by a server is never replaced by this one's.
                where = " AND ".join(f"{c} = ?" for c in key_cols) + " AND content = ?"
                with store.write_cursor() as cur:
                    cur.executemany(store.sql(f"UPDATE {table} SET content = ? WHERE {where}"), updates)
                report.rewrapped += len(updates)
            after = tuple(rows[-1][:-2])
    return report


# v2: identifiers inside references and other resources' person parts are sealed too (partial seals).
SEALED_MARK = "at-rest:identifiers-sealed-v2"


def ensure_sealed(store: Any) -> int:
    """A store written before encryption at rest existed still holds protected resources, and their index
    rows, in clear: seal them once, on the first open with keys (a data migration, like a schema one), and
    record that it is done in `jobs`. Returns how many versions were sealed (0 on every later open)."""
    if store.at_rest is None or store.query("SELECT 1 FROM jobs WHERE id = ?", [SEALED_MARK]):
        return 0
    sealed = seal_clear_rows(store)
    now = time.time()
    with store.write_cursor() as cur:
        cur.execute(store.sql("INSERT INTO jobs (id, kind, status, done, created, updated) VALUES "
                              "(?, 'migration', 'done', ?, ?, ?) ON CONFLICT DO NOTHING"),
                    (SEALED_MARK, sealed, now, now))
    if sealed:
        log.warning("sealed %d versions of protected resources written before encryption at rest", sealed)
        if store.dialect == "sqlite":  # the clear copies must not survive in free pages or the WAL
            with store.cursor() as cur:
                cur.execute("VACUUM")
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            log.warning("run VACUUM FULL on resources, history and idx_* tables: PostgreSQL keeps the clear "
                        "versions as dead rows until then")
    return sealed


def _blind(code: str | None) -> bool:
    """Whether an index code is a blind digest already (written by a server that blinds it), or empty."""
    return not code or (len(code) == 20 and all(ch in "0123456789abcdef" for ch in code))


def seal_clear_rows(store: Any) -> int:
    """Encrypts the clear content of protected resources, and the person-identifying parts of every other
    resource (current and earlier versions), and rewrites the changed current versions' index rows in blinded
    form. Safe to run while servers write: every update is conditional on the row being unchanged."""
    at_rest = store.at_rest
    sealed, after = 0, 0
    # Identifier and contact-point rows of clear types, and references' identifiers, were not blinded before
    # (first, so that the rows the content pass below re-indexes are written blinded once, not twice).
    with store.transaction() as tx:
        tx.flush()
        pids = [p for p, t, c in store.query("SELECT pid, type, code FROM search_params", [])
                if at_rest.sensitive(t, c, "token") and t not in PROTECTED_TYPES]
        for start in range(0, len(pids), 200):
            chunk = pids[start:start + 200]
            marks = ",".join("?" * len(chunk))
            rows = tx.execute(f"SELECT rid, pid, system, code, text FROM idx_token WHERE pid IN ({marks})", chunk)
            if rows:
                tx.execute(f"DELETE FROM idx_token WHERE pid IN ({marks})", chunk)
                store.bulk_insert(tx.cur, "idx_token", ("rid", "pid", "system", "code", "text"),
                                  [(r, p, s, c if _blind(c) else at_rest.token(c), None if c else t)
                                   for r, p, s, c, t in rows])
                sealed += len(rows)
    while True:
        rows = store.query(f"SELECT rid, type, id, content FROM resources WHERE rid > ? AND deleted = 0 "
                           f"ORDER BY rid LIMIT {_BATCH}", [after])
        if not rows:
            break
        with store.transaction() as tx:
            for rid, rtype, rid_text, content in rows:
                blob = bytes(content)
                if blob.startswith((MAGIC, PARTIAL)):
                    continue
                new = at_rest.seal(rtype, rid_text, blob)
                if new == blob:
                    continue
                tx.cur.execute(store.sql("UPDATE resources SET content = ? WHERE rid = ? AND content = ?"),
                               (new, rid, blob))
                if tx.cur.rowcount:
                    tx.reindex(rid, rtype, orjson.loads(blob))
                    sealed += 1
        after = rows[-1][0]
    last: tuple = ("", "", 0)
    while True:
        rows = store.query(f"SELECT type, id, version, content FROM history WHERE "
                           f"(type, id, version) > (?, ?, ?) ORDER BY type, id, version LIMIT {_BATCH}", [*last])
        if not rows:
            break
        updates = []
        for t, i, v, c in rows:
            if c is None or bytes(c).startswith((MAGIC, PARTIAL)):
                continue
            new = at_rest.seal(t, i, bytes(c))
            if new != bytes(c):
                updates.append((new, t, i, v, bytes(c)))
        if updates:
            with store.write_cursor() as cur:
                cur.executemany(store.sql("UPDATE history SET content = ? WHERE type = ? AND id = ? AND version = ? "
                                          "AND content = ?"), updates)
            sealed += len(updates)
        last = tuple(rows[-1][:3])
    return sealed
