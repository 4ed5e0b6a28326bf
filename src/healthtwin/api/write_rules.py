"""Rules that packages above api/ attach to writes: how a registry acts when a record changes.

A package's `Contribution.write_rules` (api/plugins.py) lists `WriteRule`s; the application keeps them on
`Services.write_rules`. Every create, update and delete through the FHIR API (alone, in a batch or in a
transaction, and PATCH and `$meta-*`, which end in an update) calls, inside the one store transaction:

* `check(event)` before the version is stored: it may refuse the write with a FHIRError (nothing is stored,
  since the transaction rolls back), complete the resource about to be stored (the prescription's status
  that follows from its dispenses, say), or, on a create, answer with a resource already stored
  (`event.existing`: the patient index's certain match), which is then returned (200) and nothing is written;
* `react(event)` after it is stored: it may write what follows from it in the same transaction (the child's
  ImmunizationRecommendation, the Flag of a critical result), so the record and what follows from it commit
  together or not at all.

A rule writes through `event.tx` directly, as the system: its writes do not run the rules again. Bulk loads
(`healthtwin load`, `$import`) do not run rules; what they would derive is recomputed by each package's own
batch job."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..request import RequestContext
from ..store import Stored, Transaction


@dataclass
class WriteEvent:
    services: Any
    ctx: RequestContext
    tx: Transaction
    rtype: str
    interaction: str  # "create", "update" or "delete"
    resource: dict[str, Any] | None  # the content about to be (or just) stored; None on delete
    previous: Stored | None  # the current version before the write; None on create
    stored: Stored | None = None  # the stored version (set before react)
    existing: Stored | None = None  # set by a check on create: answer with this stored resource, write nothing
    notes: dict[str, Any] = field(default_factory=dict)  # what a rule's check leaves for its react


@dataclass(frozen=True)
class WriteRule:
    name: str
    types: tuple[str, ...]
    check: Callable[[WriteEvent], None] | None = None
    react: Callable[[WriteEvent], None] | None = None


def check(services: Any, event: WriteEvent) -> None:
    for rule in getattr(services, "write_rules", ()):
        if rule.check is not None and event.rtype in rule.types:
            rule.check(event)


def react(services: Any, event: WriteEvent) -> None:
    for rule in getattr(services, "write_rules", ()):
        if rule.react is not None and event.rtype in rule.types:
            rule.react(event)
