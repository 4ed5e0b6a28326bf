"""$access-log (a citizen's record of who saw it); $break-glass-review and $audit-trail (for administrators and
auditors)."""
from __future__ import annotations

from urllib.parse import urlencode

from ...fhir.outcome import FHIRError
from ...store.records import instant
from .. import guard
from ..http import since_param
from ..responses import fhir
from .registry import operation

_SD = "https://healthtwin.dev/fhir/OperationDefinition/"


def _since(params) -> float | None:
    value = dict(params).get("_since")
    return None if value is None else since_param(value)


def _may_see_log(services, ctx, pid: str) -> bool:
    if guard.is_open(services):
        return True
    caller = ctx.caller
    roles = caller.roles
    if "auditor" in roles or "administrator" in roles:
        return True
    if "citizen" not in roles:
        return False
    if caller.patient == f"Patient/{pid}":
        return True
    from ...security.access import wards
    own = caller.patient.removeprefix("Patient/") if caller.patient else None
    return pid in wards(services.policy, caller, own)


@operation("access-log", types=["Patient"], instance=True, definition=_SD + "access-log")
async def access_log(router, request, ctx, rtype, rid, params, body):
    """Who accessed this citizen's record, when, what and why: the AuditEvents naming the patient."""
    services = router.services
    if services.audit is None:
        raise FHIRError(501, "This server keeps no audit log", "not-supported")
    if ctx.caller.kind == "anonymous" and not guard.is_open(services):
        from ...security.policy import unauthenticated
        raise unauthenticated()
    if not await router.run(_may_see_log, services, ctx, rid):
        # The same answer whether or not the patient exists: no existence oracle.
        raise FHIRError(403, "The access log is shown to the citizen, their representatives and auditors",
                        "forbidden")
    since = _since(params)
    paging = _paging(params)
    if paging is None:  # the whole log (at most 1,000 entries), oldest first, as before paging existed
        events, below = await router.run(_readable_log, services, ctx, rid, since), None
    else:
        events, below = await router.run(_readable_page, services, ctx, rid, since, *paging)
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"fullUrl": f"urn:healthtwin:audit:{e['id']}", "resource": e, "search": {"mode": "match"}}
                        for e in events]}
    if paging is None:
        bundle["total"] = len(events)
    else:
        count, _, others = paging
        query = [("_count", str(count))] + ([("others", "true")] if others else []) + \
            ([("_since", dict(params)["_since"])] if since is not None else [])
        base = f"Patient/{rid}/$access-log?"
        links = [{"relation": "self", "url": base + urlencode(query + ([("_before", str(paging[1]))]
                                                                        if paging[1] is not None else []))}]
        if below is not None:
            links.append({"relation": "next", "url": base + urlencode(query + [("_before", str(below))])})
        bundle["link"] = links
    return fhir(200, bundle, ctx)


MAX_PAGE = 1000


def _paging(params) -> tuple[int, int | None, bool] | None:
    """(count, before, others) when the caller pages the log (`_count`, `_before`, `others`), newest first;
    None for the whole log. `_before` is the entry id (seq) a page ends below; `others=true` leaves out the
    caller's own accesses (a citizen looking at their own record)."""
    given = dict(params)
    if not {"_count", "_before", "others"} & set(given):
        return None
    try:
        count = int(given.get("_count") or 100)
        before = int(given["_before"]) if given.get("_before") not in (None, "") else None
    except ValueError:
        raise FHIRError(400, "_count and _before must be whole numbers", "invalid") from None
    if not 1 <= count <= MAX_PAGE or (before is not None and before < 1):
        raise FHIRError(400, f"_count must be 1 to {MAX_PAGE} and _before a positive entry id", "invalid")
    others = str(given.get("others") or "false").lower()
    if others not in ("true", "false"):
        raise FHIRError(400, "others must be true or false", "invalid")
    return count, before, others == "true"


def _readable_page(services, ctx, pid: str, since: float | None, count: int, before: int | None,
                   others: bool) -> tuple[list[dict], int | None]:
    caller = ctx.caller
    own = caller.subject if "citizen" in caller.roles else None
    events, below = services.audit.access_log_page(f"Patient/{pid}", before, count, since,
                                                   other_than=own if others and own else None)
    return _for_person(services, ctx, events), below


def _readable_log(services, ctx, pid: str, since: float | None) -> list[dict]:
    """The patient's whole access log (at most 1,000 entries, oldest first), written for a person."""
    return _for_person(services, ctx, services.audit.access_log(f"Patient/{pid}", since, 1000))


def _for_person(services, ctx, events: list[dict]) -> list[dict]:
    """The entries written for a person (security/access_log.py): names of the people and organizations who
    accessed the record, in words, without addresses or raw queries."""
    import orjson

    from ...security.access_log import for_person
    cache: dict[str, str | None] = {}

    def names(ref: str) -> str | None:
        if ref not in cache:
            cache[ref] = None
            rtype, _, rid = ref.partition("/")
            if rtype in ("Practitioner", "Organization", "Patient", "RelatedPerson") and rid:
                try:
                    stored = services.store.read(rtype, rid)
                except Exception:  # a name is a courtesy; the entry stands without it
                    stored = None
                if stored is not None and stored.content:
                    cache[ref] = _display(orjson.loads(stored.content))
        return cache[ref]
    caller = ctx.caller
    own = caller.subject if "citizen" in caller.roles else None
    return for_person(events, names, own_subject=own)


def _display(resource: dict) -> str | None:
    name = resource.get("name")
    if isinstance(name, str):
        return name  # Organization
    for n in name or ():
        if n.get("text"):
            return n["text"]
        parts = [*(n.get("prefix") or ()), *(n.get("given") or ()), n.get("family") or ""]
        if any(parts):
            return " ".join(p for p in parts if p)
    return None


@operation("break-glass-review", system=True, definition=_SD + "break-glass-review")
async def break_glass_review(router, request, ctx, rtype, rid, params, body):
    """Every break-the-glass grant since `_since`: who, which patient, why, and for how long."""
    services = router.services
    roles = ctx.caller.roles
    if not guard.is_open(services) and not ({"administrator", "auditor"} & roles):
        if ctx.caller.kind == "anonymous":
            from ...security.policy import unauthenticated
            raise unauthenticated()
        raise FHIRError(403, "Break-the-glass review is for administrators and auditors", "forbidden")
    from ...security.access import grants_for_review
    try:
        rows = await router.run(grants_for_review, services.store, _since(params) or 0.0)
    except Exception:  # the table exists only under the secure policy
        rows = []
    grants = [{"name": "grant", "part": [
        {"name": "id", "valueString": gid}, {"name": "clinician", "valueString": who},
        *([{"name": "organization", "valueReference": {"reference": org}}] if org else []),
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "reason", "valueString": reason}, {"name": "started", "valueInstant": instant(started)},
        {"name": "expires", "valueInstant": instant(expires)}]}
        for gid, who, org, patient, reason, started, expires in rows]
    return fhir(200, {"resourceType": "Parameters", "parameter": grants}, ctx)


@operation("audit-trail", system=True, definition=_SD + "audit-trail")
async def audit_trail(router, request, ctx, rtype, rid, params, body):
    """The audit trail searched by an auditor (security/audit_search.py): by requestor, patient, date, outcome,
    interaction and action, newest first, paged. The policy admits auditors and administrators only, and this
    search is itself audited like every request."""
    services = router.services
    if services.audit is None:
        raise FHIRError(501, "This server keeps no audit log", "not-supported")
    from urllib.parse import urlencode

    from ...security.audit_search import parse_trail_query, search_trail
    try:
        query = parse_trail_query(list(params))
    except ValueError as exc:
        raise FHIRError(400, f"$audit-trail: {exc}") from None
    events, below = await router.run(search_trail, services.store, query)
    here = f"{ctx.base_url}/$audit-trail"
    links = [{"relation": "self", "url": here + "?" + urlencode(list(params))}]
    if below is not None:
        links.append({"relation": "next", "url": here + "?" + urlencode(
            [*query.params, ("_count", str(query.count)), ("_before", str(below))])})
    bundle = {"resourceType": "Bundle", "type": "searchset", "link": links,
              "entry": [{"fullUrl": f"urn:healthtwin:audit:{e['id']}", "resource": e, "search": {"mode": "match"}}
                        for e in events]}
    return fhir(200, bundle, ctx)
