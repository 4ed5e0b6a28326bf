"""Golden records: `Patient/$merge` and `Patient/$unmerge`, the FHIR R5 patient-merge adapted to R4.

A merge folds a duplicate (`source-patient`) into the record that survives (`target-patient`), in one store
transaction, as the caller's own writes (its authorization applies to every one):
* every live resource referring to the source is updated to refer to the target; which element of which
  resource was moved is kept in `mpi_merge_moves` (type, id, JSON path: no content, so nothing personal sits
  outside the sealed resources);
* the source becomes inactive with `link` replaced-by the target; the target gets `link` replaces the source
  and the source's identifiers it lacked (marked `use` old), so `Patient?identifier=<the duplicate's FIN or
  record number>` finds the golden record;
* the response (Parameters: input, outcome, result) names both Patients, so the audit trail (and each
  citizen's access log) records the merge for both.
`preview=true` answers what would happen and writes nothing.

An unmerge (`source-patient`, the merged record) undoes the newest merge of that source: each moved reference
that still names the target is put back to the source, exactly where it was (one written since, or moved
again, is left as it is and reported), the target's added links and identifiers are removed, the source is
active again. Both take the merge's lock on the two Patients (`Transaction.lock`), so merges and unmerges of
one record run one at a time; writes racing with a merge either commit before it (and are moved) or after it
(and then refer to the replaced record, which `$everything` and the golden record's links still reach).
"""
from __future__ import annotations

import uuid
from typing import Any

import orjson

from ..api import guard, references
from ..api.interactions import write
from ..api.operations.parameters import inputs
from ..api.operations.registry import define
from ..api.responses import fhir
from ..fhir.outcome import FHIRError, OutcomeIssue, operation_outcome
from ..store import Store, Transaction

MERGES, MOVES = "mpi_merges", "mpi_merge_moves"
_DDL = (f"CREATE TABLE IF NOT EXISTS {MERGES} (merge_id TEXT PRIMARY KEY, source TEXT NOT NULL, target TEXT NOT NULL, "
        "at TEXT NOT NULL, by_subject TEXT, was_active SMALLINT NOT NULL, undone SMALLINT NOT NULL DEFAULT 0)",
        f"CREATE INDEX IF NOT EXISTS {MERGES}_source ON {MERGES} (source)",
        f"CREATE TABLE IF NOT EXISTS {MOVES} (merge_id TEXT NOT NULL, rtype TEXT NOT NULL, rid TEXT NOT NULL, "
        "path TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {MOVES}_merge ON {MOVES} (merge_id)")


def ensure_schema(store: Store) -> None:
    with store.transaction() as tx:
        tx.lock("mpi:schema")
        for statement in _DDL:
            tx.execute(statement)


def _reference_paths(node: Any, ref: str, path: list) -> list[list]:
    """JSON paths (lists of keys and indexes) of every Reference.reference equal to `ref` inside `node`."""
    out: list[list] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and value == ref:
                out.append(path + [key])
            elif isinstance(value, (dict, list)):
                out += _reference_paths(value, ref, path + [key])
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out += _reference_paths(item, ref, path + [i])
    return out


def _at(doc: Any, path: list) -> tuple[Any, Any]:
    """(container, last key) of `path` in `doc`, or (None, None) where the path no longer exists."""
    node = doc
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None, None
    if isinstance(node, dict) and path[-1] in node or isinstance(node, list) and isinstance(path[-1], int) \
            and path[-1] < len(node):
        return node, path[-1]
    return None, None


def _patient_ref(value: Any, name: str) -> str:
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.startswith("Patient/") or "/" in ref[8:] or not ref[8:]:
        raise FHIRError(400, f"{name} is a Reference to a Patient (Patient/<id>)", "required", name)
    return ref[8:]


def _visible(services: Any, ctx: Any, tx: Transaction, rid: str, name: str) -> dict[str, Any]:
    current = tx.current("Patient", rid)
    row = current[1] if current is not None else None
    if guard.release_one(services, ctx, row) is None or row is None or row.deleted:
        raise FHIRError(404, f"{name} Patient/{rid} is not known", "not-found", name)
    return orjson.loads(row.content)


def _both_visible(services: Any, ctx: Any, tx: Transaction, source_id: str,
                  target_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both Patients, their rows locked in id order: a writer's reference check takes its share locks on the
    Patients it names in that order too (api/references.py), so the two never wait on each other in a ring."""
    found = {rid: _visible(services, ctx, tx, rid, name)
             for rid, name in sorted(((source_id, "source-patient"), (target_id, "target-patient")))}
    return found[source_id], found[target_id]


def merge(services: Any, ctx: Any, tx: Transaction, source_id: str, target_id: str, preview: bool) -> dict[str, Any]:
    if source_id == target_id:
        raise FHIRError(400, "source-patient and target-patient are the same record", "invalid")
    services.policy.authorize(ctx, "update", "Patient", None)
    for rid in sorted((source_id, target_id)):  # the same order for every merge: no deadlock between two
        tx.lock(f"mpi:merge:{rid}")
    source, target = _both_visible(services, ctx, tx, source_id, target_id)
    if any(link.get("type") == "replaced-by" for link in source.get("link") or ()):
        raise FHIRError(409, f"Patient/{source_id} was merged already", "conflict", "source-patient")
    if any(link.get("type") == "replaced-by" for link in target.get("link") or ()):
        raise FHIRError(409, f"Patient/{target_id} was merged into another record: merge into that one",
                        "conflict", "target-patient")
    referring = [r for r in references.referrers(tx, "Patient", source_id) if r != ("Patient", target_id)]
    if preview:
        return _result(source_id, target_id, target, f"Would move {len(referring)} references", None)
    merge_id = uuid.uuid4().hex
    ref = f"Patient/{source_id}"
    moves = []
    for rtype, rid in referring:
        current = tx.current(rtype, rid)
        if current is None or current[1].deleted or current[1].content is None:
            continue
        doc = orjson.loads(current[1].content)
        paths = _reference_paths(doc, ref, [])
        for path in paths:
            node, last = _at(doc, path)
            node[last] = f"Patient/{target_id}"
            moves.append((merge_id, rtype, rid, orjson.dumps(path).decode()))
        if paths:
            write.update(services, ctx, tx, rtype, rid, doc)
    was_active = source.get("active") is not False
    source["active"] = False
    source.setdefault("link", []).append({"other": {"reference": f"Patient/{target_id}"}, "type": "replaced-by"})
    write.update(services, ctx, tx, "Patient", source_id, source)
    known = {(i.get("system"), i.get("value")) for i in target.get("identifier") or ()}
    added = [{**i, "use": "old"} for i in source.get("identifier") or () if (i.get("system"), i.get("value")) not in known]
    if added:
        target["identifier"] = list(target.get("identifier") or ()) + added
    target.setdefault("link", []).append({"other": {"reference": f"Patient/{source_id}"}, "type": "replaces"})
    stored = write.update(services, ctx, tx, "Patient", target_id, target).stored
    tx.execute(f"INSERT INTO {MERGES} (merge_id, source, target, at, by_subject, was_active, undone) "
               "VALUES (?, ?, ?, ?, ?, ?, 0)", (merge_id, source_id, target_id, str(tx.now), ctx.caller.subject,
                                                int(was_active)))
    for start in range(0, len(moves), 200):
        chunk = moves[start:start + 200]
        tx.execute(f"INSERT INTO {MOVES} (merge_id, rtype, rid, path) VALUES " + ", ".join("(?, ?, ?, ?)" for _ in chunk),
                   [x for m in chunk for x in m])
    return _result(source_id, target_id, orjson.loads(stored.content),
                   f"Merged Patient/{source_id} into Patient/{target_id}: {len(moves)} references moved", merge_id)


def unmerge(services: Any, ctx: Any, tx: Transaction, source_id: str) -> dict[str, Any]:
    services.policy.authorize(ctx, "update", "Patient", None)
    rows = tx.execute(f"SELECT merge_id, target, was_active FROM {MERGES} WHERE source = ? AND undone = 0 "
                      f"ORDER BY at DESC LIMIT 1", (source_id,))
    if not rows:
        raise FHIRError(404, f"Patient/{source_id} has no merge to undo", "not-found", "source-patient")
    merge_id, target_id, was_active = rows[0]
    for rid in sorted((source_id, target_id)):
        tx.lock(f"mpi:merge:{rid}")
    source, target = _both_visible(services, ctx, tx, source_id, target_id)
    by_resource: dict[tuple[str, str], list[list]] = {}
    for rtype, rid, path in tx.execute(f"SELECT rtype, rid, path FROM {MOVES} WHERE merge_id = ?", (merge_id,)):
        by_resource.setdefault((rtype, rid), []).append(orjson.loads(path))
    restored, left = 0, []
    for (rtype, rid), paths in sorted(by_resource.items()):
        current = tx.current(rtype, rid)
        if current is None or current[1].deleted or current[1].content is None:
            left.append(f"{rtype}/{rid}")
            continue
        doc = orjson.loads(current[1].content)
        changed = False
        for path in paths:
            node, last = _at(doc, path)
            if node is not None and node[last] == f"Patient/{target_id}":
                node[last] = f"Patient/{source_id}"
                changed, restored = True, restored + 1
            else:
                left.append(f"{rtype}/{rid}")
        if changed:
            write.update(services, ctx, tx, rtype, rid, doc)
    # the target gives back the source's identifiers first: the source holds its FIN again (fin.py)
    theirs = {(i.get("system"), i.get("value")) for i in source.get("identifier") or ()}
    target["identifier"] = [i for i in target.get("identifier") or ()
                            if not (i.get("use") == "old" and (i.get("system"), i.get("value")) in theirs)]
    if not target["identifier"]:
        target.pop("identifier")
    target["link"] = [l for l in target.get("link") or ()
                      if not (l.get("type") == "replaces" and (l.get("other") or {}).get("reference") == f"Patient/{source_id}")]
    if not target["link"]:
        target.pop("link")
    write.update(services, ctx, tx, "Patient", target_id, target)
    source["link"] = [l for l in source.get("link") or ()
                      if not (l.get("type") == "replaced-by" and (l.get("other") or {}).get("reference") == f"Patient/{target_id}")]
    if not source["link"]:
        source.pop("link")
    source["active"] = bool(was_active)
    stored = write.update(services, ctx, tx, "Patient", source_id, source).stored
    tx.execute(f"UPDATE {MERGES} SET undone = 1 WHERE merge_id = ?", (merge_id,))
    note = f"Restored {restored} references to Patient/{source_id}"
    if left:
        note += f"; left as they are (changed since the merge): {', '.join(sorted(set(left)))}"
    return _result(source_id, target_id, orjson.loads(stored.content), note, merge_id)


def _result(source_id: str, target_id: str, patient: dict[str, Any], note: str, merge_id: str | None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "input", "part": [{"name": "source-patient", "valueReference": {"reference": f"Patient/{source_id}"}},
                                   {"name": "target-patient", "valueReference": {"reference": f"Patient/{target_id}"}}]},
        {"name": "outcome", "resource": operation_outcome([OutcomeIssue("information", "informational", note)])},
        {"name": "result", "resource": patient}]
    if merge_id:
        params.append({"name": "merge-id", "valueString": merge_id})
    return {"resourceType": "Parameters", "parameter": params}


def _inputs(params: list[tuple[str, str]], body: Any, name: str) -> dict[str, Any]:
    got: dict[str, Any] = {}
    for key, value, _part in inputs(params, body, name):
        if key not in ("source-patient", "target-patient", "preview"):
            raise FHIRError(400, f"${name} has no parameter '{key}'", location=key)
        got[key] = value
    if "source-patient" not in got:
        raise FHIRError(400, f"${name} needs source-patient", "required", "source-patient")
    return got


def operations() -> list[Any]:
    @define("merge", types=["Patient"], type_level=True, methods=("POST",),
            definition="http://hl7.org/fhir/OperationDefinition/Patient-merge")
    async def merge_op(router, request, ctx, rtype, rid, params, body):
        got = _inputs(list(params), body, "merge")
        if "target-patient" not in got:
            raise FHIRError(400, "$merge needs target-patient", "required", "target-patient")
        source, target = _patient_ref(got["source-patient"], "source-patient"), _patient_ref(got["target-patient"], "target-patient")
        preview = got.get("preview") in (True, "true")
        result = await router.run(router._in_tx, merge, router.services, ctx, source, target, preview)
        return fhir(200, result, ctx)

    @define("unmerge", types=["Patient"], type_level=True, methods=("POST",),
            definition="https://health.gov.az/fhir/OperationDefinition/Patient-unmerge")
    async def unmerge_op(router, request, ctx, rtype, rid, params, body):
        got = _inputs(list(params), body, "unmerge")
        source = _patient_ref(got["source-patient"], "source-patient")
        result = await router.run(router._in_tx, unmerge, router.services, ctx, source)
        return fhir(200, result, ctx)
    return [merge_op, unmerge_op]

