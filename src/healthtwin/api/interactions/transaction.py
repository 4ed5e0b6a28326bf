"""batch and transaction Bundles.

A transaction is all-or-nothing: its writes run in one store transaction in the spec's order (DELETE,
POST, PUT/PATCH, then GET/HEAD), with `urn:uuid:` fullUrls and conditional references
(`Patient?identifier=…`) rewritten to the resources they name before anything is written. A batch runs
each entry on its own, and an entry's failure is reported in its response without touching the others.
Either runs again, from what was sent, when PostgreSQL cancels it in a deadlock (store/faults.py), as a
single write does: the client could only send the same Bundle once more.
"""
from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from ...fhir.model import is_resource_type
from ...fhir.outcome import FHIRError
from ...store import Transaction
from ...store.faults import again_on_conflict
from ...store.records import Stored, instant
from ...request import RequestContext
from .. import guard, references, write_rules
from . import bundle_refs, conditional, write
from .patch import patch as patch_resource

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


class Entry:
    def __init__(self, index: int, raw: dict[str, Any]) -> None:
        self.index = index
        self.location = f"Bundle.entry[{index}]"
        request = raw.get("request")
        if not isinstance(request, dict):
            raise FHIRError(400, f"{self.location} has no request", location=f"{self.location}.request")
        self.method = str(request.get("method", "")).upper()
        if self.method not in ORDER:
            raise FHIRError(400, f"{self.location}.request.method '{request.get('method')}' is not supported",
                            location=f"{self.location}.request.method")
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise FHIRError(400, f"{self.location}.request.url is missing", location=f"{self.location}.request.url")
        self.url = url.lstrip("/")
        self.full_url = raw.get("fullUrl")
        self.resource = raw.get("resource")
        self.if_match = write.parse_if_match(request.get("ifMatch"))
        self.if_none_exist = request.get("ifNoneExist")
        path, _, self.query = self.url.partition("?")
        self.parts = [p for p in path.split("/") if p]
        if not self.parts or not is_resource_type(self.parts[0]):
            raise FHIRError(400, f"{self.location}.request.url '{url}' does not name a resource type",
                            location=f"{self.location}.request.url")
        self.type = self.parts[0]
        if self.query and self.method == "POST":  # `POST Type?criteria`: a conditional create, like ifNoneExist
            if self.if_none_exist and sorted(parse_qsl(self.if_none_exist.split("?", 1)[-1])) \
                    != sorted(parse_qsl(self.query)):
                raise FHIRError(400, f"{self.location}: request.ifNoneExist and the query of request.url name "
                                     "different criteria", location=f"{self.location}.request")
            self.if_none_exist = self.if_none_exist or self.query
        self.cascade = False
        if self.method == "DELETE" and self.query:
            self.cascade, rest = write.cascade_param(parse_qsl(self.query, keep_blank_values=True))
            self.query = urlencode(rest)
        if self.query and len(self.parts) > 1 and self.method in ("PUT", "DELETE", "PATCH"):  # never ignored
            raise FHIRError(400, f"{self.location}: {self.method} {path} takes no query parameters",
                            location=f"{self.location}.request.url")
        if self.method in ("POST", "PUT") and not isinstance(self.resource, dict):
            raise FHIRError(400, f"{self.location} ({self.method}) has no resource", location=self.location)
        if isinstance(self.resource, dict) and self.method in ("POST", "PUT") \
                and self.resource.get("resourceType") != self.type:
            raise FHIRError(400, f"{self.location}.resource is a {self.resource.get('resourceType')}, "
                                 f"but the request URL names {self.type}", location=f"{self.location}.resource")
        self.response: dict[str, Any] | None = None
        self.result_resource: Any = None
        self.checked = False  # validated before the store's writer lock was taken (_check_early)
        self.rewritten = False  # references final before the lock (none conditional)
        self.refers_to: dict[str, None] = {}  # the 'Type/id' of other entries this one's references were mapped to
        self.written = False
        self.existing: Stored | None = None  # a POST the write rules answered with a stored resource


def process(services, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
    btype = bundle.get("type")
    if btype not in ("batch", "transaction"):
        raise FHIRError(400, f"A Bundle posted to the base URL must be a batch or transaction, not '{btype}'",
                        location="Bundle.type")
    ctx.interaction = btype
    services.policy.authorize(ctx, btype, None)  # each entry is then authorized as if sent alone
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FHIRError(400, "Bundle.entry must be an array", location="Bundle.entry")
    if len(raw_entries) > services.limits.max_bundle_entries:
        raise FHIRError(413, f"The Bundle has {len(raw_entries)} entries; at most "
                             f"{services.limits.max_bundle_entries} are accepted", "too-costly")
    if btype == "transaction":
        return _transaction(services, ctx, raw_entries)
    return _batch(services, ctx, raw_entries)


def _transaction(services, ctx: RequestContext, raw_entries: list) -> dict[str, Any]:
    """Runs again, from the Bundle as it was sent, when PostgreSQL cancels it in a deadlock: nothing of the
    cancelled run was stored, but it assigned ids and rewrote references in the entries in place."""
    sent = orjson.dumps(raw_entries)
    runs = [raw_entries]

    def attempt() -> dict[str, Any]:
        return _transaction_once(services, ctx, runs.pop() if runs else orjson.loads(sent))
    return again_on_conflict(attempt)


def _transaction_once(services, ctx: RequestContext, raw_entries: list) -> dict[str, Any]:
    entries = [Entry(i, e if isinstance(e, dict) else {}) for i, e in enumerate(raw_entries)]
    _check_duplicates(entries)
    early = _check_early(services, ctx, entries)
    with services.store.transaction() as tx:
        _guard(tx, entries)
        for entry in entries:  # deletes first, so conditional creates below see their effect
            if entry.method == "DELETE":
                _write_entry(services, ctx, tx, entry, {})
        mapping = early if early is not None else _assign_ids(services, ctx, tx, entries)
        for entry in entries:
            if isinstance(entry.resource, dict) and not entry.rewritten:
                _rewrite(entry.resource, mapping, services, ctx, tx, entry.location, entry.refers_to)
        for entry in bundle_refs.write_order(entries):
            if entry.response is None:
                _write_entry(services, ctx, tx, entry, mapping)
                if entry.existing is not None:
                    bundle_refs.redirect(entries, entry, mapping)
        # Reads come last (the spec's order) and inside the transaction: they see its writes, and one that
        # fails (a 404, a refused search) fails the whole transaction, which then stores nothing.
        with services.store.reads_within(tx):
            for entry in entries:
                if entry.method in ("GET", "HEAD"):
                    _read_entry(services, ctx, entry)
    return _response_bundle("transaction-response", entries, ctx)


def _batch(services, ctx: RequestContext, raw_entries: list) -> dict[str, Any]:
    items = []
    for i, raw in enumerate(raw_entries):
        try:
            entry = Entry(i, raw if isinstance(raw, dict) else {})
            if entry.method in ("GET", "HEAD"):
                _read_entry(services, ctx, entry)
            else:
                entry = _write_alone(services, ctx, i, raw)
            items.append(_response_item(entry, ctx))
        except FHIRError as exc:  # this entry fails alone, with its OperationOutcome
            items.append({"response": {"status": f"{exc.status}", "outcome": exc.outcome()}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": items}


def _write_alone(services, ctx: RequestContext, index: int, raw: dict[str, Any]) -> Entry:
    """A batch entry's write in a transaction of its own; run again from the entry as sent when PostgreSQL
    cancels it in a deadlock (its conditional references were rewritten in place by the cancelled run)."""
    sent = orjson.dumps(raw)

    def attempt() -> Entry:
        entry = Entry(index, orjson.loads(sent))
        with services.store.transaction() as tx:
            _guard(tx, [entry])
            if isinstance(entry.resource, dict):
                _rewrite(entry.resource, {}, services, ctx, tx, entry.location)
            _write_entry(services, ctx, tx, entry, {})
        return entry
    return again_on_conflict(attempt)


def _check_duplicates(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for e in entries:
        if e.method in ("PUT", "DELETE", "PATCH") and len(e.parts) == 2:
            key = "/".join(e.parts)
            if key in seen:
                raise FHIRError(400, f"{e.location} and Bundle.entry[{seen[key]}] both change {key}",
                                location=e.location)
            seen[key] = e.index


def _check_early(services, ctx: RequestContext, entries: list[Entry]) -> dict[str, str] | None:
    """Before the store's writer lock, what needs no lookup: ids for the creates, urn:uuid references replaced,
    and every create's resource validated. Transactions then validate side by side and hold the lock only
    to write. A conditional reference is resolved later, under the lock; validating before that is the same,
    since the validator reads the type from `Type?criteria` as from `Type/id`. Returns the fullUrl mapping,
    or None where the store must be read first (ifNoneExist) or the Bundle carries definitions, which change
    how the entries after them validate."""
    if any(e.method == "POST" and e.if_none_exist or isinstance(e.resource, dict)
           and write._definitional(e.resource.get("resourceType")) for e in entries):
        return None
    mapping = _assign_ids(services, ctx, None, entries)
    for e in entries:
        if isinstance(e.resource, dict):
            e.rewritten = _rewrite(e.resource, mapping, services, ctx, None, e.location, e.refers_to)
            if e.method == "POST":  # updates are authorised first, under the lock, then validated
                write.prepare(services, e.type, e.resource, f"{e.location}.resource")
                e.checked = True
    return mapping


def _assign_ids(services, ctx, tx: Transaction | None, entries: list[Entry]) -> dict[str, str]:
    """fullUrl → 'Type/id' for every entry that creates or names a resource, resolved before any write."""
    mapping: dict[str, str] = {}
    for e in entries:
        if e.method == "POST":
            services.policy.authorize(ctx, "create", e.type)
            if e.if_none_exist:
                found = _search(services, ctx, tx, e.type, e.if_none_exist, e.location)
                if len(found) > 1:
                    raise FHIRError(412, f"{e.location}: ifNoneExist matches several {e.type} resources",
                                    location=e.location)
                if found:
                    e.response = _entry_response(found[0], 200)
                    if e.full_url:
                        mapping[e.full_url] = f"{e.type}/{found[0].id}"
                    continue
            e.assigned_id = str(uuid.uuid4())
            if e.full_url:
                mapping[e.full_url] = f"{e.type}/{e.assigned_id}"
        elif e.method == "PUT" and len(e.parts) == 2 and e.full_url:
            mapping[e.full_url] = f"{e.type}/{e.parts[1]}"
    return mapping


def _search(services, ctx: RequestContext, tx: Transaction, rtype: str, criteria: str,
            location: str) -> list[Stored]:
    return conditional.search(services, ctx, tx, rtype, criteria, location)  # under the conditional guard


def _guard(tx: Transaction, entries: list[Entry]) -> None:
    """Takes, at once and in one order, the guards of every conditional search the entries will run."""
    keys = []
    for e in entries:
        if e.method == "POST" and e.if_none_exist:
            keys.append(conditional.key(e.type, conditional.criteria_params(e.if_none_exist)))
        elif e.method in ("PUT", "DELETE") and len(e.parts) == 1 and e.query:
            keys.append(conditional.key(e.type, conditional.criteria_params(e.query)))
        if isinstance(e.resource, dict):
            keys.extend(conditional.reference_key(ref) for ref in conditional.references(e.resource))
    conditional.lock(tx, keys)


def _rewrite(node: Any, mapping: dict[str, str], services, ctx, tx: Transaction | None, location: str,
             refers_to: dict[str, None] | None = None) -> bool:
    """Replaces references to fullUrls and conditional references in place. Without a transaction (`tx` None)
    conditional references are left for later: False if there was one. The 'Type/id' each fullUrl reference
    became is noted in `refers_to` (the order of writes, and a create answered with a stored resource, use it)."""
    final = True
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                if ref in mapping:
                    item["reference"] = mapping[ref]
                    if refers_to is not None:
                        refers_to[mapping[ref]] = None
                elif "?" in ref and is_resource_type(ref.split("?", 1)[0]) and tx is None:
                    final = False
                elif "?" in ref and is_resource_type(ref.split("?", 1)[0]):
                    rtype, criteria = ref.split("?", 1)
                    found = _search(services, ctx, tx, rtype, criteria, location)
                    if len(found) != 1:
                        raise FHIRError(412 if found else 404,
                                        f"{location}: conditional reference '{ref}' matches {len(found)} resources "
                                        f"(exactly one is needed)", location=location)
                    item["reference"] = f"{rtype}/{found[0].id}"
                elif ref.startswith("urn:uuid:") and mapping is not None and ref not in mapping:
                    raise FHIRError(400, f"{location}: reference '{ref}' names no entry of this Bundle",
                                    location=location)
            for v in item.values():  # plain loops: this walk visits every node of every entry
                if type(v) is dict or type(v) is list:
                    stack.append(v)
        elif isinstance(item, list):
            for v in item:
                if type(v) is dict or type(v) is list:
                    stack.append(v)
    return final


def _write_entry(services, ctx: RequestContext, tx: Transaction, e: Entry, mapping: dict[str, str]) -> None:
    loc = f"{e.location}.resource"
    if e.method == "POST":
        services.policy.authorize(ctx, "create", e.type, e.resource)
        if e.if_none_exist and getattr(e, "assigned_id", None) is None:
            found = _search(services, ctx, tx, e.type, e.if_none_exist, e.location)
            if len(found) > 1:
                raise FHIRError(412, f"{e.location}: ifNoneExist matches several resources", location=e.location)
            if found:
                e.response = _entry_response(found[0], 200)
                return
        if not e.checked:
            write.prepare(services, e.type, e.resource, loc)
        e.resource.pop("id", None)
        event = write_rules.WriteEvent(services, ctx, tx, e.type, "create", e.resource, None)
        write_rules.check(services, event)
        if event.existing is not None:  # stored already (the patient index's certain match): answered with it
            e.existing = event.existing
            result = write.WriteResult(event.existing, 200)
        else:
            stored = tx.create(e.type, e.resource, getattr(e, "assigned_id", None))
            references.expect_targets(services, tx, e.resource, loc)
            write._after_write(services, tx, e.resource, None)
            event.stored = stored
            write_rules.react(services, event)
            result = write.WriteResult(stored, 201)
    elif e.method == "PUT":
        if len(e.parts) == 2:
            result = write.update(services, ctx, tx, e.type, e.parts[1], e.resource, e.if_match, loc)
        elif len(e.parts) == 1 and e.query:
            result = write.conditional_update(services, ctx, tx, e.type, e.query, e.resource, e.if_match, loc)
        else:
            raise FHIRError(400, f"{e.location}: PUT needs Type/id or Type?criteria", location=e.location)
    elif e.method == "DELETE":
        if len(e.parts) == 2:
            result = write.delete(services, ctx, tx, e.type, e.parts[1], e.cascade)
        elif len(e.parts) == 1 and e.query:
            result = write.conditional_delete(services, ctx, tx, e.type, e.query, e.cascade)
        else:
            raise FHIRError(400, f"{e.location}: DELETE needs Type/id or Type?criteria", location=e.location)
    elif e.method == "PATCH":
        if len(e.parts) != 2:
            raise FHIRError(400, f"{e.location}: PATCH needs Type/id", location=e.location)
        body, ctype = _patch_body(e)
        result = patch_resource(services, ctx, tx, e.type, e.parts[1], body, ctype, e.if_match, loc)
    else:
        raise FHIRError(400, f"{e.location}: method {e.method} cannot be used here", location=e.location)
    e.written = True
    e.response = _entry_response(result.stored, result.status)
    released = guard.release_one(services, ctx, result.stored, checked=True)  # as a write answered alone
    if released is not None and released.content is not None:
        e.result_resource = orjson.Fragment(released.content)


def _patch_body(e: Entry) -> tuple[Any, str]:
    res = e.resource
    if isinstance(res, dict) and res.get("resourceType") == "Parameters":
        return res, "application/fhir+json"
    if isinstance(res, dict) and res.get("resourceType") == "Binary" and res.get("data"):
        try:
            return orjson.loads(base64.b64decode(res["data"])), res.get("contentType", "application/json-patch+json")
        except (ValueError, orjson.JSONDecodeError):
            raise FHIRError(400, f"{e.location}: the Binary does not hold a JSON Patch document") from None
    raise FHIRError(400, f"{e.location}: PATCH entries carry a Parameters (FHIRPath Patch) or a Binary "
                         f"(JSON Patch) resource", location=e.location)


def _read_entry(services, ctx: RequestContext, e: Entry) -> None:
    from .read import read, vread
    from .search import search
    if len(e.parts) == 1:
        resp = search(services, ctx, e.type, parse_qsl(e.query, keep_blank_values=True))
    elif len(e.parts) == 2:
        resp = read(services, ctx, e.type, e.parts[1])
    elif len(e.parts) == 4 and e.parts[2] == "_history":
        resp = vread(services, ctx, e.type, e.parts[1], e.parts[3])
    else:
        raise FHIRError(400, f"{e.location}: GET '{e.url}' is not supported in a Bundle", location=e.location)
    e.response = {"status": str(resp.status_code)}
    if resp.headers.get("etag"):
        e.response["etag"] = resp.headers["etag"]
    if resp.body and e.method == "GET":
        e.result_resource = orjson.Fragment(resp.body)


def _entry_response(stored: Stored | None, status: int) -> dict[str, Any]:
    if stored is None:
        return {"status": STATUS_TEXT[status]}
    return {"status": STATUS_TEXT.get(status, str(status)),
            "location": f"{stored.type}/{stored.id}/_history/{stored.version}",
            "etag": stored.etag, "lastModified": instant(stored.last_updated)}


def _response_item(e: Entry, ctx: RequestContext) -> dict[str, Any]:
    item: dict[str, Any] = {"response": e.response or {"status": "200 OK"}}
    if e.result_resource is not None and (ctx.prefer_return == "representation" or e.method in ("GET", "HEAD")):
        item["resource"] = e.result_resource
    return item


def _response_bundle(btype: str, entries: list[Entry], ctx: RequestContext) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": [_response_item(e, ctx) for e in entries]}
