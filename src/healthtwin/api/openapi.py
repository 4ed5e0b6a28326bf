"""An OpenAPI 3.0 description of the FHIR REST API, generated from what the server implements: the resource types
with their schemas (api/openapi_schemas.py, from the R4 StructureDefinitions), each type's search parameters
typed by their FHIR search type, every registered `$operation` (the same table the CapabilityStatement comes
from), the routes other packages contribute (/analytics, /cds-services: described from their handlers) and the authorization
server's endpoints (/auth). For API tooling, and for schemathesis in the tests.

`GET /openapi.json?types=Patient,Observation` narrows the description to those types (their interactions, their
operations, the system operations) and to the schemas they refer to."""
from __future__ import annotations

import inspect
import re
from typing import Any, Iterable

from .. import __version__
from ..fhir.model import resource_types
from .openapi_schemas import schemas_for
from .operations.registry import all_operations

_FHIR = "application/fhir+json"
_ID = {"name": "id", "in": "path", "required": True, "description": "the resource's logical id",
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}}
_ERROR_CODES = (400, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 422, 429)
# Schemas every document carries besides the resource types': what errors, searches and operations answer.
_ALWAYS = ("OperationOutcome", "Bundle", "Parameters", "Resource")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: str) -> dict[str, Any]:
    return {_FHIR: {"schema": _ref(schema)}}


_OUTCOME = {"description": "OperationOutcome saying what went wrong", "content": _content("OperationOutcome")}
# Shared parts are defined once under components and referred to, which keeps the whole document small.
_ERRORS = {str(s): {"$ref": "#/components/responses/Error"} for s in _ERROR_CODES}


def _ok(description: str, schema: str = "Resource", status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": _content(schema)}, **_ERRORS}


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": _content(schema)}


# -- search parameters, typed -----------------------------------------------------------------------------------
_PREFIX = "(eq|ne|gt|lt|ge|le|sa|eb|ap)?"
_NUMBER = "-?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?"
_DATE = "[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?"


def _list_of(one: str) -> str:
    return f"^{one}(,{one})*$"  # a comma is OR (search.html)


_SEARCH_SCHEMA = {
    "number": {"type": "string", "pattern": _list_of(_PREFIX + _NUMBER)},
    "date": {"type": "string", "pattern": _list_of(_PREFIX + _DATE)},
    "quantity": {"type": "string", "pattern": _list_of(_PREFIX + _NUMBER + "(\\|[^|,]*\\|[^|,]*)?")},
    "uri": {"type": "string", "format": "uri-reference"},
}
_SEARCH_HELP = {
    "string": "string: matches the start of the text, case- and accent-insensitive (`:exact`, `:contains`)",
    "token": "token: `[system]|[code]`, `code` or `system|` (`:not`, `:text`, `:in`, `:below`, `:of-type`)",
    "reference": "reference: `Type/id`, `id` or an absolute URL (`:identifier`, chains `name.param`)",
    "date": "date: a prefix (eq, ne, gt, lt, ge, le, sa, eb, ap) then a date or dateTime",
    "number": "number: a prefix then a number",
    "quantity": "quantity: a prefix, a number and optionally `|system|code`",
    "uri": "uri: an exact URI (`:below`, `:above`)",
    "composite": "composite: component values joined by `$`",
}
_RESULT_PARAMETERS = [
    ("_count", {"type": "integer", "minimum": 0}, "page size (0: only the total, as _summary=count)"),
    ("_offset", {"type": "integer", "minimum": 0}, "matches to skip before the page"),
    ("_sort", {"type": "string"}, "comma-separated search parameters, `-` for descending"),
    ("_include", {"type": "string"}, "`Type:param[:target]` to add the resources matches refer to"),
    ("_revinclude", {"type": "string"}, "`Type:param[:target]` to add the resources that refer to matches"),
    ("_summary", {"type": "string", "enum": ["true", "false", "text", "data", "count"]}, "summary form"),
    ("_elements", {"type": "string"}, "comma-separated top-level elements to return"),
    ("_total", {"type": "string", "enum": ["none", "estimate", "accurate"]}, "whether to count the matches"),
]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _search_parameters(registry, rtype: str) -> list[dict[str, Any]]:
    out = []
    for code, p in sorted(registry.for_type(rtype).items()):
        if p.type == "special":
            continue
        help_ = _SEARCH_HELP.get(p.type, p.type)
        if p.expression:
            help_ += f"; the values of {p.expression}"
        out.append(_query(code, _SEARCH_SCHEMA.get(p.type, {"type": "string"}), help_))
    return out + [{"$ref": f"#/components/parameters/{n}"} for n, _, _ in _RESULT_PARAMETERS]


# -- operations ---------------------------------------------------------------------------------------------------
# What each operation does, what it answers and its query parameters (name, description). An operation the table
# does not know is still described, from its handler's docstring, with a Parameters body.
_S = {"type": "string"}
_OPERATIONS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "everything": ("Everything in a patient's record (Patient $everything)", "Bundle",
                   (("start", "care dates from"), ("end", "care dates until"), ("_since", "changed since (instant)"),
                    ("_type", "comma-separated resource types"), ("_count", "page size"), ("_offset", "skip"))),
    "export": ("Kick off a Bulk Data export (NDJSON files; answers 202 with Content-Location to poll)", "OperationOutcome",
               (("_outputFormat", "application/fhir+ndjson"), ("_since", "changed since (instant)"),
                ("_type", "comma-separated resource types"), ("_typeFilter", "searches limiting each type"),
                ("_elements", "elements to keep"), ("patient", "Patient reference (POST)"),
                ("includeAssociatedData", "associated data to add"))),
    "export-poll-status": ("Poll (GET) or cancel (DELETE) a Bulk Data export job", "Resource", (("job", "job id"),)),
    "export-file": ("Download one NDJSON file of a finished export", "Resource",
                    (("job", "job id"), ("file", "file name"))),
    "import": ("Bulk Data import of NDJSON files named in a Parameters body (answers 202 with a job to poll)",
               "OperationOutcome", ()),
    "import-poll-status": ("Poll a Bulk Data import job", "Resource", (("job", "job id"),)),
    "access-log": ("The citizen's access log: who saw this record, when, what and why, written for a person",
                   "Bundle", (("_since", "accesses since (instant or date)"),
                              ("_count", "page size, 1 to 1000, newest first with a next link (with none of "
                                         "_count, _before, others: the whole log, up to 1000, oldest first)"),
                              ("_before", "the entry id the page ends below (from the next link)"),
                              ("others", "true: leave out the caller's own accesses"))),
    "break-glass-review": ("Emergency (break-the-glass) accesses awaiting review, for administrators and auditors",
                           "Bundle", (("_since", "grants since (instant or date)"),)),
    "audit-trail": ("Search the audit trail (auditors): by requestor, patient, date, outcome", "Bundle",
                    (("agent", "requestor"), ("patient", "Patient reference"), ("date", "when (prefix + date)"),
                     ("outcome", "0, 4, 8 or 12"), ("subtype", "interaction"), ("action", "C, R, U, D or E"),
                     ("_count", "page size"), ("_before", "entries before this sequence number"))),
    "lookup": ("Look up a code's display and properties in a code system", "Parameters",
               (("system", "code system URL"), ("code", "the code"), ("version", "code system version"),
                ("property", "property wanted"))),
    "validate-code": ("Whether a code is in a code system or value set", "Parameters",
                      (("url", "code system or value set URL"), ("system", "code system URL"), ("code", "the code"),
                       ("version", "version"), ("display", "display to check"))),
    "subsumes": ("Whether one code subsumes another", "Parameters",
                 (("system", "code system URL"), ("codeA", "first code"), ("codeB", "second code"),
                  ("version", "code system version"))),
    "expand": ("Expand a value set", "ValueSet",
               (("url", "value set URL"), ("filter", "text filter"), ("offset", "codes to skip"),
                ("count", "codes to return"), ("activeOnly", "true or false"))),
    "translate": ("Translate a code through a concept map", "Parameters",
                  (("url", "concept map URL"), ("system", "source code system"), ("code", "the code"),
                   ("targetsystem", "target code system"), ("reverse", "true or false"))),
    "lastn": ("The last N observations of each code for a patient (Observation $lastn)", "Bundle",
              (("patient", "Patient reference"), ("subject", "subject reference"), ("category", "token"),
               ("code", "token"), ("date", "prefix + date"), ("max", "observations per code (default 1)"))),
    "validate": ("Validate a resource (in the body, or the stored one) against R4 and an optional profile; "
                 "nothing is stored", "OperationOutcome", (("profile", "profile canonical URL"), ("mode", "create, "
                                                                                               "update or delete"))),
    "meta": ("The profiles, tags and security labels in use (system, type) or of one resource", "Parameters", ()),
    "meta-add": ("Add profiles, tags or security labels to a resource's meta (Parameters body)", "Parameters", ()),
    "meta-delete": ("Remove profiles, tags or security labels from a resource's meta (Parameters body)",
                    "Parameters", ()),
    "reindex": ("Re-extract the search index (administrators); answers a job to poll", "Parameters",
                (("job", "job id to poll"),)),
    "viewdefinition-run": ("Run a SQL on FHIR ViewDefinition and return its rows", "Resource",
                           (("viewReference", "ViewDefinition (Library) reference"), ("patient", "Patient reference"),
                            ("group", "Group reference"), ("_since", "resources changed since"),
                            ("_limit", "row limit"), ("_format", "json, ndjson or csv"),
                            ("header", "csv header: true or false"))),
    "run": ("Run a SQL on FHIR ViewDefinition (the name in earlier drafts of $viewdefinition-run)", "Resource",
            (("viewReference", "ViewDefinition (Library) reference"), ("_format", "json, ndjson or csv"),
             ("_limit", "row limit"))),
}


def _doc(fn: Any) -> tuple[str, str]:
    text = inspect.getdoc(fn) or ""
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _operation(op, level: str, rtype: str | None) -> dict[str, Any]:
    summary, answer, names = _OPERATIONS.get(op.name) or (_doc(op.handler)[0] or f"${op.name}", "Resource", ())
    where = {"system": "on the whole server", "type": f"on {rtype}", "instance": f"on one {rtype}"}[level]
    description = f"`${op.name}` {where}. Defined by {op.definition}." if op.definition else f"`${op.name}` {where}."
    base_id = f"{op.name}-{rtype}-{level}" if rtype else f"{op.name}-{level}"
    item: dict[str, Any] = {"parameters": [_ID]} if level == "instance" else {}
    for method in getattr(op.handler, "methods", ("GET", "POST")):
        entry: dict[str, Any] = {"operationId": f"{base_id}-{method.lower()}", "summary": summary,
                                 "description": description, "tags": ["operations"], "security": [{"bearer": []}],
                                 "responses": {**_ok(answer, answer if answer != "Resource" else "Resource"),
                                               "202": {"description": "accepted: a job to poll"}}}
        if method in ("GET", "DELETE"):
            entry["parameters"] = [_query(n, _S, d) for n, d in names]
        else:
            entry["requestBody"] = _body("Parameters" if op.name != "validate" else "Resource", required=False)
        item[method.lower()] = entry
    return item


def _operation_paths(types: list[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in all_operations():
        if op.system:
            paths[f"/fhir/${op.name}"] = _operation(op, "system", None)
        on = [t for t in types if op.types is None or t in op.types]
        for rtype in on:
            if op.type_level:
                paths[f"/fhir/{rtype}/${op.name}"] = _operation(op, "type", rtype)
            if op.instance:
                paths[f"/fhir/{rtype}/{{id}}/${op.name}"] = _operation(op, "instance", rtype)
    return paths


# -- routes other packages contribute (api/plugins.py) -----------------------------------------------------------
# The JSON APIs contributed beside /fhir; each is tagged with its first path segment. The web pages (/app) are
# not an API, and /auth and /.well-known are described by hand below, with their forms.
DESCRIBED_PREFIXES = ("/analytics", "/cds-services")


def _route_paths(routes: Iterable[Any], prefix: str = "") -> dict[str, Any]:
    """Starlette routes and mounts, described from their handlers: the first paragraph of the docstring is the
    summary, the rest the description; a handler may name its query parameters in `query_parameters`
    ((name, description) pairs), describe the JSON body it reads in `request_body` (a description), and say
    it answers without credentials with `public = True`."""
    paths: dict[str, Any] = {}
    for route in routes:
        path = prefix + getattr(route, "path", "")
        sub = getattr(getattr(route, "app", None), "routes", None) if not hasattr(route, "endpoint") else None
        if sub is not None:
            paths.update(_route_paths(sub, path))
            continue
        endpoint = getattr(route, "endpoint", None)
        methods = sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"})
        described = next((p for p in DESCRIBED_PREFIXES if path == p or path.startswith(p + "/")), None)
        if endpoint is None or described is None:
            continue
        summary, description = _doc(endpoint)
        names = re.findall(r"{([^}:]+)(?::[^}]*)?}", path)
        params = [{"name": n, "in": "path", "required": True, "schema": _S} for n in names]
        params += [_query(n, _S, d) for n, d in getattr(endpoint, "query_parameters", ())]
        item = paths.setdefault(re.sub(r"{([^}:]+):[^}]*}", r"{\1}", path), {})
        body = getattr(endpoint, "request_body", None)
        for method in methods:
            item[method.lower()] = {
                "operationId": f"{method.lower()}{path.replace('/', '-').replace('{', '').replace('}', '')}",
                "summary": summary or f"{method} {path}", "description": description, "tags": [described[1:]],
                **({"requestBody": {"required": True, "description": body,
                                    "content": {"application/json": {"schema": _JSON}}}}
                   if body and method != "GET" else {}),
                "security": [] if getattr(endpoint, "public", False) else [{"bearer": []}], "parameters": params,
                "responses": {"200": {"description": summary or "the answer",
                                      "content": {"application/json": {"schema": _JSON}}}, **_OAUTH_ERRORS,
                              "409": {"description": "conflict", "content": {"application/json": {"schema": _JSON}}}}}
    return paths


# -- the document -------------------------------------------------------------------------------------------------
def openapi_document(registry, types: Iterable[str] | None = None, routes: Iterable[Any] = ()) -> dict[str, Any]:
    security = [{"bearer": []}]
    described = sorted(types) if types else sorted(resource_types())
    paths: dict[str, Any] = {
        "/fhir/metadata": {"get": {"operationId": "capabilities", "summary": "The CapabilityStatement",
                                   "tags": ["system"], "responses": _ok("CapabilityStatement",
                                                                        "CapabilityStatement")}},
        "/fhir": {"post": {"operationId": "batch-transaction", "tags": ["system"],
                           "summary": "Run a batch or transaction Bundle", "requestBody": _body("Bundle"),
                           "security": security, "responses": _ok("batch-response or transaction-response Bundle",
                                                                  "Bundle")}},
    }
    for rtype in described:
        tag = [rtype]
        paths[f"/fhir/{rtype}"] = {
            "get": {"operationId": f"search-{rtype}", "summary": f"Search {rtype} resources", "tags": tag,
                    "parameters": _search_parameters(registry, rtype), "security": security,
                    "responses": _ok("searchset Bundle", "Bundle")},
            "post": {"operationId": f"create-{rtype}", "summary": f"Create a {rtype} (If-None-Exist: conditional)",
                     "tags": tag, "requestBody": _body(rtype), "security": security,
                     "responses": {"201": {"description": "created", "content": _content(rtype)},
                                   **_ok("existing match", rtype)}},
        }
        paths[f"/fhir/{rtype}/{{id}}"] = {
            "parameters": [_ID],
            "get": {"operationId": f"read-{rtype}", "summary": f"Read a {rtype} by id", "tags": tag,
                    "security": security, "responses": _ok(rtype, rtype)},
            "put": {"operationId": f"update-{rtype}", "summary": f"Update (or create) a {rtype} by id", "tags": tag,
                    "requestBody": _body(rtype), "security": security,
                    "responses": {"201": {"description": "created", "content": _content(rtype)},
                                  **_ok("updated", rtype)}},
            "delete": {"operationId": f"delete-{rtype}", "summary": f"Delete a {rtype}", "tags": tag,
                       "security": security,
                       "responses": {"204": {"description": "deleted"}, **_ok("deleted", "OperationOutcome")}},
        }
        paths[f"/fhir/{rtype}/{{id}}/_history"] = {
            "parameters": [_ID],
            "get": {"operationId": f"history-{rtype}", "summary": f"The versions of one {rtype}", "tags": tag,
                    "security": security, "responses": _ok("history Bundle", "Bundle")}}
    paths.update(_operation_paths(described))
    paths.update(_route_paths(routes))
    paths.update(_auth_paths(security))
    refs = [*described, *_ALWAYS, "CapabilityStatement", "ValueSet"]
    return {"openapi": "3.0.3",
            "info": {"title": "Health Twin FHIR R4 API", "version": __version__,
                     "description": "FHIR R4 REST API of the national health record, its operations, the "
                                    "population analytics and the SMART authorization server."},
            "components": {"schemas": schemas_for(refs),
                           "responses": {"Error": _OUTCOME, "OAuthError": _OAUTH_ERROR},
                           "parameters": {n: _query(n, s, d) for n, s, d in _RESULT_PARAMETERS},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "bearerFormat": "JWT"}}},
            "paths": paths}


_JSON = {"type": "object", "additionalProperties": True}
_OAUTH_ERROR = {"description": "OAuth error", "content": {"application/json": {"schema": _JSON}}}
_OAUTH_ERRORS = {str(s): {"$ref": "#/components/responses/OAuthError"} for s in (400, 401, 403, 404, 429, 503)}
_CLIENT_AUTH = {"client_id": {"type": "string"}, "client_assertion_type": {"type": "string"},
                "client_assertion": {"type": "string"}}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def _json_ok(description: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {"application/json": {"schema": _JSON}}},
            **_OAUTH_ERRORS}


def _auth_paths(security: list[dict[str, list]]) -> dict[str, Any]:
    """The SMART authorization server (security/smart.py, revocation.py, refresh.py, launch.py): OAuth forms in, JSON
    out. The login page (/auth/authorize) is HTML for people and left out."""
    token_form = {"grant_type": {"type": "string",
                                 "enum": ["client_credentials", "authorization_code", "refresh_token"]},
                  "scope": {"type": "string"}, "code": {"type": "string"}, "code_verifier": {"type": "string"},
                  "redirect_uri": {"type": "string"}, "refresh_token": {"type": "string"},
                  "purpose_of_use": {"type": "string"}, **_CLIENT_AUTH}
    token_ref = {"token": {"type": "string"}, "token_type_hint": {"type": "string"}, **_CLIENT_AUTH}
    launch_form = {"patient": {"type": "string"}, "encounter": {"type": "string"},
                   "app_client_id": {"type": "string"}, **_CLIENT_AUTH}

    def op(op_id: str, summary: str, **rest: Any) -> dict[str, Any]:
        return {"operationId": op_id, "summary": summary, "tags": ["authorization"], **rest}
    return {
        "/.well-known/smart-configuration": {"get": op("smart-configuration", "SMART on FHIR configuration",
                                                      responses=_json_ok("SMART configuration"))},
        "/auth/jwks": {"get": op("jwks", "The server's public signing keys (JWKS)",
                                 responses=_json_ok("the server's public keys"))},
        "/auth/token": {"post": op("token", "Issue an access token (client credentials, code or refresh token)",
                                   requestBody=_form(token_form, ["grant_type"]), responses=_json_ok("access token"))},
        "/auth/revoke": {"post": op("revoke", "Revoke a token (RFC 7009)", requestBody=_form(token_ref, ["token"]),
                                    responses=_json_ok("revoked, or nothing to revoke"))},
        "/auth/introspect": {"post": op("introspect", "Whether a token is active (RFC 7662)",
                                        requestBody=_form(token_ref, ["token"]),
                                        responses=_json_ok("whether the token is active"))},
        "/auth/launch": {"post": op("ehr-launch", "Start an EHR launch: the context an EHR hands an app",
                                    requestBody=_form(launch_form, ["patient"]),
                                    responses=_json_ok("a launch value for the app the EHR opens"))},
        "/auth/sessions": {"get": op("sessions", "The caller's live app sign-ins", security=security,
                                     responses=_json_ok("the caller's live app sign-ins"))},
        "/auth/sessions/{id}": {"delete": op(
            "end-session", "End one of the caller's app sign-ins", security=security,
            parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            responses={"204": {"description": "ended"}, **_OAUTH_ERRORS})},
    }
