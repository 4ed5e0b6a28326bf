"""What a store says when its database cannot serve a request: a clear 503 (507 for a full disk), never a 500.

Both dialects translate their drivers' errors into `Unavailable` where they meet them (postgres.py: a lost
connection, no connection within the wait, a transaction cancelled in a deadlock; sqlite.py: a full disk). It
is a FHIRError, so the API answers it with its OperationOutcome and Retry-After like any other refusal.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from ..fhir.outcome import FHIRError

T = TypeVar("T")
RETRY_AFTER = "5"  # seconds a client is asked to wait before trying again


@dataclass
class Unavailable(FHIRError):
    """The database cannot do this now. `lost`: the connection broke under the statement (a restart,
    pg_terminate_backend), so a read may run once more on a fresh connection. `conflict`: the database rolled
    the whole transaction back in a deadlock or serialization failure, so the same work may simply run again."""

    lost: bool = False
    conflict: bool = False


def unavailable(message: str, status: int = 503, lost: bool = False, conflict: bool = False) -> Unavailable:
    return Unavailable(status, message, "transient", headers={"retry-after": RETRY_AFTER}, lost=lost,
                       conflict=conflict)


def read_once_more(read: Callable[[], T], within_transaction: bool = False) -> T:
    """Runs an idempotent read; once more if the connection was lost under it (the pool hands out a fresh one).
    Not inside a write transaction: its connection, and what it did, are gone with it."""
    try:
        return read()
    except Unavailable as exc:
        if not exc.lost or within_transaction:
            raise
    return read()


CONFLICT_ATTEMPTS = 4  # a deadlock that recurs three times running is a design fault, not bad luck: say 503


def again_on_conflict(work: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Runs `work` (one whole transaction, from its first read) again when the database rolled it back in a
    deadlock or serialization failure, as PostgreSQL's manual advises: nothing of it was stored, and its next
    run sees what the winner committed. The waits are short and jittered so the two runs do not meet again."""
    for attempt in range(attempts):
        try:
            return work()
        except Unavailable as exc:
            if not exc.conflict or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")
