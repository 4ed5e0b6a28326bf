"""The prescribing checks as a CDS Hooks 2.0 service, beside the FHIR API:

* `GET  /cds-services`: discovery: two services, `prescribing-order-sign` (hook `order-sign`) and
  `prescribing-order-select` (hook `order-select`), with their prefetch templates;
* `POST /cds-services/{id}`: the hook call; `context.draftOrders` (a Bundle of MedicationRequests) is checked
  (checks.py) against the patient's active MedicationRequests and AllergyIntolerances and answered with cards
  (cards.py); for `order-select`, only the orders in `context.selections` get cards;
* `POST /cds-services/{id}/feedback`: what the clinician did with each card; overrides are recorded
  (overrides.py, as DetectedIssues).

Who asks: the caller's bearer token (`Authorization`), or else the hook's `fhirAuthorization.access_token` (a
token of this server), identified as the FHIR API identifies them. The patient's data is read with that
caller's access rules (`policy.authorize`, the search restricted and released through api/guard), so a card
never tells a caller about a prescription they could not read. A prefetch the client sent (`patient`,
`medications`, `allergies`, each a resource or a searchset Bundle) is used instead of reading; a missing or
null one is read. Each call goes into the audit chain as an operation on the patient's record.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...api import guard, http
from ...api.responses import error
from ...fhir.outcome import FHIRError
from ...request import Caller, RequestContext
from ...store.search import run_search
from . import cards as C
from . import checks, overrides

log = logging.getLogger("healthtwin.prescribing")
PREFETCH = {"patient": "Patient/{{context.patientId}}",
            "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
            "allergies": "AllergyIntolerance?patient={{context.patientId}}"}
SERVICES = {
    "prescribing-order-sign": {
        "hook": "order-sign", "title": "Prescribing checks at signing",
        "description": "Duplicate therapy (same ATC class), documented allergies and intolerances, and dose "
                       "limits for the medication orders being signed"},
    "prescribing-order-select": {
        "hook": "order-select", "title": "Prescribing checks at selection",
        "description": "The same checks for the orders just selected, before they are signed"},
}
MAX_BODY = 2 * 1024 * 1024
JSON = {"content-type": "application/json", "cache-control": "no-store", "x-content-type-options": "nosniff"}


class _Headers:
    """A request carrying only an Authorization header: the hook's fhirAuthorization token, identified as a
    bearer token would be."""

    def __init__(self, token: str) -> None:
        self.headers = {"authorization": f"Bearer {token}"}


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, headers=JSON)


def _resources(value: Any, rtype: str) -> list[dict[str, Any]]:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [e["resource"] for e in value.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == rtype]
    if isinstance(value, dict) and value.get("resourceType") == rtype:
        return [value]
    return []


class CDSHooks:
    def __init__(self, services: Any, identify: Callable[[Any], Caller] | None) -> None:
        self.services = services
        self.identify = identify or (lambda request: Caller())

    def routes(self) -> list[Route]:
        return [Route("/cds-services", self.discovery, methods=["GET"]),
                Route("/cds-services/{service}", self.hook, methods=["POST"]),
                Route("/cds-services/{service}/feedback", self.feedback, methods=["POST"])]

    async def discovery(self, request: Request) -> Response:
        """CDS Hooks discovery: the prescribing services, their hooks and prefetch templates"""
        return _json(200, {"services": [{"id": sid, "prefetch": PREFETCH, **desc} for sid, desc in SERVICES.items()]})

    # -- the seam: who calls, and the audit --------------------------------------------------------------------
    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise FHIRError(413, f"The request is larger than {MAX_BODY} bytes", "too-costly")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FHIRError(400, f"The body is not JSON: {exc}", "structure") from None
        if not isinstance(body, dict):
            raise FHIRError(400, "The body is a JSON object", "structure")
        return body

    def _context(self, request: Request, body: dict[str, Any]) -> RequestContext:
        caller = self.identify(request)
        auth = body.get("fhirAuthorization")
        if caller.kind == "anonymous" and isinstance(auth, dict) and isinstance(auth.get("access_token"), str):
            caller = self.identify(_Headers(auth["access_token"]))
        root = f"{request.url.scheme}://{request.url.netloc}"
        return http.context(request, caller, root + "/fhir", check_format=False)

    async def _audit(self, ctx: RequestContext | None, request: Request, status: int, patients: list[str]) -> bool:
        audit = getattr(self.services, "audit", None)
        if audit is None or ctx is None:
            return True
        from ...security.audit import rest_events
        try:
            await audit.append_async(rest_events(ctx, "operation", status, query=request.url.path,
                                                 patients=[f"Patient/{p}" for p in sorted(set(patients))]))
        except Exception:  # an answer that cannot be audited is withheld, as the FHIR API's
            log.exception("audit append failed; the CDS Hooks answer is withheld")
            return False
        return True

    async def _run(self, request: Request,
                   work: Callable[[RequestContext, dict[str, Any], list[str]], Any]) -> Response:
        """`work(ctx, body, patients)` answers, appending the patients whose records it touched (for the audit)."""
        ctx: RequestContext | None = None
        patients: list[str] = []
        try:
            body = await self._body(request)
            ctx = self._context(request, body)
            fn = (lambda: work(ctx, body, patients))  # noqa: E731
            answer = await (run_in_threadpool(fn) if self.services.store.blocking else _now(fn))
            response = _json(200, answer)
        except FHIRError as exc:
            response = error(exc, ctx)
        except Exception:
            log.exception("CDS Hooks request failed")
            response = error(FHIRError(500, "The request failed on the server; nothing was recorded", "exception"),
                             ctx)
        if not await self._audit(ctx, request, response.status_code, patients):
            return error(FHIRError(500, "The request could not be audited, so its result is withheld",
                                   "exception"), ctx)
        return response

    # -- the hook -----------------------------------------------------------------------------------------------
    async def hook(self, request: Request) -> Response:
        """Call a CDS service: the prescribing checks on context.draftOrders, answered with cards

        Duplicate therapy, documented allergies and intolerances, and dose limits, for `order-sign` or
        `order-select` (only the orders in `context.selections` get cards). The patient's data is read with the
        caller's own access rules; a prefetch sent (`medications`, `allergies`) is used instead."""
        service = request.path_params["service"]
        if service not in SERVICES:
            return error(FHIRError(404, f"No CDS service '{service}' (GET /cds-services lists them)", "not-found"))
        return await self._run(request, lambda ctx, body, patients: self._cards(ctx, service, body, patients))

    def _search(self, ctx: RequestContext, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        s = self.services
        s.policy.authorize(ctx, "search", rtype)
        query = s.parser.parse([rtype], params, strict=True)
        query.count, query.total = 500, "none"
        guard.restrict(s, ctx, query)
        page = run_search(s.store, s.registry, query)
        return [orjson.loads(r.content) for r in guard.release(s, ctx, page.matches, checked=True) if r.content]

    def _read_or_prefetched(self, ctx: RequestContext, prefetch: dict[str, Any], key: str, rtype: str,
                            params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        if prefetch.get(key) is not None:
            return _resources(prefetch[key], rtype)
        return self._search(ctx, rtype, params)

    def _cards(self, ctx: RequestContext, service: str, body: dict[str, Any], patients: list[str]) -> dict[str, Any]:
        hook = SERVICES[service]["hook"]
        if body.get("hook") not in (None, hook):
            raise FHIRError(400, f"Service '{service}' answers the '{hook}' hook, not '{body.get('hook')}'", "value",
                            "hook")
        context = body.get("context")
        if not isinstance(context, dict) or not isinstance(context.get("patientId"), str) or not context["patientId"]:
            raise FHIRError(400, "context.patientId is required", "required", "context.patientId")
        if ctx.caller.kind == "anonymous":
            from ...security.policy import unauthenticated
            raise unauthenticated()
        patient = context["patientId"]
        patients.append(patient)
        drafts = [(checks.ref(r, f"draftOrders[{i}]"), r) for i, r in
                  enumerate(_resources(context.get("draftOrders"), "MedicationRequest"))]
        if not drafts and not isinstance(context.get("draftOrders"), dict):
            raise FHIRError(400, "context.draftOrders (a Bundle of the orders) is required", "required",
                            "context.draftOrders")
        prefetch = body.get("prefetch") if isinstance(body.get("prefetch"), dict) else {}
        subject = [("patient", f"Patient/{patient}")]
        active = [r for r in self._read_or_prefetched(ctx, prefetch, "medications", "MedicationRequest",
                                                      subject + [("status", "active")])
                  if r.get("status") == "active"]
        allergies = self._read_or_prefetched(ctx, prefetch, "allergies", "AllergyIntolerance", subject)
        findings = checks.run(drafts, active, allergies)
        if hook == "order-select":
            chosen = {s for s in context.get("selections") or [] if isinstance(s, str)}
            findings = [f for f in findings if f.order in chosen]
        issued = [(C.card(f), f) for f in findings]
        C.remember(self.services.store, ctx.caller.subject, patient, hook, issued)
        return {"cards": [c for c, _ in issued]}

    # -- feedback -----------------------------------------------------------------------------------------------
    async def feedback(self, request: Request) -> Response:
        """What the clinician did with each card: an override is recorded as a DetectedIssue

        `{"feedback": [{"card": uuid, "outcome": "accepted" | "overridden", "overrideReason": {...}}]}`; only
        the caller a card was issued to may answer it, once. Answers the DetectedIssues written."""
        service = request.path_params["service"]
        if service not in SERVICES:
            return error(FHIRError(404, f"No CDS service '{service}'", "not-found"))

        def work(ctx: RequestContext, body: dict[str, Any], patients: list[str]) -> dict[str, Any]:
            if ctx.caller.kind == "anonymous":
                from ...security.policy import unauthenticated
                raise unauthenticated()
            items = body.get("feedback")
            if not isinstance(items, list) or not items:
                raise FHIRError(400, "feedback is a non-empty list", "required", "feedback")
            return {"recorded": overrides.record(self.services, ctx, items, patients)}
        return await self._run(request, work)


# What the OpenAPI description (api/openapi.py) says of the routes: discovery answers anyone (CDS Hooks 2.0:
# a client discovers the services before it has a token), and what the two POST routes read.
CDSHooks.discovery.public = True  # type: ignore[attr-defined]
CDSHooks.hook.request_body = ("a CDS Hooks 2.0 request: hook, hookInstance, context (patientId, draftOrders), "  # type: ignore[attr-defined]
                              "prefetch, fhirAuthorization")
CDSHooks.feedback.request_body = ("CDS Hooks feedback: {\"feedback\": [{card, outcome, overrideReason, "  # type: ignore[attr-defined]
                                  "outcomeTimestamp}]}")

async def _now(fn: Callable[[], Any]) -> Any:
    return fn()


def routes(services: Any, identify: Callable | None) -> list[Route]:
    return CDSHooks(services, identify).routes()
