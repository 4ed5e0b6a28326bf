"""The FHIR REST router: maps method and path (below the FHIR base) to one interaction.

A single catch-all route dispatches by the shape of the path, which keeps the hot read path short and
lets unknown types, ids and operations fail with an OperationOutcome rather than a framework 404.
"""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..fhir.jsonio import parse_resource
from ..fhir.model import ID_RE, is_resource_type
from ..fhir.outcome import FHIRError
from . import http
from .auditing import audit_response, classify
from ..request import PURPOSE_CODE, Caller, RequestContext
from ..store.faults import again_on_conflict
from .interactions import history, read, search, transaction, write
from .interactions.patch import patch
from .operations import registry as operations
from .responses import error, fhir, written

log = logging.getLogger("healthtwin.api")
COMPARTMENTS = {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}


class FHIRRouter:
    def __init__(self, services, base_path: str = "/fhir", identify=None, limiter=None) -> None:
        self.services = services
        self.base_path = base_path.rstrip("/")
        # identify(request) -> Caller: the authentication seam (security/tokens.TokenService.identify).
        self.identify = identify or (lambda request: Caller())
        self.limiter = limiter  # security.ratelimit.RateLimiter, per client
        self._bases: dict[tuple, str] = {}  # (scheme, Host header, server) -> base URL

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    def base_url(self, request: Request) -> str:
        """The FHIR base as the caller addressed it, computed by Starlette's rules (Host header when valid, else
        the server address) once per distinct (scheme, Host, server) and then looked up."""
        scope = request.scope
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        server = scope.get("server")
        key = (scope.get("scheme", "http"), host, tuple(server) if server else None)
        base = self._bases.get(key)
        if base is None:
            url = request.url
            base = f"{url.scheme}://{url.netloc}{self.base_path}"
            if len(self._bases) >= 1024:
                self._bases.clear()  # bounded: Host headers are the caller's to choose
            self._bases[key] = base
        return base

    async def handle(self, request: Request) -> Response:
        ctx: RequestContext | None = None
        path = http.path_of(request)[len(self.base_path):].strip("/")
        parts = [p for p in path.split("/") if p] if path else []
        try:
            # Limited by address before the token is checked: an invalid token costs a signature check and
            # an audit write, so a flood of them must be throttled as a flood of anonymous requests is.
            address = self._address_allowed(request)
            try:
                caller = self.identify(request)
            except FHIRError:
                ctx = http.context(request, Caller(), self.base_url(request), check_format=False)  # audited
                classify(ctx, request.method, parts)
                self._take(f"addr:{address}")
                raise
            # The context (and so the audit) carries the caller before anything about the request is refused.
            ctx = http.context(request, caller, self.base_url(request), check_format=False)
            classify(ctx, request.method, parts)
            self._rate_limit(ctx)
            http.negotiate(request, ctx.headers)
            declared = ctx.header("x-purpose-of-use")
            if caller.purpose is not None:
                # A token issued for a purpose (IHE IUA) states it on every request made with it.
                if declared is not None and declared.strip() != caller.purpose:
                    raise FHIRError(403, f"This token was issued for the purpose of use {caller.purpose}; a "
                                         "request made with it cannot state another", "forbidden")
                self._declare_purpose(ctx, caller.purpose)
            elif declared is not None:
                self._declare_purpose(ctx, declared)
            reason = ctx.header("x-break-glass")
            if reason is not None and hasattr(self.services.policy, "break_glass"):
                await self.run(self.services.policy.break_glass, ctx, _btg_patient(parts, http.query_items(request)),
                               reason)
            response = await self.dispatch(request, ctx, request.method, parts)
        except FHIRError as exc:
            response = error(exc, ctx)
        except Exception:  # never a traceback to the client: log it, answer with an OperationOutcome
            log.exception("unhandled error on %s %s", request.method, http.path_of(request))
            response = error(FHIRError(500, "Internal server error; the request was not completed", "exception"), ctx)
        if self.services.audit is not None:
            # Recorded before the response is released; if it cannot be recorded, the data is not sent.
            response = await audit_response(self, request, ctx, response)
        return response

    def _declare_purpose(self, ctx: RequestContext, code: str) -> None:
        """A purpose of use (HL7 v3 ActReason code) the caller states for this request: the policy checks it
        against the caller's role (an open policy takes any); the audit events record it."""
        code = code.strip()
        if not PURPOSE_CODE.match(code):
            raise FHIRError(400, "X-Purpose-Of-Use takes one HL7 v3 ActReason code, such as TREAT or HPAYMT")
        declare = getattr(self.services.policy, "declare_purpose", None)
        if declare is not None:
            declare(ctx, code)
        else:
            ctx.purpose = code

    def _address_allowed(self, request: Request) -> str | None:
        """The client address (as api/proxies.py established it), refused with 429 while its bucket is
        empty; only anonymous requests and refused tokens take from it (identified callers have their own)."""
        client = request.scope.get("client")
        address = client[0] if client else None
        if self.limiter is not None:
            self._refuse(self.limiter.exhausted(f"addr:{address}"))
        return address

    def _take(self, key: str) -> None:
        if self.limiter is not None:
            self._refuse(self.limiter.check(key))

    def _refuse(self, wait: float | None) -> None:
        if wait is not None:
            raise FHIRError(429, "Too many requests; slow down", "throttled",
                            headers={"retry-after": self.limiter.retry_after_header(wait)})

    def _rate_limit(self, ctx: RequestContext) -> None:
        caller = ctx.caller
        self._take(f"client:{caller.client_id}" if caller.client_id else f"sub:{caller.subject}"
                   if caller.kind != "anonymous" else f"addr:{ctx.client_address}")

    async def run(self, fn, *args) -> Any:
        if self.services.store.blocking:
            return await run_in_threadpool(fn, *args)
        return fn(*args)

    async def dispatch(self, request: Request, ctx: RequestContext, method: str, parts: list[str]) -> Response:
        s = self.services
        n = len(parts)
        if n >= 1 and parts[-1].startswith("$"):
            return await self.operation(request, ctx, parts)
        if n == 0:
            if method == "POST":
                http.refuse_query(request, "A batch or transaction (POST to the base URL)")
                body, _ = await http.json_body(request, s.limits.max_body_bytes)
                if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
                    raise FHIRError(400, "POST to the base URL takes a batch or transaction Bundle")
                return fhir(200, await self.run(transaction.process, s, ctx, body), ctx)
            if method == "GET":
                return await self.run(search.search, s, ctx, None, http.query_items(request))
            raise _not_allowed(method, "the base URL")
        if parts[0] == "metadata" and n == 1:
            if method != "GET":
                raise _not_allowed(method, "/metadata")
            from .operations.capability import capability_statement, terminology_capabilities
            if dict(http.query_items(request)).get("mode") == "terminology":
                return fhir(200, await self.run(terminology_capabilities, s, ctx), ctx)
            return fhir(200, capability_statement(s, ctx), ctx)
        if parts[0] == "_history" and n == 1:
            return await self.run(history.history, s, ctx, None, None, http.query_items(request))
        if parts[0] == "_search" and n == 1 and method == "POST":
            return await self.run(search.search, s, ctx, None, await self.form_params(request, ctx))
        rtype = parts[0]
        if not is_resource_type(rtype):
            raise FHIRError(404, f"Unknown resource type '{rtype}'", "not-supported")
        if n == 1:
            return await self.type_level(request, ctx, method, rtype)
        if n == 2 and parts[1] == "_search":
            if method != "POST":
                raise _not_allowed(method, f"{rtype}/_search")
            return await self.run(search.search, s, ctx, rtype, await self.form_params(request, ctx))
        if n == 2 and parts[1] == "_history":
            return await self.run(history.history, s, ctx, rtype, None, http.query_items(request))
        rid = parts[1]
        if n == 2:
            return await self.instance_level(request, ctx, method, rtype, rid)
        if not ID_RE.match(rid):
            raise FHIRError(404, f"{rtype}/{rid} is not known")
        if n == 3 and parts[2] == "_history":
            return await self.run(history.history, s, ctx, rtype, rid, http.query_items(request))
        if n == 4 and parts[2] == "_history":
            if method != "GET":
                raise _not_allowed(method, "a version")
            return await self.run(read.vread, s, ctx, rtype, rid, parts[3])
        if n == 3 and rtype in COMPARTMENTS and is_resource_type(parts[2]):
            if method != "GET":
                raise _not_allowed(method, "a compartment")
            return await self.run(search.search, s, ctx, parts[2], http.query_items(request), (rtype, rid))
        raise FHIRError(404, f"No FHIR interaction at '{'/'.join(parts)}'", "not-supported")

    async def type_level(self, request: Request, ctx: RequestContext, method: str, rtype: str) -> Response:
        s = self.services
        if method == "GET":
            return await self.run(search.search, s, ctx, rtype, http.query_items(request))
        if method == "POST":
            http.check_content_type(request)
            resource = parse_resource(await http.body_bytes(request, s.limits.max_body_bytes), rtype)
            result = await self.run(self._in_tx, write.create, s, ctx, rtype, resource,
                                    _if_none_exist(ctx.header("if-none-exist"), http.criteria_of(request)))
            return written(s, result.stored, result.status, ctx)
        if method == "PUT":
            query = http.query_of(request)
            if not query:
                raise FHIRError(400, f"PUT {rtype} needs an id (PUT {rtype}/id) or search criteria")
            http.check_content_type(request)
            resource = parse_resource(await http.body_bytes(request, s.limits.max_body_bytes), rtype)
            result = await self.run(self._in_tx, write.conditional_update, s, ctx, rtype, query, resource,
                                    write.parse_if_match(ctx.header("if-match")))
            return written(s, result.stored, result.status, ctx)
        if method == "DELETE":
            query = http.query_of(request)
            if not query:
                raise FHIRError(405, f"DELETE {rtype} needs an id or search criteria", "not-supported")
            cascade, criteria = write.cascade_param(parse_qsl(query, keep_blank_values=True))
            result = await self.run(self._in_tx, write.conditional_delete, s, ctx, rtype, urlencode(criteria),
                                    cascade)
            return fhir(204, None, ctx) if result.stored is None else fhir(200, _deleted(result.stored), ctx)
        raise _not_allowed(method, rtype)

    async def instance_level(self, request: Request, ctx: RequestContext, method: str, rtype: str,
                             rid: str) -> Response:
        s = self.services
        if method == "GET":
            params = http.params_of(request)
            summary, elements = params.get("_summary"), params.get("_elements")
            args = (s, ctx, rtype, rid, summary if summary != "false" else None,
                    elements.split(",") if elements else None)
            if hasattr(s.store, "aread"):
                return await read.aread(*args)
            return await self.run(read.read, *args)
        if method == "PUT":
            http.refuse_query(request, f"PUT {rtype}/{rid}")
            http.check_content_type(request)
            resource = parse_resource(await http.body_bytes(request, s.limits.max_body_bytes), rtype)
            result = await self.run(self._in_tx, write.update, s, ctx, rtype, rid, resource,
                                    write.parse_if_match(ctx.header("if-match")))
            return written(s, result.stored, result.status, ctx)
        if method == "DELETE":
            cascade, _ = write.cascade_param(http.query_items(request))
            http.refuse_query(request, f"DELETE {rtype}/{rid}", allowed=("_cascade",))
            result = await self.run(self._in_tx, write.delete, s, ctx, rtype, rid, cascade)
            return fhir(204, None, ctx) if result.stored is None else fhir(200, _deleted(result.stored), ctx)
        if method == "PATCH":
            http.refuse_query(request, f"PATCH {rtype}/{rid}")
            body, ctype = await http.json_body(request, s.limits.max_body_bytes, allow_patch=True)
            result = await self.run(self._in_tx, patch, s, ctx, rtype, rid, body, ctype,
                                    write.parse_if_match(ctx.header("if-match")))
            return written(s, result.stored, result.status, ctx)
        raise _not_allowed(method, f"{rtype}/{rid}")

    def _in_tx(self, fn, services, ctx, *args):
        # The policy's reads during the write (a pharmacy's dispense names an existing prescription) go through
        # the transaction's own connection: on a second pooled one, fifty concurrent writes held all sixteen
        # connections while each waited for a second, and every one timed out (503) after 30 s.
        # A transaction PostgreSQL cancelled in a deadlock runs again (again_on_conflict): the client would only
        # send the same request, and a merge beside busy writers is where two such orders meet.
        def attempt():
            with services.store.transaction() as tx, services.store.reads_within(tx):
                return fn(services, ctx, tx, *args)
        return again_on_conflict(attempt)

    async def form_params(self, request: Request, ctx: RequestContext) -> list[tuple[str, str]]:
        ctype = http.check_content_type(request, allow_form=True)
        params = http.query_items(request)
        if ctype == "application/x-www-form-urlencoded":
            raw = await http.body_bytes(request, self.services.limits.max_body_bytes)
            ctx.criteria = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            params += ctx.criteria  # the audit records these beside the URL's, redacted alike
        return params

    async def operation(self, request: Request, ctx: RequestContext, parts: list[str]) -> Response:
        name = parts[-1][1:]
        rtype = parts[0] if len(parts) >= 2 else None
        rid = parts[1] if len(parts) == 3 else None
        if rtype is not None and not is_resource_type(rtype):
            raise FHIRError(404, f"Unknown resource type '{rtype}'", "not-supported")
        if len(parts) > 3:
            raise FHIRError(404, f"No operation at '{'/'.join(parts)}'", "not-supported")
        op = operations.find(name, rtype, rid is not None)
        if op is None:
            where = f"{rtype}{'/[id]' if rid else ''}" if rtype else "the system level"
            raise FHIRError(404, f"Operation ${name} is not supported at {where}", "not-supported")
        if request.method not in getattr(op, "methods", ("GET", "POST")):
            raise _not_allowed(request.method, f"${name}")
        body = None
        if request.method == "POST":
            raw = await http.body_bytes(request, self.services.limits.max_body_bytes)
            if raw.strip():
                http.check_content_type(request)
                body = http.parse_json(raw)
        self.services.policy.authorize(ctx, f"${name}", rtype)  # every operation passes the policy first
        return await op(self, request, ctx, rtype, rid, http.query_items(request), body)


def _btg_patient(parts: list[str], params: list[tuple[str, str]]) -> str | None:
    """The one patient a break-the-glass request is about: from the path, or a patient/subject/_id search."""
    if len(parts) >= 2 and parts[0] == "Patient" and ID_RE.match(parts[1]):
        return parts[1]
    for name, value in params:
        code = name.split(":", 1)[0]
        if code in ("patient", "subject", "beneficiary") or (code == "_id" and parts[:1] == ["Patient"]):
            ref = value.split(",")[0].removeprefix("Patient/")
            if ID_RE.match(ref):
                return ref
    return None


def _if_none_exist(header: str | None, query: str) -> str | None:
    """The criteria of a conditional create: the If-None-Exist header, or the query of `POST Type?criteria`
    (as fhirpy's get_or_create sends it); both at once must agree."""
    if header is not None and query and sorted(parse_qsl(header.split("?", 1)[-1], keep_blank_values=True)) \
            != sorted(parse_qsl(query, keep_blank_values=True)):
        raise FHIRError(400, "The If-None-Exist header and the query of the POST name different criteria")
    return header or query or None


def _deleted(stored) -> dict:
    from ..fhir.outcome import information
    return information(f"{stored.type}/{stored.id} deleted (version {stored.version})")


def _not_allowed(method: str, where: str) -> FHIRError:
    return FHIRError(405, f"{method} is not allowed on {where}", "not-supported")
