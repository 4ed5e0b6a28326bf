"""HTTP details of the FHIR API: building the RequestContext, format negotiation, reading bodies safely."""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request

from ..fhir.dates import parse_range
from ..fhir.jsonio import parse_json
from ..fhir.outcome import FHIRError
from ..request import Caller, RequestContext

_XML = ("xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir")
OWN_FORMAT = ("/$viewdefinition-run", "/$run")  # operations that negotiate their own output format
_JSON = ("json", "application/json", "application/fhir+json", "application/json+fhir", "text/json")


def path_of(request: Request) -> str:
    """The request path as the server received it (percent-decoded by the ASGI server).

    Read from the ASGI scope: Starlette's `request.url` rebuilds and re-parses the whole URL (host header
    check, urlsplit), which cost ~10 µs of a ~200 µs audited read."""
    return request.scope["path"]


def query_of(request: Request) -> str:
    """The raw query string (still percent-encoded); undecodable bytes become U+FFFD, never an error."""
    return request.scope.get("query_string", b"").decode("utf-8", "replace")


_NO_PARAMS: dict[str, str] = {}


def params_of(request: Request) -> Any:
    """The request's query parameters; most reads carry none, and parsing an empty query cost a few
    microseconds a request."""
    return request.query_params if request.scope.get("query_string") else _NO_PARAMS


def context(request: Request, caller: Caller, base_url: str, check_format: bool = True) -> RequestContext:
    """The request's context; `check_format=False` leaves the format check (`negotiate`) to the caller, which
    the FHIR router runs once the context exists, so a refusal is audited under the caller's identity."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}
    params = params_of(request)
    pretty = params.get("_pretty") == "true"
    if check_format:
        negotiate(request, headers)
    prefer_return, prefer_handling = "representation", "lenient"
    for part in headers.get("prefer", "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            value = value.strip().strip('"')
            if key == "return" and value in ("minimal", "representation", "OperationOutcome"):
                prefer_return = value
            elif key == "handling" and value in ("strict", "lenient"):
                prefer_handling = value
    client = request.scope.get("client")
    return RequestContext(caller=caller, base_url=base_url, method=request.method, path=path_of(request),
                          pretty=pretty, prefer_return=prefer_return, prefer_handling=prefer_handling,
                          headers=headers, client_address=client[0] if client else None)


def negotiate(request: Request, headers: dict[str, str]) -> None:
    """Refuses (406) what the caller asks to receive (_format, Accept) that this server cannot produce."""
    fmt = params_of(request).get("_format")
    # $viewdefinition-run answers in CSV, NDJSON or Parquet too: it checks its own _format.
    # What the caller asks to receive (_format, Accept) that this server cannot produce is 406 Not Acceptable;
    # 415 is for a request body in a format it cannot read (check_content_type).
    if fmt is not None and not path_of(request).endswith(OWN_FORMAT):
        if fmt in _XML or "xml" in fmt:
            raise FHIRError(406, "XML is not supported by this server; use _format=json", "not-supported")
        if fmt not in _JSON:
            raise FHIRError(406, f"_format '{fmt}' is not supported; use json", "not-supported")
    else:
        accept = headers.get("accept", "")
        if accept and "xml" in accept and not any(j in accept for j in ("json", "*/*")):
            raise FHIRError(406, "XML is not supported by this server; ask for application/fhir+json",
                            "not-supported")


async def body_bytes(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FHIRError(413, f"The request body is larger than {limit} bytes", "too-costly")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FHIRError(413, f"The request body is larger than {limit} bytes", "too-costly")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request, allow_patch: bool = False, allow_form: bool = False) -> str:
    ctype = request.headers.get("content-type", "application/fhir+json").split(";")[0].strip().lower()
    if "xml" in ctype:
        raise FHIRError(415, "XML bodies are not supported by this server; send application/fhir+json",
                        "not-supported")
    if allow_patch and ctype == "application/json-patch+json":
        return ctype
    if allow_form and ctype == "application/x-www-form-urlencoded":
        return ctype
    if ctype not in _JSON and ctype not in ("", "application/octet-stream"):
        raise FHIRError(415, f"Content-Type '{ctype}' is not supported; send application/fhir+json",
                        "not-supported")
    return ctype


async def json_body(request: Request, limit: int, allow_patch: bool = False) -> tuple[Any, str]:
    ctype = check_content_type(request, allow_patch=allow_patch)
    return parse_json(await body_bytes(request, limit)), ctype


def query_items(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in parse_qsl(query_of(request), keep_blank_values=True)]


_OUTPUT_PARAMS = ("_format", "_pretty")  # how the answer is written: allowed on every request


def criteria_of(request: Request) -> str:
    """The query string of a write without its output parameters: the search criteria of a conditional
    write (`POST Patient?identifier=…`), or what a plain write must refuse."""
    return urlencode([(k, v) for k, v in query_items(request) if k not in _OUTPUT_PARAMS])


def refuse_query(request: Request, what: str, allowed: tuple[str, ...] = ()) -> None:
    """A write that takes no search criteria refuses query parameters instead of ignoring them."""
    extra = [k for k, _ in query_items(request) if k not in _OUTPUT_PARAMS and k not in allowed]
    if extra:
        raise FHIRError(400, f"{what} takes no query parameters (only _format, _pretty), but got "
                             f"{', '.join(sorted(set(extra)))}", "invalid")


def since_param(value: str) -> float:
    """`_since` (history, $everything, $export, $access-log...): the instant it names, in epoch seconds; a
    clear 400 for anything else."""
    try:
        return parse_range(value)[0]
    except ValueError as exc:
        raise FHIRError(400, f"_since: {exc}") from None
