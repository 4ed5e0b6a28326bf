"""`Patient/$match` (FHIR R4 patient-match): the stored Patients that may be the person described, scored.

Input: a Parameters with `resource` (a Patient), optionally `onlyCertainMatches` (boolean) and `count`
(integer, at most MAX_COUNT). Output: a searchset Bundle, best first, each entry with `search.score` (the
pair's match probability) and the match-grade extension (certain / probable / possible), as FHIR asks.

How candidates are found and graded: the input's blocking keys are looked up in the candidate index
(keys.py), the candidates are read and released to the caller through api/guard (a caller is offered only
Patients it may see, masked as it sees them), and each is scored by the Fellegi–Sunter weights (model.py).
Two records with the same FIN are `certain` whatever their names say (a FIN names one citizen); a pair a
data steward decided is not one person (review.py) is never offered again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..api import guard
from ..api.operations.parameters import inputs
from ..api.operations.registry import define
from ..api.responses import fhir
from ..fhir.outcome import FHIRError
from ..store import Stored, Transaction
from . import features, keys, model, review

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
MAX_COUNT = 100
DEFAULT_COUNT = 10


@dataclass
class Candidate:
    stored: Any  # api.guard.Released (for $match) or store.Stored (inside a write)
    weight: float
    grade: str
    evidence: list[dict[str, Any]]


def score(left: dict[str, Any], right: dict[str, Any], weights: model.Weights) -> tuple[float, str | None, list]:
    """(match weight with the prior, grade, evidence) of a pair: the same FIN makes it certain."""
    weight, evidence = weights.score(left, right)
    if left.get("fin") and left.get("fin") == right.get("fin"):
        return max(weight, weights.prior + model.AUTO_LINK), "certain", evidence
    return weight, model.grade(weight - weights.prior), evidence


def find(store: Any, record: dict[str, Any], weights: model.Weights, exclude: str | None = None,
         tx: Transaction | None = None) -> list[tuple[Stored, float, str, list]]:
    """Every stored Patient graded at least `possible` against `record`, best first (no access rule applied:
    the caller releases what it returns)."""
    ids = keys.candidates(store, record, exclude, tx)
    if not ids:
        return []
    refused = review.refused_pairs(store, record.get("unique_id"), ids, tx)
    rows = _current(store, [i for i in ids if i not in refused], tx)
    out = []
    for row in rows:
        if row.content is None:
            continue
        weight, grade, evidence = score(record, features.of_patient(orjson.loads(row.content)), weights)
        if grade is not None:
            out.append((row, weight, grade, evidence))
    out.sort(key=lambda c: -c[1])
    return out


def _current(store: Any, ids: list[str], tx: Transaction | None) -> list[Stored]:
    if not ids:
        return []
    if tx is not None:  # a plain read (no row locks: two creates must not lock each other's candidates)
        rows = tx.execute("SELECT type, id, version, last_updated, deleted, content FROM resources WHERE "
                          f"type = 'Patient' AND deleted = 0 AND id IN ({','.join('?' * len(ids))})", ids)
        return [tx.store.stored(row) for row in rows]
    rids = store.query(f"SELECT rid FROM resources WHERE type = 'Patient' AND deleted = 0 AND id IN "
                       f"({','.join('?' * len(ids))})", ids)
    return store.fetch_rows([r[0] for r in rids])


def _read_inputs(params: list[tuple[str, str]], body: Any) -> tuple[dict[str, Any], bool, int]:
    resource, only_certain, count = None, False, DEFAULT_COUNT
    for name, value, _part in inputs(params, body, "match"):
        if name == "resource":
            resource = value
        elif name == "onlyCertainMatches":
            if not isinstance(value, bool) and value not in ("true", "false"):
                raise FHIRError(400, "onlyCertainMatches is a boolean", location="onlyCertainMatches")
            only_certain = value is True or value == "true"
        elif name == "count":
            try:
                count = int(value)
            except (TypeError, ValueError):
                raise FHIRError(400, "count is a positive integer", location="count") from None
            if not 1 <= count <= MAX_COUNT:
                raise FHIRError(400, f"count is between 1 and {MAX_COUNT}", location="count")
        else:
            raise FHIRError(400, f"$match has no parameter '{name}' (resource, onlyCertainMatches, count)",
                            location=name)
    if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
        raise FHIRError(400, "$match needs a Patient in the parameter 'resource'", "required", "resource")
    return resource, only_certain, count


def run_match(services: Any, ctx: Any, params: list[tuple[str, str]], body: Any,
              weights: model.Weights) -> dict[str, Any]:
    resource, only_certain, count = _read_inputs(params, body)
    services.policy.authorize(ctx, "search", "Patient")
    errors = [i for i in services.validator.validate(resource) if i.severity in ("error", "fatal")]
    if errors:  # the input is read as a Patient would be stored: a malformed one is the caller's to fix
        raise FHIRError(400, f"resource: {errors[0].message}", "invalid", errors[0].location)
    found = find(services.store, features.of_patient(resource), weights)
    if only_certain:
        found = [c for c in found if c[2] == "certain"]
    released = {r.id: r for r in guard.release(services, ctx, [c[0] for c in found])}
    entries = []
    for row, weight, grade, evidence in found:
        shown = released.get(row.id)
        if shown is None:
            continue
        entries.append({"fullUrl": f"{ctx.base_url}/Patient/{row.id}", "resource": orjson.Fragment(shown.content),
                        "search": {"mode": "match", "score": round(model.probability(weight), 6),
                                   "extension": [{"url": MATCH_GRADE, "valueCode": grade}]}})
        if len(entries) == count:
            break
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries} if entries \
        else {"resourceType": "Bundle", "type": "searchset", "total": 0}


def operation(weights_of: Any) -> Any:
    """`Patient/$match`, scoring with `weights_of()` (the weights in force)."""
    @define("match", types=["Patient"], type_level=True, methods=("POST",),
            definition="http://hl7.org/fhir/OperationDefinition/Patient-match")
    async def match(router, request, ctx, rtype, rid, params, body):
        result = await router.run(run_match, router.services, ctx, list(params), body, weights_of())
        return fhir(200, result, ctx)
    return match
