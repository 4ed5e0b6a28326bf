"""What every interaction needs, built once at start: the store, definitions, validator and policy."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..fhir.search_query import SearchParser
from ..store import Store
from ..request import OpenPolicy, Policy

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BUNDLE_ENTRIES = 10_000


def utc_today() -> date:
    """Today's date in UTC: the day a registry assesses by when nothing else names one."""
    return datetime.now(timezone.utc).date()


def _integrity_from_env() -> bool:
    value = os.environ.get("HEALTHTWIN_REFERENTIAL_INTEGRITY", "strict")
    if value not in ("strict", "off"):
        raise ValueError(f"HEALTHTWIN_REFERENTIAL_INTEGRITY is 'strict' or 'off', not {value!r}")
    return value == "strict"


@dataclass
class Limits:
    max_body_bytes: int = MAX_BODY_BYTES
    max_bundle_entries: int = MAX_BUNDLE_ENTRIES
    # A literal reference written must name a resource that exists (422), a delete must leave none dangling
    # (409): api/references.py. `serve --referential-integrity off` relaxes it; bulk loads never check.
    referential_integrity: bool = field(default_factory=_integrity_from_env)


@dataclass
class Services:
    store: Store
    registry: Any  # fhir.search_params.SearchRegistry
    validator: Any  # fhir.validation.Validator
    policy: Policy = field(default_factory=OpenPolicy)
    limits: Limits = field(default_factory=Limits)
    jobs: Any = None  # background jobs (reindex, import)
    data_dir: Path | None = None  # keys, import folder, analytics files
    audit: Any = None  # security.audit.AuditLog: every request is recorded before its response is released
    oauth_uris: dict[str, str] | None = None  # the authorization server's endpoints, for /metadata (SMART)
    # security.oidc_login.ExternalLogin: citizens signed in through an external OpenID provider (the pages' use)
    external_login: Any = None
    # Makes the bulk loader $import runs (loading.Loader): handed in by the composition root, since loading.py
    # sits above api/ (it loads transaction Bundles through api/'s transaction processing).
    loader: Any = None
    write_rules: list = field(default_factory=list)  # api.write_rules.WriteRule, from the contributions
    # The registries' "today" (the live immunization forecast's assessment date, the operations' default date,
    # the citizen twin's as-of date): one clock, so a test pins it (services.today = lambda: day) and a run
    # that crosses midnight UTC does not see the date move under it.
    today: Callable[[], date] = utc_today

    def __post_init__(self) -> None:
        self.parser = SearchParser(self.registry)

    @classmethod
    def build(cls, store: Store, policy: Policy | None = None, limits: Limits | None = None,
              data_dir: Path | None = None) -> "Services":
        from ..fhir.search_params import SearchRegistry
        from ..fhir.validation import Validator
        from .definitions import load_runtime_definitions

        registry = SearchRegistry.default()
        validator = Validator.default()
        store.set_extractor(lambda resource: registry.index_extractor(resource["resourceType"])(resource))
        services = cls(store, registry, validator, policy or OpenPolicy(), limits or Limits(), data_dir=data_dir)
        from .jobs import Jobs
        services.jobs = Jobs(services)
        load_runtime_definitions(services)
        return services
