"""search-type, search-system and compartment search (GET and POST _search)."""
from __future__ import annotations

from starlette.responses import Response

from ...fhir.model import is_resource_type
from ...fhir.outcome import FHIRError, OutcomeIssue, operation_outcome
from ...fhir.search_query import Criterion, SearchQuery, Value
from ...store.search import run_search
from .. import guard
from ...request import RequestContext
from ..responses import fhir
from .bundles import paging_links, searchset


def parse(services, ctx: RequestContext, types: list[str], params: list[tuple[str, str]]) -> SearchQuery:
    return services.parser.parse(types, params, strict=ctx.prefer_handling == "strict")


def search(services, ctx: RequestContext, rtype: str | None, params: list[tuple[str, str]],
           compartment: tuple[str, str] | None = None) -> Response:
    if rtype is None:
        types = _system_types(params)
    else:
        types = [rtype]
    for t in (types or [None]):
        services.policy.authorize(ctx, "search", t)
    query = parse(services, ctx, types, params)
    if compartment is not None:
        ctype, cid = compartment
        codes = tuple(services.registry.compartment_params(ctype, rtype) or ())
        if not codes:
            raise FHIRError(404, f"{rtype} is not part of the {ctype} compartment")
        query.criteria.append(Criterion("_compartment", "compartment", None, [Value(f"{ctype}/{cid}")],
                                        targets=codes))
        url = f"{ctx.base_url}/{ctype}/{cid}/{rtype}"
    else:
        url = f"{ctx.base_url}/{rtype}" if rtype else ctx.base_url
    guard.restrict(services, ctx, query)  # visibility as criteria: pages and totals count only visible rows
    page = run_search(services.store, services.registry, query)
    matches = guard.release(services, ctx, page.matches, checked=True)
    included = guard.release(services, ctx, page.included)
    links = paging_links(url, query.echo, query.count, query.offset, page.has_more, page.last_rid,
                         keyset=not query.sort)
    outcome = None
    if query.ignored:
        outcome = operation_outcome([OutcomeIssue("warning", "not-supported",
                                                  f"Unknown search parameter '{p}' was ignored") for p in query.ignored])
    bundle = searchset(ctx.base_url, matches, included, page.total, links, query.summary,
                       query.elements, outcome)
    return fhir(200, bundle, ctx)


def _system_types(params: list[tuple[str, str]]) -> list[str]:
    types: list[str] = []
    for name, value in params:
        if name == "_type":
            for t in value.split(","):
                if not is_resource_type(t):
                    raise FHIRError(400, f"_type: unknown resource type '{t}'")
                types.append(t)
    return types
