"""The states of a laboratory Task (the fulfilment of an order) and the moves between them.

    requested ─► received ─► accepted ─► in-progress ─► completed
        │            │           │            │  ▲
        └────────────┴───────────┤            ▼  │
          rejected, cancelled ◄──┘          on-hold ──► cancelled
                                   in-progress ─► failed
    any state ─► entered-in-error

A Task is created `requested` (or `draft`, which may only become `requested` or be cancelled); staying in
the same state (adding a note, a business status) is always allowed; completed, cancelled, failed, rejected
and entered-in-error are final."""
from __future__ import annotations

MOVES: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"in-progress", "cancelled"}),
    "in-progress": frozenset({"completed", "failed", "on-hold"}),
    "on-hold": frozenset({"in-progress", "cancelled"}),
    "ready": frozenset({"in-progress", "cancelled"}),
}
INITIAL = frozenset({"draft", "requested"})
FINAL = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})
OPEN = ("requested", "received", "accepted", "in-progress", "on-hold")  # the laboratory's worklist


def allowed(old: str | None, new: str) -> bool:
    if old is None:
        return new in INITIAL
    if new == old or new == "entered-in-error":
        return True
    return new in MOVES.get(old, frozenset())


def next_states(old: str) -> list[str]:
    return sorted(MOVES.get(old, frozenset()) | {"entered-in-error"}) if old not in FINAL else (
        ["entered-in-error"] if old != "entered-in-error" else [])
