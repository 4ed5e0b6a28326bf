"""The store `bench/mpi_match.py` measures `Patient/$match` on, built in worker processes.

Each worker generates one shard of the dirty population (the generator's own `shard=(k, n)`), stamps and seals
every Patient as `Transaction.put_many` does (meta.versionId 1, lastUpdated; the store's `AtRest.seal`), and
computes its candidate-index rows as `mpi.keys.rebuild` does (`keys_of` over `features.of_patient`, none for a
Patient that holds no identity); the main process only inserts the rows, and builds the candidate index's
B-trees once at the end (a CREATE INDEX sorts; inserting 6.6 million random digests into a B-tree does not).
No search index rows are written: `$match` reads only the resources and the candidate index.
`check` then reads a sample back through the store (decrypting) and requires its candidate-index rows to be
exactly what `keys.rebuild` would write for it.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from healthtwin.mpi import features, keys
from healthtwin.mpi.fin import holds_identity
from healthtwin.population.generator import generate_stream
from healthtwin.store.records import instant

END = dt.date(2024, 12, 31)
_AT_REST: Any = None  # the sealer, inherited by the forked workers


def _shard(task: tuple[int, int, int, int, float, int]) -> tuple[list[tuple], list[tuple], list[dict]]:
    patients, seed, k, n, now, hold_back = task
    sealer = SimpleNamespace(at_rest=_AT_REST)  # what keys_of reads from a store: its digests' key
    rows, key_rows, probes = [], [], []
    for _t, p in generate_stream(patients, seed, shard=(k, n), end_date=END, events=set(), dirty=True,
                                 patients_only=True):
        p.pop("generalPractitioner", None)
        p.pop("managingOrganization", None)
        if p["id"].startswith("dup-") and len(probes) < hold_back:
            probes.append(p)  # its citizen is stored; the duplicate itself is not
            continue
        p["meta"] = {"versionId": "1", "lastUpdated": instant(now)}
        rows.append((p["id"], _AT_REST.seal("Patient", p["id"], orjson.dumps(p))))
        if holds_identity(p):
            key_rows += [(d, p["id"]) for d in keys.keys_of(sealer, features.of_patient(p))]
    return rows, key_rows, probes


def build(store, at_rest, patients: int, seed: int, probes_wanted: int, workers: int,
          shards: int = 64) -> tuple[list[dict], int, int]:
    """Writes the store; returns (held-back duplicates, Patients stored, key rows)."""
    global _AT_REST
    _AT_REST = at_rest
    with store.transaction() as tx:
        tx.execute(keys._DDL[0])  # the table alone: its indexes come after the rows
        for name in ("mpi_keys_key", "mpi_keys_patient"):
            tx.execute(f"DROP INDEX IF EXISTS {name}")
    now = time.time()
    hold_back = -(-probes_wanted // shards)
    tasks = [(patients, seed, k, shards, now, hold_back) for k in range(shards)]
    probes: list[dict] = []
    stored = key_count = 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        for rows, key_rows, held in pool.imap_unordered(_shard, tasks):
            with store.transaction() as tx:
                rids = store.reserve_rids(tx.cur, len(rows))
                store.bulk_insert(tx.cur, "resources",
                                  ("rid", "type", "id", "version", "last_updated", "deleted", "content"),
                                  [(rid, "Patient", pid, 1, now, 0, sealed) for rid, (pid, sealed) in zip(rids, rows)])
                store.bulk_insert(tx.cur, keys.TABLE, ("key", "patient"), key_rows)
            stored += len(rows)
            key_count += len(key_rows)
            probes += held
    keys.ensure_schema(store)  # the two B-trees, built once
    return probes[:probes_wanted], stored, key_count


def check(store, sample: int = 300) -> int:
    """A sample of stored Patients, read back (decrypted): their key rows are exactly those rebuild writes."""
    ids = [r[0] for r in store.query("SELECT id FROM resources WHERE type = 'Patient' AND deleted = 0", ())]
    picked = random.Random(7).sample(ids, min(sample, len(ids)))
    for pid in picked:
        resource = orjson.loads(store.read("Patient", pid).content)
        want = sorted(keys.keys_of(store, features.of_patient(resource))) if holds_identity(resource) else []
        have = sorted(r[0] for r in store.query(f"SELECT key FROM {keys.TABLE} WHERE patient = ?", (pid,)))
        if have != want:
            raise AssertionError(f"Patient/{pid}: candidate-index rows differ from keys.rebuild's")
    return len(picked)


def store_path(folder: Path) -> Path:
    return folder / "match.sqlite"
