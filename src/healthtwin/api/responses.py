"""Building FHIR HTTP responses: content types, ETag/Location/Last-Modified headers, Prefer handling."""
from __future__ import annotations

from email.utils import formatdate
from functools import lru_cache
from typing import Any

import orjson
from starlette.responses import Response

from ..fhir.outcome import FHIRError, information
from ..store.records import Stored
from . import guard
from ..request import RequestContext

FHIR_JSON = "application/fhir+json; charset=utf-8"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                    "cache-control": "no-store", "referrer-policy": "no-referrer"}


def json_bytes(value: Any, pretty: bool) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)


def fhir(status: int, body: Any, ctx: RequestContext | None = None, headers: dict[str, str] | None = None) -> Response:
    """A FHIR JSON response; `body` is a dict, a stored row let out by guard.release (its bytes are sent as
    they are), or None. Raw bytes are refused: a stored row reaches a client only through release()."""
    pretty = bool(ctx and ctx.pretty)
    if body is None:
        content = b""
    elif isinstance(body, guard.Released):
        content = json_bytes(orjson.loads(body.content), True) if pretty else body.content
    elif isinstance(body, (bytes, bytearray, memoryview, Stored)):
        raise TypeError("a response body is a dict or a guard.Released row, never raw stored content")
    else:
        content = json_bytes(body, pretty)
    all_headers = dict(SECURITY_HEADERS)
    if headers:
        all_headers.update(headers)
    return Response(content, status_code=status, headers=all_headers,
                    media_type=FHIR_JSON if body is not None else None)


def error(exc: FHIRError, ctx: RequestContext | None = None) -> Response:
    return fhir(exc.status, exc.outcome(), ctx, exc.headers)


@lru_cache(maxsize=4096)
def http_date(second: int) -> str:
    """An HTTP date (one-second resolution, so versions written in the same second share the string)."""
    return formatdate(second, usegmt=True)


def version_headers(stored: Stored, ctx: RequestContext, location: bool = False) -> dict[str, str]:
    headers = {"etag": stored.etag, "last-modified": http_date(int(stored.last_updated))}
    if location:
        headers["location"] = f"{ctx.base_url}/{stored.type}/{stored.id}/_history/{stored.version}"
    return headers


def written(services: Any, stored: Stored, status: int, ctx: RequestContext) -> Response:
    """The answer to create/update/patch, honouring Prefer: return=. The resource goes back through release()
    like any row sent; the write rules already decided the caller may hold it, so only masking applies."""
    headers = version_headers(stored, ctx, location=True)
    if ctx.prefer_return == "minimal":
        return fhir(status, None, ctx, headers)
    if ctx.prefer_return == "OperationOutcome":
        verb = {201: "created"}.get(status, "updated")
        return fhir(status, information(f"{stored.type}/{stored.id} {verb} as version {stored.version}"), ctx, headers)
    return fhir(status, guard.release_one(services, ctx, stored, checked=True), ctx, headers)
