"""An OpenAPI 3.0 description of the FHIR REST API, generated from what the server implements (the same
registry the CapabilityStatement comes from), for API tooling and for schemathesis in the tests."""
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
_ERRORS = {str(s): _OUTCOME for s in (400, 401, 403, 404, 405, 409, 410, 412, 413, 415, 422, 429)}


def _ok(description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/fhir+json": {"schema": _RESOURCE}}},
            **_ERRORS}


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
    return {"openapi": "3.0.3",
            "info": {"title": "Health Twin FHIR R4 API", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "bearerFormat": "JWT"}}},
            "paths": paths}
