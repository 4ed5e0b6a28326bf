"""Definitional resources that change the server's behaviour when stored: SearchParameter and
StructureDefinition (profiles). They are applied when written and re-applied from the store at start."""
from __future__ import annotations

from typing import Any

import orjson

from ..fhir.outcome import FHIRError


def check_definition(services, resource: dict[str, Any]) -> None:
    """Refuses (before anything is stored) a definition the server could not apply."""
    rtype = resource.get("resourceType")
    try:
        if rtype == "SearchParameter" and resource.get("status") != "retired":
            services.registry.check(resource)
        elif rtype == "StructureDefinition" and resource.get("derivation") == "constraint":
            services.validator.check_profile(resource)
    except ValueError as exc:
        raise FHIRError(422, f"{rtype} cannot be applied: {exc}", "processing") from None


def apply_definition(services, resource: dict[str, Any] | None, old: dict[str, Any] | None = None) -> bool:
    """Applies a stored (or removes a deleted) definition; True if search indexes need rebuilding."""
    target = resource or old
    if target is None:
        return False
    rtype = target.get("resourceType")
    if rtype == "SearchParameter":
        if old and old.get("url"):
            services.registry.remove(old["url"])
        if resource and resource.get("status") != "retired":
            services.registry.add(resource)
        return True
    if rtype == "StructureDefinition" and target.get("derivation") == "constraint":
        if old and old.get("url"):
            services.validator.remove_profile(old["url"])
        if resource:
            services.validator.add_profile(resource)
    return False


_DEFINITION_TYPES = ("SearchParameter", "StructureDefinition")


def definitions_version(store) -> tuple:
    """Changes whenever a stored SearchParameter or StructureDefinition is created, changed or deleted."""
    return tuple(store.query("SELECT COUNT(*), MAX(last_updated) FROM resources WHERE type IN (?, ?)",
                             list(_DEFINITION_TYPES))[0])


def load_runtime_definitions(services) -> None:
    """Applies every stored definition, and withdraws those applied before that are no longer stored.

    Run at start and again whenever definitions_version() changes (the jobs thread checks every second), so
    a SearchParameter or profile written through one server process takes effect in all of them."""
    applied: dict[str, dict] = getattr(services, "_runtime_definitions", {})
    current: dict[str, dict] = {}
    for rtype in _DEFINITION_TYPES:
        for rid, content in services.store.query("SELECT id, content FROM resources WHERE type = ? AND "
                                                 "deleted = 0", [rtype]):
            resource = orjson.loads(services.store.open_content(rtype, rid, content))
            if isinstance(resource.get("url"), str):
                current[resource["url"]] = resource
    for url, old in applied.items():
        if url not in current:
            apply_definition(services, None, old)
    for url, resource in current.items():
        if applied.get(url) == resource:
            continue
        try:
            apply_definition(services, resource, applied.get(url))
        except ValueError:
            continue  # checked when written; a definition that no longer applies is skipped, not fatal
    services._runtime_definitions = current
    services._definitions_version = definitions_version(services.store)
