"""read and vread, with conditional reads (If-None-Match, If-Modified-Since)."""
from __future__ import annotations

from email.utils import parsedate_to_datetime

import orjson
from starlette.responses import Response

from ...fhir.model import ID_RE
from ...fhir.outcome import FHIRError
from .. import guard
from ...request import RequestContext
from ..responses import fhir, version_headers
from ..subsetting import subset


def read(services, ctx: RequestContext, rtype: str, rid: str, summary: str | None = None,
         elements: list[str] | None = None) -> Response:
    services.policy.authorize(ctx, "read", rtype)
    stored = services.store.read(rtype, rid) if ID_RE.match(rid) else None
    released = guard.release_one(services, ctx, stored)  # hidden answers exactly like absent
    return respond(ctx, rtype, rid, released, summary, elements)


async def aread(services, ctx: RequestContext, rtype: str, rid: str, summary: str | None = None,
                elements: list[str] | None = None) -> Response:
    """read on the event loop, for stores with an async read (PostgreSQL)."""
    services.policy.authorize(ctx, "read", rtype)
    stored = await services.store.aread(rtype, rid) if ID_RE.match(rid) else None
    if stored is not None and not guard.is_open(services):
        from starlette.concurrency import run_in_threadpool
        released = await run_in_threadpool(guard.release_one, services, ctx, stored)
    else:
        released = guard.release_one(services, ctx, stored)  # an open policy: no query, only the wrapping
    return respond(ctx, rtype, rid, released, summary, elements)


def respond(ctx: RequestContext, rtype: str, rid: str, stored: guard.Released | None, summary: str | None,
            elements: list[str] | None) -> Response:
    if stored is None:
        raise FHIRError(404, f"{rtype}/{rid} is not known")
    if not isinstance(stored, guard.Released):
        raise TypeError(f"{rtype}/{rid} was not released (api.guard.release)")
    headers = version_headers(stored, ctx)
    if stored.deleted:
        raise FHIRError(410, f"{rtype}/{rid} was deleted (version {stored.version})", headers=headers)
    if _not_modified(ctx, stored):
        return fhir(304, None, ctx, headers)
    body: guard.Released | dict = stored
    if summary or elements:
        body = subset(orjson.loads(stored.content), summary, elements)
    return fhir(200, body, ctx, headers)


def vread(services, ctx: RequestContext, rtype: str, rid: str, vid: str) -> Response:
    services.policy.authorize(ctx, "vread", rtype)
    if not vid.isdigit():
        raise FHIRError(404, f"{rtype}/{rid} has no version '{vid}'")
    stored = services.store.vread(rtype, rid, int(vid))
    if stored is not None and guard.release_one(services, ctx, services.store.read(rtype, rid)) is None:
        stored = None  # the resource as a whole is hidden: answer as for an absent one
    released = guard.release_one(services, ctx, stored, versions=True)
    if released is None:
        raise FHIRError(404, f"{rtype}/{rid} has no version {vid}")
    headers = version_headers(released, ctx)
    if released.deleted:
        raise FHIRError(410, f"{rtype}/{rid} version {vid} is a deletion", headers=headers)
    return fhir(200, released, ctx, headers)


def _not_modified(ctx: RequestContext, stored) -> bool:
    inm = ctx.header("if-none-match")
    if inm is not None:
        return any(tag.strip() in (stored.etag, f'"{stored.version}"', "*") for tag in inm.split(","))
    ims = ctx.header("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored, as HTTP says
        return int(stored.last_updated) <= since
    return False
