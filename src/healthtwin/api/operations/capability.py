"""GET /metadata: the CapabilityStatement, generated from what is implemented (types, interactions, every
search parameter the registry knows, operations from the operations table)."""
from __future__ import annotations

from functools import lru_cache

from ... import FHIR_VERSION, __version__
from ...fhir.model import NOT_STORED, resource_types
from ...store.records import instant
from .registry import all_operations

INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                "search-type"]
_COMMON = [("_id", "token"), ("_lastUpdated", "date"), ("_text", "string"), ("_content", "string"),
           ("_has", "special"), ("_list", "special")]


def capability_statement(services, ctx) -> dict:
    ops = all_operations()
    integrity = services.limits.referential_integrity
    resources = []
    for rtype in sorted(resource_types() - NOT_STORED.keys()):  # a type that cannot be stored is not offered
        params = services.registry.for_type(rtype)
        search = [{"name": code, "type": p.type, **({"definition": p.url} if p.url else {})}
                  for code, p in sorted(params.items()) if p.type != "special" or code == "near"]
        search += [{"name": n, "type": t} for n, t in _COMMON if n not in params]
        entry = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            # "enforced": a literal reference must name a stored resource (unless relaxed for a bulk load)
            "referencePolicy": ["literal", "logical", "local"] + (["enforced"] if integrity else []),
            "searchInclude": sorted(f"{rtype}:{c}" for c, p in params.items() if p.type == "reference"),
            "searchRevInclude": ["*"],
            "searchParam": search,
        }
        type_ops = [{"name": o.name, "definition": o.definition} for o in ops
                    if (o.types is None or rtype in o.types) and (o.type_level or o.instance)]
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    rest = {
        "mode": "server",
        "resource": resources,
        "interaction": [{"code": c} for c in ("transaction", "batch", "search-system", "history-system")],
        "searchParam": [{"name": n, "type": t} for n, t in _COMMON],
        "operation": [{"name": o.name, "definition": o.definition} for o in ops if o.system],
    }
    if services.oauth_uris:
        rest["security"] = _smart_security(services.oauth_uris)
    statement = {
        **_describing("CapabilityStatement", "Health Twin Shared Health Record", ctx),
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [rest],
    }
    if any(o.name == "export" for o in ops):  # how Bulk Data clients find out that $export is here
        statement["instantiates"] = ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    return statement


def terminology_capabilities(services, ctx) -> dict:
    """GET /metadata?mode=terminology: the code systems this server holds (the R4 package's and the stored
    ones) and what its terminology operations accept (operations/terminology.py)."""
    from ...fhir.vocabulary import Vocabulary
    from .terminology import EXPANSION_PARAMETERS
    systems = Vocabulary(services.store).codesystems()
    return {
        **_describing("TerminologyCapabilities", "Health Twin terminology service", ctx),
        "codeSystem": [{"uri": url, **({"version": [{"code": v}]} if v else {})} for url, v in systems],
        "expansion": {"hierarchical": False, "paging": True,
                      "parameter": [{"name": n} for n in EXPANSION_PARAMETERS],
                      "textFilter": "Each word of `filter` starts a word of the display, or starts the code."},
        "codeSearch": "all",
        "validateCode": {"translations": False},
        "translation": {"needsMap": False},
        "closure": {"translation": False},
    }


def _describing(resource_type: str, description: str, ctx) -> dict:
    """What a capability resource says of this server instance."""
    return {"resourceType": resource_type, "status": "active", "date": _started(), "kind": "instance",
            "software": {"name": "Health Twin", "version": __version__},
            "implementation": {"description": description, "url": ctx.base_url}}


def _smart_security(uris: dict[str, str]) -> dict:
    """SMART App Launch's declaration in the CapabilityStatement: the service, and the endpoints in the
    oauth-uris extension that SMART v1 clients read (v2 clients read /.well-known/smart-configuration)."""
    return {
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": name, "valueUri": uri} for name, uri in uris.items()]}],
        "description": "Bearer tokens from this server's authorization server (SMART App Launch and Backend "
                       "Services), or from the configured OpenID Connect provider.",
    }


@lru_cache(maxsize=1)
def _started() -> str:
    import time
    return instant(time.time())
