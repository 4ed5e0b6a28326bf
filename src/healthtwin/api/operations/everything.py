"""Patient/[id]/$everything and Patient/$everything: the patient compartment plus what it references.

A record that replaced others (`Patient.link` type replaces: the golden record of a merge) has theirs too: a
write that still names a replaced record is the same citizen's."""
from __future__ import annotations

import orjson

from ...fhir.outcome import FHIRError
from ...fhir.search_query import DEFAULT_COUNT, MAX_COUNT, _int
from ...store.search import compartment_rids
from .. import guard
from ..http import since_param
from ..interactions.bundles import paging_links, searchset
from ..responses import fhir
from .registry import operation


def _params(params):
    since, types, count, offset, echo = None, None, DEFAULT_COUNT, 0, []
    for name, value in params:
        if name == "_since":
            since = since_param(value)
        elif name == "_type":
            types = [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_count":
            count = _int(name, value, 1, MAX_COUNT)
        elif name == "_offset":
            offset = _int(name, value, 0, 10**9)
            continue
        else:
            continue
        echo.append((name, value))
    return since, types, count, offset, echo


def everything_rows(services, pid: str, since, types) -> list[int]:
    store = services.store
    own = store.query("SELECT rid, last_updated FROM resources WHERE type = 'Patient' AND id = ? AND deleted = 0",
                      [pid])
    if not own:
        raise FHIRError(404, f"Patient/{pid} is not known")
    rids = []
    if (types is None or "Patient" in types) and (since is None or own[0][1] >= since):
        rids.append(own[0][0])
    members = compartment_rids(store, services.registry, "Patient", pid, types, since)
    for replaced in _replaced(store, pid):
        members += compartment_rids(store, services.registry, "Patient", replaced, types, since)
    members = list(dict.fromkeys(members))
    rids += [r for r in members if r != own[0][0]]
    if types is None or len(set(types) - {"Patient"}) > 0:
        # Resources the compartment refers to (practitioners, organizations, medications, locations...).
        sources = [own[0][0]] + members  # what the patient and its compartment point at
        if sources:
            referenced = []
            for start in range(0, len(sources), 500):
                chunk = sources[start:start + 500]
                referenced += [r[0] for r in store.query(
                    f"SELECT DISTINCT t.rid FROM idx_reference x JOIN resources t ON t.type = x.target_type AND "
                    f"t.id = x.target_id WHERE x.rid IN ({','.join('?' * len(chunk))}) AND t.deleted = 0 "
                    f"AND t.type <> 'Patient'", chunk)]
            seen = set(rids)
            extra = sorted(set(referenced) - seen)
            if types is not None:
                extra = [r for r in extra if _type(store, r) in types]
            rids += extra
    return rids


def _replaced(store, pid: str, limit: int = 50) -> list[str]:
    """Ids of the Patients this one replaced, and those they replaced (merges of merges), at most `limit`."""
    found: list[str] = []
    todo = [pid]
    while todo and len(found) < limit:
        stored = store.read("Patient", todo.pop())
        if stored is None or stored.deleted or stored.content is None:
            continue
        for link in orjson.loads(stored.content).get("link") or ():
            if not isinstance(link, dict):
                continue
            ref = (link.get("other") or {}).get("reference") or ""
            if link.get("type") == "replaces" and ref.startswith("Patient/") and ref[8:] not in found + [pid]:
                found.append(ref[8:])
                todo.append(ref[8:])
    return found


def _type(store, rid: int) -> str:
    return store.query("SELECT type FROM resources WHERE rid = ?", [rid])[0][0]


@operation("everything", types=["Patient"], type_level=True, instance=True,
           definition="http://hl7.org/fhir/OperationDefinition/Patient-everything")
async def everything(router, request, ctx, rtype, rid, params, body):
    services = router.services
    since, types, count, offset, echo = _params(params)

    def run():
        services.policy.authorize(ctx, "everything", "Patient")
        if rid is not None:
            if guard.release_one(services, ctx, services.store.read("Patient", rid)) is None:
                raise FHIRError(404, f"Patient/{rid} is not known")  # hidden answers exactly like absent
            rows = everything_rows(services, rid, since, types)
        else:
            rows = []
            patients = services.store.query("SELECT rid, id FROM resources WHERE type = 'Patient' AND deleted = 0 "
                                            "ORDER BY rid", [])
            allowed = set(guard.visible_rids(services, ctx, [r for r, _ in patients]))
            for prid, pid in patients:
                if prid in allowed:
                    rows += everything_rows(services, pid, since, types)
        # Only what the caller may read is collected, before paging, so the total counts nothing hidden.
        rows = guard.visible_rids(services, ctx, rows)
        # visible_rids decided which rows; release masks and labels them (the insurer's Patient, say).
        page = guard.release(services, ctx, services.store.fetch_rows(rows[offset:offset + count]), checked=True)
        url = f"{ctx.base_url}/Patient/{rid}/$everything" if rid else f"{ctx.base_url}/Patient/$everything"
        links = paging_links(url, echo, count, offset, offset + count < len(rows), None, keyset=False)
        return fhir(200, searchset(ctx.base_url, page, [], len(rows), links, None, None), ctx)

    return await router.run(run)
