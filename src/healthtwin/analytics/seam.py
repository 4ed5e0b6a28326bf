"""The seam every public-health route shares with the FHIR API: who is calling, what they may do, and the audit
entry written before the answer leaves.

/analytics (web.py) and the twin's routes (scenarios, alerts, forecasts) answer through one `PublicHealthSeam`,
so each request is identified from its bearer token, authorised for the route's interaction, and recorded in
the audit chain (purpose of use: public health) whether it was answered or refused, exactly as the analytics
queries are. An answer that cannot be audited is withheld. No traceback reaches the client: the route's own
input errors become 400 OperationOutcomes, anything else a 500 one."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..api import http
from ..api.responses import error
from ..fhir.outcome import FHIRError
from ..request import Caller, RequestContext

log = logging.getLogger(__name__)


@dataclass
class PublicHealthSeam:
    services: Any
    identify: Callable[[Request], Caller]
    base_path: str
    what: str  # names the routes in the server's log ("analytics", "scenario"...)
    input_errors: tuple[type[Exception], ...] = ()  # the routes' own errors of input: answered 400

    async def answer(self, request: Request, interaction: str,
                     fn: Callable[[RequestContext], Awaitable[Response]]) -> Response:
        ctx: RequestContext | None = None
        try:
            root = f"{request.url.scheme}://{request.url.netloc}"
            ctx = http.context(request, self.identify(request), root + self.base_path, check_format=False)
            http.negotiate(request, ctx.headers)  # after identification, so a 406 is audited under the caller
            self.services.policy.authorize(ctx, interaction, None)
            response = await fn(ctx)
        except FHIRError as exc:
            response = error(exc, ctx)
        except self.input_errors as exc:
            response = error(FHIRError(400, str(exc), "invalid", getattr(exc, "location", None) or None), ctx)
        except Exception:  # like the FHIR router: no traceback reaches the client
            log.exception("%s request failed: %s", self.what, request.url.path)
            response = error(FHIRError(500, "Internal server error; the request was not completed", "exception"), ctx)
        return await self.audited(request, ctx, response)

    async def audited(self, request: Request, ctx: RequestContext | None, response: Response) -> Response:
        audit = getattr(self.services, "audit", None)
        if audit is None:
            return response
        from ..security.audit import rest_events
        if ctx is None:  # refused before the caller was known: recorded as anonymous, from its address
            client = request.scope.get("client")
            ctx = RequestContext(Caller(), f"{request.url.scheme}://{request.url.netloc}{self.base_path}",
                                 request.method, request.url.path, client_address=client[0] if client else None)
        query = request.url.query
        at_rest = getattr(getattr(self.services, "store", None), "at_rest", None)
        if query and at_rest is not None:  # redacted as FHIR searches are: no identifier in clear in the trail
            query = at_rest.redact_query(query)
        query = request.url.path + (f"?{query}" if query else "")
        try:
            await audit.append_async(rest_events(ctx, "operation", response.status_code, query=query,
                                                 purpose="PUBHLTH"))
        except Exception:
            log.exception("audit append failed; the %s answer is withheld", self.what)
            return error(FHIRError(500, "The request could not be audited, so its result is withheld",
                                   "exception"), ctx)
        return response
