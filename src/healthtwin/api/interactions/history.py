"""history of an instance, a type and the whole system, with _since, _at, _count and paging."""
from __future__ import annotations

from starlette.responses import Response

from ...fhir.dates import parse_range
from ...fhir.outcome import FHIRError
from ...fhir.search_query import DEFAULT_COUNT, MAX_COUNT, _int
from .. import guard
from ...request import RequestContext
from ..responses import fhir
from .bundles import history_bundle, paging_links


def _instant(name: str, value: str, upper: bool) -> float:
    try:
        lo, hi = parse_range(value)
    except ValueError as exc:
        raise FHIRError(400, f"{name}: '{value}' is not a valid instant: {exc}") from None
    return hi if upper else lo


def history(services, ctx: RequestContext, rtype: str | None, rid: str | None,
            params: list[tuple[str, str]]) -> Response:
    level = "history-instance" if rid is not None else "history-type" if rtype else "history-system"
    services.policy.authorize(ctx, level, rtype)
    since = at = None
    count, offset = DEFAULT_COUNT, 0
    echo = []
    for name, value in params:
        if name == "_since":
            since = _instant(name, value, upper=False)
        elif name == "_at":
            at = _instant(name, value, upper=True)
        elif name == "_count":
            count = _int(name, value, 0, MAX_COUNT)
        elif name == "_offset":
            offset = _int(name, value, 0, 10**9)
        elif name in ("_format", "_pretty"):
            continue
        elif ctx.prefer_handling == "strict":
            raise FHIRError(400, f"Unknown history parameter '{name}'")
        else:
            continue
        echo.append((name, value))
    if rid is not None and guard.release_one(services, ctx, services.store.read(rtype, rid)) is None:
        raise FHIRError(404, f"{rtype}/{rid} is not known")
    rows, total = services.store.history(rtype, rid, since, at, count, offset)
    # Type and system history are only for callers who see every row (authorize): release masks and labels.
    versions = guard.release(services, ctx, rows, checked=rid is None, versions=rid is not None)
    total -= len(rows) - len(versions)  # versions withheld (labelled, or filed under another patient)
    url = "/".join(p for p in (ctx.base_url, rtype, rid) if p) + "/_history"
    links = paging_links(url, echo, count, offset, offset + len(versions) < total, None, keyset=False)
    return fhir(200, history_bundle(ctx.base_url, versions, total, links), ctx)
