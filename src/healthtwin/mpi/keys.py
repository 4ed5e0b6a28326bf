"""The candidate index `$match` looks up: one row per (blocking key, Patient), the keys blinded.

A blocking key is a blocking rule's fields joined (model.BLOCKING_RULES: "birth date + surname stem" and the
rest), prefixed with the rule's field names. Stored in clear they would be a second, unencrypted register of
names and birth dates beside the sealed Patients, so each is stored as the store's keyed token digest
(security/at_rest.py, the same as the identifier index's): a match looks up the digests of its own keys, and
the candidates are then read (and decrypted) through the store like any resource.

Kept current by a write rule on every Patient create, update and delete (plugin.py); an inactive or merged
Patient (mpi/fin.py `holds_identity`) has no keys, so it is never a candidate. Bulk loads run no rules, and
a stored Patient has no rows for a rule added since it was written:
`rebuild` (`healthtwin mpi index`) keys every stored Patient afresh.
"""
from __future__ import annotations

from hashlib import blake2b
from typing import Any, Iterable

import orjson

from ..store import Store, Transaction
from . import features, model
from .fin import holds_identity

TABLE = "mpi_keys"
_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT NOT NULL, patient TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_key ON {TABLE} (key, patient)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_patient ON {TABLE} (patient)")
MAX_CANDIDATES = 200  # more than this sharing a key is a block too common to tell anyone apart by


def ensure_schema(store: Store) -> None:
    with store.transaction() as tx:
        tx.lock("mpi:schema")
        for statement in _DDL:
            tx.execute(statement)


def _digest(store: Store, text: str) -> str:
    if store.at_rest is not None:
        return store.at_rest.token("mpi-block:" + text)
    return blake2b(text.encode("utf-8"), digest_size=10).hexdigest()


def keys_of(store: Store, record: dict[str, Any]) -> list[str]:
    out = []
    for cols in model.BLOCKING_RULES:
        values = [record.get(c) for c in cols]
        if all(v is not None for v in values):
            # named by the rule's fields, not its position: adding or dropping a rule leaves the others' rows valid
            out.append(_digest(store, "+".join(cols) + ":" + "|".join(values)))
    return out


def write(tx: Transaction, patient_id: str, resource: dict[str, Any] | None) -> None:
    """The Patient's key rows as its new version has them (none when deleted, inactive or merged)."""
    tx.execute(f"DELETE FROM {TABLE} WHERE patient = ?", (patient_id,))
    if resource is None or not holds_identity(resource):
        return
    digests = keys_of(tx.store, features.of_patient(resource))
    if digests:
        tx.execute(f"INSERT INTO {TABLE} (key, patient) VALUES " + ", ".join("(?, ?)" for _ in digests),
                   [x for d in digests for x in (d, patient_id)])


def candidates(store: Store, record: dict[str, Any], exclude: str | None = None,
               tx: Transaction | None = None) -> list[str]:
    """Ids of the Patients that share a blocking key with `record`, at most MAX_CANDIDATES per key (read
    through `tx` when given: inside a write, its own uncommitted rows count)."""
    found: dict[str, None] = {}
    query = tx.execute if tx is not None else store.query
    for digest in keys_of(store, record):
        rows = query(f"SELECT patient FROM {TABLE} WHERE key = ? LIMIT {MAX_CANDIDATES}", (digest,))
        found.update((r[0], None) for r in rows if r[0] != exclude)
    return list(found)


def rebuild(store: Store, batch: int = 2000) -> int:
    """Keys every current Patient afresh (after a bulk load); returns how many Patients were keyed."""
    ensure_schema(store)
    done, after = 0, 0
    while True:
        rows = store.query("SELECT rid FROM resources WHERE type = 'Patient' AND deleted = 0 AND rid > ? "
                           "ORDER BY rid LIMIT ?", (after, batch))
        if not rows:
            return done
        stored = store.fetch_rows([r[0] for r in rows])
        with store.transaction() as tx:
            tx.execute(f"DELETE FROM {TABLE} WHERE patient IN ({','.join('?' * len(stored))})",
                       [s.id for s in stored])
            values: list[str] = []
            for s in stored:
                resource = orjson.loads(s.content) if s.content else None
                if resource is not None and holds_identity(resource):
                    for d in keys_of(store, features.of_patient(resource)):
                        values += [d, s.id]
            for chunk in _chunks(values, 2 * 400):
                tx.execute(f"INSERT INTO {TABLE} (key, patient) VALUES " + ", ".join("(?, ?)" for _ in chunk[::2]),
                           chunk)
        done += len(stored)
        after = rows[-1][0]


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]
