"""A FIN (the national personal identification number) belongs to one active Patient.

Checked inside the write's store transaction (api/write_rules.py) on every create and update of a Patient that
is active and carries a FIN: the FIN's digest is locked for the rest of the transaction (a PostgreSQL advisory
lock; SQLite writes one transaction at a time anyway), then the identifier index is asked who else holds it.
Two concurrent creates of the same FIN therefore run one after the other, and the second sees the first's index
rows (they are written before commit, and READ COMMITTED reads what committed before each statement).

Index rows hold the FIN blinded (security/at_rest.py: a keyed digest); the row the check looks for is made by
the store's own `index_values`, so the same code works on a store in clear.

What happens to a second holder is configuration (`DuplicatePolicy`):
* `refuse` (default): 409 with an OperationOutcome naming the holder (when the caller may see it);
* `existing`: a create answers with the holder (200) and stores nothing (an update, and a create with the
  client's id (PUT), which cannot be answered with another id, are still refused);
* `link`: the new record is stored with `Patient.link` seealso to the holder, for a data steward to resolve.
A Patient that is inactive, or replaced by another (`link` replaced-by: a merged record), holds nothing.
"""
from __future__ import annotations

from typing import Any, Iterable

import orjson

from ..api import guard
from ..api.write_rules import WriteEvent
from ..fhir.outcome import FHIRError
from ..security.access import FIN_SYSTEM
from ..store import Stored, Transaction

POLICIES = ("refuse", "existing", "link")


def fins_of(resource: dict[str, Any]) -> list[str]:
    """The FIN values a Patient carries (an identifier whose period has ended no longer counts)."""
    out = []
    for ident in resource.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == FIN_SYSTEM and isinstance(ident.get("value"), str):
            if not (isinstance(ident.get("period"), dict) and ident["period"].get("end")):
                out.append(ident["value"].strip().upper())
    return [f for f in dict.fromkeys(out) if f]


def holds_identity(resource: dict[str, Any]) -> bool:
    """Whether a Patient counts as a live holder of its identifiers: active, and not merged into another."""
    if resource.get("active") is False:
        return False
    return not any(isinstance(link, dict) and link.get("type") == "replaced-by" for link in resource.get("link") or ())


def _blinded(tx: Transaction, fin: str) -> tuple[str | None, str | None]:
    """(system, code) of the identifier index row a Patient holding `fin` has, as the store writes it."""
    rows = tx.store.index_values("Patient", [("identifier", "token", FIN_SYSTEM, fin, None)])
    return rows[0][2], rows[0][3]


def holders(tx: Transaction, fin: str, exclude: str | None = None) -> list[Stored]:
    """The live Patients (other than `exclude`) that hold `fin`, seen from inside `tx`."""
    system, code = _blinded(tx, fin)
    pid = tx.store.pid("Patient", "identifier", tx.cur)
    found = tx.execute("SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid WHERE t.pid = ? AND t.code = ? "
                       "AND t.system = ? AND r.type = 'Patient' AND r.deleted = 0", (pid, code, system))
    out = []
    for (rid,) in found:
        if rid == exclude:
            continue
        current = tx.current("Patient", rid)
        if current is None or current[1].content is None:
            continue
        if holds_identity(orjson.loads(current[1].content)):
            out.append(current[1])
    return out


def lock_key(tx: Transaction, fin: str) -> str:
    return "mpi:fin:" + str(_blinded(tx, fin)[1])


def check_unique(event: WriteEvent, policy: str = "refuse") -> None:
    """The write rule: a second live holder of a FIN is refused, answered with the first, or linked to it."""
    resource = event.resource
    if event.interaction == "delete" or resource is None or not holds_identity(resource):
        return
    own = resource.get("id") or (event.previous.id if event.previous is not None else None)
    for fin in sorted(fins_of(resource)):  # sorted: two writers lock several FINs in the same order
        event.tx.lock(lock_key(event.tx, fin))
        others = holders(event.tx, fin, exclude=own)
        if not others:
            continue
        holder = others[0]
        if policy == "link":
            _link(resource, (h.id for h in others))
            continue
        visible = guard.release_one(event.services, event.ctx, holder) is not None
        if policy == "existing" and event.interaction == "create" and resource.get("id") is None and visible:
            event.existing = holder  # released to the caller by the create's response, as any read is
            return
        named = f" (Patient/{holder.id})" if visible else ""
        raise FHIRError(409, f"Another active Patient{named} already holds this FIN ({FIN_SYSTEM}); a FIN "
                             "belongs to one citizen: update that record, or merge the two (Patient/$merge)",
                        "duplicate", "Patient.identifier")


def _link(resource: dict[str, Any], holder_ids: Iterable[str]) -> None:
    links = resource.setdefault("link", [])
    present = {(link.get("other") or {}).get("reference") for link in links if isinstance(link, dict)}
    for hid in holder_ids:
        if f"Patient/{hid}" not in present:
            links.append({"other": {"reference": f"Patient/{hid}"}, "type": "seealso"})
