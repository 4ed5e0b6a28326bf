"""create, update and delete (plain and conditional) on a store Transaction.

The HTTP endpoints and the transaction/batch processor both call these, so a Bundle entry behaves
exactly like the same request sent alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ...fhir.model import ID_RE, NOT_STORED
from ...fhir.outcome import FHIRError, OutcomeIssue
from ...store import Stored, Transaction
from .. import guard, references, write_rules
from ...request import RequestContext
from ..definitions import apply_definition, check_definition
from . import conditional

_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


@dataclass
class WriteResult:
    stored: Stored | None
    status: int  # 200 updated / existing, 201 created, 204 nothing to delete


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = _ETAG.match(value.strip())
    if not m:
        raise FHIRError(400, f"If-Match must be a version ETag such as W/\"3\", not '{value}'")
    return int(m.group(1))


def prepare(services, rtype: str, resource: dict[str, Any], location: str | None = None) -> None:
    """Checks a resource about to be written: validation (422 with every problem located) and definitions."""
    if resource.get("resourceType") != rtype:
        raise FHIRError(400, f"resourceType '{resource.get('resourceType')}' does not match '{rtype}'",
                        "invalid", "resourceType")
    if rtype in NOT_STORED:
        raise FHIRError(422, (f"{location}: " if location else "") + NOT_STORED[rtype], "not-supported")
    issues = services.validator.validate(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        prefix = f"{location}: " if location else ""
        raise FHIRError(422, prefix + errors[0].message, "processing", issues=[
            OutcomeIssue(i.severity, i.code, prefix + i.message, i.location) for i in issues])
    check_definition(services, resource)


def _match(services, ctx: RequestContext, tx: Transaction, rtype: str, criteria: str) -> list[Stored]:
    return conditional.search(services, ctx, tx, rtype, criteria)  # under the conditional guard


def current_to_change(services, ctx: RequestContext, tx: Transaction, rtype: str, rid: str) -> Stored:
    """The current version of a resource a partial change starts from (patch, $meta-add): 404 if absent or
    hidden from the caller (hidden answers exactly like absent), 410 if deleted."""
    current = tx.current(rtype, rid)
    stored = guard.release_one(services, ctx, current[1] if current is not None else None)
    if stored is None:
        raise FHIRError(404, f"{rtype}/{rid} is not known")
    if stored.deleted:
        raise FHIRError(410, f"{rtype}/{rid} was deleted")
    return current[1]


def create(services, ctx: RequestContext, tx: Transaction, rtype: str, resource: dict[str, Any],
           if_none_exist: str | None = None, location: str | None = None) -> WriteResult:
    services.policy.authorize(ctx, "create", rtype, resource)
    if if_none_exist:
        found = _match(services, ctx, tx, rtype, if_none_exist)
        if len(found) > 1:
            raise FHIRError(412, f"If-None-Exist '{if_none_exist}' matches several {rtype} resources")
        if found:
            return WriteResult(found[0], 200)
    prepare(services, rtype, resource, location)
    resource.pop("id", None)  # the server assigns ids on create
    event = write_rules.WriteEvent(services, ctx, tx, rtype, "create", resource, None)
    write_rules.check(services, event)
    if event.existing is not None:  # a rule found this resource stored already (the patient index's match)
        return WriteResult(event.existing, 200)
    stored = tx.create(rtype, resource)
    references.expect_targets(services, tx, resource, location)
    _after_write(services, tx, resource, None)
    event.stored = stored
    write_rules.react(services, event)
    return WriteResult(stored, 201)


def update(services, ctx: RequestContext, tx: Transaction, rtype: str, rid: str, resource: dict[str, Any],
           if_match: int | None = None, location: str | None = None) -> WriteResult:
    if not ID_RE.match(rid):
        raise FHIRError(400, f"'{rid}' is not a valid FHIR id")
    body_id = resource.get("id")
    if body_id is None:
        raise FHIRError(400, "The resource in an update must carry its id", "required", f"{rtype}.id")
    if body_id != rid:
        raise FHIRError(400, f"The resource's id '{body_id}' differs from the id in the URL '{rid}'", "invalid",
                        f"{rtype}.id")
    services.policy.authorize(ctx, "update", rtype, resource)
    prepare(services, rtype, resource, location)
    existing = tx.current(rtype, rid)
    guard.check_existing(services, ctx, rtype, existing[1] if existing else None, "u")
    old = orjson.loads(existing[1].content) if existing and existing[1].content and _definitional(rtype) else None
    previous = existing[1] if existing and not existing[1].deleted else None
    event = write_rules.WriteEvent(services, ctx, tx, rtype, "update" if previous else "create", resource, previous)
    write_rules.check(services, event)
    if event.existing is not None:  # the client chose this id: it cannot be answered with another resource
        raise FHIRError(409, f"{rtype}/{rid} would be a second record of the stored {rtype}/{event.existing.id}: "
                             "update that one instead", "duplicate")
    stored = tx.update(rtype, rid, resource, if_match, existing)
    references.expect_targets(services, tx, resource, location)
    _after_write(services, tx, resource, old)
    event.stored = stored
    write_rules.react(services, event)
    return WriteResult(stored, 201 if stored.method == "create" else 200)


def conditional_update(services, ctx: RequestContext, tx: Transaction, rtype: str, criteria: str,
                       resource: dict[str, Any], if_match: int | None = None,
                       location: str | None = None) -> WriteResult:
    found = _match(services, ctx, tx, rtype, criteria)
    if len(found) > 1:
        raise FHIRError(412, f"Conditional update criteria '{criteria}' match several {rtype} resources")
    if found:
        target = found[0].id
        if resource.get("id") not in (None, target):
            raise FHIRError(400, f"The resource's id '{resource['id']}' differs from the matched {rtype}/{target}")
        resource["id"] = target
        return update(services, ctx, tx, rtype, target, resource, if_match, location)
    if resource.get("id"):
        return update(services, ctx, tx, rtype, resource["id"], resource, if_match, location)
    return create(services, ctx, tx, rtype, resource, None, location)


def delete(services, ctx: RequestContext, tx: Transaction, rtype: str, rid: str, cascade: bool = False,
           _seen: set[tuple[str, str]] | None = None) -> WriteResult:
    """Deletes; refused at commit (409) if live resources still refer to it, unless `cascade`
    (`_cascade=delete`): then those are deleted too, and what refers to them, each as the caller's own delete."""
    services.policy.authorize(ctx, "delete", rtype, None)
    existing = tx.current(rtype, rid)
    current = existing[1] if existing else None
    if current is not None and not current.deleted and guard.release_one(services, ctx, current) is None:
        return WriteResult(None, 204)  # hidden from the caller: answered exactly as an absent id, and kept
    guard.check_existing(services, ctx, rtype, current, "d")
    if cascade and existing is not None and not existing[1].deleted:
        seen = _seen if _seen is not None else set()
        seen.add((rtype, rid))
        for ref_type, ref_id in references.referrers(tx, rtype, rid):
            if (ref_type, ref_id) in seen:
                continue
            if len(seen) >= references.MAX_CASCADE:
                raise FHIRError(409, f"Deleting {rtype}/{rid} would cascade to more than {references.MAX_CASCADE} "
                                     "resources; delete them in smaller steps", "too-costly")
            delete(services, ctx, tx, ref_type, ref_id, True, seen)
        existing = tx.current(rtype, rid)
    old = orjson.loads(existing[1].content) if existing and existing[1].content and _definitional(rtype) else None
    event = write_rules.WriteEvent(services, ctx, tx, rtype, "delete", None,
                                   existing[1] if existing and not existing[1].deleted else None)
    if event.previous is not None:
        write_rules.check(services, event)
    stored = tx.delete(rtype, rid, existing)
    if stored is None:
        return WriteResult(None, 204)
    references.expect_unreferenced(services, tx, rtype, rid)
    _after_write(services, tx, None, old)
    event.stored = stored
    write_rules.react(services, event)
    return WriteResult(stored, 200)


def conditional_delete(services, ctx: RequestContext, tx: Transaction, rtype: str, criteria: str,
                       cascade: bool = False) -> WriteResult:
    found = _match(services, ctx, tx, rtype, criteria)
    if len(found) > 1:
        raise FHIRError(412, f"Conditional delete criteria '{criteria}' match several {rtype} resources")
    if not found:
        return WriteResult(None, 204)
    return delete(services, ctx, tx, rtype, found[0].id, cascade)


def cascade_param(params: list[tuple[str, str]]) -> tuple[bool, list[tuple[str, str]]]:
    """`_cascade=delete` (as HAPI names it) out of a delete's query: (cascade?, the other parameters)."""
    values = [v for k, v in params if k == "_cascade"]
    if any(v != "delete" for v in values):
        raise FHIRError(400, f"_cascade takes 'delete', not '{next(v for v in values if v != 'delete')}'")
    return bool(values), [(k, v) for k, v in params if k != "_cascade"]


def _definitional(rtype: str) -> bool:
    return rtype in ("SearchParameter", "StructureDefinition")


def _after_write(services, tx: Transaction, resource: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
    rtype = (resource or old or {}).get("resourceType")
    if _definitional(rtype or "") and apply_definition(services, resource, old) and services.jobs is not None:
        services.jobs.request_reindex(resource or old, tx=tx)
