"""An OpenAPI 3.0 description of the FHIR REST API, generated from what the server implements (the same
registry the CapabilityStatement comes from), and of the authorization server's endpoints (/auth), for API
tooling and for schemathesis in the tests."""
from __future__ import annotations

from typing import Any, Iterable

from .. import __version__
from ..fhir.model import resource_types

_RESOURCE = {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"type": "string"}},
             "additionalProperties": True}
_OUTCOME = {"description": "OperationOutcome", "content": {"application/fhir+json": {"schema": _RESOURCE}}}
_BODY = {"required": True, "content": {"application/fhir+json": {"schema": _RESOURCE}}}
_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}}
_ERRORS = {str(s): _OUTCOME for s in (400, 401, 403, 404, 405, 406, 409, 410, 412, 413, 415, 422, 429)}


def _ok(description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/fhir+json": {"schema": _RESOURCE}}},
            **_ERRORS}


# Operations called with query parameters, described for API tooling and fuzzing: (what answers, parameters).
_QUERY_OPERATIONS = {
    "/fhir/$audit-trail": ("searchset Bundle of AuditEvents",
                           ("agent", "patient", "date", "outcome", "subtype", "action", "_count", "_before")),
    "/fhir/CodeSystem/$lookup": ("Parameters", ("system", "code", "version", "property")),
    "/fhir/CodeSystem/$validate-code": ("Parameters", ("url", "code", "version", "display")),
    "/fhir/CodeSystem/$subsumes": ("Parameters", ("system", "codeA", "codeB", "version")),
    "/fhir/ValueSet/$expand": ("ValueSet with its expansion", ("url", "filter", "offset", "count", "activeOnly")),
    "/fhir/ValueSet/$validate-code": ("Parameters", ("url", "system", "code", "display")),
    "/fhir/ConceptMap/$translate": ("Parameters", ("url", "system", "code", "targetsystem", "reverse")),
    "/fhir/Observation/$lastn": ("searchset Bundle", ("patient", "subject", "category", "code", "date", "max")),
    "/fhir/$meta": ("Parameters", ()),
}


def openapi_document(registry, types: Iterable[str] | None = None) -> dict[str, Any]:
    security = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/fhir/metadata": {"get": {"operationId": "capabilities", "responses": _ok("CapabilityStatement")}},
        "/fhir": {"post": {"operationId": "batch-transaction", "requestBody": _BODY, "security": security,
                           "responses": _ok("batch-response or transaction-response Bundle")}},
    }
    for rtype in sorted(types or resource_types()):
        params = [{"name": code, "in": "query", "required": False, "schema": {"type": "string"}}
                  for code, p in sorted(registry.for_type(rtype).items()) if p.type != "special"]
        params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                   for n in ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")]
        paths[f"/fhir/{rtype}"] = {
            "get": {"operationId": f"search-{rtype}", "parameters": params, "security": security,
                    "responses": _ok("searchset Bundle")},
            "post": {"operationId": f"create-{rtype}", "requestBody": _BODY, "security": security,
                     "responses": {"201": {"description": "created"}, **_ok("existing match")}},
        }
        paths[f"/fhir/{rtype}/{{id}}"] = {
            "parameters": [_ID],
            "get": {"operationId": f"read-{rtype}", "security": security, "responses": _ok(rtype)},
            "put": {"operationId": f"update-{rtype}", "requestBody": _BODY, "security": security,
                    "responses": {"201": {"description": "created"}, **_ok("updated")}},
            "delete": {"operationId": f"delete-{rtype}", "security": security,
                       "responses": {"204": {"description": "deleted"}, **_ok("deleted")}},
        }
        paths[f"/fhir/{rtype}/{{id}}/_history"] = {
            "parameters": [_ID],
            "get": {"operationId": f"history-{rtype}", "security": security, "responses": _ok("history Bundle")}}
    for path, (answer, names) in _QUERY_OPERATIONS.items():
        paths[path] = {"get": {
            "operationId": path.removeprefix("/fhir/").replace("/", "-").replace("$", ""), "security": security,
            "responses": _ok(answer),
            "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                           for n in names]}}
    paths.update(_auth_paths(security))
    return {"openapi": "3.0.3",
            "info": {"title": "Health Twin FHIR R4 API", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "bearerFormat": "JWT"}}},
            "paths": paths}


_JSON = {"type": "object", "additionalProperties": True}
_OAUTH_ERRORS = {str(s): {"description": "OAuth error", "content": {"application/json": {"schema": _JSON}}}
                 for s in (400, 401, 403, 404, 429, 503)}
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
    return {
        "/.well-known/smart-configuration": {"get": {"operationId": "smart-configuration",
                                                     "responses": _json_ok("SMART configuration")}},
        "/auth/jwks": {"get": {"operationId": "jwks", "responses": _json_ok("the server's public keys")}},
        "/auth/token": {"post": {"operationId": "token", "requestBody": _form(token_form, ["grant_type"]),
                                 "responses": _json_ok("access token")}},
        "/auth/revoke": {"post": {"operationId": "revoke", "requestBody": _form(token_ref, ["token"]),
                                  "responses": _json_ok("revoked, or nothing to revoke")}},
        "/auth/introspect": {"post": {"operationId": "introspect", "requestBody": _form(token_ref, ["token"]),
                                      "responses": _json_ok("whether the token is active")}},
        "/auth/launch": {"post": {"operationId": "ehr-launch", "requestBody": _form(launch_form, ["patient"]),
                                  "responses": _json_ok("a launch value for the app the EHR opens")}},
        "/auth/sessions": {"get": {"operationId": "sessions", "security": security,
                                   "responses": _json_ok("the caller's live app sign-ins")}},
        "/auth/sessions/{id}": {"delete": {
            "operationId": "end-session", "security": security,
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "ended"}, **_OAUTH_ERRORS}}},
    }
