"""The one guard every conditional path takes: conditional create (If-None-Exist, ifNoneExist), update and
delete, and conditional references (`Patient?identifier=…`), alone or inside batches and transactions.

A conditional write searches, then writes what the search found (or did not find); two writers with the same
criteria that search side by side both see "no match" and both create. So each takes the store's
transaction-scoped lock on its type and normalised criteria before its search (`pg_advisory_xact_lock` on
PostgreSQL; SQLite's writer lock serialises every write transaction already), and holds it until commit: the
second writer's search then runs after the first committed and finds what it wrote.

The key is normalised so that spellings which may name the same resources share it: parameters sorted,
modifiers dropped, values folded to lower case and tokens to their code (`urn:fin|7XYZ123` and `7XYZ123` take
one lock). A shared key only serialises more, never less. Criteria that overlap without sharing a value
(`name=Quli` and `family=Quliyev`) are not serialised against each other.

A Bundle takes every guard its entries need at its start, in one sorted order, so two Bundles naming the same
criteria in opposite orders cannot each hold one and wait for the other.
"""
from __future__ import annotations

from typing import Any, Iterable
from urllib.parse import parse_qsl

from ...fhir.model import is_resource_type
from ...fhir.outcome import FHIRError
from ...store import Stored, Transaction
from ...store.search import run_search
from .. import guard
from ...request import RequestContext

# Result parameters do not change which resources match.
_RESULT = {"_count", "_sort", "_summary", "_elements", "_total", "_include", "_revinclude", "_format", "_pretty"}


def criteria_params(criteria: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of `criteria` ('identifier=…', '?identifier=…' or 'Patient?identifier=…')."""
    text = criteria.lstrip("?")
    head, sep, rest = text.partition("?")
    if sep and "=" not in head and "&" not in head:  # a type in front; a '?' inside a value stays in it
        text = rest
    return parse_qsl(text, keep_blank_values=True)


def _value(value: str) -> str:
    return ",".join(v.strip().rsplit("|", 1)[-1].lower() for v in value.split(","))


def key(rtype: str, params: Iterable[tuple[str, str]]) -> str:
    """The lock key of a conditional request on `rtype` with these criteria."""
    pairs = sorted({(name.split(":", 1)[0].split(".", 1)[0], _value(value)) for name, value in params
                    if name not in _RESULT})
    return f"conditional:{rtype}?" + "&".join(f"{n}={v}" for n, v in pairs)


def lock(tx: Transaction, keys: Iterable[str]) -> None:
    """Takes the guards of `keys` in one order (re-taking one already held within the transaction is free)."""
    for k in sorted(set(keys)):
        tx.lock(k)


def search(services, ctx: RequestContext, tx: Transaction, rtype: str, criteria: str,
           location: str | None = None) -> list[Stored]:
    """At most two current resources of `rtype` matching `criteria` that the caller may see, searched under the
    guard, inside `tx` (so the result holds until it commits)."""
    params = criteria_params(criteria)
    if not params:
        where = f"{location}: " if location else ""
        raise FHIRError(400, f"{where}Conditional {rtype} request without search criteria",
                        location=location)
    query = services.parser.parse([rtype], params, strict=True)
    query.count = 2  # 0, 1 or "several" is all the rules need
    query.total = "none"
    guard.restrict(services, ctx, query)  # conditions match only what the caller may see: no oracle
    lock(tx, [key(rtype, params)])
    return run_search(services.store, services.registry, query, tx.execute).matches


def references(node: Any) -> Iterable[str]:
    """The conditional references (`Type?criteria`) anywhere inside `node`."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and "?" in ref and is_resource_type(ref.split("?", 1)[0]):
                yield ref
            stack.extend(v for v in item.values() if type(v) is dict or type(v) is list)
        elif isinstance(item, list):
            stack.extend(v for v in item if type(v) is dict or type(v) is list)


def reference_key(ref: str) -> str:
    rtype, criteria = ref.split("?", 1)
    return key(rtype, criteria_params(criteria))
