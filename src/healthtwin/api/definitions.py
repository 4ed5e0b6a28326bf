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


def load_runtime_definitions(services) -> None:
    for rtype in ("SearchParameter", "StructureDefinition"):
        for (content,) in services.store.query("SELECT content FROM resources WHERE type = ? AND deleted = 0",
                                               [rtype]):
            try:
                apply_definition(services, orjson.loads(bytes(content)))
            except ValueError:
                continue  # checked when written; a definition that no longer applies is skipped, not fatal
