"""indexer.index_rows packs a bulk write's rows once per distinct row (`packed`): the tables and parameter
tuples are exactly those packed without it, row for row, whatever repeats and whatever cannot be a key."""
from __future__ import annotations

import random
from collections import defaultdict

from healthtwin.store.indexer import index_rows


def _rows(rng: random.Random) -> list[tuple]:
    shared = [("vaccine-type", "token", "https://example.org/g", "MMR", "MMR"),
              ("status", "token", "http://example.org/s", "due", None),
              ("due-date", "date", 1.9e9, 1.9e9 + 86399.999),
              ("patient", "reference", "Patient", "p1", "Patient/p1"),
              ("near", "special", None)]
    rows = rng.sample(shared, rng.randrange(1, len(shared)))
    rows.append(("date", "date", float(rng.randrange(10)), float(rng.randrange(10, 20))))
    if rng.random() < 0.3:
        rows.append(("vaccine-type-due-date", "composite",
                     [("token", "https://example.org/g", "MMR", "MMR"), ("date", 1.9e9, 1.9e9 + 1)]))
    if rng.random() < 0.2:
        rows.append(("odd", "uri", ["a list is no key"]))
    return rows


def test_packing_once_per_distinct_row_gives_the_same_tables():
    rng = random.Random(20261203)
    asked: list[tuple[str, str]] = []
    pids: dict[tuple[str, str], int] = {}

    def pid_of(rtype: str, code: str) -> int:
        asked.append((rtype, code))
        return pids.setdefault((rtype, code), len(pids) + 1)
    resources = [_rows(rng) for _ in range(300)]
    plain: dict[str, list[tuple]] = defaultdict(list)
    remembered: dict[str, list[tuple]] = defaultdict(list)
    packed: dict[tuple, tuple] = {}
    for rid, rows in enumerate(resources):
        index_rows(rid, "ImmunizationRecommendation", rows, pid_of, plain)
    plain_asks = len(asked)
    for rid, rows in enumerate(resources):
        index_rows(rid, "ImmunizationRecommendation", rows, pid_of, remembered, packed)
    assert dict(remembered) == dict(plain)
    assert "idx_composite" in plain and "idx_uri" in plain and not any("near" in str(t) for t in plain)
    assert len(asked) - plain_asks < plain_asks / 2  # the repeated rows were packed once, not per resource
