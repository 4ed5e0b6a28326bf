"""$meta, $meta-add and $meta-delete (FHIR R4 resource-operations): a resource's profiles, tags and security
labels, read or changed without sending the whole resource.

Changing them makes a new version, as any update does. Early R4 ballots had $meta-add change the meta in place;
R4 itself does not ask that, and here security labels decide who may see a record (security/policy.py): a
change to them must be in the history and the audit trail like any other change.

`[type]/$meta` and `[base]/$meta` list the tags, security labels and profiles in use. They count over every
row, hidden ones included, so they are for administrators."""
from __future__ import annotations

from typing import Any

import orjson

from ...fhir.outcome import FHIRError
from .. import guard
from ..interactions import write
from ..responses import fhir
from .parameters import inputs
from .registry import operation

_OD = "http://hl7.org/fhir/OperationDefinition/"
LABELS = ("tag", "security")


def _meta_of(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta") or {}
    return {k: meta[k] for k in ("profile", "security", "tag") if meta.get(k)}


def _answer(meta: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta}]}


def _given_meta(params, body, op: str) -> dict[str, Any]:
    found = [value for name, value, _ in inputs(params, body, op) if name == "meta"]
    if len(found) != 1 or not isinstance(found[0], dict):
        raise FHIRError(400, f"${op} takes one 'meta' parameter (valueMeta)", location="meta")
    meta = found[0]
    if not isinstance(meta.get("profile", []), list) or not all(isinstance(p, str) for p in meta.get("profile", [])):
        raise FHIRError(400, f"${op}: meta.profile must be a list of canonical URLs", location="meta.profile")
    for key in LABELS:
        codings = meta.get(key, [])
        if not isinstance(codings, list) or not all(isinstance(c, dict) and c.get("code") for c in codings):
            raise FHIRError(400, f"${op}: meta.{key} must be a list of Codings with codes", location=f"meta.{key}")
    return meta


def _changed(resource: dict[str, Any], given: dict[str, Any], adding: bool) -> bool:
    """Adds (or removes) the given profiles and labels in `resource`'s meta; True if anything changed. Labels
    are matched by system and code, as the operations define; their version and display do not count."""
    meta = resource.setdefault("meta", {})
    before = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    profiles = list(meta.get("profile", []))
    for url in given.get("profile", []):
        if adding and url not in profiles:
            profiles.append(url)
        elif not adding and url in profiles:
            profiles.remove(url)
    for key, values in (("profile", profiles), *((k, _labels(meta.get(k, []), given.get(k, []), adding))
                                                   for k in LABELS)):
        if values:
            meta[key] = values
        else:
            meta.pop(key, None)
    if not meta:
        del resource["meta"]
    return before != orjson.dumps(resource.get("meta", {}), option=orjson.OPT_SORT_KEYS)


def _labels(current: list[dict[str, Any]], given: list[dict[str, Any]], adding: bool) -> list[dict[str, Any]]:
    key = lambda c: (c.get("system"), c.get("code"))  # noqa: E731
    if adding:
        held = {key(c) for c in current}
        out = list(current)
        for c in given:
            if key(c) not in held:
                out.append(c)
                held.add(key(c))
        return out
    gone = {key(c) for c in given}
    return [c for c in current if key(c) not in gone]


def _read(services, ctx, rtype: str, rid: str) -> dict[str, Any]:
    stored = guard.release_one(services, ctx, services.store.read(rtype, rid))
    if stored is None:
        raise FHIRError(404, f"{rtype}/{rid} is not known")
    if stored.deleted:
        raise FHIRError(410, f"{rtype}/{rid} was deleted")
    return _answer(_meta_of(orjson.loads(stored.content)))


def _in_use(services, rtype: str | None) -> dict[str, Any]:
    where, args = ("AND p.type = ?", [rtype]) if rtype else ("", [])
    store = services.store
    labels = store.query("SELECT DISTINCT p.code, x.system, x.code FROM idx_token x JOIN search_params p ON "
                         f"p.pid = x.pid WHERE p.code IN ('_tag', '_security') {where} ORDER BY 1, 2, 3", args)
    profiles = store.query("SELECT DISTINCT x.value FROM idx_uri x JOIN search_params p ON p.pid = x.pid "
                           f"WHERE p.code = '_profile' {where} ORDER BY 1", args)
    meta: dict[str, Any] = {}
    if profiles:
        meta["profile"] = [p for (p,) in profiles]
    for param, system, code in labels:
        meta.setdefault(param[1:], []).append({k: v for k, v in (("system", system), ("code", code)) if v})
    return _answer(meta)


def _change(services, ctx, tx, rtype: str, rid: str, given: dict[str, Any], adding: bool) -> dict[str, Any]:
    current = write.current_to_change(services, ctx, tx, rtype, rid)
    resource = orjson.loads(current.content)
    if not _changed(resource, given, adding):
        services.policy.authorize(ctx, "update", rtype, resource)  # asking to change is checked all the same
        return _answer(_meta_of(resource))
    result = write.update(services, ctx, tx, rtype, rid, resource, current.version)
    written = guard.release_one(services, ctx, result.stored, checked=True)  # as any write's answer
    return _answer(_meta_of(orjson.loads(written.content)))


@operation("meta", system=True, type_level=True, instance=True, definition=_OD + "Resource-meta", methods=("GET",))
async def meta(router, request, ctx, rtype, rid, params, body):
    services = router.services
    if rid is not None:
        return fhir(200, await router.run(_read, services, ctx, rtype, rid), ctx)
    services.policy.authorize(ctx, "$meta", None)  # a summary over every row: administrators
    return fhir(200, await router.run(_in_use, services, rtype), ctx)


@operation("meta-add", instance=True, definition=_OD + "Resource-meta-add", methods=("POST",))
async def meta_add(router, request, ctx, rtype, rid, params, body):
    given = _given_meta(params, body, "meta-add")
    return fhir(200, await router.run(router._in_tx, _change, router.services, ctx, rtype, rid, given, True), ctx)


@operation("meta-delete", instance=True, definition=_OD + "Resource-meta-delete", methods=("POST",))
async def meta_delete(router, request, ctx, rtype, rid, params, body):
    given = _given_meta(params, body, "meta-delete")
    return fhir(200, await router.run(router._in_tx, _change, router.services, ctx, rtype, rid, given, False), ctx)
