"""Search shapes a restricted caller may use.

The visibility criteria constrain the *outer* rows of a search. Chains and `_has` evaluate criteria on
*other* rows, and `:iterate` walks includes through other rows, so each could probe resources the caller
may not see (a yes/no oracle through the outer result). What stays allowed is what provably reaches only
visible rows:
* a chain into directory/definition resources (readable by everyone), or into the Patient through the
  single-valued reference that makes the resource part of that patient's record (Observation.subject);
* `_has` on Patient through such a reference, for callers restricted to patients without withheld labels
  (their referring resources are then all visible);
* no nesting below one level, no `:iterate`.
Insurers see a masked Patient, so they may not search Patients by the masked elements either.
"""
from __future__ import annotations

from typing import Any

from ..request import RequestContext
from ..fhir.search_query import Criterion, SearchQuery
from .access import Access

SINGLE_VALUED = {"subject", "patient", "beneficiary"}


def check_shapes(policy: Any, ctx: RequestContext, access: Access, types: list[str], query: SearchQuery) -> None:
    from .policy import CONFORMANCE, DIRECTORY, INSURER_PATIENT_PARAMS, forbidden
    for crit in query.criteria:
        _criterion(policy, ctx, access, types, crit, DIRECTORY | CONFORMANCE, forbidden)
    if any(inc.iterate for inc in query.includes):
        raise forbidden("_include:iterate / _revinclude:iterate are not available to your role")
    if access.role == "insurer" and "Patient" in types:
        used = {c.code for c in query.criteria} | {code for code, _ in query.sort}
        if used - INSURER_PATIENT_PARAMS:
            raise forbidden("Insurers may search Patients by " + ", ".join(sorted(INSURER_PATIENT_PARAMS)) + " only")
    if access.role == "pharmacy" and "MedicationRequest" in types:
        ident = [c for c in query.criteria if c.code == "identifier" and c.type == "token" and c.modifier is None]
        if not ident or not all("|" in v.raw and v.raw.split("|", 1)[0] and v.raw.split("|", 1)[1]
                                for c in ident for v in c.values):
            raise forbidden("Pharmacies look prescriptions up by identifier (identifier=system|value)")


def _criterion(policy: Any, ctx: RequestContext, access: Access, types: list[str], crit: Criterion,
               open_types: frozenset[str], forbidden: Any) -> None:
    if crit.type == "chain":
        inner = crit.inner
        if inner is None or inner.type in ("chain", "has"):
            raise forbidden("Nested chained searches are not available to your role")
        targets = set(crit.targets)
        if targets <= open_types:
            return
        through_record = (access.patients is not None and crit.code in SINGLE_VALUED
                          and all(policy.primary(t) == crit.code for t in types))
        if through_record and targets - {"Patient"} <= open_types:
            return
        raise forbidden(f"Chained search through '{crit.code}' is not available to your role")
    if crit.type == "has":
        inner = crit.inner
        ok = (access.patients is not None and not access.exclude and list(types) == ["Patient"]
              and inner is not None and inner.type not in ("chain", "has")
              and crit.has_param == policy.primary(crit.has_type or "") and crit.has_param in SINGLE_VALUED)
        if ok:
            # The referring type must be searchable by scope, without granular filters the _has would bypass.
            _, queries = policy.grants(ctx, crit.has_type, "s")
            ok = not queries
        if not ok:
            raise forbidden("_has is not available to your role for this search")
