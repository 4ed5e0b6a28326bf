"""Auditing every FHIR request: which interaction it was, whose records it touched, and the append.

The patients touched are read from the response actually being released (every `Patient/…` reference and
every Patient resource in it), so the audit records what left the server, whatever code path produced it.
A refused request is audited too, with the patient named in its path if any.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..fhir.outcome import FHIRError
from ..request import Caller, RequestContext
from .http import path_of, query_of
from .responses import error

log = logging.getLogger("healthtwin.audit")


def classify(ctx: RequestContext, method: str, parts: list[str]) -> None:
    """BALP's restful-interaction code, the type and the id a request is about (set on ctx)."""
    n = len(parts)
    rtype = parts[0] if n >= 1 and parts[0][:1].isupper() else None
    rid = parts[1] if n >= 2 and not parts[1].startswith(("_", "$")) else None
    if n and parts[-1].startswith("$"):
        interaction = "operation"
        rid = parts[1] if n == 3 else None
    elif n == 0:
        interaction = "batch" if method == "POST" else "search-system"
    elif parts[0] == "metadata":
        interaction = "capabilities"
    elif parts[0] in ("_history", "_search"):
        interaction = "history-system" if parts[0] == "_history" else "search-system"
    elif n == 1:
        interaction = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method)
    elif n == 2 and parts[1] in ("_search", "_history"):
        interaction = "search-type" if parts[1] == "_search" else "history-type"
    elif n == 2:
        interaction = {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(method, method)
    elif n == 3 and parts[2] == "_history":
        interaction = "history-instance"
    elif n == 3:
        interaction = "search-type"  # a compartment search: Patient/1/Observation
    else:
        interaction = "vread"
    ctx.interaction, ctx.resource_type, ctx.resource_id = interaction, rtype, rid


# One pass over the bytes: a reference to a patient (group 1), or a Patient resource (group 2 holds its id when
# "id" directly follows "resourceType", as this server writes it).
_PATIENTS = re.compile(rb'"reference"\s*:\s*"[^"]*?Patient/([A-Za-z0-9\-.]{1,64})'
                       rb'|"resourceType"\s*:\s*"Patient"(?:\s*,\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})")?')


def patients_in(body: bytes | None) -> list[str]:
    """The patients a response body is about: Patient resources and references to patients.

    A regular-expression scan of the bytes (a full parse and walk cost ~250 µs per read); Patient
    resources whose id does not directly follow resourceType fall back to the full walk."""
    if not body or b"Patient" not in body:
        return []
    found = set()
    for ref, rid in _PATIENTS.findall(body):
        if ref:
            found.add(ref)
        elif rid:
            found.add(rid)
        else:
            return _walk(body)
    return sorted("Patient/" + f.decode() for f in found)


def _walk(body: bytes) -> list[str]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    found: dict[str, None] = {}
    stack: list[Any] = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("resourceType") == "Patient" and isinstance(item.get("id"), str):
                found["Patient/" + item["id"]] = None
            ref = item.get("reference")
            if isinstance(ref, str) and "Patient/" in ref:
                tail = ref[ref.rindex("Patient/"):].split("/")
                if len(tail) >= 2 and tail[1]:
                    found["Patient/" + tail[1]] = None
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return sorted(found)


def recorded_query(services: Any, request: Request, ctx: RequestContext) -> str | None:
    """The query entity of the request's AuditEvent: the operation's name, then the criteria of the URL and of
    a POST _search form, redacted alike (the trail must not become a clear copy of searched FINs)."""
    head = path_of(request).rsplit("/", 1)[-1] if ctx.interaction == "operation" else None
    raw_query = query_of(request)
    if not raw_query and ctx.criteria is None:
        return head
    pairs = parse_qsl(raw_query, keep_blank_values=True) + list(ctx.criteria or ())
    at_rest = services.store.at_rest
    criteria = at_rest.redact_params(pairs) if at_rest is not None else urlencode(pairs, safe=":|,/")
    return f"{head}?{criteria}" if head else criteria


async def audit_response(router: Any, request: Request, ctx: RequestContext | None, response: Response) -> Response:
    from ..security.audit import AuditError, rest_events
    services = router.services
    if ctx is None:
        client = request.scope.get("client")
        ctx = RequestContext(Caller(), router.base_url(request), request.method, path_of(request),
                             client_address=client[0] if client else None)
        classify(ctx, request.method, [p for p in path_of(request)[len(router.base_path):].split("/") if p])
    status = response.status_code
    patients = patients_in(getattr(response, "body", None)) if status < 400 else []
    if ctx.resource_type == "Patient" and ctx.resource_id and status >= 400:
        patients = [f"Patient/{ctx.resource_id}"]
    if ctx.interaction == "search-type" and ctx.resource_type == "Patient" and ctx.resource_id:
        patients = sorted(set(patients) | {f"Patient/{ctx.resource_id}"})  # compartment search
    purpose = None
    fn = getattr(services.policy, "purpose", None)
    if fn is not None:
        purpose = fn(ctx, patients)
    query = recorded_query(services, request, ctx)
    try:
        events = rest_events(ctx, ctx.interaction or "operation", status, ctx.resource_type,
                             ctx.resource_id if ctx.resource_type != "Patient" else ctx.resource_id, patients,
                             query, ["ETREAT", "BTG"] if purpose == "BTG" else purpose,
                             reason=ctx.security.get("btg_reason"))
        await services.audit.append_async(events)
    except (AuditError, OSError, RuntimeError) as exc:
        log.error("audit append failed (%s); the response is withheld", exc)
        return error(_withheld(exc), ctx)
    except Exception:
        log.exception("audit append failed; the response is withheld")
        return error(FHIRError(500, "The request could not be audited, so its result is withheld", "exception"), ctx)
    return response


def _withheld(exc: BaseException) -> FHIRError:
    """The answer for a response withheld because its audit events could not be written: 503 or 507 with the
    store's reason when the database cannot write now (it restarted, the disk is full), else 500."""
    from ..store.faults import Unavailable
    cause = exc.__cause__
    if isinstance(cause, Unavailable):
        return FHIRError(cause.status, f"The request could not be audited, so its result is withheld: "
                                       f"{cause.diagnostics}", "transient", headers=dict(cause.headers))
    return FHIRError(500, "The request could not be audited, so its result is withheld", "exception")
