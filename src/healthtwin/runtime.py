"""Process-wide tuning for long-running processes (the server, loaders and their workers).

A process that has loaded the R4 definitions holds a few hundred thousand long-lived objects (structure
definitions, compiled extractors, validator tables). CPython's cyclic garbage collector walks all of them on
every full collection, and a bulk load or a busy server allocates fast enough to trigger such collections
often: measured on the generated population, 15% of the CPU time of validating, indexing and writing a
resource went to collections. `gc.freeze()` moves what exists at start into a permanent generation the
collector skips, and a larger first-generation threshold makes young collections rarer. Called only from
entry points: a test run that builds many applications must keep collecting their garbage.
"""
from __future__ import annotations

import gc


def settle_after_start() -> None:
    """Call once the process has loaded what it keeps for its lifetime."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
