"""Referential integrity of writes: a literal reference (`Type/id`) must name a resource that exists, and a
delete must not leave live resources referring to what it removed.

Both are judged when the store transaction commits (`Transaction.commit_checks`), over everything it wrote:
a transaction Bundle may refer to a resource written by a later entry, or update a referrer and delete its
target, and is refused (all of it) only if the result would hold a dangling reference. Referrers are found
through the reference index (`idx_reference`), so a reference no search parameter covers is not seen by
the delete check. Bulk loads (`healthtwin load`, `$import`) and `serve --referential-integrity off` skip it.
"""
from __future__ import annotations

from typing import Any

from ..fhir.model import ID_RE, is_resource_type
from ..fhir.outcome import FHIRError, OutcomeIssue
from ..store import Transaction

MAX_CASCADE = 1000  # resources one `_cascade=delete` may remove
_CHUNK = 500


def literal_targets(resource: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(type, id) → the reference as written, for every relative literal reference (`Type/id`, also
    `Type/id/_history/v`) in the resource, contained resources included. Absolute URLs, `#contained`,
    `urn:` and conditional references are not literal references to this server."""
    found: dict[tuple[str, str], str] = {}
    stack: list[Any] = [resource]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str) and "/" in ref and ":" not in ref and "?" not in ref and not ref.startswith("#"):
                parts = ref.split("/")
                if len(parts) == 4 and parts[2] == "_history":
                    parts = parts[:2]
                if len(parts) == 2 and is_resource_type(parts[0]) and ID_RE.match(parts[1]):
                    found.setdefault((parts[0], parts[1]), ref)
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return found


def _pending(tx: Transaction) -> dict[str, dict]:
    state = tx.state.get("references")
    if state is None:
        state = tx.state["references"] = {"targets": {}, "deleted": {}}
        tx.commit_checks.append(lambda: _check(tx, state))
    return state


def expect_targets(services, tx: Transaction, resource: dict[str, Any], location: str | None = None) -> None:
    """Records the literal references of a resource just written, to be found at commit."""
    if not services.limits.referential_integrity or resource.get("resourceType") == "Bundle":
        return  # a stored Bundle (a document, a message) resolves its references among its own entries
    targets = literal_targets(resource)
    targets.pop((resource.get("resourceType"), resource.get("id")), None)  # a resource may refer to itself
    if targets:
        pending = _pending(tx)["targets"]
        where = location or f"{resource.get('resourceType')}/{resource.get('id')}"
        for key, ref in targets.items():
            pending.setdefault(key, (ref, where))


def expect_unreferenced(services, tx: Transaction, rtype: str, rid: str) -> None:
    """Records a delete, to be refused at commit if a live resource still refers to it."""
    if services.limits.referential_integrity:
        _pending(tx)["deleted"][(rtype, rid)] = None


def referrers(tx: Transaction, rtype: str, rid: str) -> list[tuple[str, str]]:
    """Live resources (other than itself) whose indexed references name `rtype/rid`."""
    rows = tx.execute("SELECT DISTINCT r.type, r.id FROM idx_reference x JOIN resources r ON r.rid = x.rid "
                      "WHERE x.target_id = ? AND x.target_type = ? AND x.url = ? AND r.deleted = 0 "
                      "AND NOT (r.type = ? AND r.id = ?) ORDER BY r.type, r.id",
                      (rid, rtype, f"{rtype}/{rid}", rtype, rid))
    return [(t, i) for t, i in rows]


def _check(tx: Transaction, state: dict[str, dict]) -> None:
    issues: list[OutcomeIssue] = []
    by_type: dict[str, list[str]] = {}
    for rtype, rid in state["targets"]:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in sorted(by_type.items()):
        live: set[str] = set()
        ids = sorted(ids)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            # FOR KEY SHARE on PostgreSQL: a concurrent delete of a target waits until this commits (and then
            # sees the reference); SQLite's writer lock already serialises them. Taken in (type, id) order,
            # as a merge locks its two Patients, so the two cannot wait on each other in a ring.
            live |= {r[0] for r in tx.execute(
                f"SELECT id FROM resources WHERE type = ? AND deleted = 0 AND id IN ({','.join('?' * len(chunk))})"
                " ORDER BY id" + tx.store.for_share(), (rtype, *chunk))}
        for rid in ids:
            if rid not in live:
                ref, where = state["targets"][(rtype, rid)]
                issues.append(OutcomeIssue("error", "processing",
                                           f"{where}: reference '{ref}' names a resource that does not exist", where))
    if issues:
        raise FHIRError(422, issues[0].diagnostics + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""),
                        "processing", issues=issues[:100])
    for rtype, rid in state["deleted"]:
        current = tx.current(rtype, rid)
        if current is None or not current[1].deleted:
            continue  # written again later in the same transaction
        left = referrers(tx, rtype, rid)
        if left:  # counted by type, not named: the deleter may not be allowed to see them
            types = sorted({t for t, _ in left})
            raise FHIRError(409, f"{rtype}/{rid} is referred to by {len(left)} other resource(s) ({', '.join(types)})"
                                 ": change or delete those first, or delete them with it (_cascade=delete)",
                            "conflict")
